//! The socket a user holds: a raw protocol at the seam, pipe layers below it,
//! a cooked protocol and message layers above it.

mod builder;
mod context;
mod device;
mod service;

use std::sync::Arc;

use futures::{SinkExt, StreamExt};

pub use builder::{CookedProtocol, CookedSocket, SocketBuilder};
pub use context::{ContextService, SocketContext};
pub use device::{backtrace_field, device};

use crate::core::PipeEvent;
use crate::describe::{describe_frame, Description};
use crate::endpoint::Endpoint;
use crate::layer::{
    BoxSink, BoxStream, ComponentInfo, Control, CookedContext, FramePlan, MessageIo, MessageLayer,
    Overhead, PipeInfo,
};
use crate::raw::RawSocket;
use crate::stats::Stats;
use crate::transport::{Listener, Transport};
use crate::{Error, Message, Options, PipeId, Result};

pub(crate) struct Shared {
    raw: RawSocket,
    cooked: Option<Arc<dyn CookedSocket>>,
    msg_layers: Vec<Arc<dyn MessageLayer>>,
    transports: Vec<Arc<dyn Transport>>,
    pipe_infos: Vec<ComponentInfo>,
    components: Vec<ComponentInfo>,
    overhead: Overhead,
    /// What the protocol and the message layers add (the pipe layers' part
    /// depends on the frame's size: `plan`).
    message_overhead: Overhead,
    plan: FramePlan,
}

impl Shared {
    fn open_context(&self) -> (MessageIo, Option<Control>) {
        let base = match &self.cooked {
            Some(c) => c.context(),
            None => CookedContext {
                io: self.raw.io(),
                control: self.raw.core.router.control(),
            },
        };
        if self.msg_layers.is_empty() {
            // the protocols copy no message data: nothing to count here
            return (base.io, base.control);
        }
        let io = self.msg_layers.iter().fold(base.io, |io, l| l.layer(io));
        // what message layers copy (in the application's task) counts on
        // this socket too
        let counters = self.raw.counters();
        let io = MessageIo::new(
            Box::pin(crate::pipe::scope::Scoped::new(io.tx, counters.clone())),
            Box::pin(crate::pipe::scope::Scoped::new(io.rx, counters.clone())),
        );
        (io, base.control)
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.raw.core.close();
    }
}

struct SocketInner {
    tx: futures::lock::Mutex<BoxSink>,
    rx: futures::lock::Mutex<BoxStream>,
    control: Option<Control>,
    shared: Arc<Shared>,
}

/// A socket: `send(..).await`, `recv().await`, `dial`, `listen`, contexts.
///
/// Cloning gives another handle to the same socket; it closes when the last
/// handle (and the last context) is dropped, or on [`Socket::close`].
#[derive(Clone)]
pub struct Socket {
    inner: Arc<SocketInner>,
}

impl std::fmt::Debug for Socket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Socket")
            .field("protocol", &self.raw().protocol().id)
            .finish()
    }
}

impl Socket {
    fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    /// Sends through the socket's default context.
    pub async fn send(&self, msg: impl Into<Message>) -> Result<()> {
        let msg = msg.into();
        let fut = async {
            // uncontended (one sender at a time, the usual case): no lock future
            let mut tx = match self.inner.tx.try_lock() {
                Some(g) => g,
                None => self.inner.tx.lock().await,
            };
            tx.send(msg).await
        };
        match self.options().send_timeout {
            Some(t) => tokio::time::timeout(t, fut)
                .await
                .map_err(|_| Error::TimedOut(t))?,
            None => fut.await,
        }
    }

    /// Receives from the socket's default context.
    pub async fn recv(&self) -> Result<Message> {
        let fut = async {
            let mut rx = match self.inner.rx.try_lock() {
                Some(g) => g,
                None => self.inner.rx.lock().await,
            };
            rx.next().await.unwrap_or_else(|| Err(Error::Closed))
        };
        match self.options().recv_timeout {
            Some(t) => tokio::time::timeout(t, fut)
                .await
                .map_err(|_| Error::TimedOut(t))?,
            None => fut.await,
        }
    }

    /// A new context: its own protocol state, the same pipes.
    pub fn context(&self) -> SocketContext {
        let (io, control) = self.shared().open_context();
        SocketContext::new(io, control, self.inner.shared.clone())
    }

    /// The default context's protocol settings, as the protocol's own type
    /// (e.g. SUB's subscriptions); `None` if the protocol has none of that type.
    pub fn control<T: std::any::Any + Send + Sync>(&self) -> Option<Arc<T>> {
        self.inner.control.clone()?.downcast::<T>().ok()
    }

    /// Listens on `url` (`tcp://127.0.0.1:0` picks a port; see `Endpoint::url`).
    pub async fn listen(&self, url: &str) -> Result<Endpoint> {
        self.raw().core.listen(url).await
    }

    /// Accepts pipes from a listener made elsewhere (e.g. WebSockets an axum
    /// route upgraded), under the socket's handshake deadline and half-open cap.
    pub fn listen_on(&self, listener: Box<dyn Listener>) -> Endpoint {
        self.raw().core.listen_on(listener)
    }

    /// Dials `url`: returns once the first pipe is open (or with the error),
    /// then redials with backoff whenever it closes.
    pub async fn dial(&self, url: &str) -> Result<Endpoint> {
        self.raw().core.dial(url).await
    }

    /// Dials in the background, retrying with backoff until it connects.
    pub fn dial_background(&self, url: &str) -> Result<Endpoint> {
        self.raw().core.dial_background(url)
    }

    /// Socket counters: messages and bytes in and out, drops by reason
    /// (those of the protocol and of every message layer), refused pipes.
    pub fn stats(&self) -> Stats {
        self.raw().stats()
    }

    /// Counters of one pipe.
    pub fn pipe_stats(&self, id: PipeId) -> Option<Stats> {
        self.raw().pipe_stats(id)
    }

    /// Open pipes.
    pub fn pipes(&self) -> Vec<PipeId> {
        self.raw().pipes()
    }

    /// What is known about a pipe (addresses, announcements, identity).
    pub fn pipe_info(&self, id: PipeId) -> Option<Arc<PipeInfo>> {
        self.raw().pipe_info(id)
    }

    /// Calls `hook` on every pipe event; returning `false` on
    /// [`PipeEvent::AddPre`] rejects the pipe.
    pub fn on_pipe_event(&self, hook: impl Fn(&PipeEvent) -> bool + Send + Sync + 'static) {
        self.raw().on_pipe_event(hook)
    }

    /// A stream of pipe events (joined, left, refused) to await; to reject
    /// pipes use [`Socket::on_pipe_event`], which runs before a pipe joins.
    pub fn pipe_events(&self) -> tokio::sync::broadcast::Receiver<PipeEvent> {
        self.raw().pipe_events()
    }

    /// The options in force.
    pub fn options(&self) -> &Options {
        self.raw().options()
    }

    /// The raw socket underneath (for devices and cooked protocols).
    pub fn raw(&self) -> &RawSocket {
        &self.shared().raw
    }

    /// Summed overhead of every component of the stack (pipe layers at their
    /// declared, one-chunk size).
    pub fn overhead(&self) -> Overhead {
        self.shared().overhead
    }

    /// How frames are prepared for this stack's pipe layers.
    pub fn frame_plan(&self) -> &FramePlan {
        &self.shared().plan
    }

    /// A message with a `body_len`-byte body (zeroed) and the headroom and
    /// tailroom this stack needs, every pipe layer's size-dependent part
    /// included: one allocation for its whole trip, no copy on the way out.
    /// A message of 16 KiB or more reuses a buffer the socket keeps from
    /// earlier large messages when it has one of the size (no allocation, no
    /// fresh pages), and its buffer goes back there when it is dropped.
    pub fn new_message(&self, body_len: usize) -> Message {
        let s = self.shared();
        let o = s.message_overhead;
        // the SP header of REQ/REP is at most (ttl+1) words
        let sp = 4 * (self.options().ttl as usize + 1);
        let (pipe_head, pipe_tail) = s.plan.room(body_len + o.header + o.trailer + sp);
        // a large one reuses a buffer the socket keeps (see `AllocBudget::recv_buf`)
        Message::with_capacity_in(
            s.raw.core.alloc_budget.pool(),
            o.header + sp + pipe_head,
            body_len,
            o.trailer + pipe_tail,
        )
    }

    /// The components of this stack, outermost (transport side) first:
    /// pipe layers bottom-up, the protocol, then message layers.
    pub fn components(&self) -> Vec<ComponentInfo> {
        let s = self.shared();
        s.pipe_infos
            .iter()
            .chain(s.components.iter())
            .cloned()
            .collect()
    }

    /// The framing of the transport that serves `scheme` (what it declares:
    /// header bytes, whether it copies or transforms what it carries).
    pub fn transport_info(&self, scheme: &str) -> Option<ComponentInfo> {
        self.shared()
            .transports
            .iter()
            .find(|t| t.schemes().contains(&scheme))
            .map(|t| t.info())
    }

    /// Decodes a frame captured on a `scheme` connection of this stack, field
    /// by field (transport framing, pipe layers, protocol, message layers).
    pub fn describe(&self, scheme: &str, frame: &[u8]) -> Result<Description> {
        let t = self
            .shared()
            .transports
            .iter()
            .find(|t| t.schemes().contains(&scheme))
            .ok_or_else(|| Error::Address {
                url: scheme.into(),
                reason: "no such transport on this socket".into(),
            })?;
        let mut comps = vec![t.info()];
        comps.extend(self.components());
        Ok(describe_frame(&comps, frame))
    }

    /// Closes the socket now: sends and receives on every handle and context
    /// fail with `Error::Closed`; pipes linger (see `Options::linger`).
    pub fn close(&self) {
        self.raw().core.close();
    }

    /// Closes the socket and waits until its pipes have written what was
    /// queued and their peers hung up, or the linger passed. Returns the
    /// final counters: what could not be written is in `drops(Closed)`.
    pub async fn shutdown(&self) -> Stats {
        let core = &self.raw().core;
        core.close();
        core.wait_pipes().await;
        core.stats()
    }
}

//! The raw socket: the seam between the pipes below and the message layers
//! above, and everything a cooked protocol may use.
//!
//! A cooked protocol (REQ's ids and resends, SURVEYOR's deadlines, a
//! third-party protocol's state) is a message layer over a [`RawSocket`]: it
//! gets the handle once, when the socket is built
//! ([`CookedProtocol::attach`](crate::CookedProtocol::attach)), and opens
//! contexts over it. The handle is all it needs, and all the built-in cooked
//! protocols use:
//!
//! * sending as the routing decides, with back-pressure
//!   ([`RawSocket::poll_send_ready`] then [`RawSocket::send_now`], which
//!   says which pipe took the message) or to one chosen pipe
//!   ([`RawSocket::send_to`]);
//! * receiving, each message marked with the pipe it came from
//!   ([`Message::pipe`]);
//! * pipe events, synchronous ([`RawSocket::on_pipe_event`]: a request
//!   in flight on a pipe that died is resent at once) or as a stream;
//! * the socket's counters, for what the protocol drops
//!   ([`RawSocket::counters`]).
//!
//! ```no_run
//! # fn demo(socket: sp_core::Socket) {
//! let raw = socket.raw();
//! assert!(raw.pipes().is_empty());
//! raw.on_pipe_event(|ev| {
//!     if let sp_core::PipeEvent::RemovePost(id, _) = ev {
//!         println!("pipe {id} left: resend what was in flight on it");
//!     }
//!     true
//! });
//! # }
//! ```

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::{Sink, Stream};

use crate::core::{Core, PipeEvent, PipeHook};
use crate::layer::{MessageIo, PipeInfo};
use crate::protocol::ProtocolSpec;
use crate::queue::WaitKey;
use crate::routing::Refused;
use crate::send::Handover;
use crate::stats::{Counters, Stats};
use crate::{Error, Message, Options, PipeId, Result};

/// A handle on a raw socket (cheap to clone).
#[derive(Clone)]
pub struct RawSocket {
    pub(crate) core: Arc<Core>,
}

impl std::fmt::Debug for RawSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawSocket")
            .field("protocol", &self.core.spec)
            .finish()
    }
}

impl RawSocket {
    /// The protocol's identity (its id, name and peer).
    pub fn protocol(&self) -> ProtocolSpec {
        self.core.spec
    }

    /// The options the socket was built with.
    pub fn options(&self) -> &Options {
        self.core.options()
    }

    /// The socket's live counters: a cooked protocol counts its drops here
    /// (a late reply, a malformed header) so `Socket::stats` shows them.
    pub fn counters(&self) -> &Arc<Counters> {
        &self.core.counters
    }

    /// Socket-wide counters.
    pub fn stats(&self) -> Stats {
        self.core.stats()
    }

    /// Counters of one pipe.
    pub fn pipe_stats(&self, id: PipeId) -> Option<Stats> {
        self.core.pipe_stats(id)
    }

    /// Ids of the open pipes, in join order.
    pub fn pipes(&self) -> Vec<PipeId> {
        self.core.pipes()
    }

    /// True while the pipe is attached.
    pub fn has_pipe(&self, id: PipeId) -> bool {
        self.core.has_pipe(id)
    }

    /// What is known about a pipe.
    pub fn pipe_info(&self, id: PipeId) -> Option<Arc<PipeInfo>> {
        self.core.pipe_info(id)
    }

    /// Closes one pipe now; what it had queued goes to the other pipes where
    /// the protocol allows, else is counted.
    pub fn close_pipe(&self, id: PipeId) {
        self.core.close_pipe(id)
    }

    /// Calls `hook` on every pipe event, synchronously, in the task that
    /// causes it; returning `false` on [`PipeEvent::AddPre`] rejects the pipe.
    pub fn on_pipe_event(&self, hook: impl Fn(&PipeEvent) -> bool + Send + Sync + 'static) {
        let h: PipeHook = Arc::new(hook);
        self.core.add_hook(h);
    }

    /// A stream of pipe events (joined, left, refused) to await.
    pub fn pipe_events(&self) -> tokio::sync::broadcast::Receiver<PipeEvent> {
        self.core.pipe_events()
    }

    /// True once the socket is closed.
    pub fn is_closed(&self) -> bool {
        self.core.is_closed()
    }

    /// Ready when a message handed to [`RawSocket::send_now`] will be
    /// accepted without waiting. Cancelling this wait loses nothing.
    pub fn poll_send_ready(&self, cx: &mut Context<'_>, key: &mut WaitKey) -> Poll<Result<()>> {
        self.core.poll_send_ready(cx, key)
    }

    /// Hands a message to the routing without waiting: `Queued(Some(pipe))`
    /// when one pipe took it, `Queued(None)` when it fanned out or was
    /// dropped (counted), `Kept(msg)` when it would have to wait.
    pub fn send_now(&self, msg: Message) -> Result<Handover> {
        self.core.send_now(msg)
    }

    /// Sends `*slot` as the routing decides, waiting for room while it says
    /// so; the pipe that took it, when one did.
    pub fn poll_send(
        &self,
        cx: &mut Context<'_>,
        key: &mut WaitKey,
        slot: &mut Option<Message>,
    ) -> Poll<Result<Option<PipeId>>> {
        self.core.poll_send(cx, key, slot)
    }

    /// Queues a message on one chosen pipe, bypassing the routing (the
    /// message carries whatever raw header the protocol needs). Gives it
    /// back, with why, when that pipe is gone or full.
    pub fn send_to(&self, pipe: PipeId, msg: Message) -> Result<(), Refused> {
        self.core.send_to(pipe, msg)
    }

    /// Forgets a sender that stopped waiting (its key).
    pub fn cancel_send(&self, key: &mut WaitKey) {
        self.core.cancel_send(key);
    }

    /// The next received message, with `Message::pipe` set to its pipe.
    pub fn poll_recv(&self, cx: &mut Context<'_>, key: &mut WaitKey) -> Poll<Result<Message>> {
        self.core.poll_recv(cx, key)
    }

    /// Forgets a receiver that stopped waiting (its key).
    pub fn cancel_recv(&self, key: &mut WaitKey) {
        self.core.cancel_recv(key);
    }

    /// Sends, waiting as the protocol demands.
    pub async fn send(&self, msg: Message) -> Result<Option<PipeId>> {
        let mut g = SendGuard {
            raw: self,
            key: WaitKey::default(),
        };
        let mut slot = Some(msg);
        std::future::poll_fn(|cx| g.raw.poll_send(cx, &mut g.key, &mut slot)).await
    }

    /// Receives the next message.
    pub async fn recv(&self) -> Result<Message> {
        let mut g = RecvGuard {
            raw: self,
            key: WaitKey::default(),
        };
        std::future::poll_fn(|cx| g.raw.poll_recv(cx, &mut g.key)).await
    }

    /// The raw socket as one message stream (a `Sink` and a `Stream`): what
    /// a headerless cooked protocol, or a message layer of a raw socket,
    /// wraps.
    pub fn io(&self) -> MessageIo {
        MessageIo::new(
            Box::pin(RawSink {
                raw: self.clone(),
                key: WaitKey::default(),
                pending: None,
            }),
            Box::pin(RawStream {
                raw: self.clone(),
                key: WaitKey::default(),
                held: std::collections::VecDeque::new(),
            }),
        )
    }
}

struct SendGuard<'a> {
    raw: &'a RawSocket,
    key: WaitKey,
}
impl Drop for SendGuard<'_> {
    fn drop(&mut self) {
        self.raw.cancel_send(&mut self.key);
    }
}
struct RecvGuard<'a> {
    raw: &'a RawSocket,
    key: WaitKey,
}
impl Drop for RecvGuard<'_> {
    fn drop(&mut self) {
        self.raw.cancel_recv(&mut self.key);
    }
}

/// The raw socket as a message stream (see [`RawSocket::io`]).
pub fn raw_io(raw: &RawSocket) -> MessageIo {
    raw.io()
}

/// `Sink<Message>` over a raw socket. Waits for room per the protocol.
pub struct RawSink {
    raw: RawSocket,
    key: WaitKey,
    pending: Option<Message>,
}

impl RawSink {
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        if self.pending.is_none() {
            return Poll::Ready(Ok(()));
        }
        self.raw
            .poll_send(cx, &mut self.key, &mut self.pending)
            .map_ok(|_| ())
    }
}

impl Sink<Message> for RawSink {
    type Error = Error;
    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let this = self.get_mut();
        if this.pending.is_some() {
            return this.poll_pending(cx);
        }
        // wait for room before taking the message: a send that is cancelled
        // or times out here has handed nothing over
        this.raw.poll_send_ready(cx, &mut this.key)
    }
    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<()> {
        let this = self.get_mut();
        if let Handover::Kept(m) = this.raw.send_now(item)? {
            this.pending = Some(m);
        }
        Ok(())
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.get_mut().poll_pending(cx)
    }
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.get_mut().poll_pending(cx)
    }
}

impl Drop for RawSink {
    fn drop(&mut self) {
        self.raw.cancel_send(&mut self.key);
        if self.pending.take().is_some() {
            // accepted by start_send and never placed: say so
            self.raw
                .counters()
                .dropped(crate::stats::DropReason::Closed);
        }
    }
}

/// Messages a [`RawStream`] takes from the receive queue at once.
const RECV_BATCH: usize = 32;

/// `Stream` over a raw socket's receive queue. It takes what is queued in
/// batches (up to 32 messages under one lock) and hands them out one by
/// one; a stream dropped with some in hand puts them back for the others.
pub struct RawStream {
    raw: RawSocket,
    key: WaitKey,
    held: std::collections::VecDeque<Message>,
}

impl Stream for RawStream {
    type Item = Result<Message>;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Message>>> {
        let this = self.get_mut();
        let core = &this.raw.core;
        loop {
            if let Some(m) = this.held.pop_front() {
                if core.claim_held() {
                    // taken in a batch before a watched pipe's layer was
                    // known: its frame is settled now that it is handed out
                    if core.receipts.active() {
                        core.settle_taken(&m);
                    }
                    return Poll::Ready(Some(Ok(m)));
                }
                // the socket closed and counted what was in hand
                this.held.clear();
                return Poll::Ready(None);
            }
            if core.receipts.active() {
                // a layer acknowledges what the application took (ack/1):
                // one at a time, settled as it is taken, never held in a
                // batch that a dropped stream would give up
                return match core.poll_recv(cx, &mut this.key) {
                    Poll::Ready(Ok(m)) => Poll::Ready(Some(Ok(m))),
                    Poll::Ready(Err(Error::Closed)) => Poll::Ready(None),
                    Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
                    Poll::Pending => Poll::Pending,
                };
            }
            match core.poll_recv_into(cx, &mut this.key, &mut this.held, RECV_BATCH) {
                Poll::Ready(Ok(())) => continue,
                Poll::Ready(Err(Error::Closed)) => return Poll::Ready(None),
                Poll::Ready(Err(e)) => return Poll::Ready(Some(Err(e))),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl Drop for RawStream {
    fn drop(&mut self) {
        self.raw.cancel_recv(&mut self.key);
        if !self.held.is_empty() {
            self.raw.core.give_back(&mut self.held);
        }
    }
}

//! The socket a user holds: a raw protocol at the seam, pipe layers below it,
//! a cooked protocol and message layers above it.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskCx, Poll};

use futures::{Sink, SinkExt, Stream, StreamExt};

use crate::core::{Core, CoreParts, Endpoint, Handover, PipeEvent, PipeHook, PipeId, RawProtocol};
use crate::describe::{describe_frame, Description};
use crate::layer::{
    Bare, BoxSink, BoxStream, ComponentInfo, Control, CookedContext, Field, FieldKind, Handshake,
    MessageIo, MessageLayer, Overhead, PipeInfo, PipeLayer, PipeLayerEntry, UpgradeService,
};
use crate::queue::WaitKey;
use crate::stats::Stats;
use crate::transport::Transport;
use crate::{Error, Message, Options, Result};

/// The cooked half of a scalability protocol: a message layer over the raw
/// socket that can open any number of contexts.
pub trait CookedProtocol: Send + Sync + 'static {
    /// Name and header format.
    fn info(&self) -> ComponentInfo;
    /// Binds the cooked state to a raw socket.
    fn attach(&self, raw: Arc<Core>) -> Arc<dyn CookedSocket>;
}

/// Cooked state of one socket.
pub trait CookedSocket: Send + Sync + 'static {
    /// A new independent context (REQ: its own outstanding request; REP: its
    /// own request being answered; PUSH/PULL/PAIR: another handle).
    fn context(&self) -> CookedContext;
}

/// Builds a [`Socket`]: protocol, transports, pipe layers, message layers, options.
pub struct SocketBuilder {
    proto: Arc<dyn RawProtocol>,
    cooked: Option<Arc<dyn CookedProtocol>>,
    transports: Vec<Arc<dyn Transport>>,
    pipe_layers: Vec<PipeLayerEntry>,
    msg_layers: Vec<Arc<dyn MessageLayer>>,
    opts: Options,
}

impl SocketBuilder {
    /// A builder for a raw protocol.
    pub fn new(proto: impl RawProtocol) -> SocketBuilder {
        SocketBuilder {
            proto: Arc::new(proto),
            cooked: None,
            transports: Vec::new(),
            pipe_layers: Vec::new(),
            msg_layers: Vec::new(),
            opts: Options::default(),
        }
    }

    /// Puts a cooked protocol over the raw one.
    pub fn cooked(mut self, c: impl CookedProtocol) -> Self {
        self.cooked = Some(Arc::new(c));
        self
    }

    /// Makes a transport available (by its URL schemes).
    pub fn transport(mut self, t: Arc<dyn Transport>) -> Self {
        self.transports.push(t);
        self
    }

    /// Adds a pipe layer above those added before (the first added is
    /// nearest the transport).
    pub fn pipe_layer<H: Handshake>(mut self, layer: PipeLayer<H>) -> Self {
        self.pipe_layers.push(PipeLayerEntry::new(layer));
        self
    }

    /// Adds a message layer above those added before (the first added is
    /// nearest the protocol).
    pub fn message_layer(mut self, layer: impl MessageLayer) -> Self {
        self.msg_layers.push(Arc::new(layer));
        self
    }

    /// Sets the options.
    pub fn options(mut self, opts: Options) -> Self {
        self.opts = opts;
        self
    }

    /// Builds the socket. Needs a tokio runtime when endpoints are added.
    pub fn build(self) -> Socket {
        let mut upgrade = UpgradeService::new(Bare);
        for l in &self.pipe_layers {
            upgrade = (l.wrap)(upgrade);
        }
        let core = Core::new(CoreParts {
            proto: self.proto.clone(),
            opts: self.opts.clone(),
            transports: self.transports.clone(),
            upgrade,
            layer_names: self
                .pipe_layers
                .iter()
                .map(|l| l.info.name.clone())
                .collect(),
        });
        let cooked = self.cooked.as_ref().map(|c| c.attach(core.clone()));
        let mut components = Vec::new();
        let proto_info = ComponentInfo::new(
            format!("{}/raw", self.proto.protocol().name()),
            Overhead::NONE,
        )
        .with_header(self.proto.header_format());
        components.push(proto_info);
        if let Some(c) = &self.cooked {
            components.push(c.info());
        }
        for l in &self.msg_layers {
            components.push(l.info());
        }
        let pipe_infos: Vec<ComponentInfo> =
            self.pipe_layers.iter().map(|l| l.info.clone()).collect();
        let overhead = components
            .iter()
            .chain(pipe_infos.iter())
            .fold(Overhead::NONE, |acc, c| acc.plus(c.overhead));
        let shared = Arc::new(Shared {
            core,
            cooked,
            msg_layers: self.msg_layers,
            transports: self.transports,
            pipe_infos,
            components,
            overhead,
        });
        let (io, control) = shared.open_context();
        Socket {
            inner: Arc::new(SocketInner {
                tx: futures::lock::Mutex::new(io.tx),
                rx: futures::lock::Mutex::new(io.rx),
                control,
                shared,
            }),
        }
    }
}

struct Shared {
    core: Arc<Core>,
    cooked: Option<Arc<dyn CookedSocket>>,
    msg_layers: Vec<Arc<dyn MessageLayer>>,
    transports: Vec<Arc<dyn Transport>>,
    pipe_infos: Vec<ComponentInfo>,
    components: Vec<ComponentInfo>,
    overhead: Overhead,
}

impl Shared {
    fn open_context(&self) -> (MessageIo, Option<Control>) {
        let base = match &self.cooked {
            Some(c) => c.context(),
            None => CookedContext {
                io: raw_io(self.core.clone()),
                control: self.core.protocol().control(),
            },
        };
        let io = self.msg_layers.iter().fold(base.io, |io, l| l.layer(io));
        (io, base.control)
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.core.close();
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
            .field("protocol", &self.inner.shared.core.protocol().protocol())
            .finish()
    }
}

impl Socket {
    /// Sends through the socket's default context.
    pub async fn send(&self, msg: impl Into<Message>) -> Result<()> {
        let msg = msg.into();
        let fut = async {
            let mut tx = self.inner.tx.lock().await;
            tx.send(msg).await
        };
        match self.inner.shared.core.options().send_timeout {
            Some(t) => tokio::time::timeout(t, fut)
                .await
                .map_err(|_| Error::TimedOut(t))?,
            None => fut.await,
        }
    }

    /// Receives from the socket's default context.
    pub async fn recv(&self) -> Result<Message> {
        let fut = async {
            let mut rx = self.inner.rx.lock().await;
            rx.next().await.unwrap_or(Err(Error::Closed))
        };
        match self.inner.shared.core.options().recv_timeout {
            Some(t) => tokio::time::timeout(t, fut)
                .await
                .map_err(|_| Error::TimedOut(t))?,
            None => fut.await,
        }
    }

    /// A new context: its own protocol state, the same pipes.
    pub fn context(&self) -> SocketContext {
        let (io, control) = self.inner.shared.open_context();
        SocketContext {
            tx: io.tx,
            rx: io.rx,
            control,
            shared: self.inner.shared.clone(),
        }
    }

    /// The default context's protocol settings, as the protocol's own type
    /// (e.g. SUB's subscriptions); `None` if the protocol has none of that type.
    pub fn control<T: std::any::Any + Send + Sync>(&self) -> Option<Arc<T>> {
        self.inner.control.clone()?.downcast::<T>().ok()
    }

    /// Listens on `url` (`tcp://127.0.0.1:0` picks a port; see `Endpoint::url`).
    pub async fn listen(&self, url: &str) -> Result<Endpoint> {
        self.inner.shared.core.listen(url).await
    }

    /// Accepts pipes from a listener made elsewhere (e.g. WebSockets an axum
    /// route upgraded), under the socket's handshake deadline and half-open cap.
    pub fn listen_on(&self, listener: Box<dyn crate::transport::Listener>) -> Endpoint {
        self.inner.shared.core.listen_on(listener)
    }

    /// Dials `url`: returns once the first pipe is open (or with the error),
    /// then redials with backoff whenever it closes.
    pub async fn dial(&self, url: &str) -> Result<Endpoint> {
        self.inner.shared.core.dial(url).await
    }

    /// Dials in the background, retrying with backoff until it connects.
    pub fn dial_background(&self, url: &str) -> Result<Endpoint> {
        self.inner.shared.core.dial_background(url)
    }

    /// Socket counters.
    pub fn stats(&self) -> Stats {
        self.inner.shared.core.stats()
    }

    /// Counters of one pipe.
    pub fn pipe_stats(&self, id: PipeId) -> Option<Stats> {
        self.inner.shared.core.pipe_stats(id)
    }

    /// Open pipes.
    pub fn pipes(&self) -> Vec<PipeId> {
        self.inner.shared.core.pipes()
    }

    /// What is known about a pipe (addresses, announcements, identity).
    pub fn pipe_info(&self, id: PipeId) -> Option<Arc<PipeInfo>> {
        self.inner.shared.core.pipe_info(id)
    }

    /// Calls `hook` on every pipe event; returning `false` on
    /// [`PipeEvent::AddPre`] rejects the pipe.
    pub fn on_pipe_event(&self, hook: impl Fn(&PipeEvent) -> bool + Send + Sync + 'static) {
        let h: PipeHook = Arc::new(hook);
        self.inner.shared.core.add_hook(h);
    }

    /// A stream of pipe events (joined, left) to await; to reject pipes use
    /// [`Socket::on_pipe_event`], which runs before a pipe joins.
    pub fn pipe_events(&self) -> tokio::sync::broadcast::Receiver<PipeEvent> {
        self.inner.shared.core.pipe_events()
    }

    /// The options in force.
    pub fn options(&self) -> &Options {
        self.inner.shared.core.options()
    }

    /// The raw socket underneath (for devices and cooked protocols).
    pub fn raw(&self) -> &Arc<Core> {
        &self.inner.shared.core
    }

    /// Summed overhead of every component of the stack.
    pub fn overhead(&self) -> Overhead {
        self.inner.shared.overhead
    }

    /// A message with a `body_len`-byte body and exactly the headroom and
    /// tailroom this stack needs: one allocation for its whole trip.
    pub fn new_message(&self, body_len: usize) -> Message {
        let o = self.overhead();
        // the SP header of REQ/REP is at most (ttl+1) words
        let sp = 4 * (self.options().ttl as usize + 1);
        Message::with_capacity(o.header + sp, body_len, o.trailer)
    }

    /// The components of this stack, outermost (transport side) first:
    /// pipe layers bottom-up, the protocol, then message layers.
    pub fn components(&self) -> Vec<ComponentInfo> {
        let s = &self.inner.shared;
        s.pipe_infos
            .iter()
            .chain(s.components.iter())
            .cloned()
            .collect()
    }

    /// Decodes a frame captured on a `scheme` connection of this stack, field
    /// by field (transport framing, pipe layers, protocol, message layers).
    pub fn describe(&self, scheme: &str, frame: &[u8]) -> Result<Description> {
        let s = &self.inner.shared;
        let t = s
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

    /// Closes the socket now (all handles and contexts see `Error::Closed`).
    pub fn close(&self) {
        self.inner.shared.core.close();
    }
}

/// One context of a socket: independent protocol state over shared pipes.
/// Also a `Sink<Message>` and `Stream<Item = Result<Message>>`.
pub struct SocketContext {
    tx: BoxSink,
    rx: BoxStream,
    control: Option<Control>,
    shared: Arc<Shared>,
}

impl SocketContext {
    /// This context's protocol settings, as the protocol's own type.
    pub fn control<T: std::any::Any + Send + Sync>(&self) -> Option<Arc<T>> {
        self.control.clone()?.downcast::<T>().ok()
    }

    /// Sends on this context.
    pub async fn send(&mut self, msg: impl Into<Message>) -> Result<()> {
        let fut = self.tx.send(msg.into());
        match self.shared.core.options().send_timeout {
            Some(t) => tokio::time::timeout(t, fut)
                .await
                .map_err(|_| Error::TimedOut(t))?,
            None => fut.await,
        }
    }
    /// Receives on this context.
    pub async fn recv(&mut self) -> Result<Message> {
        let t = self.shared.core.options().recv_timeout;
        let fut = self.rx.next();
        match t {
            Some(t) => tokio::time::timeout(t, fut)
                .await
                .map_err(|_| Error::TimedOut(t))?
                .unwrap_or(Err(Error::Closed)),
            None => fut.await.unwrap_or(Err(Error::Closed)),
        }
    }
    /// Splits into the two halves (each keeps the socket alive).
    pub fn into_io(self) -> MessageIo {
        MessageIo::new(self.tx, self.rx)
    }
}

impl Sink<Message> for SocketContext {
    type Error = Error;
    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut TaskCx<'_>) -> Poll<Result<()>> {
        self.tx.as_mut().poll_ready(cx)
    }
    fn start_send(mut self: Pin<&mut Self>, item: Message) -> Result<()> {
        self.tx.as_mut().start_send(item)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskCx<'_>) -> Poll<Result<()>> {
        self.tx.as_mut().poll_flush(cx)
    }
    fn poll_close(mut self: Pin<&mut Self>, cx: &mut TaskCx<'_>) -> Poll<Result<()>> {
        self.tx.as_mut().poll_close(cx)
    }
}

impl Stream for SocketContext {
    type Item = Result<Message>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskCx<'_>) -> Poll<Option<Result<Message>>> {
        self.rx.as_mut().poll_next(cx)
    }
}

/// The raw socket as a message stream: what cooked protocols and message
/// layers of raw sockets wrap.
pub fn raw_io(core: Arc<Core>) -> MessageIo {
    MessageIo::new(
        Box::pin(RawSink {
            core: core.clone(),
            key: WaitKey::default(),
            pending: None,
        }),
        Box::pin(RawStream {
            core,
            key: WaitKey::default(),
        }),
    )
}

/// `Sink<Message>` over a raw socket. Waits for room per the protocol.
pub struct RawSink {
    core: Arc<Core>,
    key: WaitKey,
    pending: Option<Message>,
}

impl RawSink {
    fn poll_pending(&mut self, cx: &mut TaskCx<'_>) -> Poll<Result<()>> {
        if self.pending.is_none() {
            return Poll::Ready(Ok(()));
        }
        match self.core.poll_send(cx, &mut self.key, &mut self.pending) {
            Poll::Ready(r) => Poll::Ready(r.map(|_| ())),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Sink<Message> for RawSink {
    type Error = Error;
    fn poll_ready(self: Pin<&mut Self>, cx: &mut TaskCx<'_>) -> Poll<Result<()>> {
        let this = self.get_mut();
        if this.pending.is_some() {
            return this.poll_pending(cx);
        }
        // wait for room before taking the message: a send that is cancelled
        // or times out here has handed nothing over
        this.core.poll_send_ready(cx, &mut this.key)
    }
    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<()> {
        let this = self.get_mut();
        if let Handover::Kept(m) = this.core.send_now(item)? {
            this.pending = Some(m);
        }
        Ok(())
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskCx<'_>) -> Poll<Result<()>> {
        self.get_mut().poll_pending(cx)
    }
    fn poll_close(self: Pin<&mut Self>, cx: &mut TaskCx<'_>) -> Poll<Result<()>> {
        self.get_mut().poll_pending(cx)
    }
}

impl Drop for RawSink {
    fn drop(&mut self) {
        self.core.cancel_send(&mut self.key);
    }
}

/// `Stream` over a raw socket's receive queue.
pub struct RawStream {
    core: Arc<Core>,
    key: WaitKey,
}

impl Stream for RawStream {
    type Item = Result<Message>;
    fn poll_next(self: Pin<&mut Self>, cx: &mut TaskCx<'_>) -> Poll<Option<Result<Message>>> {
        let this = self.get_mut();
        match this.core.poll_recv(cx, &mut this.key) {
            Poll::Ready(Ok(m)) => Poll::Ready(Some(Ok(m))),
            Poll::Ready(Err(Error::Closed)) => Poll::Ready(None),
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for RawStream {
    fn drop(&mut self) {
        self.core.cancel_recv(&mut self.key);
    }
}

/// Joins two raw sockets: what one receives the other sends, both ways.
/// They must be each other's peers (e.g. raw REP facing clients, raw REQ
/// facing servers). Runs until either socket closes.
pub async fn device(a: &Socket, b: &Socket) -> Result<()> {
    let (ca, cb) = (a.raw().clone(), b.raw().clone());
    if ca.protocol().peer() != cb.protocol().protocol()
        || cb.protocol().peer() != ca.protocol().protocol()
    {
        return Err(Error::Mismatch(format!(
            "a device joins peers; {:?} and {:?} are not",
            ca.protocol().protocol(),
            cb.protocol().protocol()
        )));
    }
    let fwd = |from: Arc<Core>, to: Arc<Core>| async move {
        loop {
            let mut m = from.recv().await?;
            m.set_pipe(None);
            to.send(m).await?;
        }
        #[allow(unreachable_code)]
        Ok::<(), Error>(())
    };
    let r = tokio::select! {
        r = fwd(ca.clone(), cb.clone()) => r,
        r = fwd(cb, ca) => r,
    };
    match r {
        Err(Error::Closed) => Ok(()),
        other => other,
    }
}

/// Re-exported for layer authors writing the header of a protocol.
pub fn backtrace_field(name: &'static str) -> Field {
    Field {
        name,
        kind: FieldKind::Backtrace,
    }
}

/// A cooked REQ socket is a `tower::Service<Message>`: each call runs on a
/// fresh context (send, then await the reply), so calls run concurrently and
/// timeout, retry, concurrency-limit and load-shed middleware apply as they are.
impl tower::Service<Message> for Socket {
    type Response = Message;
    type Error = Error;
    type Future = crate::BoxFuture<'static, Result<Message>>;
    fn poll_ready(&mut self, _: &mut TaskCx<'_>) -> Poll<Result<()>> {
        if self.inner.shared.core.is_closed() {
            return Poll::Ready(Err(Error::Closed));
        }
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, req: Message) -> Self::Future {
        let mut ctx = self.context();
        Box::pin(async move {
            ctx.send(req).await?;
            ctx.recv().await
        })
    }
}

/// One context as a `tower::Service<Message>`: calls on it run one at a time
/// (a context has one request outstanding), in call order.
#[derive(Clone)]
pub struct ContextService {
    ctx: Arc<tokio::sync::Mutex<SocketContext>>,
}

impl SocketContext {
    /// This context as a `tower::Service`.
    pub fn into_service(self) -> ContextService {
        ContextService {
            ctx: Arc::new(tokio::sync::Mutex::new(self)),
        }
    }
}

impl tower::Service<Message> for ContextService {
    type Response = Message;
    type Error = Error;
    type Future = crate::BoxFuture<'static, Result<Message>>;
    fn poll_ready(&mut self, _: &mut TaskCx<'_>) -> Poll<Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, req: Message) -> Self::Future {
        let ctx = self.ctx.clone();
        Box::pin(async move {
            let mut c = ctx.lock_owned().await;
            c.send(req).await?;
            c.recv().await
        })
    }
}

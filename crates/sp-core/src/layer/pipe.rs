//! Pipe layers: one connection each, a handshake, then a transform of every frame.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::{Sink, Stream};

use super::{ComponentInfo, Overhead};
use crate::{Announcement, Error, Message, Result, SocketLink};

/// A boxed, `Send` future.
pub type BoxFuture<'a, T> = Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// The send half of a pipe or of a message stream.
pub type BoxSink = Pin<Box<dyn Sink<Message, Error = Error> + Send>>;
/// The receive half of a pipe or of a message stream.
pub type BoxStream = Pin<Box<dyn Stream<Item = Result<Message>> + Send>>;

/// What a transport or pipe layer knows about a pipe.
#[derive(Clone, Debug)]
pub struct PipeInfo {
    /// Transport scheme (`tcp`, `ipc`, `inproc`).
    pub transport: &'static str,
    /// Local address, as text.
    pub local_addr: String,
    /// Peer address, as text.
    pub peer_addr: String,
    /// What this side announced.
    pub local: Announcement,
    /// What the peer announced.
    pub peer: Announcement,
    /// Identity a pipe layer verified (e.g. a public key), if any.
    pub peer_identity: Option<Vec<u8>>,
    /// Largest SP message the socket accepts (`Options::recv_max_size`).
    pub recv_max_size: usize,
    /// The frame limit the transport enforces right now, before it allocates.
    /// Starts at `recv_max_size`; a pipe layer may lower it during its
    /// handshake and set it to its own framing's worst case afterwards.
    pub recv_limit: RecvLimit,
    /// True on the side that dialed.
    pub dialer: bool,
    /// The line back to the socket, for a layer that hands frames back or
    /// acknowledges what the socket took (see [`SocketLink`]). Detached until
    /// the socket sets it, after the announcement exchange.
    pub link: SocketLink,
}

/// The largest frame a pipe's transport will read, shared between the
/// transport's reader (which checks every length against it before it
/// allocates) and the pipe layers above (which may change it).
#[derive(Clone, Debug)]
pub struct RecvLimit(Arc<std::sync::atomic::AtomicUsize>);

impl RecvLimit {
    /// A limit of `n` bytes.
    pub fn new(n: usize) -> RecvLimit {
        RecvLimit(Arc::new(std::sync::atomic::AtomicUsize::new(n)))
    }
    /// The current limit.
    pub fn get(&self) -> usize {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
    /// Changes the limit for frames whose length has not been read yet.
    pub fn set(&self, n: usize) {
        self.0.store(n, std::sync::atomic::Ordering::Relaxed)
    }
}

/// An open pipe: two framed halves and what is known about it.
pub struct Connection {
    /// Frames out.
    pub tx: BoxSink,
    /// Frames in.
    pub rx: BoxStream,
    /// Addresses, announcements, verified identity.
    pub info: PipeInfo,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("info", &self.info)
            .finish()
    }
}

/// A pipe layer's behaviour: its description and its handshake, which
/// returns the connection with both halves wrapped.
pub trait Handshake: Send + Sync + 'static {
    /// Name, overhead, header format.
    fn info(&self) -> ComponentInfo;
    /// Runs when the pipe opens, after the layers below finished theirs.
    /// Frames may be exchanged on `conn` before it is wrapped.
    fn handshake(&self, conn: Connection) -> BoxFuture<'static, Result<Connection>>;
    /// The overhead for a frame of `frame_len` bytes when it depends on the
    /// size (an AEAD with a tag per chunk); `None` means the declared one.
    fn frame_overhead(&self, frame_len: usize) -> Option<Overhead> {
        let _ = frame_len;
        None
    }
    /// True when this layer is an optional extra: a plain peer (nng,
    /// nanomsg, an spstack socket without pipe layers) is served without
    /// it. A socket whose pipe layers ALL say so accepts plain peers: its
    /// listener answers a plain header with the plain header, its dialer
    /// redials plain once a peer answers plain, and such a pipe runs with
    /// no pipe layers at all (`PipeInfo::local` then has none).
    ///
    /// Default false, and it must stay false for any layer whose absence
    /// weakens the pipe (encryption, authentication, integrity, delivery
    /// guarantees): a peer or an attacker that answers plain would
    /// otherwise downgrade the pipe.
    fn plain_peer_ok(&self) -> bool {
        false
    }
}

/// The service that opens pipes: takes a connection from the layers below and
/// returns it upgraded by every layer above.
pub type UpgradeService = tower::util::BoxCloneSyncService<Connection, Connection, Error>;

/// `tower::Layer` for a pipe layer: wraps the upgrade service below it.
#[derive(Clone)]
pub struct PipeLayer<H> {
    handshake: Arc<H>,
}

impl<H: Handshake> PipeLayer<H> {
    /// A pipe layer from its handshake.
    pub fn new(h: H) -> Self {
        PipeLayer {
            handshake: Arc::new(h),
        }
    }
    /// The component description.
    pub fn info(&self) -> ComponentInfo {
        self.handshake.info()
    }
}

impl<H, S> tower::Layer<S> for PipeLayer<H> {
    type Service = Upgrade<H, S>;
    fn layer(&self, inner: S) -> Upgrade<H, S> {
        Upgrade {
            handshake: self.handshake.clone(),
            inner,
        }
    }
}

/// The service a [`PipeLayer`] builds: the layers below first, then this one.
pub struct Upgrade<H, S> {
    handshake: Arc<H>,
    inner: S,
}

impl<H, S: Clone> Clone for Upgrade<H, S> {
    fn clone(&self) -> Self {
        Upgrade {
            handshake: self.handshake.clone(),
            inner: self.inner.clone(),
        }
    }
}

impl<H, S> tower::Service<Connection> for Upgrade<H, S>
where
    H: Handshake,
    S: tower::Service<Connection, Response = Connection, Error = Error>,
    S::Future: Send + 'static,
{
    type Response = Connection;
    type Error = Error;
    type Future = BoxFuture<'static, Result<Connection>>;
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.inner.poll_ready(cx)
    }
    fn call(&mut self, conn: Connection) -> Self::Future {
        let below = self.inner.call(conn);
        let h = self.handshake.clone();
        Box::pin(async move {
            let conn = below.await?;
            h.handshake(conn).await
        })
    }
}

/// The bottom of every upgrade chain: returns the connection as it is.
#[derive(Clone, Copy, Debug, Default)]
pub struct Bare;

impl tower::Service<Connection> for Bare {
    type Response = Connection;
    type Error = Error;
    type Future = std::future::Ready<Result<Connection>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, c: Connection) -> Self::Future {
        std::future::ready(Ok(c))
    }
}

/// Erased pipe layer metadata plus its place in the upgrade chain.
#[derive(Clone)]
pub(crate) struct PipeLayerEntry {
    pub info: ComponentInfo,
    pub wrap: Arc<dyn Fn(UpgradeService) -> UpgradeService + Send + Sync>,
    pub overhead: Arc<dyn Fn(usize) -> Overhead + Send + Sync>,
    /// [`Handshake::plain_peer_ok`].
    pub plain_peer_ok: bool,
}

impl PipeLayerEntry {
    pub(crate) fn new<H: Handshake>(layer: PipeLayer<H>) -> Self {
        let info = layer.info();
        let declared = info.overhead;
        let h = layer.handshake.clone();
        PipeLayerEntry {
            info,
            plain_peer_ok: h.plain_peer_ok(),
            overhead: Arc::new(move |len| h.frame_overhead(len).unwrap_or(declared)),
            wrap: Arc::new(move |below: UpgradeService| {
                UpgradeService::new(tower::Layer::layer(&layer, below))
            }),
        }
    }
}

//! The two kinds of layer, their declared overhead and header formats.
//!
//! A **pipe layer** wraps one connection: it runs a handshake when the pipe
//! opens (inside a `tower::Service<Connection>` future) and then transforms
//! every frame in each direction. A **message layer** wraps one logical
//! stream of messages (`Sink<Message> + Stream<Item = Result<Message>>`) above
//! the scalability protocol. Both are `tower::Layer`s; the socket erases each
//! to one boxed type so a stack's type, and its compiler errors, stay short.
//!
//! ```
//! use sp_core::layer::{ComponentInfo, Handshake, Overhead, PipeLayer};
//! use sp_core::{BoxFuture, Connection, Result};
//!
//! /// A pipe layer that does nothing but exist (and be checked on both sides).
//! struct Nop;
//! impl Handshake for Nop {
//!     fn info(&self) -> ComponentInfo { ComponentInfo::new("nop/1", Overhead::NONE) }
//!     fn handshake(&self, conn: Connection) -> BoxFuture<'static, Result<Connection>> {
//!         Box::pin(async move { Ok(conn) })
//!     }
//! }
//! let layer = PipeLayer::new(Nop);  // a tower::Layer
//! # let _ = layer;
//! ```

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::{Sink, Stream};

use crate::{Announcement, Error, Message, Result};

/// A boxed, `Send` future.
pub type BoxFuture<'a, T> = Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// The send half of a pipe or of a message stream.
pub type BoxSink = Pin<Box<dyn Sink<Message, Error = Error> + Send>>;
/// The receive half of a pipe or of a message stream.
pub type BoxStream = Pin<Box<dyn Stream<Item = Result<Message>> + Send>>;

/// Header bytes a component adds in front, trailer bytes behind, and whether
/// it needs header and body in one contiguous buffer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Overhead {
    /// Bytes prepended.
    pub header: usize,
    /// Bytes appended.
    pub trailer: usize,
    /// Needs the whole frame contiguous (an AEAD does; SP framing does not).
    pub contiguous: bool,
}

impl Overhead {
    /// No overhead.
    pub const NONE: Overhead = Overhead {
        header: 0,
        trailer: 0,
        contiguous: false,
    };
    /// A header of `n` bytes.
    pub const fn header(n: usize) -> Overhead {
        Overhead {
            header: n,
            trailer: 0,
            contiguous: false,
        }
    }
    /// A trailer of `n` bytes.
    pub const fn trailer(n: usize) -> Overhead {
        Overhead {
            header: 0,
            trailer: n,
            contiguous: false,
        }
    }
    /// The sum of two components' overheads.
    pub fn plus(self, o: Overhead) -> Overhead {
        Overhead {
            header: self.header + o.header,
            trailer: self.trailer + o.trailer,
            contiguous: self.contiguous || o.contiguous,
        }
    }
}

/// Byte order of a header field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ByteOrder {
    /// Big-endian (network order, what SP uses).
    Big,
    /// Little-endian.
    Little,
}

/// The shape of one header field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldKind {
    /// An unsigned integer of `width` bytes (1, 2, 4 or 8).
    Uint {
        /// Bytes.
        width: usize,
        /// Byte order.
        order: ByteOrder,
    },
    /// Opaque bytes of a fixed length.
    Bytes(usize),
    /// u32 BE words up to and including the first with the top bit set
    /// (the REQ/REP and SURVEY backtrace).
    Backtrace,
}

/// One named field of a header or trailer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    /// Field name, e.g. `request_id`.
    pub name: &'static str,
    /// Width and encoding.
    pub kind: FieldKind,
}

impl Field {
    /// A big-endian unsigned field of `width` bytes.
    pub const fn be(name: &'static str, width: usize) -> Field {
        Field {
            name,
            kind: FieldKind::Uint {
                width,
                order: ByteOrder::Big,
            },
        }
    }
    /// An opaque field of `n` bytes.
    pub const fn bytes(name: &'static str, n: usize) -> Field {
        Field {
            name,
            kind: FieldKind::Bytes(n),
        }
    }
}

/// What a component is: its name (as announced to peers), overhead and the
/// format of what it adds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ComponentInfo {
    /// `name/version`, announced to the peer and checked there.
    pub name: String,
    /// Declared overhead.
    pub overhead: Overhead,
    /// Fields it prepends, in wire order.
    pub header: Vec<Field>,
    /// Fields it appends, in wire order.
    pub trailer: Vec<Field>,
}

impl ComponentInfo {
    /// Info with no declared fields; add them with `with_header`/`with_trailer`.
    pub fn new(name: impl Into<String>, overhead: Overhead) -> ComponentInfo {
        ComponentInfo {
            name: name.into(),
            overhead,
            header: Vec::new(),
            trailer: Vec::new(),
        }
    }
    /// Declares the header fields.
    pub fn with_header(mut self, f: Vec<Field>) -> Self {
        self.header = f;
        self
    }
    /// Declares the trailer fields.
    pub fn with_trailer(mut self, f: Vec<Field>) -> Self {
        self.trailer = f;
        self
    }
}

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

/// One logical message stream: what message layers wrap.
pub struct MessageIo {
    /// Messages out.
    pub tx: BoxSink,
    /// Messages in.
    pub rx: BoxStream,
}

impl MessageIo {
    /// Pairs two halves.
    pub fn new(tx: BoxSink, rx: BoxStream) -> MessageIo {
        MessageIo { tx, rx }
    }
}

/// A protocol-specific handle on one context's state (SUB's subscriptions,
/// SURVEYOR's deadline...), reached with `Socket::control` /
/// `SocketContext::control` and a downcast to the protocol's type.
pub type Control = std::sync::Arc<dyn std::any::Any + Send + Sync>;

/// What a cooked protocol opens: the context's message stream and, if the
/// protocol has per-context settings, their control handle.
pub struct CookedContext {
    /// The context's messages.
    pub io: MessageIo,
    /// Its settings, if any.
    pub control: Option<Control>,
}

impl From<MessageIo> for CookedContext {
    fn from(io: MessageIo) -> Self {
        CookedContext { io, control: None }
    }
}

/// A message layer: a `tower::Layer` that wraps one message stream and
/// returns another, plus its description. The socket applies it once per
/// context (a REQ context has its own state in every layer above it).
///
/// ```
/// use futures::StreamExt;
/// use sp_core::layer::{ComponentInfo, MessageIo, MessageLayer, Overhead};
///
/// /// Counts what comes in; changes nothing.
/// struct Count(std::sync::Arc<std::sync::atomic::AtomicUsize>);
/// impl tower::Layer<MessageIo> for Count {
///     type Service = MessageIo;
///     fn layer(&self, io: MessageIo) -> MessageIo {
///         let n = self.0.clone();
///         let rx = io.rx.inspect(move |_| { n.fetch_add(1, std::sync::atomic::Ordering::Relaxed); });
///         MessageIo::new(io.tx, Box::pin(rx))
///     }
/// }
/// impl MessageLayer for Count {
///     fn info(&self) -> ComponentInfo { ComponentInfo::new("count/1", Overhead::NONE) }
/// }
/// ```
pub trait MessageLayer:
    tower::Layer<MessageIo, Service = MessageIo> + Send + Sync + 'static
{
    /// Name, overhead, header format.
    fn info(&self) -> ComponentInfo;
}

/// Gives any `tower::Layer<MessageIo, Service = MessageIo>` a description,
/// making it a [`MessageLayer`].
pub struct Described<L> {
    layer: L,
    info: ComponentInfo,
}

impl<L> Described<L> {
    /// Wraps a tower layer with its component description.
    pub fn new(layer: L, info: ComponentInfo) -> Self {
        Described { layer, info }
    }
}

impl<L: tower::Layer<MessageIo, Service = MessageIo>> tower::Layer<MessageIo> for Described<L> {
    type Service = MessageIo;
    fn layer(&self, inner: MessageIo) -> MessageIo {
        self.layer.layer(inner)
    }
}

impl<L> MessageLayer for Described<L>
where
    L: tower::Layer<MessageIo, Service = MessageIo> + Send + Sync + 'static,
{
    fn info(&self) -> ComponentInfo {
        self.info.clone()
    }
}

/// Erased pipe layer metadata plus its place in the upgrade chain.
#[derive(Clone)]
pub(crate) struct PipeLayerEntry {
    pub info: ComponentInfo,
    pub wrap: Arc<dyn Fn(UpgradeService) -> UpgradeService + Send + Sync>,
}

impl PipeLayerEntry {
    pub(crate) fn new<H: Handshake>(layer: PipeLayer<H>) -> Self {
        let info = layer.info();
        PipeLayerEntry {
            info,
            wrap: Arc::new(move |below: UpgradeService| {
                UpgradeService::new(tower::Layer::layer(&layer, below))
            }),
        }
    }
}

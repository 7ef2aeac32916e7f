//! Message layers: one stream of messages per context, above the protocol.

use std::sync::Arc;

use super::pipe::{BoxSink, BoxStream};
use super::ComponentInfo;
use crate::options::Options;
use crate::protocol::ProtocolSpec;
use crate::stats::{Counters, DropReason};

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
    /// Called once when the socket is built, before any context is layered:
    /// the handle counts what the layer drops into `Socket::stats()` and
    /// names the socket's protocol ([`LayerHandle::protocol`]) and options
    /// ([`LayerHandle::options`]), for a layer that binds what it does to
    /// them (keep it; a layer used on several sockets gets one call per
    /// socket).
    fn attach(&self, handle: &LayerHandle) {
        let _ = handle;
    }
}

/// What a message layer is given by its socket: where its drops are counted.
///
/// ```
/// # let handle = sp_core::layer::LayerHandle::detached("demo/1");
/// handle.dropped(sp_core::DropReason::Rejected); // shows in socket.stats().drops(Rejected)
/// ```
#[derive(Clone, Debug)]
pub struct LayerHandle {
    counters: Arc<Counters>,
    name: String,
    protocol: Option<ProtocolSpec>,
    options: Option<Arc<Options>>,
}

impl LayerHandle {
    pub(crate) fn new(counters: Arc<Counters>, name: String) -> LayerHandle {
        LayerHandle {
            counters,
            name,
            protocol: None,
            options: None,
        }
    }
    /// A handle counting into counters of its own (tests, or a layer used
    /// without a socket). It names no protocol until [`LayerHandle::with_protocol`].
    pub fn detached(name: impl Into<String>) -> LayerHandle {
        LayerHandle::new(Arc::default(), name.into())
    }
    /// The same handle naming `protocol` as its socket's (the socket sets
    /// it; a test or a tool attaching a layer by hand sets it here).
    pub fn with_protocol(mut self, protocol: ProtocolSpec) -> LayerHandle {
        self.protocol = Some(protocol);
        self
    }
    /// The same handle naming `options` as its socket's.
    pub fn with_options(mut self, options: Options) -> LayerHandle {
        self.options = Some(Arc::new(options));
        self
    }
    /// The options the socket was built with (a layer that must fit what
    /// the protocol below does, e.g. how often REQ resends, reads them
    /// here). `None` only for a detached handle.
    pub fn options(&self) -> Option<&Options> {
        self.options.as_deref()
    }
    /// The protocol of the socket the layer is built into: its id, name and
    /// the protocol its peers speak (a layer above REQ sees `req`, peer
    /// `rep`; a raw socket's layer sees the same). `None` only for a
    /// detached handle.
    pub fn protocol(&self) -> Option<ProtocolSpec> {
        self.protocol
    }
    /// Counts a message the layer dropped, and traces it.
    pub fn dropped(&self, reason: DropReason) {
        self.counters.dropped(reason);
        tracing::debug!(target: "spstack", layer = %self.name, ?reason, "message dropped by a message layer");
    }
    /// The socket's counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }
    /// The layer's name, as its socket knows it.
    pub fn name(&self) -> &str {
        &self.name
    }
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

/// A sink that edits every message before the sink below gets it (a cooked
/// protocol's header, a layer's mark): the shape of most sending halves.
///
/// ```
/// # fn demo(io: sp_core::MessageIo) -> sp_core::MessageIo {
/// // every message goes out with hop count 0 in its header
/// let tx = sp_core::layer::edit_sink(io.tx, |m| {
///     m.set_header(&0u32.to_be_bytes());
///     Ok(())
/// });
/// sp_core::MessageIo::new(tx, io.rx)
/// # }
/// ```
pub fn edit_sink<F>(inner: BoxSink, edit: F) -> BoxSink
where
    F: FnMut(&mut crate::Message) -> crate::Result<()> + Send + Unpin + 'static,
{
    Box::pin(EditSink { inner, edit })
}

struct EditSink<F> {
    inner: BoxSink,
    edit: F,
}

impl<F> futures::Sink<crate::Message> for EditSink<F>
where
    F: FnMut(&mut crate::Message) -> crate::Result<()> + Send + Unpin + 'static,
{
    type Error = crate::Error;
    fn poll_ready(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<crate::Result<()>> {
        self.inner.as_mut().poll_ready(cx)
    }
    fn start_send(self: std::pin::Pin<&mut Self>, mut m: crate::Message) -> crate::Result<()> {
        let this = self.get_mut();
        (this.edit)(&mut m)?;
        this.inner.as_mut().start_send(m)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<crate::Result<()>> {
        self.inner.as_mut().poll_flush(cx)
    }
    fn poll_close(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<crate::Result<()>> {
        self.inner.as_mut().poll_close(cx)
    }
}

//! Message layers: one stream of messages per context, above the protocol.

use std::sync::Arc;

use super::pipe::{BoxSink, BoxStream};
use super::ComponentInfo;
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
    /// the handle counts what the layer drops into `Socket::stats()`
    /// (keep it; a layer used on several sockets gets one call per socket).
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
}

impl LayerHandle {
    pub(crate) fn new(counters: Arc<Counters>, name: String) -> LayerHandle {
        LayerHandle { counters, name }
    }
    /// A handle counting into counters of its own (tests, or a layer used
    /// without a socket).
    pub fn detached(name: impl Into<String>) -> LayerHandle {
        LayerHandle::new(Arc::default(), name.into())
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

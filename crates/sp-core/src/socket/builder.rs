//! Building a socket: a routing at the seam, pipe layers below it, a cooked
//! protocol and message layers above it, transports, options.

use std::sync::Arc;

use super::{Shared, Socket, SocketInner};
use crate::core::{Core, CoreParts};
use crate::layer::{
    Bare, ComponentInfo, CookedContext, FramePlan, Handshake, LayerHandle, MessageLayer, Overhead,
    PipeLayer, PipeLayerEntry, UpgradeService,
};
use crate::raw::RawSocket;
use crate::routing::Routing;
use crate::transport::Transport;
use crate::Options;

/// The cooked half of a scalability protocol: a message layer over the raw
/// socket that can open any number of contexts. It is given the socket's
/// [`RawSocket`] once, and uses nothing else: a protocol from another crate
/// is written exactly as the built-in ones are.
pub trait CookedProtocol: Send + Sync + 'static {
    /// Name and header format.
    fn info(&self) -> ComponentInfo;
    /// Binds the cooked state to a raw socket.
    fn attach(&self, raw: &RawSocket) -> Arc<dyn CookedSocket>;
}

/// Cooked state of one socket.
pub trait CookedSocket: Send + Sync + 'static {
    /// A new independent context (REQ: its own outstanding request; REP: its
    /// own request being answered; PUSH/PULL/PAIR: another handle).
    fn context(&self) -> CookedContext;
}

/// Builds a [`Socket`]: protocol, transports, pipe layers, message layers, options.
pub struct SocketBuilder {
    routing: Arc<dyn Routing>,
    cooked: Option<Arc<dyn CookedProtocol>>,
    transports: Vec<Arc<dyn Transport>>,
    pipe_layers: Vec<PipeLayerEntry>,
    msg_layers: Vec<Arc<dyn MessageLayer>>,
    opts: Options,
}

impl SocketBuilder {
    /// A builder for a raw protocol: its routing.
    pub fn new(routing: impl Routing) -> SocketBuilder {
        SocketBuilder::with_routing(Arc::new(routing))
    }

    /// A builder over a routing already shared (a cooked protocol that keeps
    /// a handle on its raw half's state).
    pub fn with_routing(routing: Arc<dyn Routing>) -> SocketBuilder {
        SocketBuilder {
            routing,
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

    /// Makes a transport available (by its URL schemes). A transport added
    /// later for a scheme already served replaces the earlier one.
    pub fn transport(mut self, t: Arc<dyn Transport>) -> Self {
        let schemes = t.schemes();
        self.transports
            .retain(|old| !old.schemes().iter().any(|s| schemes.contains(s)));
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

    /// Changes the options in place (`builder.with_options(|o| o.ttl(4))`).
    pub fn with_options(mut self, f: impl FnOnce(Options) -> Options) -> Self {
        self.opts = f(self.opts);
        self
    }

    /// Builds the socket. Needs a tokio runtime when endpoints are added.
    pub fn build(self) -> Socket {
        let mut upgrade = UpgradeService::new(Bare);
        for l in &self.pipe_layers {
            upgrade = (l.wrap)(upgrade);
        }
        let plan = FramePlan::new(
            self.pipe_layers
                .iter()
                .map(|l| l.overhead.clone())
                .collect(),
        );
        let core = Core::new(CoreParts {
            router: self.routing.clone(),
            opts: self.opts.clone(),
            transports: self.transports.clone(),
            upgrade,
            layer_names: self
                .pipe_layers
                .iter()
                .map(|l| l.info.name.clone())
                .collect(),
            plan: plan.clone(),
            plain_peer_ok: !self.pipe_layers.is_empty()
                && self.pipe_layers.iter().all(|l| l.plain_peer_ok),
        });
        let raw = RawSocket { core };
        let cooked = self.cooked.as_ref().map(|c| c.attach(&raw));
        let spec = raw.protocol();
        let mut components = vec![
            ComponentInfo::new(format!("{}/raw", spec.name), Overhead::NONE)
                .with_header(self.routing.header_format()),
        ];
        if let Some(c) = &self.cooked {
            components.push(c.info());
        }
        for l in &self.msg_layers {
            let info = l.info();
            l.attach(
                &LayerHandle::new(raw.counters().clone(), info.name.clone())
                    .with_protocol(spec)
                    .with_options(self.opts.clone()),
            );
            components.push(info);
        }
        let pipe_infos: Vec<ComponentInfo> =
            self.pipe_layers.iter().map(|l| l.info.clone()).collect();
        let overhead = components
            .iter()
            .chain(pipe_infos.iter())
            .fold(Overhead::NONE, |acc, c| acc.plus(c.overhead));
        let message_overhead = components
            .iter()
            .fold(Overhead::NONE, |acc, c| acc.plus(c.overhead));
        let shared = Arc::new(Shared {
            raw,
            cooked,
            msg_layers: self.msg_layers,
            transports: self.transports,
            pipe_infos,
            components,
            overhead,
            message_overhead,
            plan,
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

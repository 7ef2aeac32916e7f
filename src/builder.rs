//! Typed builders, and the one-line shortcuts for the optional transports
//! and layers.

use std::marker::PhantomData;
#[cfg(any(feature = "ws", feature = "tls", feature = "quic"))]
use std::sync::Arc;

use sp_core::layer::{Handshake, MessageLayer, PipeLayer};
use sp_core::transport::Transport;
use sp_core::{Options, SocketBuilder};

use crate::handles::TypedSocket;

/// Builds a typed socket (`spstack::typed::req0()` returns a `Builder<Req>`):
/// the methods of [`SocketBuilder`], and `build` returns the protocol's
/// handle. [`Builder::into_untyped`] gives the `SocketBuilder` back.
///
/// ```
/// let push: spstack::Push = spstack::typed::push0()
///     .with_options(|o| o.send_queue(16))
///     .build();
/// # let _ = push;
/// ```
#[must_use = "a builder does nothing until `build`"]
pub struct Builder<H> {
    inner: SocketBuilder,
    _handle: PhantomData<fn() -> H>,
}

impl<H: TypedSocket> Builder<H> {
    pub(crate) fn new(inner: SocketBuilder) -> Self {
        Builder {
            inner,
            _handle: PhantomData,
        }
    }

    fn map(self, f: impl FnOnce(SocketBuilder) -> SocketBuilder) -> Self {
        Builder::new(f(self.inner))
    }

    /// Makes a transport available (by its URL schemes); one added later for
    /// a scheme already served replaces the earlier one.
    pub fn transport(self, t: std::sync::Arc<dyn Transport>) -> Self {
        self.map(|b| b.transport(t))
    }

    /// Adds a pipe layer above those added before (the first added is
    /// nearest the transport).
    pub fn pipe_layer<L: Handshake>(self, layer: PipeLayer<L>) -> Self {
        self.map(|b| b.pipe_layer(layer))
    }

    /// Adds a message layer above those added before (the first added is
    /// nearest the protocol).
    pub fn message_layer(self, layer: impl MessageLayer) -> Self {
        self.map(|b| b.message_layer(layer))
    }

    /// Sets the options.
    pub fn options(self, opts: Options) -> Self {
        self.map(|b| b.options(opts))
    }

    /// Changes the options in place (`builder.with_options(|o| o.ttl(4))`).
    pub fn with_options(self, f: impl FnOnce(Options) -> Options) -> Self {
        self.map(|b| b.with_options(f))
    }

    /// `ws://`: the SP WebSocket mapping over TCP (feature `ws`).
    #[cfg(feature = "ws")]
    pub fn ws(self) -> Self {
        self.map(SocketBuilderExt::ws)
    }

    /// `wss://`: the SP WebSocket mapping over TLS over TCP (features `ws`
    /// and `tls`).
    #[cfg(all(feature = "ws", feature = "tls"))]
    pub fn wss(self, tls: crate::tls::TlsConfig) -> Self {
        self.map(|b| b.wss(tls))
    }

    /// `tls+tcp://`: SP/TCP inside TLS (feature `tls`).
    #[cfg(feature = "tls")]
    pub fn tls(self, tls: crate::tls::TlsConfig) -> Self {
        self.map(|b| b.tls(tls))
    }

    /// `quic://`: SP over QUIC, with `tls`'s certificates and the default
    /// limits (feature `quic`; `transport(Arc::new(Quic::new(cfg)))` for others).
    #[cfg(feature = "quic")]
    pub fn quic(self, tls: crate::tls::TlsConfig) -> Self {
        self.map(|b| b.quic(tls))
    }

    /// Noise hop-by-hop encryption as a pipe layer (feature `noise`). Add it
    /// before any other pipe layer, so it sits nearest the transport.
    #[cfg(feature = "noise")]
    pub fn noise(self, cfg: crate::noise::NoiseConfig) -> Self {
        self.map(|b| b.noise(cfg))
    }

    /// End-to-end Ed25519 integrity as a message layer (feature
    /// `integrity`); its role follows the protocol. For its drop counters,
    /// keep `Integrity::new(cfg).stats()` and add it with `message_layer`.
    #[cfg(feature = "integrity")]
    pub fn integrity(self, cfg: crate::integrity::IntegrityConfig) -> Self {
        self.map(|b| b.integrity(cfg))
    }

    /// `heartbeat/1` as a pipe layer (feature `reliable`): pings when a pipe
    /// is idle, a silent peer's pipe closed after `interval × misses`. Add
    /// it nearest the transport (after `noise`, before `ack`). Optional: a
    /// peer without it (plain nng/nanomsg) is served plain, unless
    /// `pipe_layer(Heartbeat::new(interval).required().layer())` says
    /// otherwise (and `.misses(n)` for another number of misses).
    #[cfg(feature = "reliable")]
    pub fn heartbeat(self, interval: std::time::Duration) -> Self {
        self.map(|b| b.heartbeat(interval))
    }

    /// `ack/1` as a pipe layer (feature `reliable`): what a dying pipe held
    /// goes to another, and the peer drops copies it had. Add it last
    /// (nearest the protocol); the peer needs it too. `pipe_layer(Ack::new()
    /// .window(n).layer())` for other limits.
    #[cfg(feature = "reliable")]
    pub fn ack(self) -> Self {
        self.map(SocketBuilderExt::ack)
    }

    /// Builds the socket. Needs a tokio runtime when endpoints are added.
    pub fn build(self) -> H {
        H::from_socket(self.inner.build())
    }

    /// The untyped builder, for code generic over protocols.
    pub fn into_untyped(self) -> SocketBuilder {
        self.inner
    }
}

impl<H: TypedSocket> From<Builder<H>> for SocketBuilder {
    fn from(b: Builder<H>) -> SocketBuilder {
        b.inner
    }
}

/// The shortcuts of [`Builder`] on the untyped [`SocketBuilder`] (of
/// [`cooked`](crate::cooked) and [`raw`](crate::raw())), each behind its
/// feature.
///
/// ```
/// # #[cfg(feature = "ws")] {
/// use spstack::{Protocol, SocketBuilderExt};
/// let device_side = spstack::raw(Protocol::Rep0).ws().build();
/// assert!(device_side.transport_info("ws").is_some());
/// # }
/// ```
pub trait SocketBuilderExt: Sized {
    /// `ws://`: the SP WebSocket mapping over TCP (feature `ws`).
    #[cfg(feature = "ws")]
    fn ws(self) -> Self;
    /// `wss://` over TLS over TCP (features `ws` and `tls`).
    #[cfg(all(feature = "ws", feature = "tls"))]
    fn wss(self, tls: crate::tls::TlsConfig) -> Self;
    /// `tls+tcp://` (feature `tls`).
    #[cfg(feature = "tls")]
    fn tls(self, tls: crate::tls::TlsConfig) -> Self;
    /// `quic://` (feature `quic`).
    #[cfg(feature = "quic")]
    fn quic(self, tls: crate::tls::TlsConfig) -> Self;
    /// The Noise pipe layer (feature `noise`).
    #[cfg(feature = "noise")]
    fn noise(self, cfg: crate::noise::NoiseConfig) -> Self;
    /// The integrity message layer (feature `integrity`).
    #[cfg(feature = "integrity")]
    fn integrity(self, cfg: crate::integrity::IntegrityConfig) -> Self;
    /// The `heartbeat/1` pipe layer (feature `reliable`).
    #[cfg(feature = "reliable")]
    fn heartbeat(self, interval: std::time::Duration) -> Self;
    /// The `ack/1` pipe layer (feature `reliable`).
    #[cfg(feature = "reliable")]
    fn ack(self) -> Self;
}

impl SocketBuilderExt for SocketBuilder {
    #[cfg(feature = "ws")]
    fn ws(self) -> Self {
        self.transport(Arc::new(sp_ws::Ws::new(sp_transports::Tcp)))
    }
    #[cfg(all(feature = "ws", feature = "tls"))]
    fn wss(self, tls: crate::tls::TlsConfig) -> Self {
        let streams = sp_transports::Tls::new(sp_transports::Tcp, tls);
        self.transport(Arc::new(sp_ws::Ws::secure(streams)))
    }
    #[cfg(feature = "tls")]
    fn tls(self, tls: crate::tls::TlsConfig) -> Self {
        self.transport(Arc::new(sp_transports::tls_tcp(tls)))
    }
    #[cfg(feature = "quic")]
    fn quic(self, tls: crate::tls::TlsConfig) -> Self {
        self.transport(Arc::new(sp_quic::quic(tls)))
    }
    #[cfg(feature = "noise")]
    fn noise(self, cfg: crate::noise::NoiseConfig) -> Self {
        self.pipe_layer(sp_crypto::noise::layer(cfg))
    }
    #[cfg(feature = "integrity")]
    fn integrity(self, cfg: crate::integrity::IntegrityConfig) -> Self {
        self.message_layer(sp_crypto::integrity::Integrity::new(cfg))
    }
    #[cfg(feature = "reliable")]
    fn heartbeat(self, interval: std::time::Duration) -> Self {
        self.pipe_layer(sp_reliable::heartbeat::layer(interval))
    }
    #[cfg(feature = "reliable")]
    fn ack(self) -> Self {
        self.pipe_layer(sp_reliable::ack::layer())
    }
}

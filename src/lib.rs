//! # spstack: the nanomsg Scalability Protocols as a stack of layers, for tokio
//!
//! A socket is a stack of any length: a transport at the bottom, pipe layers
//! per connection, the scalability protocol at the seam, message layers per
//! socket above it. With no extra layers the bytes on the wire are exactly
//! nng's and nanomsg's.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> spstack::Result<()> {
//! let rep = spstack::rep0().build();          // recv, then send the answer
//! let ep = rep.listen("tcp://127.0.0.1:0").await?;
//! let req = spstack::req0().build();          // send, then recv the reply
//! req.dial(ep.url()).await?;
//!
//! req.send("ping").await?;
//! let request = rep.recv().await?;
//! assert_eq!(request.body(), b"ping");
//! rep.send("pong").await?;
//! assert_eq!(req.recv().await?.body(), b"pong");
//! # Ok(()) }
//! ```
//!
//! ## Typed sockets
//!
//! The builders above (`req0()`, `push0()`, `sub0()`...) build the untyped
//! [`Socket`], as they always did: every protocol's operations on one type,
//! for devices and code generic over protocols. [`typed`] has builders of
//! the same names that build a handle with only what its protocol does:
//! [`Push`] sends, [`Pull`] receives, [`Sub`] receives and subscribes,
//! [`Req`] sends requests and is a `tower::Service`, and so on. Misuse does
//! not compile:
//!
//! ```compile_fail,E0599
//! # async fn f() {
//! let pull = spstack::typed::pull0().build();
//! pull.send("job").await; // error: no method named `send` found for struct `Pull`
//! # }
//! ```
//!
//! Every handle gives its untyped socket with `.socket()`, `as_ref()` or
//! `Socket::from`, and [`Builder::into_untyped`] gives the untyped builder.
//!
//! ## Features
//!
//! One dependency brings every layer and transport; features choose which.
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `tcp`, `ipc`, `inproc` | yes | the transports every builder gets: `tcp://`, `ipc:///path`, `inproc://name` |
//! | `metrics` | yes | `export_metrics` and [`metrics`]: the counters through the `metrics` facade |
//! | `reliable` | yes | the `heartbeat/1` and `ack/1` pipe layers ([`reliable`], `.heartbeat(interval)`, `.ack()`) |
//! | `tls` | | `tls+tcp://` ([`tls`], `.tls(cfg)`), rustls with the ring provider |
//! | `ws` | | `ws://` ([`ws`], `.ws()`); with `tls`, `wss://` (`.wss(cfg)`) |
//! | `axum` | | `spstack::ws::axum::endpoint`: an SP endpoint as an axum route |
//! | `quic` | | `quic://` ([`quic`], `.quic(cfg)`) |
//! | `noise` | | hop-by-hop Noise encryption, a pipe layer ([`noise`], `.noise(cfg)`) and [`keys`] |
//! | `integrity` | | end-to-end Ed25519 signatures, a message layer ([`integrity`], `.integrity(cfg)`) and [`keys`] |
//! | `full` | | all of the above |
//!
//! ```toml
//! [dependencies]
//! spstack = { version = "0.1", features = ["noise", "integrity", "ws"] }
//! ```
//!
//! ## The secure stack in one dependency
//!
//! A REQ client and a REP server, every pipe Noise-encrypted (each side
//! admits only the other's key) and every message signed end to end:
#![cfg_attr(all(feature = "noise", feature = "integrity"), doc = "```")]
#![cfg_attr(not(all(feature = "noise", feature = "integrity")), doc = "```ignore")]
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use spstack::integrity::IntegrityConfig;
//! use spstack::keys::SigningKeypair;
//! use spstack::noise::{NoiseConfig, StaticKeypair};
//!
//! let (server_noise, client_noise) = (StaticKeypair::generate(), StaticKeypair::generate());
//! let (server_sign, client_sign) = (SigningKeypair::generate(), SigningKeypair::generate());
//! let (server_id, client_id) = (server_sign.verifying_key(), client_sign.verifying_key());
//!
//! let rep = spstack::typed::rep0()
//!     .noise(NoiseConfig::new(server_noise.clone()).allow(client_noise.public()))
//!     .integrity(IntegrityConfig::new(server_sign, [client_id], "billing")?)
//!     .build();
//! let ep = rep.listen("tcp://127.0.0.1:0").await?;
//!
//! let req = spstack::typed::req0()
//!     .noise(NoiseConfig::new(client_noise).allow(server_noise.public()))
//!     .integrity(IntegrityConfig::new(client_sign, [server_id], "billing")?.answered_by([server_id]))
//!     .build();
//! req.dial(ep.url()).await?;
//!
//! let asked = tokio::spawn(async move { req.request("balance?").await });
//! let request = rep.recv().await?;                // decrypted, verified, unwrapped
//! assert_eq!(request.body(), b"balance?");
//! rep.send("42").await?;
//! assert_eq!(asked.await??.body(), b"42");
//! # Ok(()) }
//! ```
//!
//! ## Where to read on
//!
//! The guide (`docs/guide/` in the repository, every example in it compiled
//! and run by the test suite) walks from the first socket to the secure
//! multi-hop stack, your own pipe layer, message layer and protocol,
//! devices, and choosing transports.
#![deny(missing_docs)]

mod builder;
mod handles;

/// The guide (`docs/guide/`), compiled and run as doc tests.
#[cfg(doctest)]
pub mod guide {
    #[doc = include_str!("../docs/guide/01-first-sockets.md")]
    pub mod first_sockets {}
    #[doc = include_str!("../docs/guide/02-secure-stack.md")]
    pub mod secure_stack {}
    #[doc = include_str!("../docs/guide/03-pipe-layer.md")]
    pub mod pipe_layer {}
    #[doc = include_str!("../docs/guide/04-message-layer.md")]
    pub mod message_layer {}
    #[doc = include_str!("../docs/guide/05-protocol.md")]
    pub mod protocol {}
    #[doc = include_str!("../docs/guide/06-devices.md")]
    pub mod devices {}
    #[doc = include_str!("../docs/guide/07-transports.md")]
    pub mod transports {}
}

pub use builder::{Builder, SocketBuilderExt};
pub use handles::{
    Bus, Pair, Pair1, Pub, Pull, Push, Rep, RepContext, Req, ReqContext, ReqContextService,
    Respondent, RespondentContext, Sub, SubContext, Surveyor, SurveyorContext, TypedSocket,
};

#[allow(deprecated)]
pub use sp_core::ContextService;
pub use sp_core::{
    copied_bytes, describe, device, layer, protocol, queue, routing, stats, transport,
    Announcement, BoxFuture, BoxSink, BoxStream, Connection, CookedProtocol, CookedSocket,
    DropReason, Endpoint, Error, Handover, Message, MessageIo, Options, Overhead, PipeEvent,
    PipeId, PipeInfo, ProtocolId, ProtocolSpec, RawSocket, Receipts, RecvPolicy, Refusal,
    RejectReason, Requeued, Result, Routed, Routing, Socket, SocketBuilder, SocketContext,
    SocketLink, Stats, Verdict,
};
// the cooked PAIR1 protocol is `pair1::Pair1`: `spstack::Pair1` is its socket
pub use sp_protocols::{
    bus, pair1, reflect, survey, Bus0Raw, Pair1Raw, Respondent0, Respondent0Raw, Surveyor0,
    Surveyor0Raw, SurveyorControl,
};
pub use sp_protocols::{pubsub, Pub0Lossless, Pub0Raw, Sub0, Sub0Raw, SubControl};
pub use sp_protocols::{raw, rep, req, Plain, Rep0, Req0, ReqState};
#[cfg(feature = "inproc")]
pub use sp_transports::Inproc;
#[cfg(feature = "ipc")]
pub use sp_transports::Ipc;
#[cfg(feature = "tcp")]
pub use sp_transports::Tcp;

/// `tls+tcp://` and TLS settings ([`tls::TlsConfig`]) shared by `wss://`
/// and `quic://`: the `sp-transports` crate's `tls` module (feature `tls`).
#[cfg(feature = "tls")]
pub use sp_transports::tls;

/// WebSocket: `ws://`/`wss://`, the opcode message layer, the axum endpoint
/// (the `sp-ws` crate, feature `ws`).
#[cfg(feature = "ws")]
pub use sp_ws as ws;

/// `quic://`: the Scalability Protocols over QUIC (the `sp-quic` crate,
/// feature `quic`).
#[cfg(feature = "quic")]
pub use sp_quic as quic;

/// Noise hop-by-hop encryption, a pipe layer (from `sp-crypto`, feature `noise`).
#[cfg(feature = "noise")]
pub use sp_crypto::noise;

/// End-to-end Ed25519 integrity, a message layer (from `sp-crypto`,
/// feature `integrity`).
#[cfg(feature = "integrity")]
pub use sp_crypto::integrity;

/// Keys for both crypto layers: generating, saving, loading, trusting
/// (from `sp-crypto`, features `noise` or `integrity`).
#[cfg(any(feature = "noise", feature = "integrity"))]
pub use sp_crypto::keys;

/// Liveness and delivery that survives a dying pipe: the `heartbeat/1` and
/// `ack/1` pipe layers (the `sp-reliable` crate, feature `reliable`).
#[cfg(feature = "reliable")]
pub use sp_reliable as reliable;

pub mod wiretap;

/// The socket counters and pipe events through the `metrics` facade
/// (`Socket::export_metrics`, `update_all`); feature `metrics`.
#[cfg(feature = "metrics")]
pub use sp_core::metrics;

fn with_transports(mut b: SocketBuilder) -> SocketBuilder {
    for t in sp_transports::defaults() {
        b = b.transport(t);
    }
    b
}

/// The protocols this build offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Protocol {
    /// PAIR v0.
    Pair0,
    /// PUSH v0.
    Push0,
    /// PULL v0.
    Pull0,
    /// REQ v0.
    Req0,
    /// REP v0.
    Rep0,
    /// SURVEYOR v0 (cooked: survey deadline, default 1 s; see [`survey`]).
    Surveyor0,
    /// RESPONDENT v0.
    Respondent0,
    /// BUS v0 (raw: floods to every peer but the message's origin; see [`bus`]).
    Bus0,
    /// PAIR v1, one peer (see [`pair1_poly`] for many; see [`mod@pair1`]).
    Pair1,
    /// PUB v0: never blocks; per-pipe drops counted (see [`pubsub`]).
    Pub0,
    /// SUB v0: prefix subscriptions per context, drops the oldest (see [`pubsub`]).
    /// Raw: socket-wide subscriptions, starting with everything (see [`raw_sub0`]).
    Sub0,
}

impl Protocol {
    /// Every built-in protocol.
    pub const ALL: [Protocol; 11] = [
        Protocol::Pair0,
        Protocol::Pair1,
        Protocol::Pub0,
        Protocol::Sub0,
        Protocol::Req0,
        Protocol::Rep0,
        Protocol::Push0,
        Protocol::Pull0,
        Protocol::Surveyor0,
        Protocol::Respondent0,
        Protocol::Bus0,
    ];

    /// Its id on the wire.
    pub fn id(self) -> ProtocolId {
        match self {
            Protocol::Pair0 => ProtocolId::PAIR0,
            Protocol::Pair1 => ProtocolId::PAIR1,
            Protocol::Pub0 => ProtocolId::PUB0,
            Protocol::Sub0 => ProtocolId::SUB0,
            Protocol::Req0 => ProtocolId::REQ0,
            Protocol::Rep0 => ProtocolId::REP0,
            Protocol::Push0 => ProtocolId::PUSH0,
            Protocol::Pull0 => ProtocolId::PULL0,
            Protocol::Surveyor0 => ProtocolId::SURVEYOR0,
            Protocol::Respondent0 => ProtocolId::RESPONDENT0,
            Protocol::Bus0 => ProtocolId::BUS0,
        }
    }

    /// The built-in protocol with this registered name (`req`, or `req0`).
    pub fn from_name(name: &str) -> Option<Protocol> {
        let id = ProtocolId::by_name(name)?;
        Protocol::ALL.into_iter().find(|p| p.id() == id)
    }
}

/// An untyped builder for the cooked form of `p`, with tcp, ipc and inproc
/// (those of them this build has), for code generic over protocols; the
/// typed ones are [`req0`], [`push0`]...
pub fn cooked(p: Protocol) -> SocketBuilder {
    let b = raw(p);
    match p {
        Protocol::Pair0 => b.cooked(Plain::PAIR0),
        Protocol::Push0 => b.cooked(Plain::PUSH0),
        Protocol::Pull0 => b.cooked(Plain::PULL0),
        Protocol::Req0 => b.cooked(Req0),
        Protocol::Rep0 => b.cooked(Rep0),
        Protocol::Surveyor0 => b.cooked(Surveyor0::default()),
        Protocol::Respondent0 => b.cooked(Respondent0),
        Protocol::Bus0 => b.cooked(Plain::BUS0),
        Protocol::Pair1 => b.cooked(pair1::Pair1::MONO),
        Protocol::Pub0 => b.cooked(Plain::PUB0),
        // the raw half filters with the union of the contexts' subscriptions
        Protocol::Sub0 => {
            let sub = Sub0::new();
            with_transports(SocketBuilder::new(sub.raw_protocol())).cooked(sub)
        }
    }
}

/// A builder for the raw form of `p` (for devices), with tcp, ipc and inproc
/// (those of them this build has).
pub fn raw(p: Protocol) -> SocketBuilder {
    with_transports(match p {
        Protocol::Pair0 => SocketBuilder::new(raw::Pair0Raw),
        Protocol::Push0 => SocketBuilder::new(raw::Push0Raw),
        Protocol::Pull0 => SocketBuilder::new(raw::Pull0Raw),
        Protocol::Req0 => SocketBuilder::new(raw::Req0Raw),
        Protocol::Rep0 => SocketBuilder::new(raw::Rep0Raw),
        Protocol::Surveyor0 => SocketBuilder::new(Surveyor0Raw),
        Protocol::Respondent0 => SocketBuilder::new(Respondent0Raw),
        Protocol::Bus0 => SocketBuilder::new(Bus0Raw),
        Protocol::Pair1 => SocketBuilder::new(Pair1Raw::MONO),
        Protocol::Pub0 => SocketBuilder::new(Pub0Raw),
        Protocol::Sub0 => SocketBuilder::new(Sub0Raw::new()),
    })
}

/// Cooked PAIR0 (untyped: [`typed::pair0`] builds a [`Pair`]).
pub fn pair0() -> SocketBuilder {
    cooked(Protocol::Pair0)
}
/// Cooked PUSH0 (untyped: [`typed::push0`] builds a [`Push`]).
pub fn push0() -> SocketBuilder {
    cooked(Protocol::Push0)
}
/// Cooked PULL0 (untyped: [`typed::pull0`] builds a [`Pull`]).
pub fn pull0() -> SocketBuilder {
    cooked(Protocol::Pull0)
}
/// Cooked REQ0 (untyped: [`typed::req0`] builds a [`Req`]).
pub fn req0() -> SocketBuilder {
    cooked(Protocol::Req0)
}
/// Cooked REP0 (untyped: [`typed::rep0`] builds a [`Rep`]).
pub fn rep0() -> SocketBuilder {
    cooked(Protocol::Rep0)
}
/// Cooked SURVEYOR0 (survey time 1 s; per context with [`SurveyorControl`];
/// untyped: [`typed::surveyor0`] builds a [`Surveyor`]).
pub fn surveyor0() -> SocketBuilder {
    cooked(Protocol::Surveyor0)
}
/// Cooked RESPONDENT0 (untyped: [`typed::respondent0`] builds a [`Respondent`]).
pub fn respondent0() -> SocketBuilder {
    cooked(Protocol::Respondent0)
}
/// Cooked BUS0 (untyped: [`typed::bus0`] builds a [`Bus`]).
pub fn bus0() -> SocketBuilder {
    cooked(Protocol::Bus0)
}
/// Cooked PAIR1, one peer (untyped: [`typed::pair1`] builds a [`Pair1`]).
pub fn pair1() -> SocketBuilder {
    cooked(Protocol::Pair1)
}
/// Cooked PAIR1, polyamorous: many peers; sending a received message (or
/// any with `Message::set_pipe`) answers its peer, others go round-robin
/// (untyped: [`typed::pair1_poly`] builds a [`Pair1`]).
pub fn pair1_poly() -> SocketBuilder {
    with_transports(SocketBuilder::new(Pair1Raw::POLY)).cooked(pair1::Pair1::POLY)
}
/// Raw PAIR1, polyamorous (for devices and [`reflect`]).
pub fn pair1_poly_raw() -> SocketBuilder {
    with_transports(SocketBuilder::new(Pair1Raw::POLY))
}
/// Cooked PUB0: `send` never waits; a subscriber too slow to keep up
/// loses messages, counted per pipe (`Socket::pipe_stats`; untyped:
/// [`typed::pub0`] builds a [`Pub`]).
pub fn pub0() -> SocketBuilder {
    cooked(Protocol::Pub0)
}
/// Cooked PUB0 that never drops for a full pipe (ZeroMQ's `XPUB_NODROP`):
/// `send` waits until every subscriber's pipe has room, so the publisher
/// runs at the pace of its slowest subscriber. Pair it with
/// [`sub0_lossless`] subscribers, which stop reading instead of dropping
/// the oldest, and nothing is lost while the pipes stay up (see
/// [`pubsub`](sp_protocols::pubsub)).
pub fn pub0_lossless() -> SocketBuilder {
    with_transports(SocketBuilder::new(pubsub::Pub0Lossless)).cooked(Plain::PUB0)
}
/// Cooked SUB0, lossless: a full receive queue (or a context's full queue)
/// stops it reading its pipes instead of dropping the oldest, so the
/// transport carries the back-pressure to a [`pub0_lossless`] publisher.
pub fn sub0_lossless() -> SocketBuilder {
    let sub = Sub0::lossless();
    with_transports(SocketBuilder::new(sub.raw_protocol())).cooked(sub)
}
/// Cooked SUB0: each context (the socket's default one included) has its own
/// subscriptions, reached with `socket.control::<SubControl>()` or
/// `ctx.control::<SubControl>()`; it starts with none (receives nothing).
/// Untyped: [`typed::sub0`] builds a [`Sub`].
pub fn sub0() -> SocketBuilder {
    cooked(Protocol::Sub0)
}
/// The typed builders: the same names as the untyped ones at the crate
/// root, each building its protocol's handle ([`Req`], [`Push`], [`Sub`]...)
/// that has only what the protocol does, so misuse does not compile.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> spstack::Result<()> {
/// use spstack::typed;
/// let rep = typed::rep0().build(); // a `spstack::Rep`
/// let ep = rep.listen("inproc://typed-doc").await?;
/// let req = typed::req0().build(); // a `spstack::Req`
/// req.dial(ep.url()).await?;
/// req.send("ping").await?;
/// assert_eq!(rep.recv().await?.body(), b"ping");
/// # Ok(()) }
/// ```
///
/// ```compile_fail,E0599
/// # async fn f() {
/// let pull = spstack::typed::pull0().build();
/// pull.send("job").await; // error: no method named `send` found for struct `Pull`
/// # }
/// ```
pub mod typed {
    use super::*;

    /// Cooked PAIR0.
    pub fn pair0() -> Builder<Pair> {
        Builder::new(cooked(Protocol::Pair0))
    }
    /// Cooked PUSH0.
    pub fn push0() -> Builder<Push> {
        Builder::new(cooked(Protocol::Push0))
    }
    /// Cooked PULL0.
    pub fn pull0() -> Builder<Pull> {
        Builder::new(cooked(Protocol::Pull0))
    }
    /// Cooked REQ0.
    pub fn req0() -> Builder<Req> {
        Builder::new(cooked(Protocol::Req0))
    }
    /// Cooked REP0.
    pub fn rep0() -> Builder<Rep> {
        Builder::new(cooked(Protocol::Rep0))
    }
    /// Cooked SURVEYOR0 (survey time 1 s; [`Surveyor::set_deadline`]).
    pub fn surveyor0() -> Builder<Surveyor> {
        Builder::new(cooked(Protocol::Surveyor0))
    }
    /// Cooked RESPONDENT0.
    pub fn respondent0() -> Builder<Respondent> {
        Builder::new(cooked(Protocol::Respondent0))
    }
    /// Cooked BUS0.
    pub fn bus0() -> Builder<Bus> {
        Builder::new(cooked(Protocol::Bus0))
    }
    /// Cooked PAIR1, one peer.
    pub fn pair1() -> Builder<Pair1> {
        Builder::new(cooked(Protocol::Pair1))
    }
    /// Cooked PAIR1, polyamorous: many peers; sending a received message (or
    /// any with `Message::set_pipe`) answers its peer, others go round-robin.
    pub fn pair1_poly() -> Builder<Pair1> {
        Builder::new(with_transports(SocketBuilder::new(Pair1Raw::POLY)).cooked(pair1::Pair1::POLY))
    }
    /// Cooked PUB0: `send` never waits; a subscriber too slow to keep up
    /// loses messages, counted per pipe ([`Pub::pipe_stats`]).
    pub fn pub0() -> Builder<Pub> {
        Builder::new(cooked(Protocol::Pub0))
    }
    /// Cooked SUB0: each context (the socket's default one included) has its own
    /// subscriptions ([`Sub::subscribe`], [`SubContext::subscribe`]); it starts
    /// with none (receives nothing).
    pub fn sub0() -> Builder<Sub> {
        Builder::new(cooked(Protocol::Sub0))
    }
}

/// Raw SUB0 and its socket-wide subscriptions (it starts subscribed to
/// everything, as nng's raw SUB). The same handle is reachable later with
/// `socket.control::<SubControl>()`.
pub fn raw_sub0() -> (SocketBuilder, std::sync::Arc<SubControl>) {
    let proto = Sub0Raw::new();
    let ctl = proto
        .control()
        .expect("a raw SUB of its own has its own subscriptions");
    (with_transports(SocketBuilder::new(proto)), ctl)
}

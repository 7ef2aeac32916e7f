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
//! let rep = spstack::rep0().build();
//! let ep = rep.listen("tcp://127.0.0.1:0").await?;
//! let req = spstack::req0().build();
//! req.dial(ep.url()).await?;
//!
//! req.send("ping").await?;
//! let request = rep.recv().await?;
//! assert_eq!(request.body(), b"ping");
//! rep.send("pong").await?;
//! assert_eq!(req.recv().await?.body(), b"pong");
//! # Ok(()) }
//! ```

pub use sp_core::{
    copied_bytes, describe, device, layer, protocol, queue, routing, stats, transport,
    Announcement, BoxFuture, BoxSink, BoxStream, Connection, ContextService, CookedProtocol,
    CookedSocket, DropReason, Endpoint, Error, Handover, Message, MessageIo, Options, Overhead,
    PipeEvent, PipeId, PipeInfo, ProtocolId, ProtocolSpec, RawSocket, Receipts, RecvPolicy,
    Refusal, RejectReason, Requeued, Result, Routed, Routing, Socket, SocketBuilder, SocketContext,
    SocketLink, Stats, Verdict,
};
pub use sp_protocols::{
    bus, pair1, reflect, survey, Bus0Raw, Pair1, Pair1Raw, Respondent0, Respondent0Raw, Surveyor0,
    Surveyor0Raw, SurveyorControl,
};
pub use sp_protocols::{pubsub, Pub0Lossless, Pub0Raw, Sub0, Sub0Raw, SubControl};
pub use sp_protocols::{raw, rep, req, Plain, Rep0, Req0, ReqState};
pub use sp_transports::{Inproc, Ipc, Tcp};

/// Liveness and delivery that survives a dying pipe: the `heartbeat/1` and
/// `ack/1` pipe layers (the `sp-reliable` crate).
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

/// A builder for the cooked form of `p`, with tcp, ipc and inproc.
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
        Protocol::Pair1 => b.cooked(Pair1::MONO),
        Protocol::Pub0 => b.cooked(Plain::PUB0),
        // the raw half filters with the union of the contexts' subscriptions
        Protocol::Sub0 => {
            let sub = Sub0::new();
            with_transports(SocketBuilder::new(sub.raw_protocol())).cooked(sub)
        }
    }
}

/// A builder for the raw form of `p` (for devices), with tcp, ipc and inproc.
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

/// Cooked PAIR0.
pub fn pair0() -> SocketBuilder {
    cooked(Protocol::Pair0)
}
/// Cooked PUSH0.
pub fn push0() -> SocketBuilder {
    cooked(Protocol::Push0)
}
/// Cooked PULL0.
pub fn pull0() -> SocketBuilder {
    cooked(Protocol::Pull0)
}
/// Cooked REQ0.
pub fn req0() -> SocketBuilder {
    cooked(Protocol::Req0)
}
/// Cooked REP0.
pub fn rep0() -> SocketBuilder {
    cooked(Protocol::Rep0)
}
/// Cooked SURVEYOR0 (survey time 1 s; per context with [`SurveyorControl`]).
pub fn surveyor0() -> SocketBuilder {
    cooked(Protocol::Surveyor0)
}
/// Cooked RESPONDENT0.
pub fn respondent0() -> SocketBuilder {
    cooked(Protocol::Respondent0)
}
/// Cooked BUS0.
pub fn bus0() -> SocketBuilder {
    cooked(Protocol::Bus0)
}
/// Cooked PAIR1, one peer.
pub fn pair1() -> SocketBuilder {
    cooked(Protocol::Pair1)
}
/// Cooked PAIR1, polyamorous: many peers; sending a received message (or
/// any with `Message::set_pipe`) answers its peer, others go round-robin.
pub fn pair1_poly() -> SocketBuilder {
    with_transports(SocketBuilder::new(Pair1Raw::POLY)).cooked(Pair1::POLY)
}
/// Raw PAIR1, polyamorous (for devices and [`reflect`]).
pub fn pair1_poly_raw() -> SocketBuilder {
    with_transports(SocketBuilder::new(Pair1Raw::POLY))
}
/// Cooked PUB0: `send` never waits; a subscriber too slow to keep up
/// loses messages, counted per pipe (`Socket::pipe_stats`).
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
pub fn sub0() -> SocketBuilder {
    cooked(Protocol::Sub0)
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

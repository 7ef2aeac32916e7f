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
    copied_bytes, describe, device, layer, queue, stats, transport, Announcement, BoxFuture,
    BoxSink, BoxStream, Connection, ContextService, CookedProtocol, CookedSocket, Core, DropReason,
    Endpoint, Error, Message, MessageIo, Options, Overhead, PipeEvent, PipeId, PipeInfo,
    ProtocolId, RawProtocol, RejectReason, Result, SendMode, Socket, SocketBuilder, SocketContext,
    Stats, Verdict,
};
pub use sp_protocols::{raw, rep, req, Plain, Rep0, Req0, ReqState};
pub use sp_transports::{Inproc, Ipc, Tcp};

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

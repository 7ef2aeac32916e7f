//! # sp-core: the layered socket core of spstack
//!
//! A socket is a stack: pipe layers per connection below the scalability
//! protocol, message layers per socket above it. This crate holds what every
//! protocol, transport and layer shares, and nothing specific to any of
//! them: the built-in protocols are written against the same public traits
//! as a protocol from another crate.
//!
//! ```no_run
//! # async fn demo(builder: sp_core::SocketBuilder) -> sp_core::Result<()> {
//! let socket = builder.build();               // see the `spstack` crate for ready-made builders
//! socket.listen("tcp://127.0.0.1:5555").await?;
//! let request = socket.recv().await?;
//! socket.send(request.body()).await?;
//! # Ok(()) }
//! ```
//!
//! ## Where a message goes
//!
//! **Out.** `Socket::send` hands the message to the context's message layers
//! (each a `Sink`, [`layer::MessageLayer`]), the outermost first, then to
//! the cooked protocol (REQ puts its request id in the header), which sends
//! it through the [`RawSocket`]. There the protocol's [`routing::Routing`]
//! picks the pipe(s) and the message is queued on each pipe's bounded send
//! queue; when the routing answers `Wait`, the sender waits for room
//! (back-pressure). Each pipe's writer task (`pipe/writer.rs`) takes a batch
//! off its queue, prepares every frame once as the stack's
//! [`layer::FramePlan`] says (in one slice with room reserved when a pipe
//! layer needs that, else untouched), feeds the batch through the pipe
//! layers (each adds its frame header and trailer) to the transport, and
//! flushes: one vectored write for the batch (what was queued meanwhile
//! joins it, up to `write_batch` messages and 256 KiB, so a peer is not left
//! waiting while a write of large messages keeps gathering). A stream transport gathers
//! frames under 1 KiB into one buffer (a counted copy, the message freed at
//! once) and writes larger ones from where they lie, never copied on a plain
//! stack. The message counts as sent when the transport has it.
//!
//! **In.** A transport reads frames, checking every length against the
//! receive limit before it allocates. A stream transport reads many small
//! frames per system call into one chunk; each becomes a message that shares
//! it (no allocation, no copy) unless the protocol wants room in front of
//! received frames ([`Routing::recv_headroom`]), which copies it into a
//! buffer with that room. A large frame is allocated whole ahead of its
//! bytes only within the socket's [`transport::AllocBudget`], else its
//! buffer grows as they arrive. The pipe layers transform each frame back;
//! the pipe's reader task (`pipe/reader.rs`) takes every frame already
//! decoded in one poll, lets the routing parse each protocol header, counts
//! them once and delivers them to the socket's receive queue under one lock
//! and one wake-up; the cooked protocol and the message layers take it from
//! there to `recv`.
//!
//! **Nothing is lost silently.** Every message `send` accepts ends written
//! to a transport (`Stats::msgs_out`), moved to another pipe when the one it
//! was queued on died (`Stats::requeued`), or counted under a
//! [`DropReason`]; closing counts what it discards (`Closed`) after the
//! linger (`Options::linger`).
//!
//! **A layer can do better.** A pipe layer that keeps what it sent until
//! the peer acknowledges it hands the unacknowledged frames of a dying pipe
//! back to the routing through the pipe's [`SocketLink`]
//! (`SocketLink::requeue`, counted `Stats::returned`), and learns from the
//! socket when the frames it received were taken ([`Receipts`]), so it
//! acknowledges what the application got, not what a closing socket threw
//! away. `sp-reliable`'s `ack/1` is such a layer.
//!
//! ## Map of the crate
//!
//! | module | what |
//! |---|---|
//! | [`message`](Message) | the message: one buffer, inline areas, copy accounting |
//! | [`routing`] | the routing trait, the pipes a routing sees, an in-memory test bench |
//! | [`protocol`] | the registry of protocol identities |
//! | [`layer`] | pipe and message layers, overhead, header formats |
//! | [`RawSocket`] | the seam a cooked protocol uses |
//! | `core.rs`, `send.rs` | the raw socket's state; the send path |
//! | `pipe/` | a pipe's life: open (handshakes), attach, writer, reader, detach |
//! | `endpoint.rs` | dialers and listeners |
//! | [`transport`] | what a transport provides; stream transports |
//! | `socket/` | the socket facade, builder, contexts, devices |
//! | [`stats`], [`queue`], [`describe`] | counters, the bounded queue, frame decoding |
//! | `metrics` (feature `metrics`) | the counters and pipe events through the `metrics` facade |
#![warn(missing_docs)]
// a message handed back (`Err(msg)`, `Refused { msg, .. }`) is the point:
// the caller keeps it without an allocation, so the large Err stays
#![allow(clippy::result_large_err)]

pub mod admission;
mod announce;
mod core;
pub mod describe;
mod endpoint;
mod error;
pub mod layer;
mod message;
#[cfg(feature = "metrics")]
pub mod metrics;
mod options;
mod pipe;
pub mod protocol;
pub mod queue;
mod raw;
pub mod routing;
mod send;
mod socket;
pub mod stats;
pub mod transport;

pub use crate::announce::{Announcement, MAX_LAYER_LIST};
pub use crate::core::{PipeEvent, PipeHook, Refusal};
pub use crate::endpoint::Endpoint;
pub use crate::error::{Error, Result};
pub use crate::layer::{BoxFuture, BoxSink, BoxStream, Connection, MessageIo, Overhead, PipeInfo};
pub use crate::message::{
    copied_bytes, record_copy, CopyScope, Direction, Message, RecvBuf, DEFAULT_HEADROOM,
};
pub use crate::options::Options;
pub use crate::pipe::link::{Receipts, Requeued, SocketLink, MAX_HANDED_BACK};
pub use crate::pipe::table::PipeId;
pub use crate::protocol::{ProtocolId, ProtocolSpec};
pub use crate::raw::{raw_io, RawSink, RawSocket, RawStream};
pub use crate::routing::{RecvPolicy, Routed, Routing, Verdict};
pub use crate::send::Handover;
pub use crate::socket::{
    backtrace_field, device, ContextService, CookedProtocol, CookedSocket, Socket, SocketBuilder,
    SocketContext,
};
pub use crate::stats::{DropReason, RejectReason, Stats};
pub use crate::transport::split_url;

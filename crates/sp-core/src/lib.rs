//! # sp-core: the layered socket core of spstack
//!
//! A socket is a stack: pipe layers per connection below the scalability
//! protocol, message layers per socket above it. This crate holds the pieces
//! every protocol, transport and layer shares: [`Message`] (one allocation,
//! headroom for every declared header), the raw socket [`Core`] (pipes,
//! dialers with backoff, listeners with handshake deadlines, routing), the
//! layer traits ([`layer`]) and the socket facade ([`Socket`]).
//!
//! ```no_run
//! # async fn demo(builder: sp_core::SocketBuilder) -> sp_core::Result<()> {
//! let socket = builder.build();               // see the `spstack` crate for ready-made builders
//! socket.listen("tcp://127.0.0.1:5555").await?;
//! let request = socket.recv().await?;
//! socket.send(request.body()).await?;
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod announce;
mod core;
pub mod describe;
mod error;
pub mod layer;
mod message;
mod options;
mod proto;
pub mod queue;
mod socket;
pub mod stats;
pub mod transport;

pub use crate::announce::{Announcement, MAX_LAYER_LIST};
pub use crate::core::{
    Core, Endpoint, Handover, PipeEvent, PipeHook, PipeId, RawProtocol, RecvPolicy, SendMode,
    Verdict,
};
pub use crate::error::{Error, Result};
pub use crate::layer::{BoxFuture, BoxSink, BoxStream, Connection, MessageIo, Overhead, PipeInfo};
pub use crate::message::{copied_bytes, record_copy, Message, RecvBuf, DEFAULT_HEADROOM};
pub use crate::options::Options;
pub use crate::proto::ProtocolId;
pub use crate::socket::{
    backtrace_field, device, raw_io, ContextService, CookedProtocol, CookedSocket, RawSink,
    RawStream, Socket, SocketBuilder, SocketContext,
};
pub use crate::stats::{DropReason, RejectReason, Stats};
pub use crate::transport::split_url;

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
//!
//! # How a frame looks to a pipe layer
//!
//! On the way out a layer's sink gets a [`Message`](crate::Message) whose
//! frame is [`Message::frame_parts`](crate::Message::frame_parts): what the
//! layers above added, the SP header and the body. It adds its own header and
//! trailer with `push_frame_header` / `push_frame_trailer` (in the reserved
//! room when there is some, else inline: never a copy of the body). A layer
//! that must see the frame in one slice (an AEAD) declares
//! `Overhead::contiguous`; the socket then hands every frame to the pipe's
//! layers unique, in one slice and with the room all of them declared
//! ([`Message::reserve_frame`](crate::Message::reserve_frame): at most one
//! copy, none for a message made by `Socket::new_message`), and the layer
//! works on [`Message::wire_mut`](crate::Message::wire_mut) in place. On the
//! way in a layer's stream gets each frame flat: everything is body.

mod format;
mod message;
mod overhead;
mod pipe;

pub use format::{ByteOrder, ComponentInfo, Field, FieldKind};
pub use message::{
    edit_sink, Control, CookedContext, Described, LayerHandle, MessageIo, MessageLayer,
};
pub use overhead::{FramePlan, Overhead};
pub(crate) use pipe::PipeLayerEntry;
pub use pipe::{
    Bare, BoxFuture, BoxSink, BoxStream, Connection, Handshake, PipeInfo, PipeLayer, RecvLimit,
    Upgrade, UpgradeService,
};

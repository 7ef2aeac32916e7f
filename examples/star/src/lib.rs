//! # A protocol, a pipe layer and a message layer from outside spstack
//!
//! This crate depends on `spstack`'s public API only, and adds what a fork
//! was needed for in nanomsg:
//!
//! * [`star`]: mangos' STAR protocol (`0xa0`, its own peer): every member
//!   sends to all its peers and forwards what it receives to all its other
//!   peers, a 4-byte hop count in front (so a star of stars, or a device,
//!   reaches everyone). Its routing is a [`spstack::Routing`], tested in
//!   memory; its cooked form is a message layer over the raw socket, built
//!   on the same [`spstack::RawSocket`] seam as spstack's REQ.
//! * [`xor`]: a pipe layer that scrambles every frame in place with a
//!   keystream agreed in its handshake; it declares that it needs the frame
//!   in one slice, and the socket prepares frames for it.
//! * [`trace`]: a message layer that numbers messages end to end (through
//!   devices) and counts what it refuses in the socket's own counters.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> spstack::Result<()> {
//! use spstack_example_star::{star, trace::Trace, xor};
//!
//! let hub = star::raw().pipe_layer(xor::layer()).build();
//! let ep = hub.listen("tcp://127.0.0.1:0").await?;
//! let (a, b) = (
//!     star::cooked().pipe_layer(xor::layer()).message_layer(Trace::new()).build(),
//!     star::cooked().pipe_layer(xor::layer()).message_layer(Trace::new()).build(),
//! );
//! a.dial(ep.url()).await?;
//! b.dial(ep.url()).await?;
//! # while hub.pipes().len() < 2 { tokio::task::yield_now().await; }
//! a.send("twinkle").await?;
//! assert_eq!(b.recv().await?.body(), b"twinkle"); // forwarded by the hub
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

pub mod star;
pub mod trace;
pub mod xor;

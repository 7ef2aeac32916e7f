//! # sp-reliable: knowing a peer is alive, and delivery that survives a dying pipe
//!
//! Two pipe layers for spstack, written against sp-core's public API only
//! (as a third party would write them):
//!
//! * [`heartbeat`] (`heartbeat/1`): small pings when a pipe is idle; a peer
//!   that vanished without closing (power loss, partition, a frozen
//!   process) is noticed within `interval × misses`, its pipe closed and
//!   counted (`RejectReason::Unresponsive`), and a dialer redials.
//! * [`ack`] (`ack/1`): every message is kept until the peer's application
//!   took it; when a pipe dies, what it did not confirm goes to another
//!   pipe through the socket's routing, and the receiving socket drops the
//!   copies it already had.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> spstack::Result<()> {
//! use std::time::Duration;
//! use sp_reliable::{ack::Ack, heartbeat::Heartbeat};
//!
//! // heartbeat nearest the transport, ack last (nearest the protocol)
//! let stack = |b: spstack::SocketBuilder| {
//!     b.pipe_layer(Heartbeat::new(Duration::from_secs(1)).layer())
//!         .pipe_layer(Ack::new().layer())
//! };
//! let rep = stack(spstack::rep0()).build();
//! let ep = rep.listen("tcp://127.0.0.1:0").await?;
//! let req = stack(spstack::req0()).with_options(|o| o.req_resend(None)).build();
//! req.dial(ep.url()).await?;
//! req.send("ping").await?;
//! assert_eq!(rep.recv().await?.body(), b"ping");
//! rep.send("pong").await?;
//! assert_eq!(req.recv().await?.body(), b"pong");
//! # Ok(()) }
//! ```
//!
//! Both are ordinary pipe layers: announced when a pipe opens, and needed on
//! both sides (see each module for what that means with nng and nanomsg).
#![warn(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod ack;
pub mod heartbeat;
mod shared;

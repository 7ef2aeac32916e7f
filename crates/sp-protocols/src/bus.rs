//! BUS v0: every node sends to all its directly connected peers; delivery is
//! one hop, there is no wire header.
//!
//! * **Cooked** ([`Plain::BUS0`](crate::Plain::BUS0)): a send goes to every peer (any header and pipe a
//!   reused message carries are cleared first); a receive hands out the body,
//!   with `Message::pipe` set to the peer it came from.
//! * **Raw** ([`Bus0Raw`]): a received message keeps its arriving pipe
//!   (`Message::pipe`, set by the core), and a send goes to every peer
//!   **but** that pipe (`Pipes::broadcast` with the origin excepted), as nng's raw BUS
//!   does with its pipe-id header. So one raw socket whose receive → send
//!   loop is [`reflect`] floods between all its peers without echoing
//!   anything back to its sender.
//!
//! Sends never wait: a peer whose queue is full misses the message (dropped,
//! counted `QueueFull`), as in nng and nanomsg.

use sp_core::protocol::{ProtocolId, ProtocolSpec};
use sp_core::routing::{Pipes, RecvContext, Routed};
use sp_core::{Error, Message, PipeId, Result, Routing, Socket, Verdict};

/// BUS v0, raw: flood to every peer but the message's own pipe.
#[derive(Clone, Copy, Debug, Default)]
pub struct Bus0Raw;

impl Routing for Bus0Raw {
    fn spec(&self) -> ProtocolSpec {
        crate::raw::builtin(ProtocolId::BUS0)
    }
    fn recv_headroom(&self) -> usize {
        // nothing is written in front of a received frame: small frames may
        // stay views of the chunk they were read into
        0
    }
    fn send(&self, msg: Message, pipes: &mut dyn Pipes) -> Routed {
        let origin = msg.pipe();
        pipes.broadcast(msg, origin);
        Routed::Queued(None)
    }
    fn recv(&self, _: PipeId, _: &mut Message, _: &mut dyn RecvContext) -> Verdict {
        Verdict::Deliver
    }
}

/// The one-socket device (nng's `nng_device(s, NULL)`): sends back into
/// `socket` everything it receives, keeping each message's arriving pipe.
/// On a raw BUS that floods between all peers but the sender; on a raw
/// PAIR1 (one peer) it is a loopback that adds a hop; on a raw polyamorous
/// PAIR1 it answers each peer with its own message. Only for protocols that
/// are their own peer. Runs until the socket closes.
pub async fn reflect(socket: &Socket) -> Result<()> {
    let core = socket.raw().clone();
    let p = core.protocol();
    if p.id != p.peer {
        // a one-socket device needs a protocol that is its own peer (PAIR, BUS)
        return Err(Error::protocol_mismatch(
            format!("{:?}", p.id),
            format!("{:?}", p.peer),
        ));
    }
    loop {
        let m = match core.recv().await {
            Ok(m) => m,
            Err(Error::Closed) => return Ok(()),
            Err(e) => return Err(e),
        };
        match core.send(m).await {
            Ok(_) => {}
            Err(Error::Closed) => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}

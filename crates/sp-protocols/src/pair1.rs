//! PAIR v1 (nng `pair1`; no RFC): one peer, or many in polyamorous mode, and
//! a u32 big-endian hop count as the only header.
//!
//! * **Receive** (raw and cooked): a message shorter than 4 bytes, or with a
//!   hop count above 255, closes the pipe (as nng); a hop count above the
//!   socket's TTL is dropped and counted `TtlExceeded`, the pipe kept. Any
//!   value in `0..=ttl` is accepted: nng sends 1, mangos 0.
//! * **Send**: a cooked send puts 0 and the raw side adds one as the message
//!   is queued on a pipe (only then: a send that waits for a peer is handed
//!   back untouched), so the first hop carries 1 exactly as nng's does, and a
//!   raw device forwarding a message adds its hop once. A raw send must carry the 4-byte hop count in its header (what a
//!   raw receive gives); otherwise it is dropped, counted `Malformed`.
//! * **Polyamorous** ([`Pair1Raw::POLY`], [`Pair1::POLY`]): any number of
//!   peers. A received message remembers its pipe (`Message::pipe`); sending
//!   it (or any message whose pipe is set) goes back to that peer only
//!   (dropped, counted, if that peer is gone or its queue is full). A message
//!   with no pipe set goes to one peer, round-robin.

use std::sync::Arc;

use futures::StreamExt;
use sp_core::layer::{ComponentInfo, CookedContext, Field, MessageIo, Overhead};
use sp_core::protocol::{ProtocolId, ProtocolSpec};
use sp_core::routing::{Pipes, RecvContext, Routed};
use sp_core::{
    CookedProtocol, CookedSocket, DropReason, Message, PipeId, RawSocket, Result, Routing, Verdict,
};

/// Largest hop count a PAIR1 peer may send before the pipe is closed (nng).
pub const MAX_HOPS: u32 = 0xff;

fn read_u32(b: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(..4)?.try_into().ok()?))
}

/// PAIR v1, raw (nng's xpair1): the hop count moves into the header on
/// receive and is incremented as a message is queued on a pipe.
#[derive(Clone, Copy, Debug, Default)]
pub struct Pair1Raw {
    poly: bool,
}

impl Pair1Raw {
    /// One peer (a second is refused, counted `PipeLimit`).
    pub const MONO: Pair1Raw = Pair1Raw { poly: false };
    /// Polyamorous: any number of peers, replies by `Message::pipe`.
    pub const POLY: Pair1Raw = Pair1Raw { poly: true };
    /// True in polyamorous mode.
    pub fn is_poly(&self) -> bool {
        self.poly
    }
}

/// The next hop count for a raw send, or why the message cannot go.
fn next_hops(msg: &Message) -> Result<u32, DropReason> {
    let hdr = msg.header();
    let hops = read_u32(hdr)
        .filter(|_| hdr.len() == 4)
        .ok_or(DropReason::Malformed)?;
    if hops >= MAX_HOPS {
        return Err(DropReason::TtlExceeded);
    }
    Ok(hops + 1)
}

impl Routing for Pair1Raw {
    fn spec(&self) -> ProtocolSpec {
        crate::raw::builtin(ProtocolId::PAIR1)
    }
    fn recv_headroom(&self) -> usize {
        // nothing is written in front of a received frame: small frames may
        // stay views of the chunk they were read into
        0
    }
    fn send(&self, mut msg: Message, pipes: &mut dyn Pipes) -> Routed {
        let hops = match next_hops(&msg) {
            Ok(h) => h,
            Err(r) => return Routed::Dropped(r),
        };
        if self.poly {
            if let Some(id) = msg.pipe() {
                msg.set_header(&hops.to_be_bytes());
                let queued = pipes.deliver(id, msg);
                return Routed::Queued(queued.then_some(id));
            }
        }
        // choose first, then count the hop: a send that waits is untouched
        let Some(id) = pipes.next_with_room() else {
            return Routed::Wait(msg);
        };
        msg.set_header(&hops.to_be_bytes());
        match pipes.force_push(id, msg) {
            Ok(()) => Routed::Queued(Some(id)),
            Err(_) => Routed::Dropped(DropReason::UnknownPipe),
        }
    }
    fn send_ready(&self, pipes: &dyn Pipes) -> bool {
        pipes.any_room()
    }
    fn requeue(&self, msg: Message, pipes: &mut dyn Pipes) -> Routed {
        // its hop is already counted: moved as it is
        if self.poly {
            crate::raw::requeue_balanced(msg, pipes)
        } else {
            Routed::Dropped(DropReason::PipeClosed)
        }
    }
    fn max_pipes(&self) -> usize {
        if self.poly {
            usize::MAX
        } else {
            1
        }
    }
    fn recv(&self, _: PipeId, msg: &mut Message, cx: &mut dyn RecvContext) -> Verdict {
        let Some(hops) = read_u32(msg.body()) else {
            return Verdict::Close("pair1 message shorter than its 4-byte hop count".into());
        };
        if hops > MAX_HOPS {
            return Verdict::Close(format!("pair1 hop count {hops} is above {MAX_HOPS}"));
        }
        if hops > cx.ttl() as u32 {
            return Verdict::Drop(DropReason::TtlExceeded);
        }
        msg.body_to_header(4);
        Verdict::Deliver
    }
    fn header_format(&self) -> Vec<Field> {
        vec![Field::be("hops", 4)]
    }
}

/// Cooked PAIR v1: sends carry hop count 0 (1 on the wire, see the module
/// docs); receives hand out the body, with `Message::pipe` set to the peer.
#[derive(Clone, Copy, Debug, Default)]
pub struct Pair1 {
    poly: bool,
}

impl Pair1 {
    /// Over [`Pair1Raw::MONO`].
    pub const MONO: Pair1 = Pair1 { poly: false };
    /// Over [`Pair1Raw::POLY`].
    pub const POLY: Pair1 = Pair1 { poly: true };
}

impl CookedProtocol for Pair1 {
    fn info(&self) -> ComponentInfo {
        // the hop count belongs to the raw header
        ComponentInfo::new(
            if self.poly { "pair1-poly" } else { "pair1" },
            Overhead::NONE,
        )
    }
    fn attach(&self, raw: &RawSocket) -> Arc<dyn CookedSocket> {
        Arc::new(Pair1Socket { raw: raw.clone() })
    }
}

struct Pair1Socket {
    raw: RawSocket,
}

impl CookedSocket for Pair1Socket {
    fn context(&self) -> CookedContext {
        let io = self.raw.io();
        let rx = io.rx.map(|r| {
            r.map(|mut m| {
                m.clear_header();
                m
            })
        });
        // a cooked send starts at hop 0 (the routing counts the first hop);
        // the message keeps the pipe it is addressed to, so that a
        // polyamorous socket answers a received message's peer
        let tx = sp_core::layer::edit_sink(io.tx, |m| {
            m.set_header(&0u32.to_be_bytes());
            Ok(())
        });
        MessageIo::new(tx, Box::pin(rx)).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(hops: u32, body: &[u8]) -> Message {
        let mut v = hops.to_be_bytes().to_vec();
        v.extend_from_slice(body);
        Message::from(v)
    }

    use sp_core::routing::MemPipes;

    fn on_recv(p: &Pair1Raw, m: &mut Message, ttl: u8) -> Verdict {
        p.recv(1, m, &mut MemPipes::new(&[1], 1).with_ttl(ttl))
    }

    #[test]
    fn receive_accepts_0_to_ttl_drops_above_closes_above_255() {
        let p = Pair1Raw::MONO;
        for hops in [0, 1, 8] {
            let mut m = frame(hops, b"hi");
            assert!(matches!(on_recv(&p, &mut m, 8), Verdict::Deliver));
            assert_eq!(m.header(), hops.to_be_bytes());
            assert_eq!(m.body(), b"hi");
        }
        assert!(matches!(
            on_recv(&p, &mut frame(9, b"x"), 8),
            Verdict::Drop(DropReason::TtlExceeded)
        ));
        assert!(matches!(
            on_recv(&p, &mut frame(255, b"x"), 255),
            Verdict::Deliver
        ));
        assert!(matches!(
            on_recv(&p, &mut frame(256, b"x"), 255),
            Verdict::Close(_)
        ));
        assert!(matches!(
            on_recv(&p, &mut Message::from(&b"abc"[..]), 8),
            Verdict::Close(_)
        ));
    }

    fn hop0(body: &[u8]) -> Message {
        let mut m = Message::from(body);
        m.set_header(&0u32.to_be_bytes());
        m
    }

    #[test]
    fn send_increments_once_and_needs_the_header() {
        let p = Pair1Raw::POLY;
        let mut pipes = MemPipes::new(&[1], 1);
        assert!(matches!(
            p.send(hop0(b"hi"), &mut pipes),
            Routed::Queued(Some(1))
        ));
        assert_eq!(
            pipes.queued(1)[0].wire(),
            b"\x00\x00\x00\x01hi",
            "the first hop carries 1, as nng"
        );
        assert!(matches!(
            p.send(Message::from(&b"hi"[..]), &mut pipes),
            Routed::Dropped(DropReason::Malformed)
        ));
        let mut m = Message::from(&b"hi"[..]);
        m.set_header(&255u32.to_be_bytes());
        assert!(matches!(
            p.send(m, &mut pipes),
            Routed::Dropped(DropReason::TtlExceeded)
        ));
    }

    #[test]
    fn a_send_that_waits_is_not_counted_as_a_hop() {
        // the pipe is full: the message comes back untouched, however often
        // it is offered, and carries exactly one hop when it finally goes
        let p = Pair1Raw::MONO;
        let mut pipes = MemPipes::new(&[1], 1);
        assert!(matches!(
            p.send(hop0(b"a"), &mut pipes),
            Routed::Queued(Some(1))
        ));
        let mut m = hop0(b"b");
        for _ in 0..3 {
            m = match p.send(m, &mut pipes) {
                Routed::Wait(m) => m,
                other => panic!("{other:?}"),
            };
            assert_eq!(m.header(), &[0, 0, 0, 0]);
        }
        pipes.drain(1);
        assert!(matches!(p.send(m, &mut pipes), Routed::Queued(Some(1))));
        assert_eq!(pipes.queued(1)[0].header(), &[0, 0, 0, 1]);
    }

    #[test]
    fn poly_answers_the_addressed_peer_and_counts_a_gone_one() {
        let p = Pair1Raw::POLY;
        let mut pipes = MemPipes::new(&[1, 2], 4);
        let mut m = hop0(b"to 2");
        m.set_pipe(Some(2));
        assert!(matches!(p.send(m, &mut pipes), Routed::Queued(Some(2))));
        let mut m = hop0(b"to 9");
        m.set_pipe(Some(9));
        assert!(matches!(p.send(m, &mut pipes), Routed::Queued(None)));
        assert_eq!(pipes.drops(), &[(None, DropReason::UnknownPipe)]);
    }
}

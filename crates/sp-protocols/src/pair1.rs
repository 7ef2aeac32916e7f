//! PAIR v1 (nng `pair1`; no RFC): one peer, or many in polyamorous mode, and
//! a u32 big-endian hop count as the only header.
//!
//! * **Receive** (raw and cooked): a message shorter than 4 bytes, or with a
//!   hop count above 255, closes the pipe (as nng); a hop count above the
//!   socket's TTL is dropped and counted `TtlExceeded`, the pipe kept. Any
//!   value in `0..=ttl` is accepted: nng sends 1, mangos 0.
//! * **Send**: a cooked send puts 0 and the raw side adds one as the message
//!   is queued on a pipe ([`RawProtocol::on_send`]), so the first hop carries
//!   1 exactly as nng's does, and a raw device forwarding a message adds its
//!   hop. A raw send must carry the 4-byte hop count in its header (what a
//!   raw receive gives); otherwise it is dropped, counted `Malformed`.
//! * **Polyamorous** ([`Pair1Raw::POLY`], [`Pair1::POLY`]): any number of
//!   peers. A received message remembers its pipe (`Message::pipe`); sending
//!   it (or any message whose pipe is set) goes back to that peer only
//!   (dropped, counted, if that peer is gone or its queue is full). A message
//!   with no pipe set goes to one peer, round-robin.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::Sink;
use sp_core::layer::{ComponentInfo, CookedContext, Field, MessageIo, Overhead};
use sp_core::queue::WaitKey;
use sp_core::{
    raw_io, BoxStream, CookedProtocol, CookedSocket, Core, DropReason, Error, Handover, Message,
    PipeId, ProtocolId, RawProtocol, Result, SendMode, Verdict,
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

impl RawProtocol for Pair1Raw {
    fn protocol(&self) -> ProtocolId {
        ProtocolId::PAIR1
    }
    fn peer(&self) -> ProtocolId {
        ProtocolId::PAIR1
    }
    fn send_mode(&self) -> SendMode {
        if self.poly {
            SendMode::ToMessagePipe
        } else {
            SendMode::LoadBalance
        }
    }
    fn max_pipes(&self) -> usize {
        if self.poly {
            usize::MAX
        } else {
            1
        }
    }
    fn on_recv(&self, _: PipeId, msg: &mut Message, ttl: u8) -> Verdict {
        let Some(hops) = read_u32(msg.body()) else {
            return Verdict::Close("pair1 message shorter than its 4-byte hop count".into());
        };
        if hops > MAX_HOPS {
            return Verdict::Close(format!("pair1 hop count {hops} is above {MAX_HOPS}"));
        }
        if hops > ttl as u32 {
            return Verdict::Drop(DropReason::TtlExceeded);
        }
        msg.body_to_header(4);
        Verdict::Deliver
    }
    fn on_send(&self, msg: &mut Message) -> Verdict {
        let hdr = msg.header();
        let Some(hops) = read_u32(hdr).filter(|_| hdr.len() == 4) else {
            return Verdict::Drop(DropReason::Malformed);
        };
        if hops >= MAX_HOPS {
            return Verdict::Drop(DropReason::TtlExceeded);
        }
        msg.set_header(&(hops + 1).to_be_bytes());
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
    fn attach(&self, raw: Arc<Core>) -> Arc<dyn CookedSocket> {
        Arc::new(Pair1Socket { raw })
    }
}

struct Pair1Socket {
    raw: Arc<Core>,
}

impl CookedSocket for Pair1Socket {
    fn context(&self) -> CookedContext {
        let rx: BoxStream = raw_io(self.raw.clone()).rx;
        use futures::StreamExt;
        let rx = rx.map(|r| {
            r.map(|mut m| {
                m.clear_header();
                m
            })
        });
        MessageIo::new(
            Box::pin(Pair1Tx {
                raw: self.raw.clone(),
                key: WaitKey::default(),
                pending: None,
            }),
            Box::pin(rx),
        )
        .into()
    }
}

/// Sends through `poll_send_ready` + `send_now` only, so the raw side's
/// `on_send` (the hop increment) runs once per message even when it has to
/// wait for a peer: a message no pipe took is given back with its count
/// reset and offered again when a pipe has room.
struct Pair1Tx {
    raw: Arc<Core>,
    key: WaitKey,
    pending: Option<Message>,
}

fn zero_hops(m: &mut Message) {
    m.set_header(&0u32.to_be_bytes());
}

impl Pair1Tx {
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        while self.pending.is_some() {
            match self.raw.poll_send_ready(cx, &mut self.key) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
            let Some(m) = self.pending.take() else {
                break;
            };
            if let Handover::Kept(mut m) = self.raw.send_now(m)? {
                // lost the pipe it saw room on: undo the increment, yield, retry
                zero_hops(&mut m);
                self.pending = Some(m);
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl Sink<Message> for Pair1Tx {
    type Error = Error;
    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let this = self.get_mut();
        if this.pending.is_some() {
            return this.poll_pending(cx);
        }
        this.raw.poll_send_ready(cx, &mut this.key)
    }
    fn start_send(self: Pin<&mut Self>, mut m: Message) -> Result<()> {
        let this = self.get_mut();
        zero_hops(&mut m);
        if let Handover::Kept(mut m) = this.raw.send_now(m)? {
            zero_hops(&mut m);
            this.pending = Some(m);
        }
        Ok(())
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.get_mut().poll_pending(cx)
    }
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.get_mut().poll_pending(cx)
    }
}

impl Drop for Pair1Tx {
    fn drop(&mut self) {
        self.raw.cancel_send(&mut self.key);
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

    #[test]
    fn receive_accepts_0_to_ttl_drops_above_closes_above_255() {
        let p = Pair1Raw::MONO;
        for hops in [0, 1, 8] {
            let mut m = frame(hops, b"hi");
            assert!(matches!(p.on_recv(1, &mut m, 8), Verdict::Deliver));
            assert_eq!(m.header(), hops.to_be_bytes());
            assert_eq!(m.body(), b"hi");
        }
        assert!(matches!(
            p.on_recv(1, &mut frame(9, b"x"), 8),
            Verdict::Drop(DropReason::TtlExceeded)
        ));
        assert!(matches!(
            p.on_recv(1, &mut frame(255, b"x"), 255),
            Verdict::Deliver
        ));
        assert!(matches!(
            p.on_recv(1, &mut frame(256, b"x"), 255),
            Verdict::Close(_)
        ));
        assert!(matches!(
            p.on_recv(1, &mut Message::from(&b"abc"[..]), 8),
            Verdict::Close(_)
        ));
    }

    #[test]
    fn send_increments_and_needs_the_header() {
        let p = Pair1Raw::POLY;
        let mut m = Message::from(&b"hi"[..]);
        zero_hops(&mut m);
        assert!(matches!(p.on_send(&mut m), Verdict::Deliver));
        assert_eq!(
            m.wire(),
            b"\x00\x00\x00\x01hi",
            "the first hop carries 1, as nng"
        );
        assert!(matches!(
            p.on_send(&mut Message::from(&b"hi"[..])),
            Verdict::Drop(DropReason::Malformed)
        ));
        let mut m = Message::from(&b"hi"[..]);
        m.set_header(&255u32.to_be_bytes());
        assert!(matches!(
            p.on_send(&mut m),
            Verdict::Drop(DropReason::TtlExceeded)
        ));
    }
}

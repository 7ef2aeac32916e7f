//! What the WebSocket library may read, decided below it.
//!
//! tungstenite reserves the whole length a frame header announces (up to
//! `max_frame_size`, 1 MiB) as soon as it parses the header, before the
//! payload arrives, so a peer that announces a large frame and stalls costs
//! that much per connection. [`Gate`] holds each large frame's header back
//! until the socket's [`AllocBudget`] covers the payload still to come (the
//! reservation is then on the socket's word, shared by all its pipes, as
//! the SP/TCP reader's direct reads are), or until the payload itself has
//! arrived (then the reservation costs what the peer really sent). Frame
//! boundaries are found with tungstenite's own header parser
//! ([`FrameHeader::parse`]); nothing here interprets a frame beyond its
//! length, and a header that does not parse is passed on for the library
//! to refuse.
//!
//! [`HeadEnd`] finds the end of the HTTP head of a dialer's upgrade
//! response, so that the frames a listener sends right after it reach the
//! library through the gate, not as the tail of its handshake, which it
//! would parse unguarded. (A listener needs no such thing: the library
//! refuses bytes sent after the upgrade request in the same read as junk,
//! and reads nothing past a complete request.)

use std::io::Cursor;

use sp_core::transport::{AllocAhead, AllocBudget};
use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;

/// Frames up to this size pass without budget: what the library reserves
/// for them is no more than its own read buffer.
pub(crate) const SMALL_FRAME: u64 = crate::READ_BUFFER as u64;
/// The longest frame header: 2 bytes, a 64-bit length, a mask.
const MAX_HEADER: usize = 14;

/// Accounts the frames passing to the library (see the module docs).
pub(crate) struct Gate {
    budget: AllocBudget,
    /// Larger frames are refused by the library on their header alone,
    /// before it reserves anything: they pass at once.
    max_frame: u64,
    /// Bytes of the current frame's header not yet passed.
    header_left: usize,
    /// Payload bytes of the current frame not yet passed.
    payload_left: u64,
    /// Of those, how many were already here when the frame was let through
    /// (not taken from the budget).
    here: u64,
    /// The budget for the rest, given back as it passes.
    ahead: Option<AllocAhead>,
    /// A header did not parse, or the stream ended with bytes held: all
    /// bytes pass, for the library to fail on them as it would.
    open: bool,
}

impl Gate {
    pub(crate) fn new(budget: AllocBudget, max_frame: usize) -> Gate {
        Gate {
            budget,
            max_frame: max_frame as u64,
            header_left: 0,
            payload_left: 0,
            here: 0,
            ahead: None,
            open: false,
        }
    }

    /// Lets every byte pass from now on.
    pub(crate) fn open(&mut self) {
        self.open = true;
    }

    /// How many bytes of `avail` (every byte read and not yet passed, from
    /// the library's position on) may pass now, at most `limit`; they are
    /// accounted as passed. 0 when a header must wait for more bytes (its
    /// own, or its payload's while the budget cannot cover it).
    pub(crate) fn passable(&mut self, avail: &[u8], limit: usize) -> usize {
        let limit = limit.min(avail.len());
        if self.open {
            return limit;
        }
        let mut i = 0;
        while i < limit {
            if self.header_left > 0 {
                let k = self.header_left.min(limit - i);
                self.header_left -= k;
                i += k;
                continue;
            }
            if self.payload_left > 0 {
                let k = (self.payload_left.min((limit - i) as u64)) as usize;
                self.payload_left -= k as u64;
                let free = self.here.min(k as u64);
                self.here -= free;
                if let Some(a) = &mut self.ahead {
                    a.arrived(k - free as usize);
                }
                if self.payload_left == 0 {
                    self.ahead = None;
                }
                i += k;
                continue;
            }
            if !self.admit(&avail[i..]) {
                break;
            }
            if self.open {
                return limit;
            }
        }
        i
    }

    /// Decides on the header at the front of `avail`: true when its frame
    /// may pass (the state then covers it), false to wait for more bytes.
    fn admit(&mut self, avail: &[u8]) -> bool {
        let mut cur = Cursor::new(avail);
        let (hlen, len) = match FrameHeader::parse(&mut cur) {
            Ok(Some((_, len))) => (cur.position() as usize, len),
            Ok(None) => return false,
            Err(_) => {
                self.open = true;
                return true;
            }
        };
        let here = ((avail.len() - hlen) as u64).min(len);
        let ahead = if len <= SMALL_FRAME || len > self.max_frame || here == len {
            None
        } else {
            match self.budget.try_take((len - here) as usize) {
                Some(a) => Some(a),
                None => return false,
            }
        };
        self.header_left = hlen;
        self.payload_left = len;
        self.here = here;
        self.ahead = ahead;
        true
    }

    /// How many more bytes to read for the frame held at the front of
    /// `held` to be decided: the rest of its payload, or of a header of the
    /// longest form (reading more would only hold back bytes the library
    /// could have read itself).
    pub(crate) fn wanted(&self, held: &[u8]) -> usize {
        let mut cur = Cursor::new(held);
        match FrameHeader::parse(&mut cur) {
            Ok(Some((_, len))) => {
                let total = (cur.position()).saturating_add(len);
                total.saturating_sub(held.len() as u64).max(1) as usize
            }
            _ => MAX_HEADER.saturating_sub(held.len()).max(1),
        }
    }
}

/// Finds the end of an upgrade response's HTTP head (`\r\n\r\n`) in
/// bytes seen in pieces.
pub(crate) struct HeadEnd {
    matched: usize,
    /// The first bytes of the head, for the status.
    start: Vec<u8>,
}

const STATUS_101: &[u8] = b"HTTP/1.1 101";

impl HeadEnd {
    pub(crate) fn new() -> HeadEnd {
        HeadEnd {
            matched: 0,
            start: Vec::with_capacity(STATUS_101.len()),
        }
    }

    /// How many bytes of `avail` go to the library with the head: those up
    /// to its end, or all of them when its end is not among them, or when
    /// it refuses the upgrade (no frames follow; its body, the refusal's
    /// text, goes too). And whether the head ended there.
    pub(crate) fn scan(&mut self, avail: &[u8]) -> (usize, bool) {
        for (i, &b) in avail.iter().enumerate() {
            if self.start.len() < STATUS_101.len() {
                self.start.push(b);
            }
            self.matched = match (self.matched, b) {
                (0 | 2, b'\r') => self.matched + 1,
                (1 | 3, b'\n') => self.matched + 1,
                (_, b'\r') => 1,
                _ => 0,
            };
            if self.matched == 4 {
                if self.start != STATUS_101 {
                    return (avail.len(), true);
                }
                return (i + 1, true);
            }
        }
        (avail.len(), false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame header (binary, final) announcing `len`.
    fn header(len: u64) -> Vec<u8> {
        let mut h = vec![0x82];
        if len < 126 {
            h.push(0x80 | len as u8);
        } else if len <= 0xffff {
            h.push(0x80 | 126);
            h.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            h.push(0x80 | 127);
            h.extend_from_slice(&len.to_be_bytes());
        }
        h.extend_from_slice(&[1, 2, 3, 4]);
        h
    }

    #[test]
    fn small_frames_pass_whole_and_many_at_once() {
        let mut g = Gate::new(AllocBudget::new(0), 1 << 20);
        let mut bytes = Vec::new();
        for n in [0u64, 5, 125, 126, 16 << 10] {
            bytes.extend(header(n));
            bytes.extend(std::iter::repeat_n(7u8, n as usize));
        }
        assert_eq!(g.passable(&bytes, bytes.len()), bytes.len());
    }

    #[test]
    fn a_large_header_waits_for_budget_or_its_payload() {
        let budget = AllocBudget::new(1 << 20);
        let mut g = Gate::new(budget.clone(), 1 << 20);
        let big = 600 << 10;
        let mut bytes = header(big);
        bytes.extend([0u8; 100]);
        // covered: passes, taking the bytes not here yet
        assert_eq!(g.passable(&bytes, bytes.len()), bytes.len());
        assert_eq!(budget.available(), (1 << 20) - (big as usize - 100));
        // the rest arrives: the budget comes back as it passes
        let rest = vec![0u8; big as usize - 100];
        assert_eq!(g.passable(&rest, 1000), 1000);
        assert_eq!(budget.available(), (1 << 20) - (big as usize - 1100));
        assert_eq!(g.passable(&rest[1000..], usize::MAX), rest.len() - 1000);
        assert_eq!(budget.available(), 1 << 20);

        // another connection's large frame while this one holds the budget
        let mut g1 = Gate::new(budget.clone(), 1 << 20);
        let mut g2 = Gate::new(budget.clone(), 1 << 20);
        let h = header(big);
        assert_eq!(g1.passable(&h, h.len()), h.len(), "budget covers it");
        assert_eq!(g2.passable(&h, h.len()), 0, "held: no budget left");
        assert_eq!(g2.wanted(&h), big as usize);
        assert_eq!(g2.wanted(&h[..3]), 11, "the rest of a longest header");
        // its payload arrives (held below): once the budget covers what
        // is still to come, it passes
        let mut part = h.clone();
        part.extend(vec![0u8; 100 << 10]);
        assert_eq!(g2.passable(&part, part.len()), 0, "500 KiB to come");
        part.extend(vec![0u8; 100 << 10]);
        assert_eq!(g2.passable(&part, part.len()), part.len(), "400 KiB");
        assert_eq!(budget.available(), (1 << 20) - (600 << 10) - (400 << 10));
        drop((g1, g2));
        assert_eq!(budget.available(), 1 << 20, "a dropped gate gives back");

        // with no budget at all, a frame passes once it is here whole
        let mut g = Gate::new(AllocBudget::new(0), 1 << 20);
        let mut whole = header(big);
        whole.extend(vec![0u8; big as usize - 1]);
        assert_eq!(g.passable(&whole, whole.len()), 0);
        assert_eq!(g.wanted(&whole), 1);
        whole.push(0);
        assert_eq!(g.passable(&whole, 14), 14, "its header first");
        assert_eq!(g.passable(&whole[14..], usize::MAX), big as usize);
    }

    #[test]
    fn the_gate_stops_at_a_held_header_mid_read() {
        let mut g = Gate::new(AllocBudget::new(0), 1 << 20);
        let mut bytes = header(3);
        bytes.extend([1, 2, 3]);
        let at = bytes.len();
        bytes.extend(header(1 << 20));
        bytes.extend([9u8; 50]);
        assert_eq!(g.passable(&bytes, bytes.len()), at);
        // a partial header waits too
        let mut g = Gate::new(AllocBudget::new(0), 1 << 20);
        assert_eq!(g.passable(&header(1 << 20)[..5], 5), 0);
    }

    #[test]
    fn frames_the_library_refuses_on_their_header_pass_at_once() {
        let mut g = Gate::new(AllocBudget::new(0), 1 << 20);
        let h = header(1 << 30);
        assert_eq!(g.passable(&h, h.len()), h.len(), "over max_frame_size");
        let mut g = Gate::new(AllocBudget::new(0), 1 << 20);
        // opcode 3 is reserved: the library fails on it
        let bad = [0x83, 0x80, 0, 0, 0, 0, 0xff, 0xff];
        assert_eq!(g.passable(&bad, bad.len()), bad.len());
    }

    #[test]
    fn head_end_in_pieces() {
        let mut h = HeadEnd::new();
        let ok = b"HTTP/1.1 101 Switching\r\nUpgrade: websocket\r\n\r\n\x82\x00";
        assert_eq!(h.scan(&ok[..20]), (20, false));
        assert_eq!(h.scan(&ok[20..45]), (25, false));
        assert_eq!(h.scan(&ok[45..]), (1, true), "the frame stays behind");
        let mut h = HeadEnd::new();
        assert_eq!(h.scan(ok), (ok.len() - 2, true));
        let mut h = HeadEnd::new();
        let refused = b"HTTP/1.1 400 Bad\r\n\r\nwhy";
        assert_eq!(h.scan(refused), (refused.len(), true), "the body goes too");
        let mut h = HeadEnd::new();
        let odd = b"HTTP/1.1 101 x\r\r\n\r\nb";
        assert_eq!(h.scan(odd), (odd.len() - 1, true));
    }
}

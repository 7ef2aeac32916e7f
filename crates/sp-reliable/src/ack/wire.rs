//! `ack/1` on the wire. Every frame after the handshake starts with a type
//! byte:
//!
//! | type | rest | meaning |
//! |---|---|---|
//! | `00` | seq (u64 BE), then the frame of the layers above | a message, numbered by its sending socket (the same number when it is sent again on another pipe) |
//! | `01` | count (u64 BE) | the first `count` messages of this pipe (this direction) are settled |
//!
//! The handshake frame, one each way: `'A' 'K' 01`, the sending socket's
//! identity (u64 BE, random) and its window (u32 BE: most unacknowledged
//! messages it will have on one pipe).

use sp_core::{Error, Message, Result};

use super::NAME;

pub(crate) const DATA: u8 = 0;
pub(crate) const ACK: u8 = 1;
pub(crate) const DATA_HEADER: usize = 9;
const ACK_LEN: usize = 9;
const HELLO_LEN: usize = 15;

pub(crate) fn data_header(seq: u64) -> [u8; DATA_HEADER] {
    let mut h = [0u8; DATA_HEADER];
    h[0] = DATA;
    h[1..].copy_from_slice(&seq.to_be_bytes());
    h
}

pub(crate) fn ack_frame(count: u64) -> Message {
    let mut b = [0u8; ACK_LEN];
    b[0] = ACK;
    b[1..].copy_from_slice(&count.to_be_bytes());
    Message::from(&b[..])
}

/// One received frame, its type checked.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Frame {
    /// A message: its sequence number (the header is still on the frame).
    Data(u64),
    /// An acknowledgement: how many of our messages on this pipe settled.
    Ack(u64),
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    let w: [u8; 8] = b.get(at..at + 8)?.try_into().ok()?;
    Some(u64::from_be_bytes(w))
}

pub(crate) fn parse(b: &[u8]) -> Result<Frame> {
    match (b.first(), u64_at(b, 1)) {
        (Some(&DATA), Some(seq)) => Ok(Frame::Data(seq)),
        (Some(&ACK), Some(n)) if b.len() == ACK_LEN => Ok(Frame::Ack(n)),
        (Some(&ACK), _) => Err(Error::layer(NAME, "an acknowledgement of the wrong size")),
        (Some(&DATA), None) => Err(Error::layer(NAME, "a message shorter than its header")),
        _ => Err(Error::layer(NAME, "a frame of an unknown type")),
    }
}

/// What a socket says about itself when a pipe opens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Hello {
    pub identity: u64,
    pub window: u32,
}

impl Hello {
    pub(crate) fn encode(&self) -> Message {
        let mut b = Vec::with_capacity(HELLO_LEN);
        b.extend_from_slice(&[b'A', b'K', 1]);
        b.extend_from_slice(&self.identity.to_be_bytes());
        b.extend_from_slice(&self.window.to_be_bytes());
        Message::from(b)
    }

    pub(crate) fn decode(b: &[u8]) -> Result<Hello> {
        if b.len() != HELLO_LEN || b[0] != b'A' || b[1] != b'K' {
            return Err(Error::layer(NAME, "the peer's hello is not an ack/1 hello"));
        }
        if b[2] != 1 {
            return Err(Error::layer(
                NAME,
                format!("the peer speaks ack version {}", b[2]),
            ));
        }
        let identity = u64_at(b, 3).unwrap_or(0);
        let window = u32::from_be_bytes([b[11], b[12], b[13], b[14]]);
        Ok(Hello { identity, window })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_roundtrip_and_hostile_ones_are_errors() {
        let mut d = data_header(7).to_vec();
        d.extend_from_slice(b"body");
        assert_eq!(parse(&d).unwrap(), Frame::Data(7));
        assert_eq!(parse(ack_frame(9).body()).unwrap(), Frame::Ack(9));
        for bad in [
            &[][..],
            &[DATA, 1, 2][..],
            &[ACK, 0, 0, 0, 0, 0, 0, 0, 1, 5][..],
            &[ACK, 0][..],
            &[7, 0, 0, 0, 0, 0, 0, 0, 0][..],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        let h = Hello {
            identity: 0x0102_0304_0506_0708,
            window: 77,
        };
        assert_eq!(Hello::decode(h.encode().body()).unwrap(), h);
        let mut wrong = h.encode().to_vec();
        wrong[2] = 2;
        assert!(Hello::decode(&wrong).is_err());
        assert!(Hello::decode(&wrong[..10]).is_err());
    }
}

//! The record format (version 2, used by `noise-xx/2` and `noise-ik/3`): one
//! SP message is one record is one transport frame, sealed where it lies.
//! Under IK the dialer's key confirmation takes its first nonce, so its
//! records start at nonce 1.
//!
//! ```text
//! plaintext record R:  [flags u8][body length u32 BE][message bytes][zero padding]
//! pieces:              R cut into n pieces of 65519 bytes, the last one 1..=65519
//! on the wire:         E_0 || E_1 || ... || E_{n-1} || T_0 || T_1 || ... || T_{n-1}
//! (E_i, T_i) =         ChaChaPoly(k, nonce = N + i, ad = i as u32 BE || last, piece_i)
//!                      where last = 1 for the final piece, 0 before it
//! ```
//!
//! Each piece is one Noise transport message (at most 65535 bytes with its
//! tag). The ciphertext is the plaintext's own bytes, encrypted in place, and
//! the tags follow it, so a sender seals into the room its socket reserved
//! (one allocation per message, no copy) and a receiver opens in the buffer
//! its transport filled. The receiver finds `n` from the frame length alone
//! (`n = ceil(len / 65535)`).
//!
//! The associated data binds each piece's position and whether it ends the
//! record: a frame re-cut by someone on the path (split in two, two merged,
//! pieces moved) fails authentication and closes the pipe. (Version 1 bound
//! nothing, so a padded record split at 65,535 bytes injected an empty
//! message and a merge deleted one.)
//!
//! Flag bit 0: the sender rekeys its outgoing key after this record, so the
//! receiver rekeys its incoming key after opening it. Other flag bits must be
//! zero.

use sp_core::{Error, Message, Result};

use super::cipher::{CipherError, CipherState, MAX_CHUNK_PLAIN, MAX_NOISE_MSG, TAG_LEN};

/// Bytes of the record header (flags and body length).
pub const RECORD_HEADER: usize = 5;
/// Flag: the sender rekeys after this record.
pub const FLAG_REKEY: u8 = 1;

/// How records are padded to hide message lengths (Noise §13).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Padding {
    /// No padding: the frame length reveals the message length.
    #[default]
    None,
    /// Pad each record (5 header bytes + message) up to the smallest of
    /// these sizes that holds it; above the largest, to a multiple of the
    /// largest. An observer learns only the bucket. The receiver accepts
    /// padding up to the next 65519-byte chunk boundary past its
    /// `recv_max_size`, so keep the largest bucket at or below that.
    Buckets(Vec<usize>),
}

impl Padding {
    /// The plaintext record length for a record of `len` bytes.
    pub fn padded(&self, len: usize) -> usize {
        match self {
            Padding::None => len,
            Padding::Buckets(b) => {
                if let Some(&fit) = b.iter().filter(|&&s| s >= len).min() {
                    return fit;
                }
                match b.iter().copied().filter(|&s| s > 0).max() {
                    Some(big) => len.div_ceil(big).saturating_mul(big),
                    None => len,
                }
            }
        }
    }
}

/// Pieces of a plaintext record of `plain` bytes.
pub fn pieces(plain: usize) -> usize {
    plain.div_ceil(MAX_CHUNK_PLAIN).max(1)
}

/// Ciphertext bytes of a plaintext record of `plain` bytes.
pub fn sealed_len(plain: usize) -> usize {
    plain + TAG_LEN * pieces(plain)
}

fn plain_len(padding: &Padding, frame_len: usize) -> usize {
    padding
        .padded(RECORD_HEADER + frame_len)
        .max(RECORD_HEADER + frame_len)
}

/// The room a frame of `frame_len` bytes needs around it to be sealed in
/// place: the record header in front; padding and the tags behind.
pub fn room(padding: &Padding, frame_len: usize) -> (usize, usize) {
    let plain = plain_len(padding, frame_len);
    (
        RECORD_HEADER,
        plain - RECORD_HEADER - frame_len + TAG_LEN * pieces(plain),
    )
}

/// What piece `i` of `n` authenticates besides its bytes.
fn piece_ad(i: usize, n: usize) -> [u8; 5] {
    let b = (i as u32).to_be_bytes();
    [b[0], b[1], b[2], b[3], u8::from(i + 1 == n)]
}

/// The largest frame a receiver with this `recv_max_size` needs to read:
/// every chunk full, so peers may pad up to the chunk boundary.
pub fn frame_limit(recv_max_size: usize) -> usize {
    (RECORD_HEADER.saturating_add(recv_max_size))
        .div_ceil(MAX_CHUNK_PLAIN)
        .max(1)
        .saturating_mul(MAX_NOISE_MSG)
}

fn cipher_error(layer: &str, e: CipherError, what: &str) -> Error {
    match e {
        CipherError::Auth => Error::layer(
            layer,
            format!("{what} failed authentication (altered, replayed, reordered or truncated in transit); the pipe is closed"),
        ),
        CipherError::Exhausted => Error::layer(
            layer,
            "the 64-bit Noise nonce is exhausted; reconnect to run a new handshake",
        ),
    }
}

/// When the sender rekeys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RekeyPolicy {
    /// After this many records.
    pub messages: u64,
    /// After this many message bytes.
    pub bytes: u64,
}

/// The sending direction: seals messages into frames.
pub struct Sender {
    layer: String,
    cs: CipherState,
    padding: Padding,
    policy: RekeyPolicy,
    msgs: u64,
    bytes: u64,
}

impl Sender {
    /// A sender with its key, padding and rekey policy.
    pub fn new(layer: &str, cs: CipherState, padding: Padding, policy: RekeyPolicy) -> Sender {
        Sender {
            layer: layer.to_string(),
            cs,
            padding,
            policy,
            msgs: 0,
            bytes: 0,
        }
    }

    fn plain_len(&self, frame_len: usize) -> usize {
        plain_len(&self.padding, frame_len)
    }

    /// Seals `m`'s frame in place: the record header into its headroom,
    /// padding and tags into its tailroom. With the room its socket reserves
    /// (this layer declares it) that is no allocation and no copy; a
    /// message without it is moved once into a buffer that has it.
    pub fn seal(&mut self, mut m: Message) -> Result<Message> {
        let body = m.frame_len();
        let len32 = u32::try_from(body).map_err(|_| {
            Error::layer(
                &self.layer,
                format!("message of {body} bytes exceeds the 4 GiB record limit; split it"),
            )
        })?;
        let plain = self.plain_len(body);
        let n = pieces(plain);
        let first = self
            .cs
            .reserve(n as u64)
            .map_err(|e| cipher_error(&self.layer, e, "sealing"))?;
        self.msgs += 1;
        self.bytes = self.bytes.saturating_add(body as u64);
        let rekey = self.msgs >= self.policy.messages || self.bytes >= self.policy.bytes;
        let flags = if rekey { FLAG_REKEY } else { 0 };

        let (head, tail) = room(&self.padding, body);
        m.reserve_frame(head, tail);
        let l = len32.to_be_bytes();
        m.push_frame_header(&[flags, l[0], l[1], l[2], l[3]]);
        // zero padding, then room for the tags
        m.extend_frame(tail);
        let buf = m.wire_mut();
        let (text, tags) = buf.split_at_mut(plain);
        for i in 0..n {
            let start = i * MAX_CHUNK_PLAIN;
            let end = (start + MAX_CHUNK_PLAIN).min(plain);
            let tag = self
                .cs
                .seal_at(first + i as u64, &piece_ad(i, n), &mut text[start..end])
                .map_err(|e| cipher_error(&self.layer, e, "sealing"))?;
            tags[i * TAG_LEN..(i + 1) * TAG_LEN].copy_from_slice(&tag);
        }
        self.cs.commit(n as u64);
        if rekey {
            self.cs.rekey();
            self.msgs = 0;
            self.bytes = 0;
        }
        Ok(m)
    }
}

/// The receiving direction: opens frames into messages.
pub struct Receiver {
    layer: String,
    cs: CipherState,
    max_body: usize,
}

impl Receiver {
    /// A receiver with its key and the largest message body it accepts.
    pub fn new(layer: &str, cs: CipherState, max_body: usize) -> Receiver {
        Receiver {
            layer: layer.to_string(),
            cs,
            max_body,
        }
    }

    fn fatal(&self, reason: String) -> Error {
        Error::layer(&self.layer, reason)
    }

    /// Opens one frame in place. Any failure is fatal to the pipe and moves
    /// no nonce.
    pub fn open(&mut self, mut m: Message) -> Result<Message> {
        m.header_to_body();
        let l = m.len();
        if l < RECORD_HEADER + TAG_LEN {
            return Err(self.fatal(format!(
                "frame of {l} bytes is shorter than the smallest record ({}); the peer is broken or the frame was truncated",
                RECORD_HEADER + TAG_LEN
            )));
        }
        let n = l.div_ceil(MAX_NOISE_MSG);
        let plain = l - n * TAG_LEN;
        if plain <= (n - 1) * MAX_CHUNK_PLAIN {
            return Err(self.fatal(format!(
                "frame of {l} bytes does not cut into whole pieces; it was truncated or re-cut"
            )));
        }
        let first = self
            .cs
            .reserve(n as u64)
            .map_err(|e| cipher_error(&self.layer, e, "opening"))?;
        let buf = m.wire_mut();
        let (text, tags) = buf.split_at_mut(plain);
        for i in 0..n {
            let start = i * MAX_CHUNK_PLAIN;
            let end = (start + MAX_CHUNK_PLAIN).min(plain);
            self.cs
                .open_at(
                    first + i as u64,
                    &piece_ad(i, n),
                    &mut text[start..end],
                    &tags[i * TAG_LEN..(i + 1) * TAG_LEN],
                )
                .map_err(|e| cipher_error(&self.layer, e, "a frame"))?;
        }
        let flags = buf[0];
        if flags & !FLAG_REKEY != 0 {
            return Err(self.fatal(format!(
                "record flags {flags:#04x} have unknown bits set; the peer runs an incompatible version"
            )));
        }
        let body = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
        if body > self.max_body {
            return Err(Error::TooLarge {
                size: body as u64,
                limit: self.max_body,
            });
        }
        if RECORD_HEADER + body > plain {
            return Err(self.fatal(format!(
                "record says {body} body bytes but holds {}; the peer is broken",
                plain - RECORD_HEADER
            )));
        }
        if buf[RECORD_HEADER + body..plain].iter().any(|&b| b != 0) {
            return Err(self.fatal("record padding is not zero; the peer is broken".into()));
        }
        self.cs.commit(n as u64);
        if flags & FLAG_REKEY != 0 {
            self.cs.rekey();
        }
        // lengths were checked above, so both trims succeed
        m.trim_body_back(l - RECORD_HEADER - body);
        m.trim_body_front(RECORD_HEADER);
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NEVER: RekeyPolicy = RekeyPolicy {
        messages: u64::MAX,
        bytes: u64::MAX,
    };

    fn pair(policy: RekeyPolicy, padding: Padding) -> (Sender, Receiver) {
        let k = [9u8; 32];
        (
            Sender::new("t", CipherState::new(&k), padding, policy),
            Receiver::new("t", CipherState::new(&k), 4 << 20),
        )
    }

    fn payload(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    #[test]
    fn round_trip_at_chunk_boundaries() {
        let (mut s, mut r) = pair(NEVER, Padding::None);
        let c = MAX_CHUNK_PLAIN;
        for n in [
            0,
            1,
            c - 6,
            c - 5,
            c - 4,
            c,
            2 * c - 5,
            2 * c - 4,
            200 << 10,
            1 << 20,
        ] {
            let m = Message::from(payload(n));
            let f = s.seal(m).expect("seal");
            assert_eq!(f.len(), sealed_len(RECORD_HEADER + n), "size of {n}");
            if n >= 16 {
                // the body is not in clear on the wire
                assert_ne!(
                    &f.wire()[RECORD_HEADER..RECORD_HEADER + 16],
                    &payload(n)[..16]
                );
            }
            let out = r.open(f).expect("open");
            assert_eq!(out.body(), &payload(n)[..], "body of {n}");
        }
    }

    #[test]
    fn frame_heads_and_tails_of_layers_above_are_sealed() {
        let (mut s, mut r) = pair(NEVER, Padding::None);
        let mut m = Message::from(b"body".to_vec());
        m.push_frame_header(b"HEAD");
        m.push_frame_trailer(b"TAIL");
        let out = r.open(s.seal(m).expect("seal")).expect("open");
        assert_eq!(out.body(), b"HEADbodyTAIL");
    }

    #[test]
    fn rekey_flag_switches_keys_on_both_sides() {
        let policy = RekeyPolicy {
            messages: 3,
            bytes: u64::MAX,
        };
        let (mut s, mut r) = pair(policy, Padding::None);
        // a receiver that ignores the flag stays on the old key
        let mut stale = Receiver::new("t", CipherState::new(&[9u8; 32]), 1 << 20);
        for i in 0..10u8 {
            let f = s.seal(Message::from(vec![i; 10])).expect("seal");
            let ok = stale.cs.open_at(
                stale.cs.nonce(),
                &piece_ad(0, 1),
                &mut f.to_vec()[..15],
                &f.to_vec()[15..],
            );
            stale.cs.commit(1);
            assert_eq!(ok.is_ok(), i < 3, "message {i} under the original key");
            assert_eq!(r.open(f).expect("open").body(), &[i; 10]);
        }
    }

    #[test]
    fn rekey_after_bytes() {
        let policy = RekeyPolicy {
            messages: u64::MAX,
            bytes: 100,
        };
        let (mut s, mut r) = pair(policy, Padding::None);
        let mut stale = CipherState::new(&[9u8; 32]);
        for i in 0..4u8 {
            let f = s.seal(Message::from(vec![i; 60])).expect("seal");
            let mut copy = f.to_vec();
            let (text, tag) = copy.split_at_mut(65);
            let ok = stale
                .open_at(stale.nonce(), &piece_ad(0, 1), text, tag)
                .is_ok();
            stale.commit(1);
            // 60 then 120 bytes: the second record carries the flag
            assert_eq!(ok, i < 2, "record {i}");
            assert_eq!(r.open(f).expect("open").body(), &[i; 60]);
        }
    }

    #[test]
    fn padding_buckets() {
        let p = Padding::Buckets(vec![1024, 256, 4096]);
        assert_eq!(p.padded(5), 256);
        assert_eq!(p.padded(256), 256);
        assert_eq!(p.padded(257), 1024);
        assert_eq!(p.padded(5000), 8192);
        let (mut s, mut r) = pair(NEVER, p);
        for n in [0, 300, 5000, 70000] {
            let f = s.seal(Message::from(payload(n))).expect("seal");
            assert_eq!(
                f.len(),
                sealed_len(Padding::Buckets(vec![256, 1024, 4096]).padded(n + 5))
            );
            assert_eq!(r.open(f).expect("open").body(), &payload(n)[..]);
        }
    }

    #[test]
    fn tampering_is_fatal_and_moves_no_nonce() {
        let (mut s, mut r) = pair(NEVER, Padding::None);
        let f1 = s.seal(Message::from(payload(100_000))).expect("seal");
        let f2 = s.seal(Message::from(payload(10))).expect("seal");
        let mut flipped = f1.to_vec();
        flipped[70_000] ^= 0x20;
        assert!(r.open(Message::from(flipped)).is_err());
        let truncated = f1.to_vec()[..f1.len() - 1].to_vec();
        assert!(r.open(Message::from(truncated)).is_err());
        assert!(r.open(f2.clone()).is_err(), "out of order");
        assert!(r.open(Message::from(vec![0u8; 20])).is_err(), "too short");
        assert_eq!(r.cs.nonce(), 0);
        assert_eq!(
            r.open(f1.clone()).expect("original").body(),
            &payload(100_000)[..]
        );
        assert!(r.open(f1).is_err(), "replay");
        assert_eq!(r.open(f2).expect("next").body(), &payload(10)[..]);
    }

    #[test]
    fn oversize_body_is_refused() {
        let k = [1u8; 32];
        let mut s = Sender::new("t", CipherState::new(&k), Padding::None, NEVER);
        let mut r = Receiver::new("t", CipherState::new(&k), 99);
        let f = s.seal(Message::from(vec![0u8; 100])).expect("seal");
        assert!(matches!(
            r.open(f),
            Err(Error::TooLarge {
                size: 100,
                limit: 99
            })
        ));
    }

    /// Counts the copies made on this thread while `f` runs.
    fn copies<R>(f: impl FnOnce() -> R) -> (R, u64) {
        let (c, p) = (
            sp_core::stats::Counters::default(),
            sp_core::stats::Counters::default(),
        );
        let r = {
            let _s = sp_core::CopyScope::enter(&c, &p, sp_core::Direction::Send);
            f()
        };
        (r, c.snapshot().bytes_copied)
    }

    #[test]
    fn seals_and_opens_in_place_when_the_room_was_reserved() {
        let (mut s, mut r) = pair(NEVER, Padding::None);
        for n in [0usize, 100, MAX_CHUNK_PLAIN, 3 * MAX_CHUNK_PLAIN + 7] {
            let (head, tail) = room(&Padding::None, n);
            let mut m = Message::with_capacity(head, n, tail);
            m.body_mut().copy_from_slice(&payload(n));
            let at = m.body().as_ptr();
            let (f, copied) = copies(|| s.seal(m).expect("seal"));
            assert_eq!(copied, 0, "sealing {n} bytes copied");
            assert_eq!(f.frame_len(), sealed_len(RECORD_HEADER + n));
            assert!(f.is_contiguous());
            // the frame is the body's own buffer, the record header before it
            assert_eq!(f.wire()[RECORD_HEADER..].as_ptr(), at);
            let (out, copied) = copies(|| r.open(f).expect("open"));
            assert_eq!(copied, 0, "opening {n} bytes copied");
            assert_eq!(out.body(), &payload(n)[..]);
        }
    }

    #[test]
    fn recut_records_close_the_pipe() {
        // version 1 authenticated each chunk alone: a padded record split at
        // 65,535 bytes gave two valid frames (one an injected empty message),
        // and a record merged with the next empty one deleted a message
        let big = 2 * MAX_CHUNK_PLAIN;
        let padding = Padding::Buckets(vec![big]);
        let (mut s, mut r) = pair(NEVER, padding);
        let f = s.seal(Message::from(payload(10))).expect("seal").to_vec();
        assert_eq!(f.len(), sealed_len(big));
        for cut in [
            MAX_NOISE_MSG,
            MAX_CHUNK_PLAIN,
            f.len() / 2,
            f.len() - TAG_LEN,
        ] {
            let (a, b) = f.split_at(cut);
            let mut r1 = Receiver::new("t", CipherState::new(&[9u8; 32]), 4 << 20);
            assert!(
                r1.open(Message::from(a.to_vec())).is_err(),
                "first part at {cut}"
            );
            let mut r2 = Receiver::new("t", CipherState::new(&[9u8; 32]), 4 << 20);
            assert!(
                r2.open(Message::from(b.to_vec())).is_err(),
                "second part at {cut}"
            );
        }
        // merged: a record and the next empty one as one frame
        let (mut s, _) = pair(NEVER, Padding::None);
        let mut merged = s
            .seal(Message::from(payload(65_514)))
            .expect("seal")
            .to_vec();
        merged.extend(s.seal(Message::from(Vec::new())).expect("seal").to_vec());
        assert!(r.open(Message::from(merged)).is_err(), "merged frames");
        // and pieces moved within a frame
        let (mut s, mut r) = pair(NEVER, Padding::None);
        let mut f = s
            .seal(Message::from(payload(2 * MAX_CHUNK_PLAIN)))
            .expect("seal")
            .to_vec();
        let plain = f.len() - 3 * TAG_LEN;
        let tags = &mut f[plain..];
        for k in 0..TAG_LEN {
            tags.swap(k, TAG_LEN + k);
        }
        assert!(r.open(Message::from(f)).is_err(), "tags swapped");
        assert_eq!(r.cs.nonce(), 0, "no nonce moved");
    }

    #[test]
    fn frame_limit_covers_the_largest_padded_record() {
        for max in [0usize, 1, 65514, 65515, 1 << 20] {
            let lim = frame_limit(max);
            assert!(lim >= sealed_len(max + RECORD_HEADER));
            assert_eq!(lim % MAX_NOISE_MSG, 0);
        }
    }
}

//! Properties of the Noise record layer (`noise::record`) under arbitrary
//! message sizes and an attacker who re-frames the sealed stream.
//!
//! (a) Any sequence of messages, 0 bytes to a few hundred KiB with the piece
//!     boundaries over-represented, padded or not, rekeyed often or never,
//!     seals and opens back to exactly what was sent.
//! (b) Any re-framing of the sealed frames (a frame split anywhere or at
//!     piece boundaries, pieces regrouped into frames of their own, frames
//!     merged, a frame or piece dropped, duplicated or moved, bytes cut off,
//!     a bit flipped, several of these at once) is refused at the first
//!     frame that differs from what the sender produced, and whatever the
//!     receiver does accept is always a prefix of the sent messages: nothing
//!     injected, nothing deleted, nothing reordered.
//!
//! The receiver is driven directly (no sockets): this is the code every
//! frame from the transport goes through, and a failure here closes a pipe.

use proptest::prelude::*;
use proptest::sample::Index;
use sp_core::Message;
use sp_crypto::noise::cipher::{CipherState, MAX_CHUNK_PLAIN, MAX_NOISE_MSG, TAG_LEN};
use sp_crypto::noise::record::{self, Padding, Receiver, RekeyPolicy, Sender, RECORD_HEADER};

const KEY: [u8; 32] = [0x42; 32];
const MAX_BODY: usize = 4 << 20;

/// Sizes at which a record gains a piece (record = header + body, pieces
/// of 65519 bytes, 65535 with the tag) and their neighbours.
fn boundary_sizes() -> Vec<usize> {
    let mut v = Vec::new();
    for k in 1..=2 {
        let piece = k * MAX_CHUNK_PLAIN - RECORD_HEADER; // 65514, 131033
        let wire = k * MAX_NOISE_MSG - RECORD_HEADER; // 65530, ...
        for base in [piece, wire, k * MAX_CHUNK_PLAIN, k * MAX_NOISE_MSG] {
            v.extend([base - 1, base, base + 1]);
        }
    }
    v
}

/// Message sizes: small, at a boundary, or anything up to `max`.
fn size(max: usize) -> impl Strategy<Value = usize> {
    prop_oneof![
        4 => 0usize..300,
        3 => proptest::sample::select(boundary_sizes()),
        1 => 0usize..max,
    ]
}

/// A message's bytes from its size and a seed: cheap to make, cheap to shrink.
fn body(n: usize, seed: u32) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            // xorshift32
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

fn padding() -> impl Strategy<Value = Padding> {
    prop_oneof![
        Just(Padding::None),
        proptest::collection::vec(
            prop_oneof![Just(0usize), 1usize..300, 1usize..(200 << 10)],
            1..4
        )
        .prop_map(Padding::Buckets),
    ]
}

fn policy() -> impl Strategy<Value = RekeyPolicy> {
    (
        prop_oneof![Just(u64::MAX), 1u64..5],
        prop_oneof![Just(u64::MAX), 1u64..(300 << 10)],
    )
        .prop_map(|(messages, bytes)| RekeyPolicy { messages, bytes })
}

/// Up to `count` messages as (size, seed), each at most `max` bytes.
fn messages(count: usize, max: usize) -> impl Strategy<Value = Vec<(usize, u32)>> {
    proptest::collection::vec((size(max), any::<u32>()), 1..=count)
}

/// Seals each message, with or without the room the socket would reserve.
fn seal_all(s: &mut Sender, pad: &Padding, msgs: &[Vec<u8>], room: bool) -> Vec<Vec<u8>> {
    msgs.iter()
        .map(|b| {
            let m = if room {
                let (head, tail) = record::room(pad, b.len());
                let mut m = Message::with_capacity(head, b.len(), tail);
                m.body_mut().copy_from_slice(b);
                m
            } else {
                Message::from(b.clone())
            };
            s.seal(m).expect("seal").to_vec()
        })
        .collect()
}

fn endpoints(pad: &Padding, policy: RekeyPolicy) -> (Sender, Receiver) {
    (
        Sender::new("p", CipherState::new(&KEY), pad.clone(), policy),
        Receiver::new("p", CipherState::new(&KEY), MAX_BODY),
    )
}

/// Offsets of a sealed frame's pieces: (ciphertext range, tag range) each.
fn pieces(frame: &[u8]) -> Vec<(std::ops::Range<usize>, std::ops::Range<usize>)> {
    let n = frame.len().div_ceil(MAX_NOISE_MSG).max(1);
    let plain = frame.len().saturating_sub(n * TAG_LEN);
    (0..n)
        .map(|i| {
            let s = (i * MAX_CHUNK_PLAIN).min(plain);
            let e = ((i + 1) * MAX_CHUNK_PLAIN).min(plain);
            let t = plain + i * TAG_LEN;
            (s..e, t..(t + TAG_LEN).min(frame.len()))
        })
        .collect()
}

/// A frame built from some of `frame`'s pieces, in the order given.
fn from_pieces(frame: &[u8], order: &[usize]) -> Vec<u8> {
    let p = pieces(frame);
    let mut out: Vec<u8> = order
        .iter()
        .flat_map(|&i| frame[p[i].0.clone()].to_vec())
        .collect();
    for &i in order {
        out.extend_from_slice(&frame[p[i].1.clone()]);
    }
    out
}

/// What an attacker on the path does to the stream of frames.
#[derive(Clone, Debug)]
enum Attack {
    /// Cuts frame `f` in two at an arbitrary byte.
    Split(Index, Index),
    /// Cuts frame `f` where its pieces or its tags begin.
    SplitAtPiece(Index, Index),
    /// Sends each piece of frame `f` as a frame of its own (E_i || T_i).
    PiecesAlone(Index),
    /// Joins frame `f` and the next one.
    Merge(Index),
    /// Leaves out frame `f` (not the last: that is a clean end of stream).
    Drop(Index),
    /// Leaves out one piece of frame `f`.
    DropPiece(Index, Index),
    /// Sends frame `f` again at a later position.
    Duplicate(Index, Index),
    /// Repeats one piece inside frame `f`.
    DuplicatePiece(Index, Index),
    /// Swaps two frames.
    Swap(Index, Index),
    /// Swaps two pieces (ciphertext and tag together) inside frame `f`.
    SwapPieces(Index, Index, Index),
    /// Removes 1.. bytes from the end (or the front) of frame `f`.
    Truncate(Index, Index, bool),
    /// Flips one bit of frame `f`.
    FlipBit(Index, Index, u8),
}

fn attack() -> impl Strategy<Value = Attack> {
    let i = any::<Index>;
    prop_oneof![
        (i(), i()).prop_map(|(a, b)| Attack::Split(a, b)),
        (i(), i()).prop_map(|(a, b)| Attack::SplitAtPiece(a, b)),
        i().prop_map(Attack::PiecesAlone),
        i().prop_map(Attack::Merge),
        i().prop_map(Attack::Drop),
        (i(), i()).prop_map(|(a, b)| Attack::DropPiece(a, b)),
        (i(), i()).prop_map(|(a, b)| Attack::Duplicate(a, b)),
        (i(), i()).prop_map(|(a, b)| Attack::DuplicatePiece(a, b)),
        (i(), i()).prop_map(|(a, b)| Attack::Swap(a, b)),
        (i(), i(), i()).prop_map(|(a, b, c)| Attack::SwapPieces(a, b, c)),
        (i(), i(), any::<bool>()).prop_map(|(a, b, c)| Attack::Truncate(a, b, c)),
        (i(), i(), 0u8..8).prop_map(|(a, b, c)| Attack::FlipBit(a, b, c)),
    ]
}

impl Attack {
    /// Applies the attack; `None` when it does not apply to this stream
    /// (e.g. merging with only one frame left).
    fn apply(&self, frames: &mut Vec<Vec<u8>>) -> Option<()> {
        let len = frames.len();
        if len == 0 {
            return None;
        }
        match self {
            Attack::Split(f, at) => {
                let f = f.index(len);
                let at = at.index(frames[f].len() + 1);
                let tail = frames[f].split_off(at);
                frames.insert(f + 1, tail);
            }
            Attack::SplitAtPiece(f, which) => {
                let f = f.index(len);
                let p = pieces(&frames[f]);
                let mut cuts: Vec<usize> = p.iter().flat_map(|(c, t)| [c.start, t.start]).collect();
                cuts.extend((1..p.len()).map(|i| i * MAX_NOISE_MSG));
                cuts.retain(|&c| c > 0 && c < frames[f].len());
                if cuts.is_empty() {
                    return None;
                }
                let at = cuts[which.index(cuts.len())];
                let tail = frames[f].split_off(at);
                frames.insert(f + 1, tail);
            }
            Attack::PiecesAlone(f) => {
                let f = f.index(len);
                let n = pieces(&frames[f]).len();
                if n < 2 {
                    return None;
                }
                let alone: Vec<Vec<u8>> = (0..n).map(|i| from_pieces(&frames[f], &[i])).collect();
                frames.splice(f..=f, alone);
            }
            Attack::Merge(f) => {
                if len < 2 {
                    return None;
                }
                let f = f.index(len - 1);
                let next = frames.remove(f + 1);
                frames[f].extend(next);
            }
            Attack::Drop(f) => {
                if len < 2 {
                    return None;
                }
                frames.remove(f.index(len - 1));
            }
            Attack::DropPiece(f, i) => {
                let f = f.index(len);
                let n = pieces(&frames[f]).len();
                if n < 2 {
                    return None;
                }
                let skip = i.index(n);
                let keep: Vec<usize> = (0..n).filter(|&k| k != skip).collect();
                frames[f] = from_pieces(&frames[f], &keep);
            }
            Attack::Duplicate(f, to) => {
                let f = f.index(len);
                let to = f + 1 + to.index(len - f);
                let copy = frames[f].clone();
                frames.insert(to, copy);
            }
            Attack::DuplicatePiece(f, i) => {
                let f = f.index(len);
                let n = pieces(&frames[f]).len();
                let dup = i.index(n);
                let mut order: Vec<usize> = (0..n).collect();
                order.insert(dup, dup);
                frames[f] = from_pieces(&frames[f], &order);
            }
            Attack::Swap(a, b) => {
                let (a, b) = (a.index(len), b.index(len));
                if a == b {
                    return None;
                }
                frames.swap(a, b);
            }
            Attack::SwapPieces(f, a, b) => {
                let f = f.index(len);
                let n = pieces(&frames[f]).len();
                let (a, b) = (a.index(n), b.index(n));
                if a == b {
                    return None;
                }
                let mut order: Vec<usize> = (0..n).collect();
                order.swap(a, b);
                frames[f] = from_pieces(&frames[f], &order);
            }
            Attack::Truncate(f, by, front) => {
                let f = f.index(len);
                let l = frames[f].len();
                if l == 0 {
                    return None;
                }
                let by = 1 + by.index(l);
                if *front {
                    frames[f].drain(..by);
                } else {
                    frames[f].truncate(l - by);
                }
            }
            Attack::FlipBit(f, at, bit) => {
                let f = f.index(len);
                if frames[f].is_empty() {
                    return None;
                }
                let at = at.index(frames[f].len());
                frames[f][at] ^= 1 << bit;
            }
        }
        Some(())
    }
}

/// `cases` unless `PROPTEST_CASES` asks for another number. The counts
/// are modest because this crate's tests run unoptimised (the AEAD is
/// monomorphised here, at opt-level 0): about 10 MB sealed per property;
/// `PROPTEST_CASES=2000` runs a longer search.
fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config(48))]

    #[test]
    fn sealed_messages_open_to_exactly_what_was_sent(
        msgs in messages(6, 400 << 10),
        pad in padding(),
        policy in policy(),
        room in any::<bool>(),
    ) {
        let bodies: Vec<Vec<u8>> = msgs.iter().map(|&(n, seed)| body(n, seed)).collect();
        let (mut s, mut r) = endpoints(&pad, policy);
        let frames = seal_all(&mut s, &pad, &bodies, room);
        for (i, (f, b)) in frames.into_iter().zip(&bodies).enumerate() {
            let expect_len = record::sealed_len(pad.padded(RECORD_HEADER + b.len()).max(RECORD_HEADER + b.len()));
            prop_assert_eq!(f.len(), expect_len, "frame {} of a {}-byte message", i, b.len());
            let out = r.open(Message::from(f));
            prop_assert!(out.is_ok(), "message {} ({} bytes) refused: {:?}", i, b.len(), out.err());
            let out = out.expect("checked");
            prop_assert_eq!(out.body().len(), b.len());
            prop_assert!(out.body() == &b[..], "message {} ({} bytes) differs", i, b.len());
        }
    }

}

proptest! {
    #![proptest_config(config(96))]

    #[test]
    fn reframed_records_are_refused_and_never_alter_the_message_stream(
        msgs in messages(4, 200 << 10),
        pad in padding(),
        policy in policy(),
        attacks in proptest::collection::vec(attack(), 1..4),
    ) {
        let bodies: Vec<Vec<u8>> = msgs.iter().map(|&(n, seed)| body(n, seed)).collect();
        let (mut s, _) = endpoints(&pad, policy);
        let sent = seal_all(&mut s, &pad, &bodies, true);
        let mut wire = sent.clone();
        let mut applied = 0;
        for a in &attacks {
            if a.apply(&mut wire).is_some() {
                applied += 1;
            }
        }
        prop_assume!(applied > 0);

        // the pipe's view: frames open until the first bad one, which must
        // be exactly the first frame that is not what the sender sent
        let first_diff = (0..wire.len())
            .find(|&i| sent.get(i) != Some(&wire[i]));
        let (_, mut r) = endpoints(&pad, policy);
        for (i, f) in wire.iter().enumerate() {
            let out = r.open(Message::from(f.clone()));
            if Some(i) == first_diff {
                prop_assert!(out.is_err(), "altered frame {} (of {}) was accepted", i, wire.len());
                break;
            }
            let out = out.map_err(|e| TestCaseError::fail(format!("genuine frame {i} refused: {e}")))?;
            prop_assert!(out.body() == &bodies[i][..], "frame {} opened to another message", i);
        }

        // the receiver alone, fed everything whatever it said: what it
        // accepts is the sent messages, in order, none skipped or repeated
        let (_, mut r) = endpoints(&pad, policy);
        let mut next = 0;
        for f in &wire {
            if let Ok(m) = r.open(Message::from(f.clone())) {
                prop_assert!(next < bodies.len(), "accepted more messages than were sent");
                prop_assert!(m.body() == &bodies[next][..], "accepted message {} differs", next);
                next += 1;
            }
        }
    }
}

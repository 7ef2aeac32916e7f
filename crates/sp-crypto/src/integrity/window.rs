//! Replay detection: a sliding bitmap over sequence numbers per (signer,
//! epoch), in the style of WireGuard / RFC 6479.
//!
//! # Clocks
//!
//! Nothing here reads the wall clock. Freshness (is a timestamp within
//! `max_age`?) has to compare the sender's wall clock with ours and is
//! checked before this; whether a window may be *forgotten* is decided on
//! the local monotonic clock only, so a wall clock that steps (forwards or
//! back, here or at the sender) can neither make a live epoch look dead nor
//! keep a dead one alive:
//!
//! * an epoch is forgotten only when it has been silent for `forget_after`
//!   of monotonic time and its room is needed;
//! * its id and the newest timestamp accepted from it are kept in a bounded
//!   list of forgotten epochs; a later message of that epoch dated no later
//!   than that is refused (it is a replay, or its sender's clock stepped
//!   back during the silence), one dated later starts a new window that
//!   refuses the same dates;
//! * an honest sender is never locked out for good: a new epoch (restart)
//!   gets in once some epoch has been silent for `forget_after`, and a
//!   forgotten epoch's sender whose clock stepped back gets in again once
//!   its clock passes where it was.
//!
//! What stays open is a double fault: an epoch that fell off the bounded
//! list of forgotten epochs (more than [`FORGOTTEN`] newer ones were
//! forgotten for the same signer) *and* a receiver wall clock stepped back
//! to when that epoch spoke.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

/// Width of the window: a sequence number more than this far below the
/// highest seen from the same (signer, epoch) is refused as a replay (it
/// cannot be told apart from one). Contexts of one sender share its
/// sequence, so reordering across them must stay within this many messages.
pub const WINDOW: u64 = 1024;

/// Forgotten epochs remembered per signer (id and newest timestamp, 16
/// bytes each).
pub const FORGOTTEN: usize = 256;

const WORDS: usize = (WINDOW / 64) as usize;

/// Seen sequence numbers of one (signer, epoch). Bit `i` stands for
/// `highest - i`.
#[derive(Clone, Debug)]
struct Window {
    highest: u64,
    bits: [u64; WORDS],
    /// Newest timestamp (sender's clock) accepted in this epoch: kept when
    /// the epoch is forgotten.
    max_ts: u64,
    /// Monotonic time of the last accepted message.
    last_seen: Duration,
    /// Messages dated no later than this are refused: the epoch was
    /// forgotten once, and everything it sent up to then may have been seen.
    floor: Option<u64>,
}

impl Window {
    fn new(seq: u64, ts: u64, now: Duration, floor: Option<u64>) -> Window {
        let mut bits = [0u64; WORDS];
        bits[0] = 1;
        Window {
            highest: seq,
            bits,
            max_ts: ts,
            last_seen: now,
            floor,
        }
    }

    fn bit(&self, i: u64) -> bool {
        self.bits[(i / 64) as usize] & (1 << (i % 64)) != 0
    }

    fn set(&mut self, i: u64) {
        self.bits[(i / 64) as usize] |= 1 << (i % 64);
    }

    /// Moves the window up by `k` (index i becomes i + k).
    fn shift(&mut self, k: u64) {
        if k >= WINDOW {
            self.bits = [0; WORDS];
            return;
        }
        let (w, b) = ((k / 64) as usize, (k % 64) as u32);
        for i in (0..WORDS).rev() {
            let lo = if i >= w { self.bits[i - w] } else { 0 };
            let carry = if b > 0 && i > w {
                self.bits[i - w - 1] >> (64 - b)
            } else {
                0
            };
            self.bits[i] = if b > 0 { (lo << b) | carry } else { lo };
        }
    }

    /// Accepts `seq` once.
    fn accept(&mut self, seq: u64, ts: u64, now: Duration) -> Result<(), Refusal> {
        if self.floor.is_some_and(|f| ts <= f) {
            return Err(Refusal::Forgotten);
        }
        if seq > self.highest {
            self.shift(seq - self.highest);
            self.highest = seq;
            self.set(0);
        } else {
            let d = self.highest - seq;
            if d >= WINDOW || self.bit(d) {
                return Err(Refusal::Seen);
            }
            self.set(d);
        }
        self.max_ts = self.max_ts.max(ts);
        self.last_seen = self.last_seen.max(now);
        Ok(())
    }
}

/// Why [`ReplayGuard::accept`] refused a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Seen before, or too far below the window to tell.
    Seen,
    /// Of an epoch that was forgotten, and dated no later than the newest
    /// message accepted from it: possibly seen.
    Forgotten,
    /// The signer has `max_epochs` epochs, none silent long enough to be
    /// forgotten.
    TooManyEpochs,
}

#[derive(Debug, Default)]
struct SignerState {
    epochs: Vec<(u64, Window)>,
    /// (epoch, newest timestamp accepted from it), oldest first.
    forgotten: VecDeque<(u64, u64)>,
}

/// Replay state of a whole socket: per trusted signer, a bounded set of
/// epochs, each with its window. Only messages whose signature verified
/// reach it, so the number of signers is bounded by the trusted set.
#[derive(Debug)]
pub struct ReplayGuard {
    max_epochs: usize,
    forget_after: Duration,
    signers: HashMap<[u8; 32], SignerState>,
}

impl ReplayGuard {
    /// A guard keeping at most `max_epochs` (>= 1) epochs per signer, and
    /// forgetting one only after `forget_after` of monotonic silence. That
    /// must exceed the longest a message can stay fresh (`max_age` plus
    /// the allowed skew), so that a forgotten epoch's messages are stale by
    /// then unless a wall clock stepped.
    pub fn new(max_epochs: usize, forget_after: Duration) -> ReplayGuard {
        ReplayGuard {
            max_epochs: max_epochs.max(1),
            forget_after,
            signers: HashMap::new(),
        }
    }

    /// Records (signer, epoch, seq) if new. `ts` is the message's signed
    /// timestamp (already checked for freshness), `now` the local monotonic
    /// time.
    pub fn accept(
        &mut self,
        key_id: &[u8; 32],
        epoch: u64,
        seq: u64,
        ts: u64,
        now: Duration,
    ) -> Result<(), Refusal> {
        let st = self.signers.entry(*key_id).or_default();
        if let Some((_, w)) = st.epochs.iter_mut().find(|(e, _)| *e == epoch) {
            return w.accept(seq, ts, now);
        }
        let floor = match st.forgotten.iter().position(|(e, _)| *e == epoch) {
            Some(i) => {
                let hi = st.forgotten[i].1;
                if ts <= hi {
                    return Err(Refusal::Forgotten);
                }
                Some(hi)
            }
            None => None,
        };
        if st.epochs.len() >= self.max_epochs {
            // the epoch silent longest, if it has been silent long enough
            let Some((i, _)) = st
                .epochs
                .iter()
                .enumerate()
                .min_by_key(|(_, (_, w))| w.last_seen)
            else {
                return Err(Refusal::TooManyEpochs);
            };
            if now.saturating_sub(st.epochs[i].1.last_seen) < self.forget_after {
                return Err(Refusal::TooManyEpochs);
            }
            let (old, w) = st.epochs.swap_remove(i);
            // a window recreated after being forgotten already carries the
            // older floor in its max_ts (it only accepts later dates)
            st.forgotten.retain(|(e, _)| *e != old);
            if st.forgotten.len() >= FORGOTTEN {
                st.forgotten.pop_front();
            }
            st.forgotten.push_back((old, w.max_ts));
        }
        if floor.is_some() {
            st.forgotten.retain(|(e, _)| *e != epoch);
        }
        st.epochs.push((epoch, Window::new(seq, ts, now, floor)));
        Ok(())
    }

    /// Epochs tracked for a signer.
    #[cfg(test)]
    pub fn epochs(&self, key_id: &[u8; 32]) -> usize {
        self.signers.get(key_id).map_or(0, |s| s.epochs.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: [u8; 32] = [7; 32];
    const T0: Duration = Duration::from_secs(1000);
    const FORGET: Duration = Duration::from_secs(40);

    fn secs(s: u64) -> Duration {
        T0 + Duration::from_secs(s)
    }

    #[test]
    fn in_order_out_of_order_duplicates_and_too_old() {
        let mut g = ReplayGuard::new(4, FORGET);
        assert_eq!(g.accept(&K, 1, 0, 0, T0), Ok(()));
        assert_eq!(g.accept(&K, 1, 1, 0, T0), Ok(()));
        assert_eq!(g.accept(&K, 1, 1, 0, T0), Err(Refusal::Seen));
        assert_eq!(g.accept(&K, 1, 5, 0, T0), Ok(()));
        assert_eq!(g.accept(&K, 1, 3, 0, T0), Ok(()), "late but in window");
        assert_eq!(g.accept(&K, 1, 3, 0, T0), Err(Refusal::Seen));
        assert_eq!(g.accept(&K, 1, 0, 0, T0), Err(Refusal::Seen));
        // jump far ahead: everything at or below the bottom edge is refused
        assert_eq!(g.accept(&K, 1, 5 + WINDOW, 0, T0), Ok(()));
        assert_eq!(g.accept(&K, 1, 5, 0, T0), Err(Refusal::Seen), "window edge");
        assert_eq!(g.accept(&K, 1, 6, 0, T0), Ok(()), "just inside the window");
        assert_eq!(g.accept(&K, 1, 6, 0, T0), Err(Refusal::Seen));
        // another epoch is independent
        assert_eq!(g.accept(&K, 2, 1, 0, T0), Ok(()));
    }

    #[test]
    fn shifts_by_every_amount_keep_exactly_the_seen_bits() {
        for k in [1u64, 2, 63, 64, 65, 127, 128, 500, 1023, 1024, 5000] {
            let mut g = ReplayGuard::new(1, FORGET);
            for s in [0u64, 2, 10, 64, 70] {
                assert_eq!(g.accept(&K, 9, s, 0, T0), Ok(()));
            }
            let top = 70 + k;
            assert_eq!(g.accept(&K, 9, top, 0, T0), Ok(()));
            for s in 0..top {
                let seen = [0u64, 2, 10, 64, 70].contains(&s);
                let in_window = top - s < WINDOW;
                let r = g.accept(&K, 9, s, 0, T0);
                if seen || !in_window {
                    assert_eq!(r, Err(Refusal::Seen), "k={k} s={s}");
                } else {
                    assert_eq!(r, Ok(()), "k={k} s={s}");
                }
            }
        }
    }

    #[test]
    fn epochs_are_bounded_and_only_silent_ones_are_forgotten() {
        let mut g = ReplayGuard::new(2, FORGET);
        assert_eq!(g.accept(&K, 1, 0, 100, secs(0)), Ok(()));
        assert_eq!(g.accept(&K, 2, 0, 200, secs(10)), Ok(()));
        // neither has been silent for 40 s: a third epoch waits
        assert_eq!(
            g.accept(&K, 3, 0, 300, secs(39)),
            Err(Refusal::TooManyEpochs)
        );
        assert_eq!(g.epochs(&K), 2);
        // epoch 1 has: it is forgotten, the silent-longest first
        assert_eq!(g.accept(&K, 3, 0, 300, secs(40)), Ok(()));
        assert_eq!(g.epochs(&K), 2);
        assert_eq!(g.accept(&K, 2, 0, 200, secs(40)), Err(Refusal::Seen));
        // a message keeps its epoch alive, whatever its timestamp says
        assert_eq!(g.accept(&K, 2, 1, 0, secs(75)), Ok(()));
        // epoch 3 spoke 41 s ago, epoch 2 only 6 s ago: 3 makes room
        assert_eq!(g.accept(&K, 4, 0, 400, secs(81)), Ok(()));
        assert_eq!(g.accept(&K, 2, 1, 0, secs(81)), Err(Refusal::Seen));
        assert_eq!(g.accept(&K, 3, 0, 300, secs(81)), Err(Refusal::Forgotten));
    }

    #[test]
    fn a_forgotten_epoch_refuses_what_it_may_have_sent_and_takes_what_is_newer() {
        let mut g = ReplayGuard::new(1, FORGET);
        for s in 0..5 {
            assert_eq!(g.accept(&K, 1, s, 1_000 + s, secs(0)), Ok(()));
        }
        // epoch 2 pushes epoch 1 out after its silence
        assert_eq!(g.accept(&K, 2, 0, 9_000, secs(50)), Ok(()));
        // replays of epoch 1 (any seq, the window is gone) are refused by date
        for s in 0..5 {
            assert_eq!(
                g.accept(&K, 1, s, 1_000 + s, secs(100)),
                Err(Refusal::Forgotten)
            );
        }
        // a later message of epoch 1 (its sender was only silent) comes in,
        // once epoch 2 has been silent long enough to make room
        assert_eq!(g.accept(&K, 1, 5, 1_010, secs(100)), Ok(()));
        // the recreated window still refuses the old dates, with new seqs too
        assert_eq!(
            g.accept(&K, 1, 3, 1_003, secs(100)),
            Err(Refusal::Forgotten)
        );
        assert_eq!(
            g.accept(&K, 1, 2_000, 1_004, secs(100)),
            Err(Refusal::Forgotten)
        );
        assert_eq!(g.accept(&K, 1, 5, 1_010, secs(100)), Err(Refusal::Seen));
        assert_eq!(g.accept(&K, 1, 6, 1_011, secs(100)), Ok(()));
    }

    #[test]
    fn forgotten_epochs_are_bounded() {
        let mut g = ReplayGuard::new(1, FORGET);
        let n = FORGOTTEN as u64 + 10;
        for e in 0..n {
            let now = secs(e * 41);
            assert_eq!(g.accept(&K, e, 0, e, now), Ok(()), "epoch {e}");
        }
        let st = &g.signers[&K];
        assert_eq!(st.epochs.len(), 1);
        assert_eq!(st.forgotten.len(), FORGOTTEN);
        // the newest forgotten ones are still refused
        let last_forgotten = n - 2;
        assert_eq!(
            g.accept(&K, last_forgotten, 0, last_forgotten, secs(n * 41)),
            Err(Refusal::Forgotten)
        );
    }
}

//! Replay detection: a sliding bitmap over sequence numbers per (signer,
//! epoch), in the style of WireGuard / RFC 6479.

use std::collections::HashMap;

/// Width of the window: a sequence number more than this far below the
/// highest seen from the same (signer, epoch) is refused as a replay (it
/// cannot be told apart from one). Contexts of one sender share its
/// sequence, so reordering across them must stay within this many messages.
pub const WINDOW: u64 = 1024;

const WORDS: usize = (WINDOW / 64) as usize;

/// Seen sequence numbers of one (signer, epoch). Bit `i` stands for
/// `highest - i`.
#[derive(Clone, Debug)]
struct Window {
    highest: u64,
    bits: [u64; WORDS],
    /// Largest timestamp accepted in this epoch: once it is older than the
    /// freshness limit, no message of the epoch can pass again, so the
    /// window may be forgotten without opening a replay.
    max_ts: u64,
}

impl Window {
    fn new(seq: u64, ts: u64) -> Window {
        let mut bits = [0u64; WORDS];
        bits[0] = 1;
        Window {
            highest: seq,
            bits,
            max_ts: ts,
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

    /// Accepts `seq` once; false for a repeat or one below the window.
    fn accept(&mut self, seq: u64, ts: u64) -> bool {
        if seq > self.highest {
            self.shift(seq - self.highest);
            self.highest = seq;
            self.set(0);
        } else {
            let d = self.highest - seq;
            if d >= WINDOW || self.bit(d) {
                return false;
            }
            self.set(d);
        }
        self.max_ts = self.max_ts.max(ts);
        true
    }
}

/// Why [`ReplayGuard::accept`] refused a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Seen before, or too far below the window to tell.
    Seen,
    /// The signer has `max_epochs` epochs whose messages could still be
    /// fresh; a new one would force forgetting one of them.
    TooManyEpochs,
}

/// Replay state of a whole socket: per trusted signer, a bounded set of
/// epochs, each with its window. Only messages whose signature verified
/// reach it, so the number of signers is bounded by the trusted set.
#[derive(Debug)]
pub struct ReplayGuard {
    max_epochs: usize,
    signers: HashMap<[u8; 32], Vec<(u64, Window)>>,
}

impl ReplayGuard {
    /// A guard keeping at most `max_epochs` (>= 1) epochs per signer.
    pub fn new(max_epochs: usize) -> ReplayGuard {
        ReplayGuard {
            max_epochs: max_epochs.max(1),
            signers: HashMap::new(),
        }
    }

    /// Records (signer, epoch, seq) if new. `forget_before`: an epoch whose
    /// newest accepted timestamp is below this can never pass the
    /// freshness check again and may be evicted to make room.
    pub fn accept(
        &mut self,
        key_id: &[u8; 32],
        epoch: u64,
        seq: u64,
        ts: u64,
        forget_before: u64,
    ) -> Result<(), Refusal> {
        let epochs = self.signers.entry(*key_id).or_default();
        if let Some((_, w)) = epochs.iter_mut().find(|(e, _)| *e == epoch) {
            return if w.accept(seq, ts) {
                Ok(())
            } else {
                Err(Refusal::Seen)
            };
        }
        if epochs.len() >= self.max_epochs {
            // evict the stalest epoch, but only if nothing of it can be fresh
            let Some((i, _)) = epochs.iter().enumerate().min_by_key(|(_, (_, w))| w.max_ts) else {
                return Err(Refusal::TooManyEpochs);
            };
            if epochs[i].1.max_ts >= forget_before {
                return Err(Refusal::TooManyEpochs);
            }
            epochs.swap_remove(i);
        }
        epochs.push((epoch, Window::new(seq, ts)));
        Ok(())
    }

    /// Epochs tracked for a signer.
    #[cfg(test)]
    pub fn epochs(&self, key_id: &[u8; 32]) -> usize {
        self.signers.get(key_id).map_or(0, Vec::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: [u8; 32] = [7; 32];

    #[test]
    fn in_order_out_of_order_duplicates_and_too_old() {
        let mut g = ReplayGuard::new(4);
        assert_eq!(g.accept(&K, 1, 0, 0, 0), Ok(()));
        assert_eq!(g.accept(&K, 1, 1, 0, 0), Ok(()));
        assert_eq!(g.accept(&K, 1, 1, 0, 0), Err(Refusal::Seen));
        assert_eq!(g.accept(&K, 1, 5, 0, 0), Ok(()));
        assert_eq!(g.accept(&K, 1, 3, 0, 0), Ok(()), "late but in window");
        assert_eq!(g.accept(&K, 1, 3, 0, 0), Err(Refusal::Seen));
        assert_eq!(g.accept(&K, 1, 0, 0, 0), Err(Refusal::Seen));
        // jump far ahead: everything at or below the bottom edge is refused
        assert_eq!(g.accept(&K, 1, 5 + WINDOW, 0, 0), Ok(()));
        assert_eq!(g.accept(&K, 1, 5, 0, 0), Err(Refusal::Seen), "window edge");
        assert_eq!(g.accept(&K, 1, 6, 0, 0), Ok(()), "just inside the window");
        assert_eq!(g.accept(&K, 1, 6, 0, 0), Err(Refusal::Seen));
        // another epoch is independent
        assert_eq!(g.accept(&K, 2, 1, 0, 0), Ok(()));
    }

    #[test]
    fn shifts_by_every_amount_keep_exactly_the_seen_bits() {
        for k in [1u64, 2, 63, 64, 65, 127, 128, 500, 1023, 1024, 5000] {
            let mut g = ReplayGuard::new(1);
            for s in [0u64, 2, 10, 64, 70] {
                assert_eq!(g.accept(&K, 9, s, 0, 0), Ok(()));
            }
            let top = 70 + k;
            assert_eq!(g.accept(&K, 9, top, 0, 0), Ok(()));
            for s in 0..top {
                let seen = [0u64, 2, 10, 64, 70].contains(&s);
                let in_window = top - s < WINDOW;
                let r = g.accept(&K, 9, s, 0, 0);
                if seen || !in_window {
                    assert_eq!(r, Err(Refusal::Seen), "k={k} s={s}");
                } else {
                    assert_eq!(r, Ok(()), "k={k} s={s}");
                }
            }
        }
    }

    #[test]
    fn epochs_are_bounded_and_only_stale_ones_are_forgotten() {
        let mut g = ReplayGuard::new(2);
        assert_eq!(g.accept(&K, 1, 0, 100, 0), Ok(()));
        assert_eq!(g.accept(&K, 2, 0, 200, 0), Ok(()));
        // both epochs may still be fresh (forget_before = 50): refuse a third
        assert_eq!(g.accept(&K, 3, 0, 300, 50), Err(Refusal::TooManyEpochs));
        assert_eq!(g.epochs(&K), 2);
        // epoch 1's newest message (ts 100) is now stale: it is evicted
        assert_eq!(g.accept(&K, 3, 0, 300, 150), Ok(()));
        assert_eq!(g.epochs(&K), 2);
        assert_eq!(g.accept(&K, 2, 0, 200, 150), Err(Refusal::Seen));
    }
}

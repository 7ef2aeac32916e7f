//! The receiving socket's memory of one sending socket's messages: which
//! sequence numbers are here but not yet taken (pending, and on which
//! pipe), which were taken (delivered), and which copies wait for the
//! first copy's fate. No I/O; the pipes act on what it answers.
//!
//! A message reaches a socket twice when the pipe it first came on died
//! before the sender heard the acknowledgement: the sender hands it back
//! and it comes again on another pipe. If the first copy was taken, the
//! second is dropped and acknowledged at once. If the first copy is still
//! in the receive queue, the second is parked: dropped and acknowledged
//! when the first is taken, promoted in its place if the first is lost (its
//! pipe broke before the copy reached the queue).

use std::collections::{HashMap, VecDeque};

/// A pipe, as this socket's `ack/1` layer numbers them.
pub(crate) type PipeKey = u64;

/// Parked copies per sequence number at most; more is a peer replaying
/// a number on purpose, and the extra copies are acknowledged unread.
const MAX_WAITERS: usize = 8;

/// What to do with a message that arrived.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Arrival {
    /// First copy: deliver it.
    New,
    /// Already taken: drop it, acknowledge it now.
    Taken,
    /// The first copy is still here: park this one.
    Park,
}

#[derive(Debug)]
enum Seq {
    Pending {
        owner: PipeKey,
        /// Parked copies: (pipe, that pipe's message index).
        waiters: Vec<(PipeKey, u64)>,
    },
    Delivered,
}

/// One sender's window.
#[derive(Debug)]
pub(crate) struct Window {
    seqs: HashMap<u64, Seq>,
    delivered: VecDeque<u64>,
    cap: usize,
    /// Taken numbers forgotten to keep the window bounded.
    pub(crate) forgotten: u64,
}

impl Window {
    /// Remembers the last `cap` numbers taken (at least 1).
    pub(crate) fn new(cap: usize) -> Window {
        Window {
            seqs: HashMap::new(),
            delivered: VecDeque::new(),
            cap: cap.max(1),
            forgotten: 0,
        }
    }

    /// Message `seq` arrived on `pipe` as that pipe's message `index`.
    pub(crate) fn arrive(&mut self, seq: u64, pipe: PipeKey, index: u64) -> Arrival {
        match self.seqs.get_mut(&seq) {
            None => {
                self.seqs.insert(
                    seq,
                    Seq::Pending {
                        owner: pipe,
                        waiters: Vec::new(),
                    },
                );
                Arrival::New
            }
            Some(Seq::Delivered) => Arrival::Taken,
            Some(Seq::Pending { waiters, .. }) => {
                if waiters.len() >= MAX_WAITERS {
                    return Arrival::Taken;
                }
                waiters.push((pipe, index));
                Arrival::Park
            }
        }
    }

    /// The copy of `seq` that `pipe` delivered was taken. Returns the parked
    /// copies, to drop and acknowledge.
    pub(crate) fn settle(&mut self, seq: u64, pipe: PipeKey) -> Vec<(PipeKey, u64)> {
        let waiters = match self.seqs.insert(seq, Seq::Delivered) {
            Some(Seq::Pending { owner, waiters }) if owner == pipe => waiters,
            Some(Seq::Pending { owner, waiters }) => {
                // not the owner's copy (cannot happen): keep the entry as it was
                self.seqs.insert(seq, Seq::Pending { owner, waiters });
                return Vec::new();
            }
            Some(Seq::Delivered) => return Vec::new(),
            None => Vec::new(),
        };
        self.delivered.push_back(seq);
        while self.delivered.len() > self.cap {
            if let Some(old) = self.delivered.pop_front() {
                if matches!(self.seqs.get(&old), Some(Seq::Delivered)) {
                    self.seqs.remove(&old);
                    self.forgotten += 1;
                }
            }
        }
        waiters
    }

    /// `pipe`'s copy of `seq` will never be taken (its pipe broke before
    /// the copy reached the receive queue, or the socket discarded it).
    /// Returns the parked copy to deliver instead, if there is one.
    pub(crate) fn abandon(&mut self, seq: u64, pipe: PipeKey) -> Option<(PipeKey, u64)> {
        let Some(Seq::Pending { owner, waiters }) = self.seqs.get_mut(&seq) else {
            return None;
        };
        if *owner != pipe {
            return None;
        }
        if waiters.is_empty() {
            self.seqs.remove(&seq);
            return None;
        }
        let next = waiters.remove(0);
        *owner = next.0;
        Some(next)
    }

    /// `pipe`'s parked copy of `seq` is gone with its pipe.
    pub(crate) fn unpark(&mut self, seq: u64, pipe: PipeKey, index: u64) {
        if let Some(Seq::Pending { waiters, .. }) = self.seqs.get_mut(&seq) {
            waiters.retain(|w| *w != (pipe, index));
        }
    }

    /// Numbers remembered (pending and taken).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.seqs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_of_a_taken_message_is_dropped() {
        let mut w = Window::new(16);
        assert_eq!(w.arrive(5, 1, 0), Arrival::New);
        assert!(w.settle(5, 1).is_empty());
        assert_eq!(w.arrive(5, 2, 0), Arrival::Taken);
        assert_eq!(w.arrive(6, 2, 1), Arrival::New);
    }

    #[test]
    fn a_copy_of_a_pending_message_waits_for_the_first() {
        let mut w = Window::new(16);
        assert_eq!(w.arrive(5, 1, 3), Arrival::New);
        assert_eq!(w.arrive(5, 2, 0), Arrival::Park);
        assert_eq!(w.settle(5, 1), vec![(2, 0)]);
        assert_eq!(w.arrive(5, 3, 0), Arrival::Taken);
    }

    #[test]
    fn a_lost_first_copy_promotes_the_parked_one() {
        let mut w = Window::new(16);
        assert_eq!(w.arrive(5, 1, 3), Arrival::New);
        assert_eq!(w.arrive(5, 2, 0), Arrival::Park);
        assert_eq!(w.arrive(5, 3, 9), Arrival::Park);
        assert_eq!(w.abandon(5, 1), Some((2, 0)));
        // the promoted copy owns it now: its settle releases the other
        assert!(w.abandon(5, 1).is_none(), "no longer pipe 1's");
        assert_eq!(w.settle(5, 2), vec![(3, 9)]);
    }

    #[test]
    fn a_lost_copy_with_nobody_waiting_is_forgotten() {
        let mut w = Window::new(16);
        w.arrive(5, 1, 0);
        assert_eq!(w.abandon(5, 1), None);
        assert_eq!(w.len(), 0);
        assert_eq!(w.arrive(5, 2, 0), Arrival::New, "a resend is welcome");
    }

    #[test]
    fn an_unparked_copy_is_not_promoted() {
        let mut w = Window::new(16);
        w.arrive(5, 1, 0);
        assert_eq!(w.arrive(5, 2, 4), Arrival::Park);
        w.unpark(5, 2, 4);
        assert_eq!(w.abandon(5, 1), None);
    }

    #[test]
    fn the_window_is_bounded_and_counts_what_it_forgets() {
        let mut w = Window::new(4);
        for s in 0..10 {
            w.arrive(s, 1, s);
            w.settle(s, 1);
        }
        assert_eq!(w.len(), 4);
        assert_eq!(w.forgotten, 6);
        assert_eq!(w.arrive(9, 2, 0), Arrival::Taken);
        assert_eq!(
            w.arrive(0, 2, 1),
            Arrival::New,
            "forgotten: delivered again"
        );
    }

    #[test]
    fn a_replayed_number_parks_a_bounded_number_of_copies() {
        let mut w = Window::new(4);
        w.arrive(1, 1, 0);
        for i in 0..MAX_WAITERS as u64 {
            assert_eq!(w.arrive(1, 2, i), Arrival::Park);
        }
        assert_eq!(w.arrive(1, 2, 99), Arrival::Taken);
    }
}

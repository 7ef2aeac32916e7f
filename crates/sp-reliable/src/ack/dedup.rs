//! The receiving socket's memory of one sending socket's messages: which
//! number came on which pipe, which copies wait for a first copy's fate.
//! No I/O; the pipes act on what it answers.
//!
//! A message reaches a socket twice when the pipe it first came on died
//! before the sender heard the acknowledgement: the sender hands it back and
//! it comes again on another pipe — or, when a partition heals, the first
//! copy comes after the second. Every arrival is recorded (number → the
//! pipe and index it came as), by the pipe's reader; whether that copy was
//! taken is the pipe's own business (its acknowledgement count), asked only
//! when a copy shows up. So the application's side, which settles every
//! message, never touches this. If the first copy was taken, the next is
//! dropped and acknowledged at once; if it is still in the receive queue,
//! the next is parked: dropped and acknowledged when the first is taken,
//! promoted in its place if the first is lost (its pipe broke before the
//! copy reached the queue).

use std::collections::HashMap;

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

/// What the pipe a copy came on says of it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Fate {
    /// Taken (or used or dropped by the protocol).
    Taken,
    /// Still in the socket.
    Queued,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Seen {
    /// Came on this pipe as its message `index`.
    Arrived { pipe: PipeKey, index: u64 },
    /// Taken, on a pipe gone since.
    Taken,
}

/// A number whose first copy is queued here while copies wait.
#[derive(Debug)]
struct Waiting {
    owner: PipeKey,
    /// Parked copies: (pipe, that pipe's message index).
    waiters: Vec<(PipeKey, u64)>,
}

/// One sender's window.
#[derive(Debug)]
pub(crate) struct Window {
    /// The newer half and the older; when the newer fills the older is
    /// forgotten (no removal per message).
    seen: [HashMap<u64, Seen>; 2],
    half: usize,
    waiting: HashMap<u64, Waiting>,
    /// Numbers forgotten to keep the window bounded.
    pub(crate) forgotten: u64,
}

impl Window {
    /// Remembers between `cap / 2` and `cap` of the last numbers that came.
    pub(crate) fn new(cap: usize) -> Window {
        Window {
            seen: [HashMap::new(), HashMap::new()],
            half: (cap / 2).max(1),
            waiting: HashMap::new(),
            forgotten: 0,
        }
    }

    fn get(&self, seq: u64) -> Option<Seen> {
        self.seen[0]
            .get(&seq)
            .or_else(|| self.seen[1].get(&seq))
            .copied()
    }

    fn set(&mut self, seq: u64, s: Seen) {
        if let Some(v) = self.seen[0].get_mut(&seq) {
            *v = s;
            return;
        }
        if let Some(v) = self.seen[1].get_mut(&seq) {
            *v = s;
            return;
        }
        if self.seen[0].len() >= self.half {
            self.forgotten += self.seen[1].len() as u64;
            let [newer, older] = &mut self.seen;
            std::mem::swap(newer, older);
            newer.clear();
        }
        self.seen[0].insert(seq, s);
    }

    fn remove(&mut self, seq: u64) {
        if self.seen[0].remove(&seq).is_none() {
            self.seen[1].remove(&seq);
        }
    }

    /// Message `seq` arrived on `pipe` as its message `index`. `fate` asks
    /// the pipe an earlier copy came on whether it was taken (`None`: that
    /// pipe is going, and will settle the question itself). Two lookups for
    /// a first copy, the usual case.
    pub(crate) fn arrive(
        &mut self,
        seq: u64,
        pipe: PipeKey,
        index: u64,
        fate: impl FnOnce(PipeKey, u64) -> Option<Fate>,
    ) -> Arrival {
        if !self.waiting.is_empty() {
            if let Some(w) = self.waiting.get_mut(&seq) {
                if w.waiters.len() >= MAX_WAITERS {
                    return Arrival::Taken;
                }
                w.waiters.push((pipe, index));
                return Arrival::Park;
            }
        }
        if self.seen[0].len() >= self.half {
            self.forgotten += self.seen[1].len() as u64;
            let [newer, older] = &mut self.seen;
            std::mem::swap(newer, older);
            newer.clear();
        }
        let earlier = match self.seen[1].get(&seq) {
            Some(s) => *s,
            None => match self.seen[0].entry(seq) {
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(Seen::Arrived { pipe, index });
                    return Arrival::New;
                }
                std::collections::hash_map::Entry::Occupied(o) => *o.get(),
            },
        };
        match earlier {
            Seen::Taken => Arrival::Taken,
            Seen::Arrived {
                pipe: owner,
                index: at,
            } => match fate(owner, at) {
                Some(Fate::Taken) => {
                    self.set(seq, Seen::Taken);
                    Arrival::Taken
                }
                Some(Fate::Queued) | None => {
                    self.waiting.insert(
                        seq,
                        Waiting {
                            owner,
                            waiters: vec![(pipe, index)],
                        },
                    );
                    Arrival::Park
                }
            },
        }
    }

    /// The copy of `seq` that `pipe` delivered was taken and copies wait
    /// for it: returns them, to drop and acknowledge.
    pub(crate) fn settle(&mut self, seq: u64, pipe: PipeKey) -> Vec<(PipeKey, u64)> {
        match self.waiting.remove(&seq) {
            Some(w) if w.owner == pipe => {
                self.set(seq, Seen::Taken);
                w.waiters
            }
            // not the first copy's pipe (cannot happen): keep it waiting
            Some(w) => {
                self.waiting.insert(seq, w);
                Vec::new()
            }
            None => Vec::new(),
        }
    }

    /// True when copies wait for `seq`.
    #[cfg(test)]
    fn awaited(&self, seq: u64) -> bool {
        !self.waiting.is_empty() && self.waiting.contains_key(&seq)
    }

    /// `pipe`'s copy of `seq` will never be taken (its pipe broke before
    /// the copy reached the receive queue, or the socket discarded it).
    /// Returns the parked copy to deliver instead, if there is one.
    pub(crate) fn abandon(&mut self, seq: u64, pipe: PipeKey) -> Option<(PipeKey, u64)> {
        let Some(w) = self.waiting.get_mut(&seq) else {
            if matches!(self.get(seq), Some(Seen::Arrived { pipe: p, .. }) if p == pipe) {
                // a resend is welcome
                self.remove(seq);
            }
            return None;
        };
        if w.owner != pipe {
            return None;
        }
        if w.waiters.is_empty() {
            self.waiting.remove(&seq);
            self.remove(seq);
            return None;
        }
        let next = w.waiters.remove(0);
        w.owner = next.0;
        self.set(
            seq,
            Seen::Arrived {
                pipe: next.0,
                index: next.1,
            },
        );
        Some(next)
    }

    /// `pipe`'s parked copy of `seq` is gone with its pipe.
    pub(crate) fn unpark(&mut self, seq: u64, pipe: PipeKey, index: u64) {
        if let Some(w) = self.waiting.get_mut(&seq) {
            w.waiters.retain(|x| *x != (pipe, index));
        }
    }

    /// `pipe` is gone: what it took stays known as taken (and the copies
    /// waiting for those are returned, to drop and acknowledge); the
    /// numbers it never settled are returned too, to abandon.
    pub(crate) fn retire(
        &mut self,
        pipe: PipeKey,
        taken: impl Fn(u64) -> bool,
    ) -> (Vec<u64>, Vec<(PipeKey, u64)>) {
        let (mut lost, mut done) = (Vec::new(), Vec::new());
        for gen in &mut self.seen {
            for (seq, s) in gen.iter_mut() {
                if let Seen::Arrived { pipe: p, index } = *s {
                    if p == pipe {
                        if taken(index) {
                            *s = Seen::Taken;
                            done.push(*seq);
                        } else {
                            lost.push(*seq);
                        }
                    }
                }
            }
        }
        let mut copies = Vec::new();
        if !self.waiting.is_empty() {
            for seq in done {
                if self.waiting.get(&seq).is_some_and(|w| w.owner == pipe) {
                    if let Some(w) = self.waiting.remove(&seq) {
                        copies.extend(w.waiters);
                    }
                }
            }
        }
        (lost, copies)
    }

    /// Numbers remembered.
    #[cfg(test)]
    fn remembered(&self) -> usize {
        self.seen[0].len() + self.seen[1].len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queued(_: PipeKey, _: u64) -> Option<Fate> {
        Some(Fate::Queued)
    }
    fn taken(_: PipeKey, _: u64) -> Option<Fate> {
        Some(Fate::Taken)
    }
    fn unasked(_: PipeKey, _: u64) -> Option<Fate> {
        panic!("nothing to ask")
    }

    #[test]
    fn a_copy_of_a_taken_message_is_dropped_in_either_order() {
        let mut w = Window::new(16);
        assert_eq!(w.arrive(5, 1, 0, unasked), Arrival::New);
        assert_eq!(
            w.arrive(5, 2, 0, |p, i| {
                assert_eq!((p, i), (1, 0), "asks the first copy's pipe");
                Some(Fate::Taken)
            }),
            Arrival::Taken
        );
        // once known taken, the pipe is not asked again
        assert_eq!(w.arrive(5, 3, 0, unasked), Arrival::Taken);
        assert_eq!(w.arrive(6, 2, 1, unasked), Arrival::New);
    }

    #[test]
    fn a_copy_of_a_queued_message_waits_for_the_first() {
        let mut w = Window::new(16);
        w.arrive(5, 1, 3, unasked);
        assert_eq!(w.arrive(5, 2, 0, queued), Arrival::Park);
        assert_eq!(w.arrive(5, 3, 7, unasked), Arrival::Park);
        assert!(w.awaited(5));
        assert_eq!(w.settle(5, 1), vec![(2, 0), (3, 7)]);
        assert!(!w.awaited(5));
        assert_eq!(w.arrive(5, 3, 8, unasked), Arrival::Taken);
    }

    #[test]
    fn a_lost_first_copy_promotes_the_parked_one() {
        let mut w = Window::new(16);
        w.arrive(5, 1, 3, unasked);
        assert_eq!(w.arrive(5, 2, 0, queued), Arrival::Park);
        assert_eq!(w.arrive(5, 3, 9, unasked), Arrival::Park);
        assert_eq!(w.abandon(5, 1), Some((2, 0)));
        assert!(w.abandon(5, 1).is_none(), "no longer pipe 1's");
        // the promoted copy owns it now: its settle releases the other
        assert_eq!(w.settle(5, 2), vec![(3, 9)]);
    }

    #[test]
    fn a_lost_copy_with_nobody_waiting_is_forgotten() {
        let mut w = Window::new(16);
        w.arrive(5, 1, 0, unasked);
        assert_eq!(w.abandon(5, 1), None);
        assert_eq!(
            w.arrive(5, 2, 0, unasked),
            Arrival::New,
            "a resend is welcome"
        );
    }

    #[test]
    fn an_unparked_copy_is_not_promoted() {
        let mut w = Window::new(16);
        w.arrive(5, 1, 0, unasked);
        assert_eq!(w.arrive(5, 2, 4, queued), Arrival::Park);
        w.unpark(5, 2, 4);
        assert_eq!(w.abandon(5, 1), None);
        assert_eq!(w.arrive(5, 3, 0, unasked), Arrival::New);
    }

    #[test]
    fn a_retired_pipe_keeps_what_it_took_and_gives_up_the_rest() {
        let mut w = Window::new(16);
        for i in 0..4 {
            w.arrive(10 + i, 1, i, unasked);
        }
        let (lost, copies) = w.retire(1, |index| index < 2);
        assert_eq!(lost.len(), 2);
        assert!(copies.is_empty());
        for s in lost {
            w.abandon(s, 1);
        }
        assert_eq!(w.arrive(10, 2, 0, unasked), Arrival::Taken);
        assert_eq!(w.arrive(11, 2, 1, unasked), Arrival::Taken);
        assert_eq!(w.arrive(12, 2, 2, unasked), Arrival::New);
        // a pipe going while asked about: the copy waits for its verdict
        assert_eq!(w.arrive(12, 3, 0, |_, _| None), Arrival::Park);
        assert_eq!(w.abandon(12, 2), Some((3, 0)));
    }

    #[test]
    fn a_retired_pipe_releases_the_copies_of_what_it_took() {
        let mut w = Window::new(16);
        w.arrive(7, 1, 0, unasked);
        // pipe 1 is going as the copy comes: it waits for pipe 1's verdict
        assert_eq!(w.arrive(7, 2, 5, |_, _| None), Arrival::Park);
        let (lost, copies) = w.retire(1, |_| true);
        assert!(lost.is_empty());
        assert_eq!(copies, vec![(2, 5)]);
        assert!(!w.awaited(7));
        assert_eq!(w.arrive(7, 3, 0, unasked), Arrival::Taken);
    }

    #[test]
    fn the_window_is_bounded_and_counts_what_it_forgets() {
        let mut w = Window::new(8);
        for s in 0..20 {
            w.arrive(s, 1, s, unasked);
        }
        assert!(
            w.remembered() <= 8 && w.remembered() >= 4,
            "{}",
            w.remembered()
        );
        assert_eq!(w.forgotten, 20 - w.remembered() as u64);
        assert_eq!(w.arrive(19, 2, 0, taken), Arrival::Taken);
        assert_eq!(w.arrive(0, 2, 1, unasked), Arrival::New, "forgotten");
    }

    #[test]
    fn a_replayed_number_parks_a_bounded_number_of_copies() {
        let mut w = Window::new(4);
        w.arrive(1, 1, 0, unasked);
        assert_eq!(w.arrive(1, 2, 0, queued), Arrival::Park);
        for i in 1..MAX_WAITERS as u64 {
            assert_eq!(w.arrive(1, 2, i, unasked), Arrival::Park);
        }
        assert_eq!(w.arrive(1, 2, 99, unasked), Arrival::Taken);
    }
}

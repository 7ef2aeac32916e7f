//! A replier's memory of the requests it took, for REQ's resends.
//!
//! REQ sends the very same signed bytes again when no reply came in time.
//! The replay window already refuses them (same signer, epoch and seq); this
//! says what to do instead of nothing: a request still being answered is
//! dropped (its reply is on its way), one already answered gets its reply
//! again (signed anew), so a lost reply is recovered without running the
//! request twice. What is forgotten here is only refused, never run again:
//! the replay window decides that, not this memory.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

/// A request: its signer, epoch and seq.
pub(crate) type RequestKey = ([u8; 32], u64, u64);

/// What an entry costs besides a reply's bytes (key, state, bookkeeping).
const ENTRY_COST: usize = 96;

/// The reply a request got, as signed.
#[derive(Clone, Debug)]
pub(crate) struct Answer {
    /// The record the reply was signed over; its payload is the last
    /// `payload_len` bytes (kept whole: taking the signing buffer costs no
    /// copy).
    pub record: Arc<Vec<u8>>,
    pub payload_len: usize,
    /// Whom it answers and which request.
    pub requester: [u8; 32],
    pub in_reply_to: [u8; 16],
}

impl Answer {
    pub fn payload(&self) -> &[u8] {
        &self.record[self.record.len() - self.payload_len..]
    }
}

/// What is known of a request seen again.
#[derive(Debug)]
pub(crate) enum Known {
    /// Taken, not answered (yet), or answered with a reply too large to keep.
    Taken,
    /// Answered with this.
    Answered(Answer),
    /// Nothing (never taken here, or forgotten).
    Unknown,
}

#[derive(Debug)]
struct Entry {
    answer: Option<Answer>,
    /// Monotonic time after which a resend of it can no longer be fresh.
    keep_until: Duration,
    cost: usize,
}

/// Requests taken and their replies, within a byte budget, oldest forgotten
/// first.
#[derive(Debug)]
pub(crate) struct Answers {
    entries: HashMap<RequestKey, Entry>,
    order: VecDeque<RequestKey>,
    bytes: usize,
    max_bytes: usize,
}

impl Answers {
    pub fn new(max_bytes: usize) -> Answers {
        Answers {
            entries: HashMap::new(),
            order: VecDeque::new(),
            bytes: 0,
            max_bytes,
        }
    }

    /// Forgets, oldest first, what has expired or does not fit.
    fn trim(&mut self, now: Duration) {
        while let Some(k) = self.order.front() {
            let drop = match self.entries.get(k) {
                Some(e) => e.keep_until <= now || self.bytes > self.max_bytes,
                None => true,
            };
            if !drop {
                break;
            }
            if let Some(k) = self.order.pop_front() {
                if let Some(e) = self.entries.remove(&k) {
                    self.bytes -= e.cost;
                }
            }
        }
    }

    /// Remembers a request just taken (delivered to the application).
    pub fn taken(&mut self, key: RequestKey, keep_until: Duration, now: Duration) {
        if self.max_bytes == 0 {
            return;
        }
        self.trim(now);
        let e = Entry {
            answer: None,
            keep_until,
            cost: ENTRY_COST,
        };
        if let Some(old) = self.entries.insert(key, e) {
            self.bytes -= old.cost;
        } else {
            self.order.push_back(key);
        }
        self.bytes += ENTRY_COST;
        self.trim(now);
    }

    /// Records the reply to a request taken before. A reply larger than the
    /// whole budget is not kept: a resend of its request is then dropped.
    pub fn answered(&mut self, key: &RequestKey, answer: Answer, now: Duration) {
        let cost = ENTRY_COST + answer.record.len();
        let Some(e) = self.entries.get_mut(key) else {
            return;
        };
        if e.keep_until <= now || cost > self.max_bytes {
            return;
        }
        self.bytes += cost - e.cost;
        e.cost = cost;
        e.answer = Some(answer);
        self.trim(now);
    }

    /// What is known of a request seen again.
    pub fn known(&self, key: &RequestKey, now: Duration) -> Known {
        match self.entries.get(key) {
            Some(e) if e.keep_until > now => match &e.answer {
                Some(a) => Known::Answered(a.clone()),
                None => Known::Taken,
            },
            _ => Known::Unknown,
        }
    }

    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seq: u64) -> RequestKey {
        ([1; 32], 7, seq)
    }

    fn answer(len: usize) -> Answer {
        Answer {
            record: Arc::new(vec![9; len]),
            payload_len: len / 2,
            requester: [2; 32],
            in_reply_to: [3; 16],
        }
    }

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn taken_then_answered_then_expired() {
        let mut a = Answers::new(1 << 20);
        assert!(matches!(a.known(&key(1), S), Known::Unknown));
        a.taken(key(1), S * 10, S);
        assert!(matches!(a.known(&key(1), S), Known::Taken));
        a.answered(&key(1), answer(100), S * 2);
        match a.known(&key(1), S * 3) {
            Known::Answered(x) => assert_eq!(x.payload(), &[9; 50][..]),
            other => panic!("{other:?}"),
        }
        // past its time: unknown (the replay window still refuses it)
        assert!(matches!(a.known(&key(1), S * 10), Known::Unknown));
        // an answer for a request never taken is not kept
        a.answered(&key(2), answer(10), S);
        assert!(matches!(a.known(&key(2), S), Known::Unknown));
    }

    #[test]
    fn the_budget_holds_and_the_oldest_go_first() {
        let budget = 10 * (ENTRY_COST + 1000);
        let mut a = Answers::new(budget);
        for i in 0..100 {
            a.taken(key(i), S * 1000, S);
            a.answered(&key(i), answer(1000), S);
            assert!(a.bytes() <= budget, "{} > {budget}", a.bytes());
        }
        assert!(matches!(a.known(&key(0), S), Known::Unknown));
        assert!(matches!(a.known(&key(99), S), Known::Answered(_)));
        // a reply larger than the whole budget is not kept; its request is
        // still known as taken
        a.taken(key(500), S * 1000, S);
        a.answered(&key(500), answer(budget), S);
        assert!(matches!(a.known(&key(500), S), Known::Taken));
        // no budget: nothing is kept
        let mut none = Answers::new(0);
        none.taken(key(1), S * 10, S);
        assert!(matches!(none.known(&key(1), S), Known::Unknown));
    }
}

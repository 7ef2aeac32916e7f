//! The queue against a naive model (a `VecDeque` and its summed weights),
//! over any sequence of operations of every push and pop policy: counts and
//! bytes are accounted exactly, the budgets hold as documented, drop-oldest
//! evicts exactly what the budget needs, FIFO order is kept.

use std::collections::VecDeque;
use std::task::{Context, Poll, Waker};

use proptest::prelude::*;

use super::{Queue, TryPush, WaitKey};

/// An item: its id (for order) and its weight in bytes.
type Item = (u32, usize);

fn weigh(i: &Item) -> usize {
    i.1
}

#[derive(Clone, Debug)]
enum Op {
    TryPush(usize),
    ForcePush(usize),
    PushEvict(usize),
    /// `poll_push` once; a push that would wait gives up (`cancel_push`).
    PollPush(usize),
    /// `poll_push_batch` once with these weights, then gives up on the rest.
    PollPushBatch(Vec<usize>),
    TryPop,
    PollPopBatch(usize),
    Close,
    CloseInput,
}

fn op() -> impl Strategy<Value = Op> {
    // weights around the byte budgets below, zero included
    let w = prop_oneof![Just(0usize), 1usize..40, 40usize..200];
    prop_oneof![
        3 => w.clone().prop_map(Op::TryPush),
        1 => w.clone().prop_map(Op::ForcePush),
        3 => w.clone().prop_map(Op::PushEvict),
        2 => w.clone().prop_map(Op::PollPush),
        1 => proptest::collection::vec(w, 0..6).prop_map(Op::PollPushBatch),
        3 => Just(Op::TryPop),
        1 => (0usize..5).prop_map(Op::PollPopBatch),
        1 => Just(Op::Close),
        1 => Just(Op::CloseInput),
    ]
}

struct Model {
    items: VecDeque<Item>,
    cap: usize,
    cap_bytes: usize,
    closed: bool,
}

impl Model {
    fn bytes(&self) -> usize {
        self.items.iter().map(weigh).sum()
    }
    /// The documented rule: full by count, or by bytes once non-empty (one
    /// item is always admitted, however large).
    fn full(&self) -> bool {
        self.items.len() >= self.cap || (self.bytes() >= self.cap_bytes && !self.items.is_empty())
    }
}

fn check(q: &Queue<Item>, m: &Model) {
    let s = q.lock();
    assert_eq!(s.items, m.items, "contents and order");
    assert_eq!(s.bytes, m.bytes(), "bytes accounted");
    assert_eq!(s.closed, m.closed);
}

fn run(cap: usize, cap_bytes: usize, ops: Vec<Op>) {
    let q: Queue<Item> = Queue::with_bytes(cap, cap_bytes, weigh);
    let mut m = Model {
        items: VecDeque::new(),
        cap: cap.max(1),
        cap_bytes,
        closed: false,
    };
    let mut cx = Context::from_waker(Waker::noop());
    let mut next_id = 0u32;
    let mut item = |w: usize| {
        next_id += 1;
        (next_id, w)
    };
    // every push that is not forced keeps the count within its cap and
    // admits only while the bytes are below theirs
    let admitted = |m: &Model| {
        assert!(m.items.len() <= m.cap);
        let before = m.bytes() - m.items.back().map_or(0, weigh);
        assert!(m.items.len() == 1 || before < m.cap_bytes);
    };
    for op in ops {
        match op {
            Op::TryPush(w) => {
                let it = item(w);
                let want = if m.closed {
                    Err(TryPush::Closed(it))
                } else if m.full() {
                    Err(TryPush::Full(it))
                } else {
                    m.items.push_back(it);
                    Ok(())
                };
                assert_eq!(q.try_push(it), want);
                if want.is_ok() {
                    admitted(&m);
                }
            }
            Op::ForcePush(w) => {
                let it = item(w);
                let got = q.force_push(it);
                if m.closed {
                    assert_eq!(got, Err(it));
                } else {
                    assert_eq!(got, Ok(()));
                    m.items.push_back(it);
                }
            }
            Op::PushEvict(w) => {
                let it = item(w);
                let got = q.push_evict(it);
                if m.closed {
                    assert_eq!(got, Err(it));
                } else {
                    let mut evicted = 0;
                    while !m.items.is_empty()
                        && (m.items.len() >= m.cap || m.bytes() + w > m.cap_bytes)
                    {
                        m.items.pop_front();
                        evicted += 1;
                    }
                    m.items.push_back(it);
                    assert_eq!(got, Ok(evicted));
                    // both budgets hold after an eviction, unless the new
                    // item alone exceeds the bytes
                    assert!(m.items.len() <= m.cap);
                    assert!(m.bytes() <= m.cap_bytes || m.items.len() == 1);
                }
            }
            Op::PollPush(w) => {
                let it = item(w);
                let mut key = WaitKey::default();
                let mut slot = Some(it);
                let got = q.poll_push(&mut cx, &mut key, &mut slot);
                if m.closed {
                    assert_eq!(got, Poll::Ready(Err(it)));
                } else if m.full() {
                    assert_eq!(got, Poll::Pending);
                    assert_eq!(slot, Some(it), "a waiting push keeps its item");
                    q.cancel_push(&mut key);
                } else {
                    assert_eq!(got, Poll::Ready(Ok(())));
                    assert_eq!(slot, None);
                    m.items.push_back(it);
                    admitted(&m);
                }
                assert!(!key.is_registered());
            }
            Op::PollPushBatch(ws) => {
                let mut batch: VecDeque<Item> = ws.into_iter().map(&mut item).collect();
                let mut want_left = batch.clone();
                let mut key = WaitKey::default();
                let got = q.poll_push_batch(&mut cx, &mut key, &mut batch);
                if m.closed {
                    assert_eq!(got, Poll::Ready(Err(())));
                } else {
                    while !m.full() {
                        let Some(it) = want_left.pop_front() else {
                            break;
                        };
                        m.items.push_back(it);
                        admitted(&m);
                    }
                    let want = if want_left.is_empty() {
                        Poll::Ready(Ok(()))
                    } else {
                        Poll::Pending
                    };
                    assert_eq!(got, want);
                }
                assert_eq!(
                    batch, want_left,
                    "what was not queued stays with the caller"
                );
                q.cancel_push(&mut key);
            }
            Op::TryPop => assert_eq!(q.try_pop(), m.items.pop_front()),
            Op::PollPopBatch(max) => {
                let mut key = WaitKey::default();
                let mut out = Vec::new();
                let got = q.poll_pop_batch(&mut cx, &mut key, &mut out, max);
                let want: Vec<Item> = (0..max.min(m.items.len()))
                    .filter_map(|_| m.items.pop_front())
                    .collect();
                match got {
                    Poll::Ready(n) => assert_eq!(n, want.len()),
                    Poll::Pending => {
                        assert!(
                            want.is_empty() && !m.closed,
                            "waits only when empty and open"
                        );
                        q.cancel_pop(&mut key);
                    }
                }
                assert_eq!(out, want);
            }
            Op::Close => {
                let left = q.close();
                assert_eq!(left, Vec::from(std::mem::take(&mut m.items)));
                m.closed = true;
            }
            Op::CloseInput => {
                q.close_input();
                m.closed = true;
            }
        }
        check(&q, &m);
        assert_eq!(q.len(), m.items.len());
        assert_eq!(q.has_room(), !m.closed && !m.full());
    }
}

proptest! {
    #[test]
    fn queue_accounting_matches_a_naive_model(
        cap in 0usize..6,
        cap_bytes in prop_oneof![Just(0usize), 1usize..300, Just(usize::MAX)],
        ops in proptest::collection::vec(op(), 0..80),
    ) {
        run(cap, cap_bytes, ops);
    }
}

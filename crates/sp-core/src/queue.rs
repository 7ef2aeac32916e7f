//! A bounded multi-producer multi-consumer queue with async waits.
//!
//! ```
//! use sp_core::queue::Queue;
//! let q = Queue::new(2);
//! q.try_push("a").unwrap();
//! q.try_push("b").unwrap();
//! assert!(q.try_push("c").is_err(), "bounded: the third waits or is refused");
//! assert_eq!(q.try_pop(), Some("a"));
//! ```
//!
//! Consumers waiting on an empty queue are all woken when items arrive:
//! a consumer may be a `Stream` whose caller dropped its `next()` future,
//! leaving a registration it never withdraws, and waking only one waiter
//! could pick exactly that one. With one consumer (the common case) this
//! costs nothing extra.
//!
//! Written for the message path: one lock per operation, batch pops (a pipe
//! writer drains many messages per wake-up), no allocation once a waiter has
//! registered (waiter slots are reused), and a waker is only called when
//! someone actually waits. A waiter that was woken but gave up passes the
//! wake-up on, so no message sits in the queue while a consumer sleeps.

use std::collections::VecDeque;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

/// Waiters of one kind (poppers or pushers), in arrival order.
///
/// Waking is deferred: `wake_one`/`wake_all` pick the waiters, and whoever
/// holds the list's lock takes them (`take_wakes`) and wakes them once it
/// has let go of the lock, so that a waiter woken on another core does not
/// run straight into the lock its waker still holds.
#[derive(Default)]
pub(crate) struct WaitList {
    slots: Vec<Slot>,
    free: Vec<usize>,
    order: VecDeque<(usize, u64)>,
    next_gen: u64,
    deferred: Wakes,
}

/// Wakers picked under a lock, to be woken after it.
#[derive(Default)]
pub(crate) struct Wakes {
    first: Option<Waker>,
    rest: Vec<Waker>,
}

impl Wakes {
    fn push(&mut self, w: Waker) {
        if self.first.is_none() {
            self.first = Some(w);
        } else {
            self.rest.push(w);
        }
    }
    #[inline]
    fn is_empty(&self) -> bool {
        self.first.is_none()
    }
    /// Wakes them all.
    #[inline]
    pub(crate) fn wake(self) {
        if let Some(w) = self.first {
            w.wake();
        }
        for w in self.rest {
            w.wake();
        }
    }
}

#[derive(Default)]
struct Slot {
    gen: u64,
    used: bool,
    waker: Option<Waker>,
    notified: bool,
    queued: bool,
}

/// A waiter's registration; keep it across polls, release it when done.
#[derive(Debug, Default)]
pub struct WaitKey(Option<usize>);

impl WaitKey {
    /// True while registered in a wait list.
    pub fn is_registered(&self) -> bool {
        self.0.is_some()
    }
}

impl WaitList {
    pub(crate) fn register(&mut self, key: &mut WaitKey, waker: &Waker) {
        if let Some(k) = key.0 {
            let s = &mut self.slots[k];
            s.notified = false;
            match &s.waker {
                Some(w) if w.will_wake(waker) => {}
                _ => s.waker = Some(waker.clone()),
            }
            if !s.queued {
                s.queued = true;
                self.order.push_back((k, s.gen));
            }
            return;
        }
        let k = self.free.pop().unwrap_or_else(|| {
            self.slots.push(Slot::default());
            self.slots.len() - 1
        });
        self.next_gen += 1;
        let s = &mut self.slots[k];
        s.gen = self.next_gen;
        s.used = true;
        s.waker = Some(waker.clone());
        s.notified = false;
        s.queued = true;
        self.order.push_back((k, s.gen));
        key.0 = Some(k);
    }

    /// Releases a registration; true if it had been notified (so the caller
    /// should pass the wake-up on when it did not consume).
    pub(crate) fn release(&mut self, key: &mut WaitKey) -> bool {
        match key.0.take() {
            Some(k) => {
                let s = &mut self.slots[k];
                let notified = s.notified;
                s.used = false;
                s.waker = None;
                s.notified = false;
                s.queued = false;
                s.gen = 0;
                self.free.push(k);
                notified
            }
            None => false,
        }
    }

    pub(crate) fn wake_one(&mut self) {
        while let Some((k, gen)) = self.order.pop_front() {
            let s = &mut self.slots[k];
            if s.used && s.gen == gen && !s.notified {
                s.queued = false;
                s.notified = true;
                if let Some(w) = s.waker.take() {
                    self.deferred.push(w);
                }
                return;
            }
        }
    }

    pub(crate) fn wake_all(&mut self) {
        while let Some((k, gen)) = self.order.pop_front() {
            let s = &mut self.slots[k];
            if s.used && s.gen == gen {
                s.queued = false;
                s.notified = true;
                if let Some(w) = s.waker.take() {
                    self.deferred.push(w);
                }
            }
        }
    }

    /// The waiters picked since the last call, to wake once the lock is
    /// released.
    #[inline]
    pub(crate) fn take_wakes(&mut self) -> Wakes {
        if self.deferred.is_empty() {
            return Wakes::default();
        }
        std::mem::take(&mut self.deferred)
    }

    fn has_waiters(&self) -> bool {
        !self.order.is_empty()
    }
}

struct State<T> {
    items: VecDeque<T>,
    cap: usize,
    bytes: usize,
    cap_bytes: usize,
    weigh: fn(&T) -> usize,
    closed: bool,
    poppers: WaitList,
    pushers: WaitList,
}

impl<T> State<T> {
    /// Full by count, or by bytes (one item is always admitted, however large).
    fn full(&self) -> bool {
        self.items.len() >= self.cap || (self.bytes >= self.cap_bytes && !self.items.is_empty())
    }
    /// Half empty or less, by count and by bytes: where pushers waiting for
    /// room are woken by single pops, so that they come back for many
    /// places at once rather than one place per wake-up.
    fn low(&self) -> bool {
        self.items.len() <= self.cap / 2 && self.bytes <= self.cap_bytes / 2
    }
    fn push(&mut self, t: T) {
        self.bytes += (self.weigh)(&t);
        self.items.push_back(t);
    }
    fn pop(&mut self) -> Option<T> {
        let t = self.items.pop_front()?;
        self.bytes -= (self.weigh)(&t);
        Some(t)
    }
}

/// Bounded MPMC queue. See the module docs.
pub struct Queue<T> {
    state: Mutex<State<T>>,
    /// Open and not full, as of the last unlock: what `has_room` reads
    /// without taking the lock (a sender's readiness check).
    room: AtomicBool,
}

/// The locked state; on unlock it publishes whether there is room, then
/// wakes the waiters picked while it was held.
struct Locked<'a, T> {
    g: Option<MutexGuard<'a, State<T>>>,
    room: &'a AtomicBool,
}

impl<T> Deref for Locked<'_, T> {
    type Target = State<T>;
    fn deref(&self) -> &State<T> {
        match &self.g {
            Some(g) => g,
            None => unreachable!("the guard lives until drop"),
        }
    }
}

impl<T> DerefMut for Locked<'_, T> {
    fn deref_mut(&mut self) -> &mut State<T> {
        match &mut self.g {
            Some(g) => g,
            None => unreachable!("the guard lives until drop"),
        }
    }
}

impl<T> Drop for Locked<'_, T> {
    fn drop(&mut self) {
        let Some(mut g) = self.g.take() else { return };
        let room = !g.closed && !g.full();
        if self.room.load(Ordering::Relaxed) != room {
            // SeqCst: a sender that announced its wait and then reads this
            // (both fenced, see send.rs) cannot miss room freed here
            self.room.store(room, Ordering::SeqCst);
        }
        if g.poppers.deferred.is_empty() && g.pushers.deferred.is_empty() {
            return;
        }
        let (a, b) = (g.poppers.take_wakes(), g.pushers.take_wakes());
        drop(g);
        a.wake();
        b.wake();
    }
}

/// Result of a push that could not complete at once.
#[derive(Debug, PartialEq, Eq)]
pub enum TryPush<T> {
    /// The queue is full; here is the item back.
    Full(T),
    /// The queue is closed; here is the item back.
    Closed(T),
}

impl<T> Queue<T> {
    /// A queue holding at most `cap` items (at least 1).
    pub fn new(cap: usize) -> Queue<T> {
        Queue::with_bytes(cap, usize::MAX, |_| 0)
    }

    /// A queue holding at most `cap` items and about `cap_bytes` bytes as
    /// `weigh` counts them (a single item larger than that still fits alone).
    pub fn with_bytes(cap: usize, cap_bytes: usize, weigh: fn(&T) -> usize) -> Queue<T> {
        Queue {
            state: Mutex::new(State {
                items: VecDeque::new(),
                cap: cap.max(1),
                bytes: 0,
                cap_bytes,
                weigh,
                closed: false,
                poppers: WaitList::default(),
                pushers: WaitList::default(),
            }),
            room: AtomicBool::new(true),
        }
    }

    fn lock(&self) -> Locked<'_, T> {
        Locked {
            // a panic while holding this lock cannot leave the deque inconsistent
            g: Some(self.state.lock().unwrap_or_else(|e| e.into_inner())),
            room: &self.room,
        }
    }

    /// Number of queued items.
    pub fn len(&self) -> usize {
        self.lock().items.len()
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Closes the queue: pending and future pushes fail, pops drain what is
    /// left and then return `None`. Returns what was still queued.
    pub fn close(&self) -> Vec<T> {
        let mut s = self.lock();
        s.closed = true;
        s.poppers.wake_all();
        s.pushers.wake_all();
        s.bytes = 0;
        s.items.drain(..).collect()
    }

    /// Closes for pushers only: what is queued can still be popped, then
    /// pops return `None` (a sender hanging up).
    pub fn close_input(&self) {
        let mut s = self.lock();
        s.closed = true;
        s.poppers.wake_all();
        s.pushers.wake_all();
    }

    /// True once closed.
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Pushes without waiting.
    pub fn try_push(&self, item: T) -> Result<(), TryPush<T>> {
        let mut s = self.lock();
        if s.closed {
            return Err(TryPush::Closed(item));
        }
        if s.full() {
            return Err(TryPush::Full(item));
        }
        s.push(item);
        if s.poppers.has_waiters() {
            s.poppers.wake_all();
        }
        Ok(())
    }

    /// True when a push would not wait (as of the last operation; another
    /// thread may be changing it).
    pub fn has_room(&self) -> bool {
        self.room.load(Ordering::SeqCst)
    }

    /// Pushes even when full (by at most a few items: for a sender that was
    /// told there was room and lost a race for it). Fails only when closed.
    pub fn force_push(&self, item: T) -> Result<(), T> {
        let mut s = self.lock();
        if s.closed {
            return Err(item);
        }
        s.push(item);
        if s.poppers.has_waiters() {
            s.poppers.wake_all();
        }
        Ok(())
    }

    /// Pushes, dropping the oldest items until the new one fits in both the
    /// count and the byte budget (SUB's policy). Returns how many were
    /// dropped; `Err` gives the item back when closed.
    pub fn push_evict(&self, item: T) -> Result<usize, T> {
        self.push_evicting(item, drop)
    }

    /// [`Queue::push_evict`], handing what it drops to `evicted` (for a
    /// caller that must settle each one) instead of dropping it.
    pub fn push_evict_into(&self, item: T, evicted: &mut Vec<T>) -> Result<usize, T> {
        self.push_evicting(item, |t| evicted.push(t))
    }

    fn push_evicting(&self, item: T, mut on_evict: impl FnMut(T)) -> Result<usize, T> {
        let mut s = self.lock();
        if s.closed {
            return Err(item);
        }
        let w = (s.weigh)(&item);
        let mut evicted = 0;
        while !s.items.is_empty()
            && (s.items.len() >= s.cap || s.bytes.saturating_add(w) > s.cap_bytes)
        {
            if let Some(old) = s.pop() {
                on_evict(old);
            }
            evicted += 1;
        }
        s.push(item);
        if s.poppers.has_waiters() {
            s.poppers.wake_all();
        }
        Ok(evicted)
    }

    /// Pushes `*item`, waiting for room. On `Ready(Ok)` the item was taken;
    /// on `Ready(Err(item))` the queue is closed.
    pub fn poll_push(
        &self,
        cx: &mut Context<'_>,
        key: &mut WaitKey,
        item: &mut Option<T>,
    ) -> Poll<Result<(), T>> {
        let mut s = self.lock();
        let Some(it) = item.take() else {
            s.pushers.release(key);
            return Poll::Ready(Ok(()));
        };
        if s.closed {
            s.pushers.release(key);
            return Poll::Ready(Err(it));
        }
        if !s.full() {
            s.push(it);
            s.pushers.release(key);
            if s.poppers.has_waiters() {
                s.poppers.wake_all();
            }
            if !s.full() && s.pushers.has_waiters() {
                s.pushers.wake_one();
            }
            return Poll::Ready(Ok(()));
        }
        *item = Some(it);
        s.pushers.register(key, cx.waker());
        Poll::Pending
    }

    /// Pushes as many of `items` as fit, waiting for room for the rest.
    /// `Ready(Ok)` once all are queued; `Ready(Err)` if the queue closed,
    /// with what was not queued left in `items`.
    pub fn poll_push_batch(
        &self,
        cx: &mut Context<'_>,
        key: &mut WaitKey,
        items: &mut VecDeque<T>,
    ) -> Poll<Result<(), ()>> {
        let mut s = self.lock();
        if s.closed {
            // the items stay with the caller, who counts them
            s.pushers.release(key);
            return Poll::Ready(Err(()));
        }
        let mut pushed = 0;
        while !s.full() {
            let Some(it) = items.pop_front() else { break };
            s.push(it);
            pushed += 1;
        }
        for _ in 0..pushed.min(4) {
            if !s.poppers.has_waiters() {
                break;
            }
            s.poppers.wake_all();
        }
        if items.is_empty() {
            s.pushers.release(key);
            return Poll::Ready(Ok(()));
        }
        s.pushers.register(key, cx.waker());
        Poll::Pending
    }

    /// Pops one item, waiting if empty. `Ready(None)` once closed and drained.
    pub fn poll_pop(&self, cx: &mut Context<'_>, key: &mut WaitKey) -> Poll<Option<T>> {
        let mut s = self.lock();
        if let Some(item) = s.pop() {
            s.poppers.release(key);
            if s.pushers.has_waiters() && s.low() {
                s.pushers.wake_one();
            }
            if !s.items.is_empty() && s.poppers.has_waiters() {
                s.poppers.wake_all();
            }
            return Poll::Ready(Some(item));
        }
        if s.closed {
            s.poppers.release(key);
            return Poll::Ready(None);
        }
        s.poppers.register(key, cx.waker());
        Poll::Pending
    }

    /// Pops up to `max` items into `out`, waiting if empty. `Ready(0)` once
    /// closed and drained.
    pub fn poll_pop_batch(
        &self,
        cx: &mut Context<'_>,
        key: &mut WaitKey,
        out: &mut Vec<T>,
        max: usize,
    ) -> Poll<usize> {
        let mut s = self.lock();
        if !s.items.is_empty() {
            let n = max.min(s.items.len());
            for _ in 0..n {
                if let Some(t) = s.pop() {
                    out.push(t);
                }
            }
            s.poppers.release(key);
            if s.pushers.has_waiters() {
                s.pushers.wake_all();
            }
            if !s.items.is_empty() && s.poppers.has_waiters() {
                s.poppers.wake_all();
            }
            return Poll::Ready(n);
        }
        if s.closed {
            s.poppers.release(key);
            return Poll::Ready(0);
        }
        s.poppers.register(key, cx.waker());
        Poll::Pending
    }

    /// Pops up to `max` items onto the back of `out`, waiting if empty
    /// (`poll_pop_batch` into a deque). `Ready(0)` once closed and drained.
    pub fn poll_pop_into(
        &self,
        cx: &mut Context<'_>,
        key: &mut WaitKey,
        out: &mut VecDeque<T>,
        max: usize,
    ) -> Poll<usize> {
        self.poll_pop_into_with(cx, key, out, max, |_| {})
    }

    /// `poll_pop_into`, calling `popped(n)` with the lock still held when
    /// `n > 0` items were taken (so that whoever empties the queue under
    /// its lock, as `close` does, sees them accounted for).
    pub fn poll_pop_into_with(
        &self,
        cx: &mut Context<'_>,
        key: &mut WaitKey,
        out: &mut VecDeque<T>,
        max: usize,
        popped: impl FnOnce(usize),
    ) -> Poll<usize> {
        let mut s = self.lock();
        if !s.items.is_empty() {
            let n = max.min(s.items.len());
            popped(n);
            if n == s.items.len() {
                s.bytes = 0;
                out.extend(s.items.drain(..));
            } else {
                let weigh = s.weigh;
                let bytes: usize = s.items.iter().take(n).map(weigh).sum();
                s.bytes -= bytes;
                out.extend(s.items.drain(..n));
            }
            s.poppers.release(key);
            if s.pushers.has_waiters() {
                s.pushers.wake_all();
            }
            if !s.items.is_empty() && s.poppers.has_waiters() {
                s.poppers.wake_all();
            }
            return Poll::Ready(n);
        }
        if s.closed {
            s.poppers.release(key);
            return Poll::Ready(0);
        }
        s.poppers.register(key, cx.waker());
        Poll::Pending
    }

    /// Pops up to `max` items onto the back of `out` without waiting;
    /// returns how many.
    pub fn try_pop_into(&self, out: &mut VecDeque<T>, max: usize) -> usize {
        let mut s = self.lock();
        let n = max.min(s.items.len());
        if n == 0 {
            return 0;
        }
        if n == s.items.len() {
            s.bytes = 0;
            out.extend(s.items.drain(..));
        } else {
            let weigh = s.weigh;
            let bytes: usize = s.items.iter().take(n).map(weigh).sum();
            s.bytes -= bytes;
            out.extend(s.items.drain(..n));
        }
        if s.pushers.has_waiters() {
            s.pushers.wake_all();
        }
        n
    }

    /// Puts items taken by a consumer that no longer wants them back at the
    /// front, in order, past the bounds if need be (they had their places).
    /// False when the queue is closed: the items stay with the caller.
    pub fn unpop(&self, items: &mut VecDeque<T>) -> bool {
        let mut s = self.lock();
        if s.closed {
            return false;
        }
        while let Some(t) = items.pop_back() {
            s.bytes += (s.weigh)(&t);
            s.items.push_front(t);
        }
        if !s.items.is_empty() && s.poppers.has_waiters() {
            s.poppers.wake_all();
        }
        true
    }

    /// Wakes whoever waits to pop, items or not (a consumer with work
    /// outside the queue to do).
    pub fn wake_poppers(&self) {
        let mut s = self.lock();
        if s.poppers.has_waiters() {
            s.poppers.wake_all();
        }
    }

    /// Pops without waiting.
    pub fn try_pop(&self) -> Option<T> {
        let mut s = self.lock();
        let item = s.pop();
        if item.is_some() && s.pushers.has_waiters() && s.low() {
            s.pushers.wake_one();
        }
        item
    }

    /// Forgets a waiter that stops waiting (its future was dropped). Passes a
    /// wake-up it received on to the next waiter.
    pub fn cancel_pop(&self, key: &mut WaitKey) {
        if key.0.is_none() {
            return;
        }
        let mut s = self.lock();
        if s.poppers.release(key) && !s.items.is_empty() {
            s.poppers.wake_all();
        }
    }

    /// Like `cancel_pop`, for pushers.
    pub fn cancel_push(&self, key: &mut WaitKey) {
        if key.0.is_none() {
            return;
        }
        let mut s = self.lock();
        if s.pushers.release(key) && !s.full() {
            s.pushers.wake_one();
        }
    }

    /// Waits for and pops one item.
    pub async fn pop(&self) -> Option<T> {
        let mut w = PopWait {
            q: self,
            key: WaitKey::default(),
        };
        std::future::poll_fn(|cx| w.q.poll_pop(cx, &mut w.key)).await
    }

    /// Waits for room and pushes.
    pub async fn push(&self, item: T) -> Result<(), T> {
        let mut w = PushWait {
            q: self,
            key: WaitKey::default(),
        };
        let mut slot = Some(item);
        std::future::poll_fn(|cx| w.q.poll_push(cx, &mut w.key, &mut slot)).await
    }
}

struct PopWait<'a, T> {
    q: &'a Queue<T>,
    key: WaitKey,
}
impl<T> Drop for PopWait<'_, T> {
    fn drop(&mut self) {
        self.q.cancel_pop(&mut self.key);
    }
}
struct PushWait<'a, T> {
    q: &'a Queue<T>,
    key: WaitKey,
}
impl<T> Drop for PushWait<'_, T> {
    fn drop(&mut self) {
        self.q.cancel_push(&mut self.key);
    }
}

#[cfg(test)]
mod props;

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn bounded_and_fifo() {
        let q = Queue::new(2);
        q.try_push(1).unwrap();
        q.try_push(2).unwrap();
        assert_eq!(q.try_push(3), Err(TryPush::Full(3)));
        assert_eq!(q.pop().await, Some(1));
        q.try_push(3).unwrap();
        assert_eq!(q.pop().await, Some(2));
        assert_eq!(q.pop().await, Some(3));
    }

    struct Count(std::sync::atomic::AtomicUsize);
    impl std::task::Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
    fn counting_waker() -> (Arc<Count>, Waker) {
        let c = Arc::new(Count(std::sync::atomic::AtomicUsize::new(0)));
        (c.clone(), Waker::from(c))
    }
    fn woken(c: &Count) -> usize {
        c.0.load(std::sync::atomic::Ordering::SeqCst)
    }

    #[test]
    fn cancelled_waiter_passes_wakeup_on() {
        // a full queue and two pushers waiting, A first: room for one wakes
        // only A; A gives up without pushing, so B must be woken instead
        let q = Queue::new(1);
        q.try_push(0).unwrap();
        let (ca, wa) = counting_waker();
        let (cb, wb) = counting_waker();
        let (mut ka, mut kb) = (WaitKey::default(), WaitKey::default());
        let (mut a, mut b) = (Some(1), Some(2));
        assert!(q
            .poll_push(&mut Context::from_waker(&wa), &mut ka, &mut a)
            .is_pending());
        assert!(q
            .poll_push(&mut Context::from_waker(&wb), &mut kb, &mut b)
            .is_pending());
        assert_eq!(q.try_pop(), Some(0));
        assert_eq!((woken(&ca), woken(&cb)), (1, 0), "one slot, one wake-up");
        q.cancel_push(&mut ka);
        assert_eq!(woken(&cb), 1, "A's wake-up was passed on to B");
        assert!(q
            .poll_push(&mut Context::from_waker(&wb), &mut kb, &mut b)
            .is_ready());
        assert_eq!(q.try_pop(), Some(2));
    }

    #[tokio::test]
    async fn many_producers_consumers_lose_nothing() {
        let q = Arc::new(Queue::new(8));
        let mut prods = Vec::new();
        for p in 0..4u64 {
            let q = q.clone();
            prods.push(tokio::spawn(async move {
                for i in 0..1000u64 {
                    q.push(p * 10_000 + i).await.unwrap();
                }
            }));
        }
        let mut cons = Vec::new();
        for _ in 0..3 {
            let q = q.clone();
            cons.push(tokio::spawn(async move {
                let mut got = Vec::new();
                while let Some(v) = q.pop().await {
                    got.push(v);
                }
                got
            }));
        }
        for p in prods {
            p.await.unwrap();
        }
        // wait for drain, then close
        while !q.is_empty() {
            tokio::task::yield_now().await;
        }
        q.close();
        let mut all = Vec::new();
        for c in cons {
            all.extend(c.await.unwrap());
        }
        all.sort();
        assert_eq!(all.len(), 4000);
        all.dedup();
        assert_eq!(all.len(), 4000);
    }

    #[test]
    fn evict_drops_oldest() {
        let q = Queue::new(2);
        assert_eq!(q.push_evict(1), Ok(0));
        assert_eq!(q.push_evict(2), Ok(0));
        assert_eq!(q.push_evict(3), Ok(1));
        assert_eq!(q.try_pop(), Some(2));
    }

    #[test]
    fn evict_holds_the_byte_budget() {
        // 32 small items, then a large one: all the small ones must go, not
        // just the oldest (the queue once held 32 times its budget this way)
        let q: Queue<Vec<u8>> = Queue::with_bytes(64, 1024, |v| v.len());
        for _ in 0..32 {
            q.push_evict(vec![0; 32]).unwrap();
        }
        assert_eq!(q.push_evict(vec![1; 1024]), Ok(32));
        assert_eq!(q.len(), 1);
        // and a stream of large items never holds more than the budget
        for _ in 0..10 {
            q.push_evict(vec![2; 600]).unwrap();
            let bytes: usize = q.lock().items.iter().map(|v| v.len()).sum();
            assert!(bytes <= 1024, "{bytes} bytes queued for a 1024-byte budget");
        }
    }
}

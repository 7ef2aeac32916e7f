//! Cooked REQ v0: request ids, resend, contexts — a message layer over raw REQ.
//!
//! [`ReqState`] is the protocol with no I/O: it assigns ids, matches replies,
//! decides when to resend. The context halves below only move messages
//! between it and the raw socket.

use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures::{Sink, Stream};
use sp_core::layer::{ComponentInfo, CookedContext, MessageIo, Overhead};
use sp_core::queue::WaitKey;
use sp_core::{
    CookedProtocol, CookedSocket, DropReason, Error, Handover, Message, PipeEvent, PipeId,
    RawSocket, Result,
};
use tokio::time::{Instant, Sleep};

/// Id of a context within one socket.
pub type CtxId = u64;

struct Pending {
    ctx: CtxId,
    request: Message,
    /// The pipe the request last went out on.
    pipe: Option<PipeId>,
    /// Pipes it went out on before (a resend to another pipe): a reply may
    /// still come from them. Empty, without an allocation, in the usual case.
    earlier: Vec<PipeId>,
    sent: bool,
    resend_at: Option<Instant>,
    pipe_lost: bool,
    reply: Option<Message>,
    waker: Option<Waker>,
}

/// What happened to a reply handed to [`ReqState::on_reply`].
#[derive(Debug)]
pub enum ReplyOutcome {
    /// Matched a pending request; wake this context.
    Matched(CtxId, Option<Waker>),
    /// Nobody waits for it (cancelled, answered, or unknown id).
    Late,
    /// Its id is pending, but it came from a pipe that request never went
    /// out on: a peer guessing ids to answer another peer's request.
    WrongPipe,
    /// Not a valid REQ reply header.
    Malformed,
}

/// The REQ protocol state of one socket, all contexts included. No I/O.
pub struct ReqState {
    next_id: u32,
    pending: crate::idmap::IdMap<u32, Pending>,
    by_ctx: crate::idmap::IdMap<CtxId, u32>,
    resend: Option<Duration>,
}

impl ReqState {
    /// A state with a random first id (as nng) and a resend interval.
    pub fn new(resend: Option<Duration>) -> ReqState {
        ReqState {
            next_id: fastrand::u32(..0x7fff_ffff),
            pending: Default::default(),
            by_ctx: Default::default(),
            resend,
        }
    }

    fn alloc_id(&mut self) -> u32 {
        loop {
            let id = self.next_id & 0x7fff_ffff;
            self.next_id = self.next_id.wrapping_add(1);
            if !self.pending.contains_key(&id) {
                return id;
            }
        }
    }

    /// Starts a request on `ctx` (cancelling its previous one) and returns the
    /// wire message: the id with its top bit set, then the body.
    pub fn start(&mut self, ctx: CtxId, mut msg: Message) -> Message {
        self.cancel(ctx);
        let id = self.alloc_id();
        msg.clear_header();
        msg.push_header_u32(id | 0x8000_0000);
        self.pending.insert(
            id,
            Pending {
                ctx,
                request: msg.clone(),
                pipe: None,
                earlier: Vec::new(),
                sent: false,
                resend_at: None,
                pipe_lost: false,
                reply: None,
                waker: None,
            },
        );
        self.by_ctx.insert(ctx, id);
        msg
    }

    /// Records that `ctx`'s request went out on `pipe` at `now`.
    pub fn sent(&mut self, ctx: CtxId, pipe: Option<PipeId>, now: Instant) {
        let resend = self.resend;
        if let Some(p) = self
            .by_ctx
            .get(&ctx)
            .and_then(|id| self.pending.get_mut(id))
        {
            p.sent = true;
            if let Some(old) = p.pipe.filter(|old| Some(*old) != pipe) {
                if !p.earlier.contains(&old) {
                    p.earlier.push(old);
                }
            }
            p.pipe = pipe;
            p.pipe_lost = false;
            p.resend_at = resend.map(|d| now + d);
        }
    }

    /// True when `ctx` has a request outstanding.
    pub fn has_request(&self, ctx: CtxId) -> bool {
        self.by_ctx.contains_key(&ctx)
    }

    /// Matches a reply (header = backtrace from raw REQ), read from pipe
    /// `from`, to its request. Only a pipe the request went out on may
    /// answer it: ids are guessable, so another peer's guess must not
    /// reach the waiting context.
    pub fn on_reply(&mut self, from: Option<PipeId>, mut msg: Message) -> ReplyOutcome {
        let Some(word) = msg.pop_header_u32() else {
            return ReplyOutcome::Malformed;
        };
        if word & 0x8000_0000 == 0 {
            return ReplyOutcome::Malformed;
        }
        let id = word & 0x7fff_ffff;
        match self.pending.get_mut(&id) {
            Some(p) if p.reply.is_none() => {
                let carried = from.is_some_and(|f| p.pipe == Some(f) || p.earlier.contains(&f));
                if !carried {
                    return ReplyOutcome::WrongPipe;
                }
                msg.clear_header();
                p.reply = Some(msg);
                ReplyOutcome::Matched(p.ctx, p.waker.take())
            }
            _ => ReplyOutcome::Late,
        }
    }

    /// Takes `ctx`'s reply if it arrived, ending the request.
    pub fn take_reply(&mut self, ctx: CtxId) -> Option<Message> {
        let id = *self.by_ctx.get(&ctx)?;
        let reply = self.pending.get_mut(&id)?.reply.take()?;
        self.pending.remove(&id);
        self.by_ctx.remove(&ctx);
        Some(reply)
    }

    /// The request to send again now, if `ctx`'s is unsent, overdue, or its
    /// pipe died.
    pub fn due(&mut self, ctx: CtxId, now: Instant) -> Option<Message> {
        let p = self
            .by_ctx
            .get(&ctx)
            .and_then(|id| self.pending.get_mut(id))?;
        if p.reply.is_some() {
            return None;
        }
        let overdue = p.resend_at.is_some_and(|t| now >= t);
        if !p.sent || p.pipe_lost || overdue {
            return Some(p.request.clone());
        }
        None
    }

    /// When `ctx` should next be looked at for a resend.
    pub fn deadline(&self, ctx: CtxId) -> Option<Instant> {
        self.by_ctx
            .get(&ctx)
            .and_then(|id| self.pending.get(id))
            .and_then(|p| p.resend_at)
    }

    /// Remembers who to wake for `ctx`'s reply.
    pub fn set_waker(&mut self, ctx: CtxId, w: &Waker) {
        if let Some(p) = self
            .by_ctx
            .get(&ctx)
            .and_then(|id| self.pending.get_mut(id))
        {
            match &p.waker {
                Some(old) if old.will_wake(w) => {}
                _ => p.waker = Some(w.clone()),
            }
        }
    }

    /// A pipe died: its requests go out again at once. Returns whom to wake.
    pub fn pipe_lost(&mut self, pipe: PipeId) -> Vec<Waker> {
        let mut wake = Vec::new();
        for p in self.pending.values_mut() {
            if p.pipe == Some(pipe) && p.reply.is_none() {
                p.pipe_lost = true;
                wake.extend(p.waker.take());
            }
        }
        wake
    }

    /// Forgets `ctx`'s request (a reply arriving later is late).
    pub fn cancel(&mut self, ctx: CtxId) {
        if let Some(id) = self.by_ctx.remove(&ctx) {
            self.pending.remove(&id);
        }
    }

    /// Requests outstanding.
    pub fn outstanding(&self) -> usize {
        self.pending.len()
    }
}

/// Cooked REQ v0.
#[derive(Clone, Copy, Debug, Default)]
pub struct Req0;

impl CookedProtocol for Req0 {
    fn info(&self) -> ComponentInfo {
        // its request id is the last word of the raw backtrace: no bytes of its own
        ComponentInfo::new("req0", Overhead::header(4))
    }
    fn attach(&self, raw: &RawSocket) -> Arc<dyn CookedSocket> {
        let shared = Arc::new_cyclic(|me| ReqShared {
            me: me.clone(),
            state: Mutex::new(ReqState::new(raw.options().req_resend)),
            raw: raw.clone(),
            next_ctx: std::sync::atomic::AtomicU64::new(1),
        });
        let weak: Weak<ReqShared> = Arc::downgrade(&shared);
        // a request in flight on a pipe that died goes out again at once
        raw.on_pipe_event(move |ev| {
            if let (PipeEvent::RemovePost(id, _), Some(s)) = (ev, weak.upgrade()) {
                for w in s.lock().pipe_lost(*id) {
                    w.wake();
                }
            }
            true
        });
        shared
    }
}

struct ReqShared {
    me: Weak<ReqShared>,
    raw: RawSocket,
    state: Mutex<ReqState>,
    next_ctx: std::sync::atomic::AtomicU64,
}

impl ReqShared {
    fn lock(&self) -> std::sync::MutexGuard<'_, ReqState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl ReqShared {
    /// Records that `ctx`'s request went out on `pipe`. The pipe may have
    /// died between being chosen and this record, before the pipe-loss hook
    /// could see the request on it: check, so the resend happens at once
    /// rather than after the resend timer.
    fn record_sent(&self, ctx: CtxId, pipe: Option<PipeId>) {
        self.lock().sent(ctx, pipe, Instant::now());
        if let Some(p) = pipe {
            if !self.raw.has_pipe(p) {
                for w in self.lock().pipe_lost(p) {
                    w.wake();
                }
            }
        }
    }
}

impl CookedSocket for ReqShared {
    fn context(&self) -> CookedContext {
        let Some(shared) = self.me.upgrade() else {
            unreachable!("a cooked socket is only used while its Arc lives")
        };
        let ctx = self
            .next_ctx
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let g = Arc::new(CtxGuard { shared, ctx });
        MessageIo::new(
            Box::pin(ReqTx {
                g: g.clone(),
                key: WaitKey::default(),
            }),
            Box::pin(ReqRx {
                g,
                recv_key: WaitKey::default(),
                send_key: WaitKey::default(),
                resend: None,
                timer: None,
            }),
        )
        .into()
    }
}

/// Drops a context's request when both of its halves are gone.
struct CtxGuard {
    shared: Arc<ReqShared>,
    ctx: CtxId,
}

impl Drop for CtxGuard {
    fn drop(&mut self) {
        self.shared.lock().cancel(self.ctx);
    }
}

struct ReqTx {
    g: Arc<CtxGuard>,
    key: WaitKey,
}

impl Sink<Message> for ReqTx {
    type Error = Error;
    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let this = self.get_mut();
        this.g.shared.raw.poll_send_ready(cx, &mut this.key)
    }
    fn start_send(self: Pin<&mut Self>, msg: Message) -> Result<()> {
        let this = self.get_mut();
        let s = &this.g.shared;
        let wire = s.lock().start(this.g.ctx, msg);
        // a request no pipe could take stays unsent in the state; the reply
        // side sends it as soon as it can (ReqState::due)
        if let Handover::Queued(pipe) = s.raw.send_now(wire)? {
            s.record_sent(this.g.ctx, pipe);
        }
        Ok(())
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl Drop for ReqTx {
    fn drop(&mut self) {
        self.g.shared.raw.cancel_send(&mut self.key);
    }
}

struct ReqRx {
    g: Arc<CtxGuard>,
    recv_key: WaitKey,
    send_key: WaitKey,
    resend: Option<Message>,
    timer: Option<Pin<Box<Sleep>>>,
}

impl ReqRx {
    fn release(&mut self) {
        let raw = &self.g.shared.raw;
        raw.cancel_recv(&mut self.recv_key);
        raw.cancel_send(&mut self.send_key);
    }
}

impl Stream for ReqRx {
    type Item = Result<Message>;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Message>>> {
        let this = self.get_mut();
        let ctx = this.g.ctx;
        let shared = this.g.shared.clone();
        loop {
            {
                let mut st = shared.lock();
                if let Some(reply) = st.take_reply(ctx) {
                    drop(st);
                    this.resend = None;
                    this.release();
                    return Poll::Ready(Some(Ok(reply)));
                }
                if !st.has_request(ctx) {
                    drop(st);
                    this.release();
                    return Poll::Ready(Some(Err(Error::State(
                        "no request outstanding on this context: send one first",
                    ))));
                }
                if this.resend.is_none() {
                    this.resend = st.due(ctx, Instant::now());
                }
                st.set_waker(ctx, cx.waker());
            }
            if this.resend.is_some() {
                match shared
                    .raw
                    .poll_send(cx, &mut this.send_key, &mut this.resend)
                {
                    Poll::Ready(Ok(pipe)) => shared.record_sent(ctx, pipe),
                    Poll::Ready(Err(e)) => {
                        this.release();
                        return Poll::Ready(Some(Err(e)));
                    }
                    Poll::Pending => {}
                }
            }
            match shared.raw.poll_recv(cx, &mut this.recv_key) {
                Poll::Ready(Ok(m)) => {
                    let from = m.pipe();
                    let outcome = shared.lock().on_reply(from, m);
                    match outcome {
                        ReplyOutcome::Matched(c, w) => {
                            if c != ctx {
                                if let Some(w) = w {
                                    w.wake();
                                }
                            }
                        }
                        ReplyOutcome::Late => shared.raw.counters().dropped(DropReason::Late),
                        ReplyOutcome::WrongPipe => {
                            shared.raw.counters().dropped(DropReason::WrongPipe)
                        }
                        ReplyOutcome::Malformed => {
                            shared.raw.counters().dropped(DropReason::Malformed)
                        }
                    }
                    continue;
                }
                Poll::Ready(Err(e)) => {
                    this.release();
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Pending => {}
            }
            // waiting for room to resend is woken by the raw socket; only a
            // request already out needs the resend timer
            let deadline = if this.resend.is_none() {
                shared.lock().deadline(ctx)
            } else {
                None
            };
            if let Some(at) = deadline {
                let t = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
                if t.deadline() != at {
                    t.as_mut().reset(at);
                }
                if t.as_mut().poll(cx).is_ready() {
                    continue;
                }
            }
            return Poll::Pending;
        }
    }
}

impl Drop for ReqRx {
    fn drop(&mut self) {
        self.release();
    }
}

use std::future::Future;

#[cfg(test)]
mod tests {
    use super::*;

    fn reply_to(wire: &Message, body: &[u8]) -> Message {
        let mut r = Message::from(body);
        r.push_header(&wire.header()[..4]);
        r
    }

    #[test]
    fn ids_have_top_bit_and_replies_match() {
        let mut st = ReqState::new(Some(Duration::from_secs(60)));
        let wire = st.start(1, Message::from(&b"q"[..]));
        assert_eq!(wire.header()[0] & 0x80, 0x80);
        assert_eq!(wire.body(), b"q");
        st.sent(1, Some(7), Instant::now());
        assert!(matches!(
            st.on_reply(Some(7), reply_to(&wire, b"a")),
            ReplyOutcome::Matched(1, _)
        ));
        assert_eq!(st.take_reply(1).unwrap().body(), b"a");
        assert!(!st.has_request(1));
        // the same reply again is late
        assert!(matches!(
            st.on_reply(Some(7), reply_to(&wire, b"a")),
            ReplyOutcome::Late
        ));
    }

    #[test]
    fn resend_when_due_or_pipe_lost_and_not_before() {
        let t0 = Instant::now();
        let mut st = ReqState::new(Some(Duration::from_secs(1)));
        let wire = st.start(1, Message::from(&b"q"[..]));
        assert!(st.due(1, t0).is_some(), "unsent requests are due");
        st.sent(1, Some(7), t0);
        assert!(st.due(1, t0 + Duration::from_millis(999)).is_none());
        let again = st.due(1, t0 + Duration::from_secs(1)).unwrap();
        assert_eq!(again.header(), wire.header(), "a resend keeps its id");
        st.sent(1, Some(7), t0);
        assert!(
            st.pipe_lost(8).is_empty() && st.due(1, t0).is_none(),
            "another pipe's loss does not matter"
        );
        st.pipe_lost(7);
        assert!(
            st.due(1, t0).is_some(),
            "its own pipe's loss resends at once"
        );
    }

    #[test]
    fn req_accepts_a_reply_only_from_the_pipe_that_carried_the_request() {
        let t0 = Instant::now();
        let mut st = ReqState::new(Some(Duration::from_secs(1)));
        let wire = st.start(1, Message::from(&b"q"[..]));
        assert!(
            matches!(
                st.on_reply(Some(7), reply_to(&wire, b"early")),
                ReplyOutcome::WrongPipe
            ),
            "an unsent request has no pipe to answer it"
        );
        st.sent(1, Some(7), t0);
        assert!(matches!(
            st.on_reply(Some(9), reply_to(&wire, b"forged")),
            ReplyOutcome::WrongPipe
        ));
        assert!(matches!(
            st.on_reply(None, reply_to(&wire, b"forged")),
            ReplyOutcome::WrongPipe
        ));
        // resent on pipe 8: the first pipe may still answer
        st.sent(1, Some(8), t0);
        assert!(matches!(
            st.on_reply(Some(9), reply_to(&wire, b"forged")),
            ReplyOutcome::WrongPipe
        ));
        assert!(matches!(
            st.on_reply(Some(7), reply_to(&wire, b"a")),
            ReplyOutcome::Matched(1, _)
        ));
        assert_eq!(st.take_reply(1).unwrap().body(), b"a");
    }

    #[test]
    fn req_ids_start_at_a_random_value() {
        let firsts: std::collections::HashSet<u32> = (0..8)
            .map(|_| {
                let w = ReqState::new(None).start(1, Message::from(&b"q"[..]));
                u32::from_be_bytes(w.header()[..4].try_into().unwrap())
            })
            .collect();
        assert!(
            firsts.len() > 1,
            "eight sockets began at the same id: {firsts:?}"
        );
    }

    #[test]
    fn new_request_cancels_the_old_one_and_contexts_are_independent() {
        let mut st = ReqState::new(None);
        let old = st.start(1, Message::from(&b"old"[..]));
        let other = st.start(2, Message::from(&b"other"[..]));
        let new = st.start(1, Message::from(&b"new"[..]));
        st.sent(2, Some(7), Instant::now());
        st.sent(1, Some(7), Instant::now());
        assert_ne!(old.header(), new.header());
        assert!(matches!(
            st.on_reply(Some(7), reply_to(&old, b"x")),
            ReplyOutcome::Late
        ));
        assert!(matches!(
            st.on_reply(Some(7), reply_to(&other, b"y")),
            ReplyOutcome::Matched(2, _)
        ));
        assert!(matches!(
            st.on_reply(Some(7), reply_to(&new, b"z")),
            ReplyOutcome::Matched(1, _)
        ));
        assert_eq!(st.take_reply(1).unwrap().body(), b"z");
        assert_eq!(st.take_reply(2).unwrap().body(), b"y");
        assert_eq!(st.deadline(1), None, "resend disabled");
        let mut bad = Message::from(&b"x"[..]);
        bad.push_header_u32(5);
        assert!(matches!(st.on_reply(Some(7), bad), ReplyOutcome::Malformed));
    }
}

//! `ReqState` (cooked REQ with no I/O) against a model of what its docs
//! promise: ids with the top bit, unique among pending requests; a reply
//! matches only its pending request and only from a pipe that request went
//! out on; late and malformed replies; resends when unsent, overdue or
//! after the pipe died; deadlines; cancel; wakers.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Wake, Waker};
use std::time::Duration;

use proptest::prelude::*;
use sp_core::{Message, PipeId};
use sp_protocols::req::ReplyOutcome;
use sp_protocols::ReqState;
use tokio::time::Instant;

const CTXS: u64 = 3;
const PIPES: u32 = 3;

#[derive(Clone, Debug)]
enum Reply {
    /// To the current request of this context.
    Current(u64),
    /// To the request this context had before its current one.
    Old(u64),
    /// Any word (a guessed id, or without the top bit).
    Word(u32),
    /// No header at all.
    Empty,
}

#[derive(Clone, Debug)]
enum Op {
    Start(u64),
    Sent(u64, Option<PipeId>),
    Reply(Option<PipeId>, Reply),
    Take(u64),
    Due(u64),
    PipeLost(PipeId),
    Cancel(u64),
    SetWaker(u64),
    Advance(u64),
}

fn pipe() -> impl Strategy<Value = Option<PipeId>> {
    prop_oneof![1 => Just(None), 5 => (1..=PIPES).prop_map(Some)]
}

fn op() -> impl Strategy<Value = Op> {
    let ctx = 0..CTXS;
    let reply = prop_oneof![
        4 => ctx.clone().prop_map(Reply::Current),
        1 => ctx.clone().prop_map(Reply::Old),
        1 => any::<u32>().prop_map(Reply::Word),
        1 => Just(Reply::Empty),
    ];
    prop_oneof![
        3 => ctx.clone().prop_map(Op::Start),
        3 => (ctx.clone(), pipe()).prop_map(|(c, p)| Op::Sent(c, p)),
        4 => (pipe(), reply).prop_map(|(p, r)| Op::Reply(p, r)),
        2 => ctx.clone().prop_map(Op::Take),
        2 => ctx.clone().prop_map(Op::Due),
        1 => (1..=PIPES).prop_map(Op::PipeLost),
        1 => ctx.clone().prop_map(Op::Cancel),
        1 => ctx.prop_map(Op::SetWaker),
        // on the resend interval's 50 ms grid: "now" often is exactly a deadline
        2 => (0u64..30).prop_map(|k| Op::Advance(k * 50)),
    ]
}

/// One pending request, as the model sees it.
struct Pending {
    id: u32,
    header: Vec<u8>,
    body: Vec<u8>,
    pipe: Option<PipeId>,
    earlier: HashSet<PipeId>,
    sent: bool,
    lost: bool,
    resend_at: Option<Instant>,
    reply: Option<Vec<u8>>,
    waker: Option<Arc<Count>>,
}

struct Count(AtomicUsize);
impl Wake for Count {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn run(resend: Option<Duration>, ops: Vec<Op>) {
    let t0 = Instant::now();
    let mut now = t0;
    let mut st = ReqState::new(resend);
    let mut model: HashMap<u64, Pending> = HashMap::new();
    let mut old_ids: HashMap<u64, u32> = HashMap::new();
    let mut n = 0u32;
    for op in ops {
        n += 1;
        match op {
            Op::Start(ctx) => {
                let body = format!("request {n}").into_bytes();
                let wire = st.start(ctx, Message::from(body.clone()));
                let h = wire.header().to_vec();
                assert_eq!(h.len(), 4);
                let word = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
                assert!(word & 0x8000_0000 != 0, "ids carry the top bit");
                assert_eq!(wire.body(), &body[..]);
                if let Some(old) = model.remove(&ctx) {
                    old_ids.insert(ctx, old.id);
                }
                let id = word & 0x7fff_ffff;
                assert!(
                    model.values().all(|p| p.id != id),
                    "id {id:#x} is pending on another context"
                );
                model.insert(
                    ctx,
                    Pending {
                        id,
                        header: h,
                        body,
                        pipe: None,
                        earlier: HashSet::new(),
                        sent: false,
                        lost: false,
                        resend_at: None,
                        reply: None,
                        waker: None,
                    },
                );
            }
            Op::Sent(ctx, pipe) => {
                st.sent(ctx, pipe, now);
                if let Some(p) = model.get_mut(&ctx) {
                    if let Some(old) = p.pipe.filter(|o| Some(*o) != pipe) {
                        p.earlier.insert(old);
                    }
                    p.pipe = pipe;
                    p.sent = true;
                    p.lost = false;
                    p.resend_at = resend.map(|d| now + d);
                }
            }
            Op::Reply(from, r) => {
                let body = format!("reply {n}").into_bytes();
                let mut m = Message::from(body.clone());
                let word = match r {
                    Reply::Current(c) => model.get(&c).map(|p| p.id | 0x8000_0000),
                    Reply::Old(c) => old_ids.get(&c).map(|id| id | 0x8000_0000),
                    Reply::Word(w) => Some(w),
                    Reply::Empty => None,
                };
                if let Some(w) = word {
                    m.push_header_u32(w);
                }
                let got = st.on_reply(from, m);
                let target = word
                    .filter(|w| w & 0x8000_0000 != 0)
                    .map(|w| w & 0x7fff_ffff)
                    .and_then(|id| model.iter_mut().find(|(_, p)| p.id == id));
                match (got, word) {
                    (ReplyOutcome::Malformed, w) => {
                        assert!(w.is_none_or(|w| w & 0x8000_0000 == 0))
                    }
                    (ReplyOutcome::Matched(ctx, waker), _) => {
                        let (&c, p) = target.expect("matched a pending request");
                        assert_eq!(ctx, c);
                        assert!(p.reply.is_none(), "matched a request already answered");
                        let f = from.expect("a reply with no pipe never matches");
                        assert!(p.pipe == Some(f) || p.earlier.contains(&f));
                        assert_eq!(waker.is_some(), p.waker.is_some());
                        p.waker = None;
                        p.reply = Some(body);
                    }
                    (ReplyOutcome::WrongPipe, _) => {
                        let (_, p) = target.expect("wrong pipe for a pending request");
                        assert!(p.reply.is_none());
                        assert!(!from.is_some_and(|f| p.pipe == Some(f) || p.earlier.contains(&f)));
                    }
                    (ReplyOutcome::Late, w) => {
                        assert!(w.is_some_and(|w| w & 0x8000_0000 != 0));
                        assert!(target.is_none_or(|(_, p)| p.reply.is_some()));
                    }
                }
            }
            Op::Take(ctx) => {
                let got = st.take_reply(ctx);
                let want = model.get(&ctx).and_then(|p| p.reply.clone());
                assert_eq!(got.as_ref().map(|m| m.body().to_vec()), want);
                if let Some(m) = got {
                    assert!(m.header().is_empty(), "the reply's id is consumed");
                    model.remove(&ctx);
                }
            }
            Op::Due(ctx) => {
                let got = st.due(ctx, now);
                let want = model.get(&ctx).filter(|p| {
                    p.reply.is_none()
                        && (!p.sent || p.lost || p.resend_at.is_some_and(|t| now >= t))
                });
                match (got, want) {
                    (Some(m), Some(p)) => {
                        assert_eq!(m.header(), &p.header[..], "a resend keeps its id");
                        assert_eq!(m.body(), &p.body[..]);
                    }
                    (None, None) => {}
                    (got, want) => panic!(
                        "due: {:?}, the model says {:?}",
                        got.map(|m| m.body().to_vec()),
                        want.map(|p| p.body.clone())
                    ),
                }
            }
            Op::PipeLost(pipe) => {
                let woken = st.pipe_lost(pipe);
                let mut want = 0;
                for p in model.values_mut() {
                    if p.pipe == Some(pipe) && p.reply.is_none() {
                        p.lost = true;
                        want += usize::from(p.waker.take().is_some());
                    }
                }
                assert_eq!(woken.len(), want);
            }
            Op::Cancel(ctx) => {
                st.cancel(ctx);
                if let Some(old) = model.remove(&ctx) {
                    old_ids.insert(ctx, old.id);
                }
            }
            Op::SetWaker(ctx) => {
                let c = Arc::new(Count(AtomicUsize::new(0)));
                st.set_waker(ctx, &Waker::from(c.clone()));
                if let Some(p) = model.get_mut(&ctx) {
                    p.waker = Some(c);
                }
            }
            Op::Advance(ms) => now += Duration::from_millis(ms),
        }
        assert_eq!(st.outstanding(), model.len());
        for c in 0..CTXS {
            let p = model.get(&c);
            assert_eq!(st.has_request(c), p.is_some());
            assert_eq!(st.deadline(c), p.and_then(|p| p.resend_at));
        }
    }
}

proptest! {
    #[test]
    fn req_state_matches_its_model(
        resend in prop_oneof![Just(None), (1u64..40).prop_map(|k| Some(Duration::from_millis(k * 50)))],
        ops in proptest::collection::vec(op(), 0..100),
    ) {
        run(resend, ops);
    }
}

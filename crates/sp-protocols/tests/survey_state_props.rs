//! `SurveyState` (cooked SURVEYOR with no I/O) against a model of what its
//! docs promise: survey ids with the top bit, unique among open surveys;
//! responses filed under their survey until its deadline, at most `cap`
//! unread; late, full and malformed responses; responses handed out in
//! order, still after the deadline, then one `Expired`; a new survey on a
//! context ends the old one.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Wake, Waker};
use std::time::Duration;

use proptest::prelude::*;
use sp_core::Message;
use sp_protocols::survey::{Next, ResponseOutcome, SurveyState};
use tokio::time::Instant;

const CTXS: u64 = 3;

#[derive(Clone, Debug)]
enum Target {
    Current(u64),
    Old(u64),
    Word(u32),
    Empty,
}

#[derive(Clone, Debug)]
enum Op {
    Start(u64, u64),
    Respond(Target),
    Next(u64),
    Cancel(u64),
    SetWaker(u64),
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    let ctx = 0..CTXS;
    let target = prop_oneof![
        5 => ctx.clone().prop_map(Target::Current),
        1 => ctx.clone().prop_map(Target::Old),
        1 => any::<u32>().prop_map(Target::Word),
        1 => Just(Target::Empty),
    ];
    prop_oneof![
        // times on a 50 ms grid, so that "now" often is exactly a deadline
        2 => (ctx.clone(), 1u64..20).prop_map(|(c, k)| Op::Start(c, k * 50)),
        5 => target.prop_map(Op::Respond),
        4 => ctx.clone().prop_map(Op::Next),
        1 => ctx.clone().prop_map(Op::Cancel),
        1 => ctx.prop_map(Op::SetWaker),
        2 => (0u64..12).prop_map(|k| Op::Advance(k * 50)),
    ]
}

struct Survey {
    id: u32,
    time: Duration,
    deadline: Instant,
    responses: VecDeque<Vec<u8>>,
    waker: bool,
}

struct Count(AtomicUsize);
impl Wake for Count {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn run(cap: usize, ops: Vec<Op>) {
    let t0 = Instant::now();
    let mut now = t0;
    let mut st = SurveyState::new(cap);
    let cap = cap.max(1);
    let mut model: HashMap<u64, Survey> = HashMap::new();
    let mut old_ids: HashMap<u64, u32> = HashMap::new();
    let mut n = 0u32;
    for op in ops {
        n += 1;
        match op {
            Op::Start(ctx, ms) => {
                let time = Duration::from_millis(ms);
                let mut q = Message::from(&b"question"[..]);
                q.set_pipe(Some(3));
                let wire = st.start(ctx, q, now, time);
                assert_eq!(wire.pipe(), None, "a survey goes to every pipe");
                let h = wire.header();
                assert_eq!(h.len(), 4);
                let word = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
                assert!(word & 0x8000_0000 != 0);
                if let Some(old) = model.remove(&ctx) {
                    old_ids.insert(ctx, old.id);
                }
                let id = word & 0x7fff_ffff;
                assert!(model.values().all(|s| s.id != id), "id reused while open");
                model.insert(
                    ctx,
                    Survey {
                        id,
                        time,
                        deadline: now + time,
                        responses: VecDeque::new(),
                        waker: false,
                    },
                );
            }
            Op::Respond(t) => {
                let body = format!("response {n}").into_bytes();
                let word = match t {
                    Target::Current(c) => model.get(&c).map(|s| s.id | 0x8000_0000),
                    Target::Old(c) => old_ids.get(&c).map(|id| id | 0x8000_0000),
                    Target::Word(w) => Some(w),
                    Target::Empty => None,
                };
                let mut m = Message::from(body.clone());
                if let Some(w) = word {
                    m.push_header_u32(w);
                }
                let got = st.on_response(m, now);
                let target = word
                    .filter(|w| w & 0x8000_0000 != 0)
                    .and_then(|w| model.iter_mut().find(|(_, s)| s.id == w & 0x7fff_ffff));
                match got {
                    ResponseOutcome::Malformed => {
                        assert!(word.is_none_or(|w| w & 0x8000_0000 == 0))
                    }
                    ResponseOutcome::Late => {
                        assert!(word.is_some_and(|w| w & 0x8000_0000 != 0));
                        assert!(target.is_none_or(|(_, s)| now >= s.deadline));
                    }
                    ResponseOutcome::Full => {
                        let (_, s) = target.expect("full: an open survey");
                        assert!(now < s.deadline);
                        assert_eq!(s.responses.len(), cap);
                    }
                    ResponseOutcome::Matched(ctx, waker) => {
                        let (&c, s) = target.expect("matched an open survey");
                        assert_eq!(ctx, c);
                        assert!(now < s.deadline, "matched after the deadline");
                        assert!(s.responses.len() < cap);
                        assert_eq!(waker.is_some(), s.waker);
                        s.waker = false;
                        s.responses.push_back(body);
                    }
                }
            }
            Op::Next(ctx) => {
                let got = st.next(ctx, now);
                match model.get_mut(&ctx) {
                    None => assert!(matches!(got, Next::NoSurvey), "{got:?}"),
                    Some(s) => match got {
                        Next::Response(m) => {
                            assert_eq!(Some(m.body().to_vec()), s.responses.pop_front());
                            assert!(m.header().is_empty());
                        }
                        Next::Wait(at) => {
                            assert!(s.responses.is_empty() && now < s.deadline);
                            assert_eq!(at, s.deadline);
                        }
                        Next::Expired(time) => {
                            assert!(s.responses.is_empty() && now >= s.deadline);
                            assert_eq!(time, s.time);
                            let s = model.remove(&ctx).expect("the expired survey");
                            old_ids.insert(ctx, s.id);
                        }
                        Next::NoSurvey => panic!("no survey, the model has one"),
                    },
                }
            }
            Op::Cancel(ctx) => {
                st.cancel(ctx);
                if let Some(s) = model.remove(&ctx) {
                    old_ids.insert(ctx, s.id);
                }
            }
            Op::SetWaker(ctx) => {
                let c = Arc::new(Count(AtomicUsize::new(0)));
                st.set_waker(ctx, &Waker::from(c));
                if let Some(s) = model.get_mut(&ctx) {
                    s.waker = true;
                }
            }
            Op::Advance(ms) => now += Duration::from_millis(ms),
        }
        assert_eq!(st.outstanding(), model.len());
    }
}

proptest! {
    #[test]
    fn survey_state_matches_its_model(cap in 0usize..4, ops in proptest::collection::vec(op(), 0..100)) {
        run(cap, ops);
    }
}

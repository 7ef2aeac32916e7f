//! SURVEYOR v0 and RESPONDENT v0 (`rfc/sp-surveyor-01`): a surveyor
//! broadcasts a question, every respondent may answer, answers count until
//! the survey's deadline.
//!
//! The wire header is REQ/REP's backtrace with a survey id (top bit set) as
//! its last word. The raw forms ([`Surveyor0Raw`], [`Respondent0Raw`]) only
//! route; the cooked surveyor ([`Surveyor0`]) is [`SurveyState`] (ids,
//! deadlines, matching, no I/O) with thin async context halves over it, as
//! cooked REQ is.
//!
//! # Receiving on a surveyor context
//!
//! After `send(question)`, `recv()` yields each response as it arrives, until
//! the survey's deadline (default [`DEFAULT_SURVEY_TIME`], 1 s as in nng,
//! nanomsg and mangos; set it per context with [`SurveyorControl`]). Responses
//! that arrived before the deadline are still handed out after it; then
//! `recv()` returns **[`Error::TimedOut`]** once, carrying the survey time, and
//! the survey is over: a response arriving after that is dropped and counted
//! as [`DropReason::Late`], and a further `recv()` returns
//! [`Error::State`] until the next survey is sent. A new survey on the same
//! context ends the previous one (its stragglers are late too, and so are
//! its responses still unread: counted `Late` when it ends).
//!
//! Responses wait for their context within the socket's receive limits,
//! per survey: at most `Options::recv_queue` responses and
//! `Options::recv_queue_bytes` bytes (one response alone always fits).
//! Beyond either, a response is dropped and counted as
//! [`DropReason::QueueFull`], so a respondent answering many times cannot
//! make a survey hold more than that.
//!
//! ```no_run
//! # async fn demo(surveyor: sp_core::Socket) -> sp_core::Result<()> {
//! use std::time::Duration;
//! use sp_core::Error;
//! use sp_protocols::survey::SurveyorControl;
//!
//! // (spstack::surveyor0().build() makes such a socket)
//! surveyor.control::<SurveyorControl>().unwrap().set_deadline(Duration::from_millis(250));
//! surveyor.send("who is there?").await?;
//! loop {
//!     match surveyor.recv().await {
//!         Ok(answer) => println!("{:?}", answer.body()),
//!         Err(Error::TimedOut(_)) => break, // the survey is over
//!         Err(e) => return Err(e),
//!     }
//! }
//! # Ok(()) }
//! ```

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures::{Sink, Stream};
use sp_core::layer::{ComponentInfo, CookedContext, Field, MessageIo, Overhead};
use sp_core::protocol::{ProtocolId, ProtocolSpec};
use sp_core::queue::WaitKey;
use sp_core::routing::{Pipes, RecvContext, Routed};
use sp_core::{
    backtrace_field, CookedProtocol, CookedSocket, DropReason, Error, Message, PipeId, RawSocket,
    Result, Routing, Verdict,
};
use tokio::time::{Instant, Sleep};

use crate::raw::{recv_answer, recv_question};
use crate::rep::Rep0;

/// How long a survey collects responses unless told otherwise: 1 s, as in
/// nng (`NNG_OPT_SURVEYOR_SURVEYTIME`), nanomsg and mangos.
pub const DEFAULT_SURVEY_TIME: Duration = Duration::from_secs(1);

// ---------------------------------------------------------------------------
// raw forms
// ---------------------------------------------------------------------------

/// SURVEYOR v0, raw (nng's xsurveyor): broadcasts surveys to every
/// respondent (dropped per pipe when its queue is full); on receive moves the
/// whole backtrace of a response into the header.
#[derive(Clone, Copy, Debug, Default)]
pub struct Surveyor0Raw;

impl Routing for Surveyor0Raw {
    fn spec(&self) -> ProtocolSpec {
        crate::raw::builtin(ProtocolId::SURVEYOR0)
    }
    fn write_through(&self) -> bool {
        // request/reply: a lone message someone waits for
        true
    }
    fn recv_headroom(&self) -> usize {
        // nothing is written in front of a received frame: small frames may
        // stay views of the chunk they were read into
        0
    }
    fn send(&self, msg: Message, pipes: &mut dyn Pipes) -> Routed {
        pipes.broadcast(msg, None);
        Routed::Queued(None)
    }
    fn recv(&self, _: PipeId, msg: &mut Message, cx: &mut dyn RecvContext) -> Verdict {
        // as nng's surveyor: a response without its survey id closes the pipe
        recv_answer(msg, cx.ttl(), "response", "survey id")
    }
    fn header_format(&self) -> Vec<Field> {
        vec![backtrace_field("backtrace")]
    }
}

/// RESPONDENT v0, raw (nng's xrespondent), the same as a raw REP: on receive
/// checks the backtrace against the TTL and prepends the arriving pipe's id;
/// on send routes by that id (dropped, counted, if the pipe is gone or full).
#[derive(Clone, Copy, Debug, Default)]
pub struct Respondent0Raw;

impl Routing for Respondent0Raw {
    fn spec(&self) -> ProtocolSpec {
        crate::raw::builtin(ProtocolId::RESPONDENT0)
    }
    fn write_through(&self) -> bool {
        // request/reply: a lone message someone waits for
        true
    }
    fn send(&self, msg: Message, pipes: &mut dyn Pipes) -> Routed {
        crate::raw::send_by_header(msg, pipes)
    }
    fn recv(&self, pipe: PipeId, msg: &mut Message, cx: &mut dyn RecvContext) -> Verdict {
        recv_question(pipe, msg, cx.ttl(), "survey")
    }
    fn header_format(&self) -> Vec<Field> {
        vec![backtrace_field("backtrace")]
    }
}

// ---------------------------------------------------------------------------
// cooked RESPONDENT: cooked REP's per-context backtrace, another name
// ---------------------------------------------------------------------------

/// Cooked RESPONDENT v0: each context remembers the backtrace of the survey
/// it received and puts it on its response (exactly what cooked REP does).
/// Sending with no survey received on that context is [`Error::State`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Respondent0;

impl CookedProtocol for Respondent0 {
    fn info(&self) -> ComponentInfo {
        ComponentInfo::new("respondent0", Overhead::NONE)
    }
    fn attach(&self, raw: &RawSocket) -> Arc<dyn CookedSocket> {
        Rep0.attach(raw)
    }
}

// ---------------------------------------------------------------------------
// the surveyor's state, no I/O
// ---------------------------------------------------------------------------

/// Id of a context within one socket.
pub type CtxId = u64;

struct Survey {
    ctx: CtxId,
    time: Duration,
    deadline: Instant,
    responses: VecDeque<Message>,
    /// Bytes of `responses`.
    bytes: usize,
    waker: Option<Waker>,
}

/// What happened to a response handed to [`SurveyState::on_response`].
#[derive(Debug)]
pub enum ResponseOutcome {
    /// Queued for this context; wake it.
    Matched(CtxId, Option<Waker>),
    /// Its survey is over, cancelled or unknown.
    Late,
    /// No room for it: its survey has `cap` responses waiting unread
    /// already, or they would exceed the survey's byte budget with it.
    Full,
    /// Not a valid survey response header.
    Malformed,
}

/// What a context's receive should do next.
#[derive(Debug)]
pub enum Next {
    /// Hand out this response.
    Response(Message),
    /// Nothing yet; wait for a response or until this instant.
    Wait(Instant),
    /// The survey ended (this was its time); it is forgotten now.
    Expired(Duration),
    /// No survey on this context.
    NoSurvey,
}

/// The SURVEYOR state of one socket, all contexts included. No I/O: the
/// caller passes the time in.
///
/// Responses wait here between the raw socket's receive queue and the
/// context that reads them, so each survey's are bounded like that queue:
/// in count and in bytes ([`Message::len`], as the queue weighs them), and
/// as in the queue, one response is admitted whatever its size when none is
/// waiting (a budget below `recv_max_size` never makes a large response
/// undeliverable). The budget is per survey, not shared, so that a context
/// that reads slowly, or a respondent flooding its survey, does not make
/// another context's responses drop; what all surveys hold together is
/// bounded by the contexts the application opens times the budget.
pub struct SurveyState {
    next_id: u32,
    surveys: crate::idmap::IdMap<u32, Survey>,
    by_ctx: crate::idmap::IdMap<CtxId, u32>,
    cap: usize,
    cap_bytes: usize,
    /// Bytes of the responses waiting on every survey.
    held_bytes: usize,
    /// Responses that arrived in time and were thrown away unread with
    /// their survey, not yet reported by [`SurveyState::take_discarded`].
    discarded: usize,
}

impl SurveyState {
    /// A state with a random first id (as nng) that keeps at most `cap`
    /// unread responses per survey (more are dropped, counted `QueueFull`),
    /// with no byte budget (see [`SurveyState::with_bytes`]).
    pub fn new(cap: usize) -> SurveyState {
        SurveyState::with_bytes(cap, usize::MAX)
    }

    /// As [`SurveyState::new`], and the unread responses of a survey take
    /// at most `cap_bytes` bytes (more are dropped, counted `QueueFull`),
    /// except one response alone.
    pub fn with_bytes(cap: usize, cap_bytes: usize) -> SurveyState {
        SurveyState {
            next_id: fastrand::u32(..0x7fff_ffff),
            surveys: Default::default(),
            by_ctx: Default::default(),
            cap: cap.max(1),
            cap_bytes,
            held_bytes: 0,
            discarded: 0,
        }
    }

    /// Bytes of the responses waiting unread, on every survey.
    pub fn held_bytes(&self) -> usize {
        self.held_bytes
    }

    /// How many responses were thrown away unread since the last call,
    /// because their survey ended early (a new survey on its context, or
    /// [`SurveyState::cancel`]): the caller counts them as drops.
    pub fn take_discarded(&mut self) -> usize {
        std::mem::take(&mut self.discarded)
    }

    fn alloc_id(&mut self) -> u32 {
        loop {
            let id = self.next_id & 0x7fff_ffff;
            self.next_id = self.next_id.wrapping_add(1);
            if !self.surveys.contains_key(&id) {
                return id;
            }
        }
    }

    /// Starts a survey on `ctx` lasting `time` from `now` (ending its
    /// previous one) and returns the wire message: the id with its top bit
    /// set, then the body.
    pub fn start(&mut self, ctx: CtxId, mut msg: Message, now: Instant, time: Duration) -> Message {
        self.cancel(ctx);
        let id = self.alloc_id();
        msg.clear_header();
        msg.set_pipe(None);
        msg.push_header_u32(id | 0x8000_0000);
        self.surveys.insert(
            id,
            Survey {
                ctx,
                time,
                deadline: now + time,
                responses: VecDeque::new(),
                bytes: 0,
                waker: None,
            },
        );
        self.by_ctx.insert(ctx, id);
        msg
    }

    /// Matches a response (header = backtrace from raw SURVEYOR) received
    /// at `now` to its survey.
    pub fn on_response(&mut self, mut msg: Message, now: Instant) -> ResponseOutcome {
        let Some(word) = msg.pop_header_u32() else {
            return ResponseOutcome::Malformed;
        };
        if word & 0x8000_0000 == 0 {
            return ResponseOutcome::Malformed;
        }
        let cap = self.cap;
        match self.surveys.get_mut(&(word & 0x7fff_ffff)) {
            Some(s) if now < s.deadline => {
                msg.clear_header();
                let len = msg.len();
                let fits = s.bytes.saturating_add(len) <= self.cap_bytes;
                if s.responses.len() >= cap || !(fits || s.responses.is_empty()) {
                    return ResponseOutcome::Full;
                }
                s.bytes += len;
                self.held_bytes += len;
                s.responses.push_back(msg);
                ResponseOutcome::Matched(s.ctx, s.waker.take())
            }
            _ => ResponseOutcome::Late,
        }
    }

    /// The next step for `ctx`'s receive at `now`.
    pub fn next(&mut self, ctx: CtxId, now: Instant) -> Next {
        let Some(&id) = self.by_ctx.get(&ctx) else {
            return Next::NoSurvey;
        };
        let Some(s) = self.surveys.get_mut(&id) else {
            self.by_ctx.remove(&ctx);
            return Next::NoSurvey;
        };
        if let Some(m) = s.responses.pop_front() {
            s.bytes -= m.len();
            self.held_bytes -= m.len();
            return Next::Response(m);
        }
        if now < s.deadline {
            return Next::Wait(s.deadline);
        }
        let time = s.time;
        self.cancel(ctx);
        Next::Expired(time)
    }

    /// Remembers who to wake for `ctx`'s responses.
    pub fn set_waker(&mut self, ctx: CtxId, w: &Waker) {
        if let Some(s) = self
            .by_ctx
            .get(&ctx)
            .and_then(|id| self.surveys.get_mut(id))
        {
            match &s.waker {
                Some(old) if old.will_wake(w) => {}
                _ => s.waker = Some(w.clone()),
            }
        }
    }

    /// Ends `ctx`'s survey (responses arriving later are late).
    pub fn cancel(&mut self, ctx: CtxId) {
        let Some(id) = self.by_ctx.remove(&ctx) else {
            return;
        };
        if let Some(s) = self.surveys.remove(&id) {
            self.held_bytes -= s.bytes;
            self.discarded += s.responses.len();
        }
    }

    /// Surveys in progress (or expired and not yet noticed).
    pub fn outstanding(&self) -> usize {
        self.surveys.len()
    }
}

// ---------------------------------------------------------------------------
// cooked SURVEYOR
// ---------------------------------------------------------------------------

/// A surveyor context's settings, reached with
/// `Socket::control::<SurveyorControl>()` or
/// `SocketContext::control::<SurveyorControl>()`.
#[derive(Debug)]
pub struct SurveyorControl {
    nanos: AtomicU64,
}

impl SurveyorControl {
    fn new(d: Duration) -> SurveyorControl {
        let c = SurveyorControl {
            nanos: AtomicU64::new(0),
        };
        c.set_deadline(d);
        c
    }
    /// How long a survey sent on this context collects responses.
    pub fn deadline(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::Relaxed))
    }
    /// Sets the survey time of this context; applies to surveys sent from
    /// now on (as nng reads it at send). Clamped to 1 ns..=about 584 years.
    pub fn set_deadline(&self, d: Duration) {
        let n = d.as_nanos().clamp(1, u64::MAX as u128) as u64;
        self.nanos.store(n, Ordering::Relaxed);
    }
}

/// Cooked SURVEYOR v0: survey ids, deadlines, contexts.
#[derive(Clone, Copy, Debug)]
pub struct Surveyor0 {
    deadline: Duration,
}

impl Default for Surveyor0 {
    fn default() -> Self {
        Surveyor0 {
            deadline: DEFAULT_SURVEY_TIME,
        }
    }
}

impl Surveyor0 {
    /// A surveyor whose contexts start with survey time `d` instead of 1 s.
    pub fn with_deadline(d: Duration) -> Surveyor0 {
        Surveyor0 { deadline: d }
    }
}

impl CookedProtocol for Surveyor0 {
    fn info(&self) -> ComponentInfo {
        // its survey id is the last word of the raw backtrace
        ComponentInfo::new("surveyor0", Overhead::header(4))
    }
    fn attach(&self, raw: &RawSocket) -> Arc<dyn CookedSocket> {
        Arc::new_cyclic(|me| SurvShared {
            me: me.clone(),
            state: Mutex::new(SurveyState::with_bytes(
                raw.options().recv_queue,
                raw.options().recv_queue_bytes,
            )),
            raw: raw.clone(),
            deadline: self.deadline,
            next_ctx: AtomicU64::new(1),
        })
    }
}

struct SurvShared {
    me: Weak<SurvShared>,
    raw: RawSocket,
    state: Mutex<SurveyState>,
    deadline: Duration,
    next_ctx: AtomicU64,
}

impl SurvShared {
    fn lock(&self) -> std::sync::MutexGuard<'_, SurveyState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts the responses a survey that ended early took with it: they
    /// were received, and nobody waits for them any more.
    fn count_discarded(&self, st: &mut SurveyState) {
        let counters = self.raw.counters();
        for _ in 0..st.take_discarded() {
            counters.dropped(DropReason::Late);
        }
    }
}

impl CookedSocket for SurvShared {
    fn context(&self) -> CookedContext {
        let Some(shared) = self.me.upgrade() else {
            unreachable!("a cooked socket is only used while its Arc lives")
        };
        let ctx = self.next_ctx.fetch_add(1, Ordering::Relaxed);
        let control = Arc::new(SurveyorControl::new(self.deadline));
        let g = Arc::new(CtxGuard {
            shared,
            ctx,
            control: control.clone(),
        });
        CookedContext {
            io: MessageIo::new(
                Box::pin(SurvTx {
                    g: g.clone(),
                    key: WaitKey::default(),
                }),
                Box::pin(SurvRx {
                    g,
                    key: WaitKey::default(),
                    timer: None,
                }),
            ),
            control: Some(control),
        }
    }
}

/// Ends a context's survey when both of its halves are gone.
struct CtxGuard {
    shared: Arc<SurvShared>,
    ctx: CtxId,
    control: Arc<SurveyorControl>,
}

impl Drop for CtxGuard {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        st.cancel(self.ctx);
        self.shared.count_discarded(&mut st);
    }
}

struct SurvTx {
    g: Arc<CtxGuard>,
    key: WaitKey,
}

impl Sink<Message> for SurvTx {
    type Error = Error;
    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        // a broadcast never waits; this only reports a closed socket
        let this = self.get_mut();
        this.g.shared.raw.poll_send_ready(cx, &mut this.key)
    }
    fn start_send(self: Pin<&mut Self>, msg: Message) -> Result<()> {
        let g = &self.g;
        let time = g.control.deadline();
        let wire = {
            let mut st = g.shared.lock();
            let wire = st.start(g.ctx, msg, Instant::now(), time);
            g.shared.count_discarded(&mut st);
            wire
        };
        // broadcast: queued on every pipe with room, dropped (counted) on the others
        g.shared.raw.send_now(wire)?;
        Ok(())
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl Drop for SurvTx {
    fn drop(&mut self) {
        self.g.shared.raw.cancel_send(&mut self.key);
    }
}

struct SurvRx {
    g: Arc<CtxGuard>,
    key: WaitKey,
    timer: Option<Pin<Box<Sleep>>>,
}

impl Stream for SurvRx {
    type Item = Result<Message>;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Message>>> {
        let this = self.get_mut();
        let ctx = this.g.ctx;
        let shared = this.g.shared.clone();
        loop {
            let now = Instant::now();
            let deadline = {
                let mut st = shared.lock();
                match st.next(ctx, now) {
                    Next::Response(m) => {
                        drop(st);
                        shared.raw.cancel_recv(&mut this.key);
                        return Poll::Ready(Some(Ok(m)));
                    }
                    Next::Expired(time) => {
                        drop(st);
                        shared.raw.cancel_recv(&mut this.key);
                        return Poll::Ready(Some(Err(Error::TimedOut(time))));
                    }
                    Next::NoSurvey => {
                        drop(st);
                        shared.raw.cancel_recv(&mut this.key);
                        return Poll::Ready(Some(Err(Error::State(
                            "no survey in progress on this context: send one first",
                        ))));
                    }
                    Next::Wait(at) => {
                        st.set_waker(ctx, cx.waker());
                        at
                    }
                }
            };
            // whoever polls takes responses off the raw socket and files them
            // under their survey, waking the context that owns it
            match shared.raw.poll_recv(cx, &mut this.key) {
                Poll::Ready(Ok(m)) => {
                    let outcome = shared.lock().on_response(m, Instant::now());
                    let counters = shared.raw.counters();
                    match outcome {
                        ResponseOutcome::Matched(c, w) => {
                            if c != ctx {
                                if let Some(w) = w {
                                    w.wake();
                                }
                            }
                        }
                        ResponseOutcome::Late => counters.dropped(DropReason::Late),
                        ResponseOutcome::Full => counters.dropped(DropReason::QueueFull),
                        ResponseOutcome::Malformed => counters.dropped(DropReason::Malformed),
                    }
                    continue;
                }
                Poll::Ready(Err(e)) => {
                    shared.raw.cancel_recv(&mut this.key);
                    return Poll::Ready(match e {
                        Error::Closed => None,
                        e => Some(Err(e)),
                    });
                }
                Poll::Pending => {}
            }
            let t = this
                .timer
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
            if t.deadline() != deadline {
                t.as_mut().reset(deadline);
            }
            if t.as_mut().poll(cx).is_ready() {
                continue;
            }
            return Poll::Pending;
        }
    }
}

impl Drop for SurvRx {
    fn drop(&mut self) {
        self.g.shared.raw.cancel_recv(&mut self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response_to(wire: &Message, body: &[u8]) -> Message {
        let mut r = Message::from(body);
        r.push_header(&wire.header()[..4]);
        r
    }

    #[test]
    fn responses_until_the_deadline_then_expired_then_no_survey() {
        let t0 = Instant::now();
        let time = Duration::from_millis(100);
        let mut st = SurveyState::new(8);
        let wire = st.start(1, Message::from(&b"q"[..]), t0, time);
        assert_eq!(wire.header()[0] & 0x80, 0x80, "survey ids have the top bit");
        assert_eq!(wire.body(), b"q");
        assert!(matches!(st.next(1, t0), Next::Wait(at) if at == t0 + time));
        for b in [&b"a"[..], b"b"] {
            assert!(matches!(
                st.on_response(response_to(&wire, b), t0),
                ResponseOutcome::Matched(1, _)
            ));
        }
        assert!(matches!(st.next(1, t0), Next::Response(m) if m.body() == b"a"));
        // on time, read after the deadline: still handed out
        let late = t0 + time;
        assert!(matches!(st.next(1, late), Next::Response(m) if m.body() == b"b"));
        assert!(matches!(
            st.on_response(response_to(&wire, b"c"), late),
            ResponseOutcome::Late
        ));
        assert!(matches!(st.next(1, late), Next::Expired(t) if t == time));
        assert!(matches!(st.next(1, late), Next::NoSurvey));
        assert_eq!(st.outstanding(), 0);
    }

    #[test]
    fn a_new_survey_ends_the_old_and_contexts_are_independent() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut st = SurveyState::new(2);
        let old = st.start(1, Message::from(&b"old"[..]), t0, s);
        let other = st.start(2, Message::from(&b"other"[..]), t0, s);
        let new = st.start(1, Message::from(&b"new"[..]), t0, s);
        assert_ne!(old.header(), new.header());
        assert!(matches!(
            st.on_response(response_to(&old, b"x"), t0),
            ResponseOutcome::Late
        ));
        assert!(matches!(
            st.on_response(response_to(&other, b"y"), t0),
            ResponseOutcome::Matched(2, _)
        ));
        for _ in 0..2 {
            assert!(matches!(
                st.on_response(response_to(&new, b"z"), t0),
                ResponseOutcome::Matched(1, _)
            ));
        }
        assert!(matches!(
            st.on_response(response_to(&new, b"z"), t0),
            ResponseOutcome::Full
        ));
        let mut bad = Message::from(&b"x"[..]);
        bad.push_header_u32(5);
        assert!(matches!(
            st.on_response(bad, t0),
            ResponseOutcome::Malformed
        ));
        assert!(matches!(
            st.on_response(Message::from(&b"no header"[..]), t0),
            ResponseOutcome::Malformed
        ));
        st.cancel(2);
        assert!(matches!(st.next(2, t0), Next::NoSurvey));
    }

    #[test]
    fn each_survey_holds_at_most_its_byte_budget() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut st = SurveyState::with_bytes(100, 1000);
        let a = st.start(1, Message::from(&b"a"[..]), t0, s);
        let b = st.start(2, Message::from(&b"b"[..]), t0, s);
        let big = [0u8; 400];
        for _ in 0..2 {
            assert!(matches!(
                st.on_response(response_to(&a, &big), t0),
                ResponseOutcome::Matched(1, _)
            ));
        }
        assert!(matches!(
            st.on_response(response_to(&a, &big), t0),
            ResponseOutcome::Full
        ));
        assert!(matches!(
            st.on_response(response_to(&a, &[0; 200]), t0),
            ResponseOutcome::Matched(1, _)
        ));
        assert!(matches!(
            st.on_response(response_to(&a, &[0; 1]), t0),
            ResponseOutcome::Full
        ));
        // a full survey does not take room from another context's
        assert!(matches!(
            st.on_response(response_to(&b, &big), t0),
            ResponseOutcome::Matched(2, _)
        ));
        assert_eq!(st.held_bytes(), 1400);
        // reading frees room
        assert!(matches!(st.next(1, t0), Next::Response(m) if m.len() == 400));
        assert_eq!(st.held_bytes(), 1000);
        assert!(matches!(
            st.on_response(response_to(&a, &big), t0),
            ResponseOutcome::Matched(1, _)
        ));
        // a survey ended early gives its bytes back and reports its unread
        st.cancel(1);
        assert_eq!(st.held_bytes(), 400);
        assert_eq!(st.take_discarded(), 3);
        assert_eq!(st.take_discarded(), 0, "reported once");
        let _ = st.start(2, Message::from(&b"again"[..]), t0, s);
        assert_eq!(st.held_bytes(), 0);
        assert_eq!(st.take_discarded(), 1);
    }

    #[test]
    fn one_response_larger_than_the_budget_fits_alone() {
        let t0 = Instant::now();
        let mut st = SurveyState::with_bytes(8, 100);
        let w = st.start(1, Message::from(&b"q"[..]), t0, Duration::from_secs(1));
        assert!(matches!(
            st.on_response(response_to(&w, &[1; 500]), t0),
            ResponseOutcome::Matched(1, _)
        ));
        assert!(matches!(
            st.on_response(response_to(&w, &[2; 1]), t0),
            ResponseOutcome::Full
        ));
        assert!(matches!(st.next(1, t0), Next::Response(m) if m.len() == 500));
        assert_eq!(st.held_bytes(), 0);
        assert!(matches!(
            st.on_response(response_to(&w, &[3; 1]), t0),
            ResponseOutcome::Matched(1, _)
        ));
    }
}

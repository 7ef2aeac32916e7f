//! The raw socket: the set of pipes, dialers and listeners, and the routing
//! a raw protocol chooses. This is the seam between pipe layers below and
//! message layers above.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info_span, warn, Instrument};

use crate::layer::{Field, PipeInfo, UpgradeService};
use crate::queue::{Queue, TryPush, WaitKey, WaitList};
use crate::stats::{Counters, DropReason, RejectReason, Stats};
use crate::transport::{PipeConfig, Transport, Unannounced};
use crate::{split_url, Announcement, Connection, Error, Message, Options, ProtocolId, Result};

/// A pipe's id: global, random start, in `1..=0x7fff_ffff` (as nng).
pub type PipeId = u32;

static NEXT_PIPE: AtomicU32 = AtomicU32::new(0);

fn next_pipe_id() -> PipeId {
    if NEXT_PIPE.load(Ordering::Relaxed) == 0 {
        let _ = NEXT_PIPE.compare_exchange(
            0,
            fastrand::u32(1..0x7fff_0000),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }
    loop {
        let id = NEXT_PIPE.fetch_add(1, Ordering::Relaxed) & 0x7fff_ffff;
        if id != 0 {
            return id;
        }
    }
}

/// How a raw protocol routes what the application sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendMode {
    /// To one pipe with room, round-robin; wait when all are full (PUSH, REQ, PAIR).
    LoadBalance,
    /// To the pipe named by the first header word, dropped if gone or full (REP, RESPONDENT).
    ToHeaderPipe,
    /// To every pipe, dropped per pipe when full (PUB, SURVEYOR).
    Broadcast,
    /// To every pipe but the one the message came from (BUS).
    BroadcastExceptOrigin,
    /// To the pipe set on the message (`Message::set_pipe`) if any, dropped
    /// if it is gone or full; otherwise load-balanced (polyamorous PAIR1).
    ToMessagePipe,
    /// Sending is not part of this protocol (PULL, SUB).
    Never,
}

/// What a full receive queue does to the next message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecvPolicy {
    /// Stop reading the pipe until there is room (back-pressure to the peer).
    Wait,
    /// Drop the oldest queued message, counted as `QueueFull` (SUB).
    DropOldest,
}

/// What to do with a received message.
#[derive(Debug)]
pub enum Verdict {
    /// Queue it for the application.
    Deliver,
    /// Drop it and count why.
    Drop(DropReason),
    /// The peer broke the protocol: close the pipe.
    Close(String),
}

/// The routing half of a scalability protocol, with no I/O.
pub trait RawProtocol: Send + Sync + 'static {
    /// This side's protocol.
    fn protocol(&self) -> ProtocolId;
    /// The protocol a peer must speak.
    fn peer(&self) -> ProtocolId;
    /// How sends are routed.
    fn send_mode(&self) -> SendMode;
    /// Pipes this protocol takes at most (PAIR: 1).
    fn max_pipes(&self) -> usize {
        usize::MAX
    }
    /// Parses a received flat frame: moves the protocol header from the body
    /// into the header, checks it. `ttl` is the socket's hop limit.
    fn on_recv(&self, pipe: PipeId, msg: &mut Message, ttl: u8) -> Verdict;
    /// Adjusts a message about to be queued on a pipe (PAIR1's hop count).
    fn on_send(&self, _msg: &mut Message) -> Verdict {
        Verdict::Deliver
    }
    /// Settings of the raw socket itself (raw SUB's subscriptions), reached
    /// with `Socket::control` when no cooked protocol sits above.
    fn control(&self) -> Option<crate::layer::Control> {
        None
    }
    /// What to do when the socket's receive queue is full.
    fn recv_policy(&self) -> RecvPolicy {
        RecvPolicy::Wait
    }
    /// Header bytes the protocol adds on receive (REP's pipe id).
    fn recv_headroom(&self) -> usize {
        8
    }
    /// The header this protocol puts on the wire, for `describe`.
    fn header_format(&self) -> Vec<Field> {
        Vec::new()
    }
}

/// What [`Core::send_now`] did with a message.
#[derive(Debug)]
pub enum Handover {
    /// Queued (on this pipe, when one pipe was chosen).
    Queued(Option<PipeId>),
    /// Not queued: no pipe could take it. Try again with `poll_send`.
    Kept(Message),
}

/// Pipe lifecycle events, as nng's `nng_pipe_notify`.
#[derive(Clone, Debug)]
pub enum PipeEvent {
    /// The pipe finished its handshake and is about to join; a hook may reject it.
    AddPre(PipeId, Arc<PipeInfo>),
    /// The pipe joined.
    AddPost(PipeId, Arc<PipeInfo>),
    /// The pipe left.
    RemovePost(PipeId, Arc<PipeInfo>),
}

/// A pipe event hook. Return `false` on `AddPre` to reject the pipe.
pub type PipeHook = Arc<dyn Fn(&PipeEvent) -> bool + Send + Sync>;

pub(crate) struct PipeEntry {
    pub id: PipeId,
    pub queue: Arc<Queue<Message>>,
    pub info: Arc<PipeInfo>,
    pub stats: Arc<Counters>,
    pub cancel: CancellationToken,
}

#[derive(Default)]
struct PipeTable {
    list: Vec<Arc<PipeEntry>>,
    by_id: HashMap<PipeId, usize>,
}

impl PipeTable {
    fn insert(&mut self, p: Arc<PipeEntry>) {
        self.by_id.insert(p.id, self.list.len());
        self.list.push(p);
    }
    fn remove(&mut self, id: PipeId) -> Option<Arc<PipeEntry>> {
        let i = self.by_id.remove(&id)?;
        let p = self.list.swap_remove(i);
        if let Some(moved) = self.list.get(i) {
            self.by_id.insert(moved.id, i);
        }
        Some(p)
    }
}

/// An endpoint (dialer or listener) that can be closed.
#[derive(Clone, Debug)]
pub struct Endpoint {
    url: String,
    cancel: CancellationToken,
}

impl Endpoint {
    /// The endpoint's URL (for a listener on port 0, the port bound).
    pub fn url(&self) -> &str {
        &self.url
    }
    /// Stops dialing or listening and closes the pipes this endpoint opened
    /// (as `nng_dialer_close` / `nng_listener_close` do).
    pub fn close(&self) {
        self.cancel.cancel();
    }
}

/// The shared state of one raw socket.
pub struct Core {
    proto: Arc<dyn RawProtocol>,
    opts: Options,
    transports: Vec<Arc<dyn Transport>>,
    upgrade: UpgradeService,
    announce: Announcement,
    pipes: RwLock<PipeTable>,
    rr: AtomicUsize,
    recv: Queue<Message>,
    send_waiters: Mutex<WaitList>,
    send_waiting: AtomicUsize,
    stats: Counters,
    hooks: RwLock<Vec<PipeHook>>,
    events: tokio::sync::broadcast::Sender<PipeEvent>,
    cancel: CancellationToken,
    closed: AtomicBool,
}

pub(crate) struct CoreParts {
    pub proto: Arc<dyn RawProtocol>,
    pub opts: Options,
    pub transports: Vec<Arc<dyn Transport>>,
    pub upgrade: UpgradeService,
    pub layer_names: Vec<String>,
}

impl Core {
    pub(crate) fn new(p: CoreParts) -> Arc<Core> {
        let announce = Announcement {
            protocol: p.proto.protocol(),
            layers: p.layer_names,
        };
        Arc::new(Core {
            recv: Queue::with_bytes(p.opts.recv_queue, p.opts.recv_queue_bytes, Message::len),
            proto: p.proto,
            opts: p.opts,
            transports: p.transports,
            upgrade: p.upgrade,
            announce,
            pipes: RwLock::new(PipeTable::default()),
            rr: AtomicUsize::new(0),
            send_waiters: Mutex::new(WaitList::default()),
            send_waiting: AtomicUsize::new(0),
            stats: Counters::default(),
            hooks: RwLock::new(Vec::new()),
            events: tokio::sync::broadcast::channel(256).0,
            cancel: CancellationToken::new(),
            closed: AtomicBool::new(false),
        })
    }

    /// The options the socket was built with.
    pub fn options(&self) -> &Options {
        &self.opts
    }

    /// The raw protocol.
    pub fn protocol(&self) -> &Arc<dyn RawProtocol> {
        &self.proto
    }

    /// Socket-wide counters.
    pub fn stats(&self) -> Stats {
        self.stats.snapshot()
    }

    /// The live socket counters, for layers that count their own drops.
    pub fn counters(&self) -> &Counters {
        &self.stats
    }

    /// Counters of one pipe.
    pub fn pipe_stats(&self, id: PipeId) -> Option<Stats> {
        self.read_pipes()
            .by_id
            .get(&id)
            .map(|&i| self.read_pipes().list[i].stats.snapshot())
    }

    /// Ids of the open pipes.
    pub fn pipes(&self) -> Vec<PipeId> {
        self.read_pipes().list.iter().map(|p| p.id).collect()
    }

    /// True while the pipe is attached.
    pub fn has_pipe(&self, id: PipeId) -> bool {
        self.read_pipes().by_id.contains_key(&id)
    }

    /// What is known about a pipe.
    pub fn pipe_info(&self, id: PipeId) -> Option<Arc<PipeInfo>> {
        let t = self.read_pipes();
        t.by_id.get(&id).map(|&i| t.list[i].info.clone())
    }

    /// Closes one pipe.
    pub fn close_pipe(&self, id: PipeId) {
        let t = self.read_pipes();
        if let Some(&i) = t.by_id.get(&id) {
            t.list[i].cancel.cancel();
        }
    }

    /// Adds a pipe event hook.
    pub fn add_hook(&self, h: PipeHook) {
        self.hooks
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(h);
    }

    fn read_pipes(&self) -> std::sync::RwLockReadGuard<'_, PipeTable> {
        self.pipes.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_pipes(&self) -> std::sync::RwLockWriteGuard<'_, PipeTable> {
        self.pipes.write().unwrap_or_else(|e| e.into_inner())
    }

    fn fire(&self, ev: &PipeEvent) -> bool {
        let hooks = self.hooks.read().unwrap_or_else(|e| e.into_inner()).clone();
        let admitted = hooks.iter().all(|h| h(ev));
        // subscribers only hear about pipes that actually joined or left
        if admitted && !matches!(ev, PipeEvent::AddPre(..)) {
            let _ = self.events.send(ev.clone());
        }
        admitted
    }

    /// Subscribes to pipe events (`AddPost`, `RemovePost`). A subscriber
    /// that falls more than 256 events behind is told how many it missed.
    pub fn pipe_events(&self) -> tokio::sync::broadcast::Receiver<PipeEvent> {
        self.events.subscribe()
    }

    fn transport(&self, url: &str) -> Result<Arc<dyn Transport>> {
        let (scheme, _) = split_url(url).ok_or_else(|| Error::Address {
            url: url.into(),
            reason: "expected scheme://address".into(),
        })?;
        self.transports
            .iter()
            .find(|t| t.schemes().contains(&scheme))
            .cloned()
            .ok_or_else(|| Error::Address {
                url: url.into(),
                reason: format!("no transport for scheme {scheme:?}"),
            })
    }

    fn pipe_config(&self) -> PipeConfig {
        PipeConfig {
            recv_max_size: self.opts.recv_max_size,
            recv_headroom: self.proto.recv_headroom(),
            local: self.announce.clone(),
            recv_limit: crate::layer::RecvLimit::new(self.opts.recv_max_size),
        }
    }

    /// Closes the socket: every pipe, dialer and listener; pending receives end.
    pub fn close(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        self.cancel.cancel();
        let left = self.recv.close();
        drop(left);
        let pipes: Vec<_> = self.read_pipes().list.clone();
        for p in pipes {
            p.cancel.cancel();
            p.queue.close();
        }
        self.send_waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .wake_all();
    }

    /// True once closed.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    // ---- sending ----

    /// Routes `*msg` per the protocol's send mode. Returns the pipe chosen
    /// (load-balanced) or `None` (broadcast, dropped).
    pub fn poll_send(
        &self,
        cx: &mut Context<'_>,
        key: &mut WaitKey,
        msg: &mut Option<Message>,
    ) -> Poll<Result<Option<PipeId>>> {
        if self.is_closed() {
            return Poll::Ready(Err(Error::Closed));
        }
        let mode = self.proto.send_mode();
        match mode {
            SendMode::Never => Poll::Ready(Err(Error::NotSupported("this protocol cannot send"))),
            SendMode::LoadBalance => self.poll_send_lb(cx, key, msg),
            SendMode::ToMessagePipe if msg.as_ref().is_some_and(|m| m.pipe().is_some()) => {
                let Some(m) = msg.take() else {
                    return Poll::Ready(Ok(None));
                };
                let id = m.pipe().unwrap_or_default();
                self.send_to_pipe(id, m);
                Poll::Ready(Ok(Some(id)))
            }
            SendMode::ToMessagePipe => self.poll_send_lb(cx, key, msg),
            SendMode::ToHeaderPipe => {
                let Some(mut m) = msg.take() else {
                    return Poll::Ready(Ok(None));
                };
                let Some(id) = m.pop_header_u32() else {
                    self.drop_msg(DropReason::Malformed, "no pipe id in header");
                    return Poll::Ready(Ok(None));
                };
                self.send_to_pipe(id, m);
                Poll::Ready(Ok(Some(id)))
            }
            SendMode::Broadcast | SendMode::BroadcastExceptOrigin => {
                let Some(m) = msg.take() else {
                    return Poll::Ready(Ok(None));
                };
                let origin = if mode == SendMode::BroadcastExceptOrigin {
                    m.pipe()
                } else {
                    None
                };
                let pipes: Vec<_> = self.read_pipes().list.clone();
                for p in pipes.iter().filter(|p| Some(p.id) != origin) {
                    self.push_or_drop(p, m.clone());
                }
                Poll::Ready(Ok(None))
            }
        }
    }

    fn send_to_pipe(&self, id: PipeId, m: Message) {
        let entry = {
            let t = self.read_pipes();
            t.by_id.get(&id).map(|&i| t.list[i].clone())
        };
        match entry {
            None => self.drop_msg(DropReason::UnknownPipe, "addressed to a pipe that is gone"),
            Some(p) => self.push_or_drop(&p, m),
        }
    }

    fn push_or_drop(&self, p: &PipeEntry, mut m: Message) {
        if let Verdict::Drop(r) = self.proto.on_send(&mut m) {
            return self.drop_msg(r, "refused on send");
        }
        if let Err(TryPush::Full(_) | TryPush::Closed(_)) = p.queue.try_push(m) {
            p.stats.dropped(DropReason::QueueFull);
            self.drop_msg(DropReason::QueueFull, "pipe send queue full");
        }
    }

    fn drop_msg(&self, r: DropReason, why: &'static str) {
        self.stats.dropped(r);
        debug!(target: "spstack", reason = ?r, why, "message dropped");
    }

    fn try_send_lb(&self, msg: &mut Option<Message>) -> Option<PipeId> {
        let t = self.read_pipes();
        let n = t.list.len();
        if n == 0 {
            return None;
        }
        let start = self.rr.load(Ordering::Relaxed);
        for i in 0..n {
            let idx = (start + i) % n;
            let p = &t.list[idx];
            let m = msg.take()?;
            match p.queue.try_push(m) {
                Ok(()) => {
                    self.rr.store(idx + 1, Ordering::Relaxed);
                    return Some(p.id);
                }
                Err(TryPush::Full(m)) | Err(TryPush::Closed(m)) => *msg = Some(m),
            }
        }
        None
    }

    /// Load-balanced send as one poll: wait for room, then hand over. The
    /// protocol's `on_send` runs once, when the message is queued, however
    /// often this is polled.
    fn poll_send_lb(
        &self,
        cx: &mut Context<'_>,
        key: &mut WaitKey,
        msg: &mut Option<Message>,
    ) -> Poll<Result<Option<PipeId>>> {
        loop {
            match self.poll_send_ready(cx, key) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
            let Some(m) = msg.take() else {
                return Poll::Ready(Ok(None));
            };
            match self.send_now(m)? {
                Handover::Queued(p) => return Poll::Ready(Ok(p)),
                // no pipe could take it: poll_send_ready waits for one
                Handover::Kept(m) => *msg = Some(m),
            }
        }
    }

    /// Ready when a message handed to [`Core::send_now`] will be queued
    /// without waiting: for load-balancing protocols, when some pipe has
    /// room. Cancelling this wait loses nothing: no message is held.
    pub fn poll_send_ready(&self, cx: &mut Context<'_>, key: &mut WaitKey) -> Poll<Result<()>> {
        if self.is_closed() {
            return Poll::Ready(Err(Error::Closed));
        }
        // a send that never waits (PUB, a roomy queue) must still yield now
        // and then, or a hot send loop starves the pipe writers of its worker
        let coop = std::task::ready!(tokio::task::coop::poll_proceed(cx));
        let r = self.poll_send_ready_inner(cx, key);
        if r.is_ready() {
            coop.made_progress();
        }
        r
    }

    fn poll_send_ready_inner(&self, cx: &mut Context<'_>, key: &mut WaitKey) -> Poll<Result<()>> {
        match self.proto.send_mode() {
            SendMode::Never => Poll::Ready(Err(Error::NotSupported("this protocol cannot send"))),
            SendMode::LoadBalance | SendMode::ToMessagePipe => {
                if self.lb_has_room() {
                    self.release_send_key(key);
                    return Poll::Ready(Ok(()));
                }
                // announce the wait first, then look again: a writer frees
                // room and then reads the count (`wake_senders`), so one of
                // the two sees the other (both sides fence)
                let mut w = self.send_waiters.lock().unwrap_or_else(|e| e.into_inner());
                if !key_registered(key) {
                    self.send_waiting.fetch_add(1, Ordering::SeqCst);
                }
                w_register(&mut w, key, cx);
                std::sync::atomic::fence(Ordering::SeqCst);
                if self.lb_has_room() || self.is_closed() {
                    w_release(&mut w, key, &self.send_waiting);
                    return Poll::Ready(if self.is_closed() {
                        Err(Error::Closed)
                    } else {
                        Ok(())
                    });
                }
                Poll::Pending
            }
            _ => Poll::Ready(Ok(())),
        }
    }

    fn lb_has_room(&self) -> bool {
        self.read_pipes().list.iter().any(|p| p.queue.has_room())
    }

    /// Hands a message over without waiting, after [`Core::poll_send_ready`].
    /// Gives it back only if no pipe is left to take it.
    pub fn send_now(&self, msg: Message) -> Result<Handover> {
        if self.is_closed() {
            return Err(Error::Closed);
        }
        let mode = self.proto.send_mode();
        let balanced = mode == SendMode::LoadBalance
            || (mode == SendMode::ToMessagePipe && msg.pipe().is_none());
        match mode {
            _ if balanced => {
                if self.read_pipes().list.is_empty() {
                    // untouched: on_send has not run, the caller may retry
                    return Ok(Handover::Kept(msg));
                }
                let mut slot = Some(msg);
                if let Some(m) = slot.as_mut() {
                    if let Verdict::Drop(r) = self.proto.on_send(m) {
                        self.drop_msg(r, "refused on send");
                        return Ok(Handover::Queued(None));
                    }
                }
                if let Some(id) = self.try_send_lb(&mut slot) {
                    return Ok(Handover::Queued(Some(id)));
                }
                let Some(m) = slot else {
                    return Ok(Handover::Queued(None));
                };
                // lost a race for the room poll_send_ready saw: queue it anyway
                let t = self.read_pipes();
                let n = t.list.len();
                let start = self.rr.load(Ordering::Relaxed);
                let mut m = m;
                for i in 0..n {
                    let p = &t.list[(start + i) % n];
                    match p.queue.force_push(m) {
                        Ok(()) => return Ok(Handover::Queued(Some(p.id))),
                        Err(back) => m = back,
                    }
                }
                Ok(Handover::Kept(m))
            }
            _ => {
                let waker = futures::task::noop_waker();
                let mut cx = Context::from_waker(&waker);
                let mut key = WaitKey::default();
                let mut slot = Some(msg);
                match self.poll_send(&mut cx, &mut key, &mut slot) {
                    Poll::Ready(r) => r.map(Handover::Queued),
                    // only load balancing waits
                    Poll::Pending => Ok(Handover::Kept(slot.take().unwrap_or_default())),
                }
            }
        }
    }

    fn release_send_key(&self, key: &mut WaitKey) {
        if key_registered(key) {
            let mut w = self.send_waiters.lock().unwrap_or_else(|e| e.into_inner());
            w_release(&mut w, key, &self.send_waiting);
        }
    }

    /// Forgets a sender that stopped waiting.
    pub fn cancel_send(&self, key: &mut WaitKey) {
        self.release_send_key(key);
    }

    fn wake_senders(&self) {
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.send_waiting.load(Ordering::SeqCst) > 0 {
            self.send_waiters
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .wake_all();
        }
    }

    /// Sends, waiting as the protocol demands.
    pub async fn send(&self, msg: Message) -> Result<Option<PipeId>> {
        let mut g = SendGuard {
            core: self,
            key: WaitKey::default(),
        };
        let mut slot = Some(msg);
        std::future::poll_fn(|cx| g.core.poll_send(cx, &mut g.key, &mut slot)).await
    }

    // ---- receiving ----

    /// Receives the next message for the application.
    pub fn poll_recv(&self, cx: &mut Context<'_>, key: &mut WaitKey) -> Poll<Result<Message>> {
        let coop = std::task::ready!(tokio::task::coop::poll_proceed(cx));
        match self.recv.poll_pop(cx, key) {
            Poll::Ready(Some(m)) => {
                coop.made_progress();
                Poll::Ready(Ok(m))
            }
            Poll::Ready(None) => Poll::Ready(Err(Error::Closed)),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Forgets a receiver that stopped waiting.
    pub fn cancel_recv(&self, key: &mut WaitKey) {
        self.recv.cancel_pop(key);
    }

    /// Receives the next message.
    pub async fn recv(&self) -> Result<Message> {
        let mut g = RecvGuard {
            core: self,
            key: WaitKey::default(),
        };
        std::future::poll_fn(|cx| g.core.poll_recv(cx, &mut g.key)).await
    }

    // ---- endpoints ----

    /// Binds and accepts pipes in the background. Returns the bound endpoint.
    pub async fn listen(self: &Arc<Self>, url: &str) -> Result<Endpoint> {
        let t = self.transport(url)?;
        let listener = t.listen(url).await?;
        Ok(self.listen_on(listener))
    }

    /// Accepts pipes from a listener made elsewhere (an axum route handing
    /// over upgraded WebSockets, say), with the same handshake deadline and
    /// half-open cap as [`Core::listen`].
    pub fn listen_on(self: &Arc<Self>, listener: Box<dyn crate::transport::Listener>) -> Endpoint {
        let cancel = self.cancel.child_token();
        let ep = Endpoint {
            url: listener.url(),
            cancel: cancel.clone(),
        };
        let core = self.clone();
        let span = info_span!(target: "spstack", "listener", url = %ep.url);
        tokio::spawn(async move { core.accept_loop(listener, cancel).await }.instrument(span));
        ep
    }

    async fn accept_loop(
        self: Arc<Self>,
        listener: Box<dyn crate::transport::Listener>,
        cancel: CancellationToken,
    ) {
        let half_open: Arc<Mutex<VecDeque<(u64, tokio::task::AbortHandle)>>> = Arc::default();
        let mut next = 0u64;
        loop {
            let accepted = tokio::select! {
                _ = cancel.cancelled() => return,
                a = listener.accept() => a,
            };
            let raw = match accepted {
                Ok(r) => r,
                Err(e) => {
                    warn!(target: "spstack", error = %e, "accept failed");
                    // e.g. out of file descriptors: do not spin
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            next += 1;
            let id = next;
            let core = self.clone();
            let ho = half_open.clone();
            let pipe_cancel = cancel.clone();
            // hold the list while spawning: a handshake that finishes at once
            // must find its entry to remove it
            let mut ho_guard = half_open.lock().unwrap_or_else(|e| e.into_inner());
            let task = tokio::spawn(async move {
                let res = core.open_pipe(raw, false).await;
                ho.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .retain(|(i, _)| *i != id);
                if let Ok(conn) = res {
                    let _ = core.attach(conn, &pipe_cancel);
                }
            });
            ho_guard.push_back((id, task.abort_handle()));
            let ho = &mut ho_guard;
            while ho.len() > self.opts.max_half_open {
                if let Some((_, h)) = ho.pop_front() {
                    h.abort();
                    self.stats.rejected(RejectReason::Evicted);
                    debug!(target: "spstack", "half-open handshake evicted");
                }
            }
        }
    }

    /// Dials `url` once and returns when the pipe is open (or the error),
    /// then keeps it open, redialing with backoff, until the endpoint closes.
    pub async fn dial(self: &Arc<Self>, url: &str) -> Result<Endpoint> {
        let t = self.transport(url)?;
        let conn = self.connect(&t, url).await?;
        let cancel = self.cancel.child_token();
        let pipe_done = self.attach(conn, &cancel)?;
        let ep = Endpoint {
            url: url.to_string(),
            cancel: cancel.clone(),
        };
        self.spawn_dialer(t, url.to_string(), cancel, Some(pipe_done));
        Ok(ep)
    }

    /// Starts dialing `url` in the background (retrying with backoff) and
    /// returns at once.
    pub fn dial_background(self: &Arc<Self>, url: &str) -> Result<Endpoint> {
        let t = self.transport(url)?;
        let cancel = self.cancel.child_token();
        let ep = Endpoint {
            url: url.to_string(),
            cancel: cancel.clone(),
        };
        self.spawn_dialer(t, url.to_string(), cancel, None);
        Ok(ep)
    }

    fn spawn_dialer(
        self: &Arc<Self>,
        t: Arc<dyn Transport>,
        url: String,
        cancel: CancellationToken,
        first: Option<CancellationToken>,
    ) {
        let core = self.clone();
        let span = info_span!(target: "spstack", "dialer", url = %url);
        tokio::spawn(
            async move {
                let min = core.opts.reconnect_min.max(Duration::from_millis(1));
                let max = core.opts.reconnect_max.max(min);
                let mut backoff = min;
                if let Some(done) = first {
                    tokio::select! { _ = cancel.cancelled() => return, _ = done.cancelled() => {} }
                    sleep_jittered(min, &cancel).await;
                }
                while !cancel.is_cancelled() {
                    match core.connect(&t, &url).await {
                        Ok(conn) => match core.attach(conn, &cancel) {
                            Ok(done) => {
                                backoff = min;
                                tokio::select! { _ = cancel.cancelled() => return, _ = done.cancelled() => {} }
                                sleep_jittered(min, &cancel).await;
                            }
                            Err(_) => {
                                sleep_jittered(backoff, &cancel).await;
                                backoff = (backoff * 2).min(max);
                            }
                        },
                        Err(e) => {
                            debug!(target: "spstack", error = %e, ?backoff, "dial failed; will retry");
                            sleep_jittered(backoff, &cancel).await;
                            backoff = (backoff * 2).min(max);
                        }
                    }
                }
            }
            .instrument(span),
        );
    }

    async fn connect(&self, t: &Arc<dyn Transport>, url: &str) -> Result<Connection> {
        let raw = t.dial(url).await?;
        self.open_pipe(raw, true).await
    }

    /// Announcement exchange, peer check, pipe layer handshakes: all under
    /// the handshake deadline. Failures are counted and traced.
    async fn open_pipe(&self, raw: Box<dyn Unannounced>, dialer: bool) -> Result<Connection> {
        let peer = raw.peer_addr();
        let deadline = self.opts.handshake_timeout;
        let cfg = self.pipe_config();
        let upgrade = self.upgrade.clone();
        let expected = self.proto.peer();
        let local = self.announce.clone();
        let work = async move {
            // a stream layer under the framing (TLS, WebSocket) reports its
            // own failures as layer errors: count them as such
            let conn = raw.announce(cfg, dialer).await.map_err(|e| match e {
                Error::Layer { .. } => (RejectReason::LayerFailed, e),
                e => (RejectReason::BadHeader, e),
            })?;
            local.check_peer(expected, &conn.info.peer).map_err(|e| {
                let r = if conn.info.peer.protocol != expected {
                    RejectReason::ProtocolMismatch
                } else {
                    RejectReason::LayerMismatch
                };
                (r, e)
            })?;
            let mut svc = upgrade;
            use tower::ServiceExt;
            let svc = svc
                .ready()
                .await
                .map_err(|e| (RejectReason::LayerFailed, e))?;
            tower::Service::call(svc, conn)
                .await
                .map_err(|e| (RejectReason::LayerFailed, e))
        };
        let res = match tokio::time::timeout(deadline, work).await {
            Ok(r) => r,
            Err(_) => Err((
                RejectReason::HandshakeTimeout,
                Error::HandshakeTimeout(deadline),
            )),
        };
        res.map_err(|(reason, e)| {
            let reason = match (&reason, &e) {
                (RejectReason::BadHeader, Error::Io(_) | Error::ConnectionClosed) => {
                    RejectReason::Io
                }
                _ => reason,
            };
            self.stats.rejected(reason);
            warn!(target: "spstack", peer = %peer, ?reason, error = %e, "pipe refused");
            e
        })
    }

    /// Adds an open pipe: checks, hooks, then its reader and writer tasks.
    /// Returns a token cancelled when the pipe closes.
    fn attach(
        self: &Arc<Self>,
        conn: Connection,
        parent: &CancellationToken,
    ) -> Result<CancellationToken> {
        if self.is_closed() {
            return Err(Error::Closed);
        }
        let id = next_pipe_id();
        let info = Arc::new(conn.info);
        {
            let t = self.read_pipes();
            if t.list.len() >= self.proto.max_pipes() {
                self.stats.rejected(RejectReason::PipeLimit);
                warn!(target: "spstack", peer = %info.peer_addr, "pipe refused: protocol takes no more pipes");
                return Err(Error::State("protocol takes no more pipes"));
            }
        }
        if !self.fire(&PipeEvent::AddPre(id, info.clone())) {
            self.stats.rejected(RejectReason::Hook);
            warn!(target: "spstack", peer = %info.peer_addr, "pipe refused by hook");
            return Err(Error::State("pipe refused by hook"));
        }
        let cancel = parent.child_token();
        let entry = Arc::new(PipeEntry {
            id,
            queue: Arc::new(Queue::with_bytes(
                self.opts.send_queue,
                self.opts.send_queue_bytes,
                Message::len,
            )),
            info: info.clone(),
            stats: Arc::new(Counters::default()),
            cancel: cancel.clone(),
        });
        self.write_pipes().insert(entry.clone());
        self.stats.pipe_opened();
        let span = info_span!(target: "spstack", "pipe", id, peer = %info.peer_addr, transport = info.transport, protocol = %info.peer.protocol);
        tracing::info!(target: "spstack", parent: &span, "pipe added");
        let Connection { tx, rx, .. } = conn;
        let done = cancel.clone();
        let core = self.clone();
        let e2 = entry.clone();
        tokio::spawn(async move { core.writer(e2, tx).await }.instrument(span.clone()));
        let core = self.clone();
        tokio::spawn(
            async move {
                core.reader(entry.clone(), rx).await;
                core.detach(&entry);
            }
            .instrument(span),
        );
        self.fire(&PipeEvent::AddPost(id, info));
        self.wake_senders();
        Ok(done)
    }

    fn detach(&self, p: &Arc<PipeEntry>) {
        p.cancel.cancel();
        if self.write_pipes().remove(p.id).is_none() {
            return;
        }
        self.stats.pipe_closed();
        let left = p.queue.close();
        if !left.is_empty() {
            if self.proto.send_mode() == SendMode::LoadBalance && !self.is_closed() {
                // unsent work goes to another pipe; nothing is lost silently
                for m in left {
                    let mut slot = Some(m);
                    if self.try_send_lb(&mut slot).is_none() {
                        self.drop_msg(DropReason::PipeClosed, "pipe closed with messages queued");
                    }
                }
            } else {
                for _ in &left {
                    self.drop_msg(DropReason::PipeClosed, "pipe closed with messages queued");
                }
            }
        }
        tracing::info!(target: "spstack", pipe = p.id, "pipe removed");
        self.fire(&PipeEvent::RemovePost(p.id, p.info.clone()));
    }

    async fn writer(self: Arc<Self>, p: Arc<PipeEntry>, mut tx: crate::BoxSink) {
        let mut batch = Vec::with_capacity(self.opts.write_batch.min(1024));
        let mut key = WaitKey::default();
        // one cancellation future for the pipe's life: re-creating it per
        // batch would register a fresh waiter every time
        let cancelled = p.cancel.cancelled();
        tokio::pin!(cancelled);
        loop {
            let n = tokio::select! {
                biased;
                _ = &mut cancelled => break,
                n = std::future::poll_fn(|cx| p.queue.poll_pop_batch(cx, &mut key, &mut batch, self.opts.write_batch)) => n,
            };
            if n == 0 {
                break;
            }
            self.wake_senders();
            let write = async {
                for m in batch.drain(..) {
                    let len = m.len();
                    tx.feed(m).await?;
                    p.stats.sent(len);
                    self.stats.sent(len);
                }
                tx.flush().await
            };
            let res = tokio::select! {
                biased;
                _ = &mut cancelled => break,
                r = write => r,
            };
            if let Err(e) = res {
                debug!(target: "spstack", error = %e, "pipe write failed");
                break;
            }
        }
        p.queue.cancel_pop(&mut key);
        let _ = tokio::time::timeout(Duration::from_millis(100), tx.close()).await;
        p.cancel.cancel();
    }

    async fn reader(&self, p: Arc<PipeEntry>, mut rx: crate::BoxStream) {
        use futures::FutureExt;
        const BATCH: usize = 64;
        const BATCH_BYTES: usize = 256 << 10;
        let ttl = self.opts.ttl;
        let cancelled = p.cancel.cancelled();
        tokio::pin!(cancelled);
        let mut batch: VecDeque<Message> = VecDeque::with_capacity(BATCH);
        let mut key = WaitKey::default();
        loop {
            let mut next = tokio::select! {
                biased;
                _ = &mut cancelled => return,
                n = rx.next() => n,
            };
            // take every frame already decoded, then deliver them under one
            // lock and at most one wake-up
            let mut finished = false;
            let mut batch_bytes = 0;
            loop {
                match next {
                    Some(Ok(m)) => {
                        batch_bytes += m.len();
                        if let Err(reason) = self.accept_frame(&p, m, ttl, &mut batch) {
                            warn!(target: "spstack", why = reason, "protocol violation; closing pipe");
                            finished = true;
                            break;
                        }
                    }
                    Some(Err(e)) => {
                        self.count_pipe_error(&p, &e);
                        finished = true;
                        break;
                    }
                    None => {
                        debug!(target: "spstack", "peer closed the pipe");
                        finished = true;
                        break;
                    }
                }
                if batch.len() >= BATCH || batch_bytes >= BATCH_BYTES {
                    break;
                }
                match rx.next().now_or_never() {
                    Some(n) => next = n,
                    None => break,
                }
            }
            if !batch.is_empty() && self.proto.recv_policy() == RecvPolicy::DropOldest {
                for m in batch.drain(..) {
                    match self.recv.push_evict(m) {
                        Ok(None) => {}
                        Ok(Some(_)) => {
                            p.stats.dropped(DropReason::QueueFull);
                            self.drop_msg(
                                DropReason::QueueFull,
                                "receive queue full: oldest dropped",
                            );
                        }
                        Err(_) => return,
                    }
                }
            }
            if !batch.is_empty() {
                let pushed = tokio::select! {
                    biased;
                    _ = &mut cancelled => return,
                    r = std::future::poll_fn(|cx| self.recv.poll_push_batch(cx, &mut key, &mut batch)) => r,
                };
                if pushed.is_err() {
                    return;
                }
            }
            if finished {
                return;
            }
        }
    }

    /// Counts and parses one received frame; queues it for delivery or drops
    /// it. `Err` means the peer broke the protocol and the pipe must close.
    fn accept_frame(
        &self,
        p: &PipeEntry,
        mut m: Message,
        ttl: u8,
        out: &mut VecDeque<Message>,
    ) -> Result<(), String> {
        let len = m.len();
        p.stats.received(len);
        self.stats.received(len);
        match self.proto.on_recv(p.id, &mut m, ttl) {
            Verdict::Deliver => {
                m.set_pipe(Some(p.id));
                out.push_back(m);
                Ok(())
            }
            Verdict::Drop(r) => {
                p.stats.dropped(r);
                self.drop_msg(r, "dropped on receive");
                Ok(())
            }
            Verdict::Close(why) => {
                self.stats.dropped(DropReason::Malformed);
                self.stats.rejected(RejectReason::ProtocolError);
                Err(why)
            }
        }
    }

    fn count_pipe_error(&self, p: &PipeEntry, e: &Error) {
        let reason = match e {
            Error::TooLarge { .. } => {
                self.stats.dropped(DropReason::TooLarge);
                p.stats.dropped(DropReason::TooLarge);
                RejectReason::ProtocolError
            }
            Error::Io(_) | Error::ConnectionClosed => RejectReason::Io,
            _ => RejectReason::ProtocolError,
        };
        if reason != RejectReason::Io {
            self.stats.rejected(reason);
        }
        warn!(target: "spstack", error = %e, "pipe closed");
    }
}

fn key_registered(k: &WaitKey) -> bool {
    k.is_registered()
}

fn w_register(w: &mut WaitList, key: &mut WaitKey, cx: &mut Context<'_>) {
    w.register(key, cx.waker());
}

fn w_release(w: &mut WaitList, key: &mut WaitKey, count: &AtomicUsize) {
    if key.is_registered() {
        w.release(key);
        count.fetch_sub(1, Ordering::AcqRel);
    }
}

async fn sleep_jittered(base: Duration, cancel: &CancellationToken) {
    // uniform in [base/2, base): spread out a crowd of reconnecting dialers
    let nanos = base.as_nanos().min(u64::MAX as u128) as u64;
    let d = Duration::from_nanos(nanos / 2 + fastrand::u64(0..=nanos / 2));
    tokio::select! { _ = cancel.cancelled() => {}, _ = tokio::time::sleep(d) => {} }
}

struct SendGuard<'a> {
    core: &'a Core,
    key: WaitKey,
}
impl Drop for SendGuard<'_> {
    fn drop(&mut self) {
        self.core.cancel_send(&mut self.key);
    }
}
struct RecvGuard<'a> {
    core: &'a Core,
    key: WaitKey,
}
impl Drop for RecvGuard<'_> {
    fn drop(&mut self) {
        self.core.cancel_recv(&mut self.key);
    }
}

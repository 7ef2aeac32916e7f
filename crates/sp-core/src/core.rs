//! The raw socket: its pipes, the routing that picks them, the receive
//! queue, counters and events. Sending is in `send.rs`, the life of a pipe
//! in `pipe/`, dialers and listeners in `endpoint.rs`.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::task::{Context, Poll};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

use crate::layer::{FramePlan, PipeInfo, UpgradeService};
use crate::pipe::link::{next_socket_id, ReceiptTable};
use crate::pipe::table::{LivePipes, PipeTable};
use crate::protocol::ProtocolSpec;
use crate::queue::{Queue, WaitKey, WaitList};
use crate::routing::Routing;
use crate::stats::{Counters, DropReason, RejectReason, Stats};
use crate::transport::{AllocBudget, Transport};
use crate::{Announcement, Message, Options, PipeId, Result};

/// Pipe lifecycle events, as nng's `nng_pipe_notify`, plus refusals.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum PipeEvent {
    /// The pipe finished its handshake and is about to join; a hook may reject it.
    AddPre(PipeId, Arc<PipeInfo>),
    /// The pipe joined.
    AddPost(PipeId, Arc<PipeInfo>),
    /// The pipe left.
    RemovePost(PipeId, Arc<PipeInfo>),
    /// A connection never became a pipe, or was refused as it joined.
    Refused(Arc<Refusal>),
}

/// Why a connection was refused: what a program matches on.
#[derive(Clone, Debug)]
pub struct Refusal {
    /// The peer's address, as the transport reports it.
    pub peer_addr: String,
    /// The counter it went to.
    pub reason: RejectReason,
    /// The pipe layer that refused or differed, if one did.
    pub layer: Option<String>,
    /// What went wrong, for people.
    pub error: String,
}

/// A pipe event hook. Return `false` on `AddPre` to reject the pipe.
pub type PipeHook = Arc<dyn Fn(&PipeEvent) -> bool + Send + Sync>;

/// The shared state of one raw socket.
pub(crate) struct Core {
    /// Itself, for the links its pipes hand to their layers.
    pub(crate) me: Weak<Core>,
    /// Unique in the process (`SocketLink::socket_id`).
    pub(crate) id: u64,
    /// Pipes whose layers asked to hear what the socket took.
    pub(crate) receipts: ReceiptTable,
    pub(crate) router: Arc<dyn Routing>,
    pub(crate) spec: ProtocolSpec,
    pub(crate) opts: Options,
    pub(crate) transports: Vec<Arc<dyn Transport>>,
    pub(crate) upgrade: UpgradeService,
    pub(crate) announce: Announcement,
    /// Every pipe layer is optional: a plain peer is served without them
    /// ([`crate::layer::Handshake::plain_peer_ok`]).
    pub(crate) plain_peer_ok: bool,
    pub(crate) plan: FramePlan,
    pipes: RwLock<PipeTable>,
    pub(crate) rr: AtomicUsize,
    pub(crate) recv: Queue<Message>,
    /// Messages receivers took from `recv` in a batch and have not handed
    /// out yet (see `RawStream`): `close` counts them as discarded, and a
    /// receiver hands one out only after taking it off this count.
    recv_held: AtomicUsize,
    pub(crate) send_waiters: Mutex<WaitList>,
    pub(crate) send_waiting: AtomicUsize,
    /// `msgs_in` when the socket last sent: a send after a receive answers
    /// it (write-through, see `pipe/writer.rs`).
    pub(crate) answered_in: std::sync::atomic::AtomicU64,
    /// The routing's `write_through`, asked once.
    pub(crate) write_through: bool,
    pub(crate) counters: Arc<Counters>,
    /// What the transports may allocate ahead of the bytes, for all pipes.
    pub(crate) alloc_budget: AllocBudget,
    hooks: RwLock<Vec<PipeHook>>,
    events: tokio::sync::broadcast::Sender<PipeEvent>,
    /// Dialers and listeners.
    pub(crate) cancel: CancellationToken,
    closed: AtomicBool,
    /// Every pipe task, so that `shutdown` can wait for the linger.
    pub(crate) tasks: TaskTracker,
}

pub(crate) struct CoreParts {
    pub router: Arc<dyn Routing>,
    pub opts: Options,
    pub transports: Vec<Arc<dyn Transport>>,
    pub upgrade: UpgradeService,
    pub layer_names: Vec<String>,
    pub plan: FramePlan,
    pub plain_peer_ok: bool,
}

impl Core {
    pub(crate) fn new(p: CoreParts) -> Arc<Core> {
        let spec = p.router.spec();
        // a protocol from another crate becomes known by name here; a clash
        // with a different identity keeps the first one (and says so)
        if let Err(e) = crate::protocol::register(spec) {
            tracing::warn!(target: "spstack", ?spec, error = %e, "protocol identity not registered");
        }
        let announce = Announcement {
            protocol: spec.id,
            layers: p.layer_names,
        };
        // large buffers are pooled for messages both ways (`new_message`,
        // frames read), kept up to what both queues may hold
        let alloc_budget = AllocBudget::with_pool(
            p.opts.recv_queue_bytes,
            p.opts
                .recv_queue_bytes
                .saturating_add(p.opts.send_queue_bytes),
        );
        let write_through = p.router.write_through();
        Arc::new_cyclic(|me| Core {
            me: me.clone(),
            id: next_socket_id(),
            receipts: ReceiptTable::default(),
            recv: Queue::with_bytes(p.opts.recv_queue, p.opts.recv_queue_bytes, Message::len),
            recv_held: AtomicUsize::new(0),
            router: p.router,
            spec,
            opts: p.opts,
            transports: p.transports,
            upgrade: p.upgrade,
            announce,
            plain_peer_ok: p.plain_peer_ok,
            plan: p.plan,
            pipes: RwLock::new(PipeTable::default()),
            rr: AtomicUsize::new(0),
            send_waiters: Mutex::new(WaitList::default()),
            send_waiting: AtomicUsize::new(0),
            answered_in: std::sync::atomic::AtomicU64::new(0),
            write_through,
            counters: Arc::default(),
            alloc_budget,
            hooks: RwLock::new(Vec::new()),
            events: tokio::sync::broadcast::channel(256).0,
            cancel: CancellationToken::new(),
            closed: AtomicBool::new(false),
            tasks: TaskTracker::new(),
        })
    }

    pub(crate) fn options(&self) -> &Options {
        &self.opts
    }

    pub(crate) fn stats(&self) -> Stats {
        self.counters.snapshot()
    }

    pub(crate) fn count_drop(&self, r: DropReason, why: &'static str) {
        self.counters.dropped(r);
        debug!(target: "spstack", reason = ?r, why, "message dropped");
    }

    pub(crate) fn read_pipes(&self) -> std::sync::RwLockReadGuard<'_, PipeTable> {
        self.pipes.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn write_pipes(&self) -> std::sync::RwLockWriteGuard<'_, PipeTable> {
        self.pipes.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The pipe table as a routing sees it, read-locked.
    pub(crate) fn live_pipes(&self) -> LivePipes<'_, std::sync::RwLockReadGuard<'_, PipeTable>> {
        LivePipes {
            table: self.read_pipes(),
            core: self,
            inline: false,
        }
    }

    pub(crate) fn pipe_stats(&self, id: PipeId) -> Option<Stats> {
        // one guard: a second read lock in the same expression deadlocks
        // behind a waiting writer
        let t = self.read_pipes();
        t.get(id).map(|p| p.stats.snapshot())
    }

    pub(crate) fn pipes(&self) -> Vec<PipeId> {
        self.read_pipes().list().iter().map(|p| p.id).collect()
    }

    pub(crate) fn has_pipe(&self, id: PipeId) -> bool {
        self.read_pipes().get(id).is_some()
    }

    pub(crate) fn pipe_info(&self, id: PipeId) -> Option<Arc<PipeInfo>> {
        self.read_pipes().get(id).map(|p| p.info.clone())
    }

    pub(crate) fn close_pipe(&self, id: PipeId) {
        if let Some(p) = self.read_pipes().get(id) {
            p.abort.cancel();
        }
    }

    pub(crate) fn add_hook(&self, h: PipeHook) {
        self.hooks
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(h);
    }

    /// Runs the hooks; true when all admit. Subscribers hear about pipes that
    /// joined or left, and about refusals.
    pub(crate) fn fire(&self, ev: &PipeEvent) -> bool {
        let hooks = self.hooks.read().unwrap_or_else(|e| e.into_inner()).clone();
        let admitted = hooks.iter().all(|h| h(ev));
        if admitted && !matches!(ev, PipeEvent::AddPre(..)) {
            let _ = self.events.send(ev.clone());
        }
        admitted
    }

    pub(crate) fn pipe_events(&self) -> tokio::sync::broadcast::Receiver<PipeEvent> {
        self.events.subscribe()
    }

    /// Counts, traces and announces a refused connection.
    pub(crate) fn refuse(
        &self,
        peer_addr: &str,
        reason: RejectReason,
        layer: Option<String>,
        error: String,
    ) {
        self.counters.rejected(reason);
        tracing::warn!(target: "spstack", peer = %peer_addr, ?reason, layer = layer.as_deref().unwrap_or(""), error = %error, "pipe refused");
        self.fire(&PipeEvent::Refused(Arc::new(Refusal {
            peer_addr: peer_addr.to_string(),
            reason,
            layer,
            error,
        })));
    }

    /// Closes the socket: dialers and listeners stop at once; pending and
    /// later sends and receives fail; what the receive queue holds is counted
    /// `Closed`; pipes linger (see `Options::linger`), then stop.
    pub(crate) fn close(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        self.cancel.cancel();
        {
            // every frame a receiver took before this point is settled
            // before the pipes start closing
            let _settled = self.receipts.write_barrier();
            for _ in self.recv.close() {
                self.count_drop(DropReason::Closed, "receive queue discarded by close");
            }
            for _ in self.receipts.clear() {
                self.count_drop(DropReason::Closed, "handed back, still waiting for a pipe");
            }
        }
        // taken in a batch by a receiver, not handed out: it will not now
        for _ in 0..self.recv_held.swap(0, Ordering::SeqCst) {
            self.count_drop(
                DropReason::Closed,
                "taken for a receiver, discarded by close",
            );
        }
        let pipes: Vec<_> = self.read_pipes().list().to_vec();
        for p in pipes {
            // writers send what is queued, then hang up; readers drain
            p.queue.close_input();
            p.drain.cancel();
        }
        self.tasks.close();
        self.spawn_linger_deadline();
        let wakes = {
            let mut w = self.send_waiters.lock().unwrap_or_else(|e| e.into_inner());
            w.wake_all();
            w.take_wakes()
        };
        wakes.wake();
    }

    /// Aborts every pipe once the linger has passed.
    fn spawn_linger_deadline(&self) {
        let linger = self.opts.linger;
        let pipes: Vec<_> = self.read_pipes().list().to_vec();
        if pipes.is_empty() {
            return;
        }
        let aborts: Vec<CancellationToken> = pipes.iter().map(|p| p.abort.clone()).collect();
        let abort_all = move || aborts.iter().for_each(|a| a.cancel());
        if linger.is_zero() {
            abort_all();
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(h) => {
                h.spawn(async move {
                    tokio::time::sleep(linger).await;
                    abort_all();
                });
            }
            // no runtime to linger on (a socket dropped after its runtime)
            Err(_) => abort_all(),
        }
    }

    /// Waits until every pipe has finished (flushed, or the linger passed).
    pub(crate) async fn wait_pipes(&self) {
        self.tasks.wait().await;
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    // ---- receiving ----

    /// The next message for the application.
    pub(crate) fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        key: &mut WaitKey,
    ) -> Poll<Result<Message>> {
        let coop = std::task::ready!(tokio::task::coop::poll_proceed(cx));
        let barrier = self.receipts.active().then(|| self.receipts.read_barrier());
        match self.recv.poll_pop(cx, key) {
            Poll::Ready(Some(m)) => {
                // looked at again after the pop: a watched pipe that joined
                // meanwhile may have delivered this very message
                if barrier.is_some() || self.receipts.active() {
                    self.settle_taken(&m);
                }
                drop(barrier);
                coop.made_progress();
                Poll::Ready(Ok(m))
            }
            Poll::Ready(None) => Poll::Ready(Err(crate::Error::Closed)),
            Poll::Pending => Poll::Pending,
        }
    }

    pub(crate) fn cancel_recv(&self, key: &mut WaitKey) {
        self.recv.cancel_pop(key);
    }

    /// Takes up to `max` received messages at once into a receiver's own
    /// deque, to hand out one by one with [`Core::claim_held`]: one lock and
    /// at most one wake-up of the pipe readers per batch instead of per
    /// message. `Ready(Err(Closed))` once closed.
    pub(crate) fn poll_recv_into(
        &self,
        cx: &mut Context<'_>,
        key: &mut WaitKey,
        out: &mut std::collections::VecDeque<Message>,
        max: usize,
    ) -> Poll<Result<()>> {
        let coop = std::task::ready!(tokio::task::coop::poll_proceed(cx));
        let held = &self.recv_held;
        match self.recv.poll_pop_into_with(cx, key, out, max, |n| {
            held.fetch_add(n, Ordering::SeqCst);
        }) {
            Poll::Ready(0) => Poll::Ready(Err(crate::Error::Closed)),
            Poll::Ready(_) => {
                coop.made_progress();
                Poll::Ready(Ok(()))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    /// One message taken by `poll_recv_into` may be handed out: false once
    /// `close` has counted it as discarded (then drop it, uncounted).
    pub(crate) fn claim_held(&self) -> bool {
        self.recv_held
            .fetch_update(Ordering::SeqCst, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok()
    }

    /// A receiver gives back what it took and will not hand out (it is
    /// dropped): to the front of the queue for another receiver, or counted
    /// when the socket closed meanwhile.
    pub(crate) fn give_back(&self, held: &mut std::collections::VecDeque<Message>) {
        let mut back = std::collections::VecDeque::new();
        for m in held.drain(..) {
            if self.claim_held() {
                back.push_back(m);
            }
        }
        if !self.recv.unpop(&mut back) {
            for _ in back.drain(..) {
                self.count_drop(
                    DropReason::Closed,
                    "taken for a receiver, discarded by close",
                );
            }
        }
    }
}

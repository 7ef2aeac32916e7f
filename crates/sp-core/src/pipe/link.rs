//! A pipe layer's line back to its socket: [`SocketLink`].
//!
//! A pipe layer sees frames, not the socket. Two things need the socket: a
//! layer that keeps the frames it accepted until the peer acknowledges them
//! must be able to return them to the socket's routing when its pipe dies
//! (as the writer returns what it had not sent), and such a layer must
//! learn when the socket is done with each frame it received (the
//! application took it, or the protocol used or dropped it) to acknowledge
//! no sooner. Every pipe's [`PipeInfo`](crate::PipeInfo) carries the link;
//! a layer clones it during its handshake.
//!
//! Nothing here costs a socket whose layers do not use it: the receive path
//! looks at one atomic per message.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, Weak};

use crate::core::Core;
use crate::routing::Routed;
use crate::stats::{Counters, DropReason};
use crate::{Message, PipeId};

/// What the socket tells a pipe layer about the frames it received.
///
/// Frame `n` is the `n`-th frame (from 0) that the pipe's topmost layer
/// yielded to the socket. It is *settled* once the socket is done with it:
/// the application (or a cooked protocol, or a device) took it from the
/// receive queue, the protocol used it or dropped it (counted), or a full
/// queue of a protocol that drops the oldest evicted it (counted). A frame
/// the socket discarded because it closed, or because the pipe broke before
/// the frame reached the receive queue, is never settled: whoever sent it
/// should send it again elsewhere.
///
/// `settled` is called from whichever task takes the frame (often the
/// application's), frames of one pipe in any order; it must not block.
pub trait Receipts: Send + Sync + 'static {
    /// The socket is done with frame `frame` of this pipe.
    fn settled(&self, frame: u64);
}

/// Where a message handed back with [`SocketLink::requeue`] went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requeued {
    /// The routing queued it: on this pipe, or (`None`) on several.
    Queued(Option<PipeId>),
    /// The socket has no pipe now: it keeps the message and offers it to
    /// the routing when the next pipe joins (a dialer redialing), or counts
    /// it `Closed` if the socket closes first (`PipeClosed` past
    /// [`MAX_HANDED_BACK`] waiting).
    Waiting,
    /// Dropped and counted under this reason (the protocol does not move
    /// messages between pipes, or the socket closed).
    Dropped(DropReason),
}

/// Handed-back messages a socket with no pipe keeps for the next one, at
/// most (the layers that hand them back bound them further: `ack/1` by its
/// window per pipe).
pub const MAX_HANDED_BACK: usize = 1 << 16;

/// A pipe layer's line back to its socket (cheap to clone). Found in
/// [`PipeInfo::link`](crate::PipeInfo::link) during the layer's handshake.
///
/// ```
/// use sp_core::layer::{ComponentInfo, Handshake, Overhead};
/// use sp_core::{BoxFuture, Connection, Receipts, Result};
///
/// /// Learns when the socket is done with each frame it received.
/// struct Watch;
/// struct Log;
/// impl Receipts for Log {
///     fn settled(&self, frame: u64) { println!("frame {frame} settled"); }
/// }
/// impl Handshake for Watch {
///     fn info(&self) -> ComponentInfo { ComponentInfo::new("watch/1", Overhead::NONE) }
///     fn handshake(&self, conn: Connection) -> BoxFuture<'static, Result<Connection>> {
///         conn.info.link.watch_settled(std::sync::Arc::new(Log));
///         Box::pin(async move { Ok(conn) })
///     }
/// }
/// ```
#[derive(Clone, Default)]
pub struct SocketLink {
    inner: Arc<LinkInner>,
}

#[derive(Default)]
struct LinkInner {
    core: Weak<Core>,
    /// 0 for a link to no socket.
    socket: u64,
    counters: Arc<Counters>,
    pipe: AtomicU32,
    attached: AtomicBool,
    receipts: Mutex<Option<Arc<dyn Receipts>>>,
    retains: AtomicBool,
}

impl fmt::Debug for SocketLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SocketLink")
            .field("socket", &self.socket_id())
            .field("pipe", &self.pipe_id())
            .finish_non_exhaustive()
    }
}

static NEXT_SOCKET: AtomicU64 = AtomicU64::new(1);

pub(crate) fn next_socket_id() -> u64 {
    NEXT_SOCKET.fetch_add(1, Ordering::Relaxed)
}

impl SocketLink {
    /// A link to no socket (a layer used on its own, in a test): hand-backs
    /// are counted `Closed` in counters of its own, nothing is settled.
    pub fn detached() -> SocketLink {
        SocketLink::default()
    }

    /// The socket, as a number unique in this process: a layer that keeps
    /// state per socket (not per pipe) keys it by this. `None` when detached.
    pub fn socket_id(&self) -> Option<u64> {
        (self.inner.socket != 0).then_some(self.inner.socket)
    }

    /// True while the socket exists (a layer keeping state per socket
    /// forgets that of sockets gone).
    pub fn socket_alive(&self) -> bool {
        self.inner.core.strong_count() > 0
    }

    /// A link to the same socket that belongs to no pipe: what a layer
    /// keeps with its per-socket state (to tell whether the socket is
    /// alive, hand messages back, count) without holding on to a pipe.
    pub fn for_socket(&self) -> SocketLink {
        SocketLink {
            inner: Arc::new(LinkInner {
                core: self.inner.core.clone(),
                socket: self.inner.socket,
                counters: self.inner.counters.clone(),
                attached: AtomicBool::new(true),
                ..LinkInner::default()
            }),
        }
    }

    /// The pipe's id, once it joined the socket (after every handshake).
    pub fn pipe_id(&self) -> Option<PipeId> {
        match self.inner.pipe.load(Ordering::Acquire) {
            0 => None,
            id => Some(id),
        }
    }

    /// The socket's counters (a layer counts what it drops here, so
    /// `Socket::stats` shows it).
    pub fn counters(&self) -> &Arc<Counters> {
        &self.inner.counters
    }

    /// Asks to hear when the socket is done with each frame this pipe's
    /// topmost layer yields (see [`Receipts`]): call it during the
    /// handshake. Only the topmost layer's frames are numbered, so a layer
    /// that relies on the numbers must be the last pipe layer of the stack.
    /// False (and nothing registered) when the pipe has already joined, the
    /// link is detached, or receipts were already asked for.
    pub fn watch_settled(&self, receipts: Arc<dyn Receipts>) -> bool {
        if self.inner.socket == 0 || self.inner.attached.load(Ordering::Acquire) {
            return false;
        }
        let mut r = self
            .inner
            .receipts
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if r.is_some() {
            return false;
        }
        *r = Some(receipts);
        true
    }

    /// Declares that a layer of this pipe keeps every frame it accepts and
    /// answers for it until the peer acknowledges it: it hands it back with
    /// [`SocketLink::requeue`] or counts it. A write that fails then counts
    /// what the layers had been fed as sent (the layer has it) rather than
    /// dropped.
    pub fn retain_frames(&self) {
        self.inner.retains.store(true, Ordering::Release);
    }

    /// True once a layer declared [`SocketLink::retain_frames`].
    pub fn retains_frames(&self) -> bool {
        self.inner.retains.load(Ordering::Acquire)
    }

    /// Hands back a message this pipe's writer counted as sent (a frame the
    /// peer never acknowledged), once the pipe is gone: the socket's routing
    /// moves it to another pipe as it moves the unsent messages of a dying
    /// pipe (counted `requeued`), or drops it, counted (`PipeClosed` when the
    /// protocol does not move messages, `Closed` when the socket is
    /// closing). With no pipe at all the socket keeps it for the next one
    /// ([`Requeued::Waiting`]). Whatever happens it is counted `returned`.
    /// Give it back as the routing queued it: header and body, no frame
    /// header of a pipe layer; a routing's `requeue` moves it as it is.
    pub fn requeue(&self, msg: Message) -> Requeued {
        self.inner.counters.returned();
        match self.inner.core.upgrade() {
            Some(core) => core.hand_back(msg),
            None => {
                drop(msg);
                self.inner.counters.dropped(DropReason::Closed);
                Requeued::Dropped(DropReason::Closed)
            }
        }
    }
}

/// A watched pipe's frames now in the receive queue, oldest first.
pub(crate) struct Tracked {
    to: Arc<dyn Receipts>,
    queued: Mutex<VecDeque<u64>>,
    reader_done: AtomicBool,
}

impl Tracked {
    fn fifo(&self) -> std::sync::MutexGuard<'_, VecDeque<u64>> {
        self.queued.lock().unwrap_or_else(|e| e.into_inner())
    }
    /// Frame `n` goes to the receive queue (recorded before it is pushed,
    /// so a receiver never pops it unrecorded).
    pub(crate) fn queued(&self, n: u64) {
        self.fifo().push_back(n);
    }
    /// The last `k` frames recorded never reached the receive queue.
    pub(crate) fn unqueue(&self, k: usize) {
        let mut q = self.fifo();
        for _ in 0..k {
            q.pop_back();
        }
    }
    /// Frame `n` was used or dropped by the protocol.
    pub(crate) fn settle(&self, n: u64) {
        self.to.settled(n);
    }
}

/// Looked up once per received message: pipe ids are not chosen by peers,
/// so the pipe table's one-multiplication hash serves.
type TrackedPipes =
    HashMap<PipeId, Arc<Tracked>, std::hash::BuildHasherDefault<super::table::IdHasher>>;

/// The watched pipes of a socket.
#[derive(Default)]
pub(crate) struct ReceiptTable {
    active: AtomicUsize,
    pipes: Mutex<TrackedPipes>,
    /// Held (read) while a receiver pops and settles, taken (write) while
    /// closing discards the receive queue: every frame handed out before the
    /// close is settled before the pipes learn of it and send their last
    /// acknowledgements.
    barrier: RwLock<()>,
    /// Handed-back messages waiting for a pipe.
    waiting: Mutex<VecDeque<Message>>,
}

impl ReceiptTable {
    pub(crate) fn active(&self) -> bool {
        self.active.load(Ordering::Acquire) > 0
    }
    fn map(&self) -> std::sync::MutexGuard<'_, TrackedPipes> {
        self.pipes.lock().unwrap_or_else(|e| e.into_inner())
    }
    pub(crate) fn read_barrier(&self) -> RwLockReadGuard<'_, ()> {
        self.barrier.read().unwrap_or_else(|e| e.into_inner())
    }
    pub(crate) fn write_barrier(&self) -> std::sync::RwLockWriteGuard<'_, ()> {
        self.barrier.write().unwrap_or_else(|e| e.into_inner())
    }
    /// Forgets every pipe (the socket closed: nothing is taken any more);
    /// returns the handed-back messages that waited for a pipe.
    pub(crate) fn clear(&self) -> VecDeque<Message> {
        let mut m = self.map();
        m.clear();
        self.active.store(0, Ordering::Release);
        drop(m);
        std::mem::take(&mut *self.waiting())
    }
    fn waiting(&self) -> std::sync::MutexGuard<'_, VecDeque<Message>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }
    fn forget_if_done(&self, id: PipeId, t: &Arc<Tracked>) {
        if !t.reader_done.load(Ordering::Acquire) || !t.fifo().is_empty() {
            return;
        }
        let mut m = self.map();
        if m.get(&id).is_some_and(|x| Arc::ptr_eq(x, t)) && t.fifo().is_empty() {
            m.remove(&id);
            self.active.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Core {
    /// A link for a pipe of this socket.
    pub(crate) fn link(&self) -> SocketLink {
        SocketLink {
            inner: Arc::new(LinkInner {
                core: self.me.clone(),
                socket: self.id,
                counters: self.counters.clone(),
                ..LinkInner::default()
            }),
        }
    }

    /// The pipe joined as `id`: its link learns the id, and its receipts
    /// (if a layer asked) start being kept. Before the reader starts.
    pub(crate) fn link_attached(&self, link: &SocketLink, id: PipeId) {
        let l = &link.inner;
        if l.socket != self.id {
            return;
        }
        l.pipe.store(id, Ordering::Release);
        l.attached.store(true, Ordering::Release);
        let to = l.receipts.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(to) = to {
            let t = Arc::new(Tracked {
                to,
                queued: Mutex::new(VecDeque::new()),
                reader_done: AtomicBool::new(false),
            });
            if self.receipts.map().insert(id, t).is_none() {
                self.receipts.active.fetch_add(1, Ordering::AcqRel);
            }
        }
    }

    /// The receipts of a watched pipe, for its reader.
    pub(crate) fn tracked(&self, id: PipeId) -> Option<Arc<Tracked>> {
        if !self.receipts.active() {
            return None;
        }
        self.receipts.map().get(&id).cloned()
    }

    /// The pipe's reader stopped: nothing more is recorded; once what it
    /// queued has been taken the pipe is forgotten.
    pub(crate) fn reader_done(&self, id: PipeId, t: &Arc<Tracked>) {
        t.reader_done.store(true, Ordering::Release);
        self.receipts.forget_if_done(id, t);
    }

    /// `m` left the receive queue (taken, or evicted and counted): settles
    /// the oldest frame its pipe has there.
    pub(crate) fn settle_taken(&self, m: &Message) {
        let Some(id) = m.pipe() else { return };
        let Some(t) = self.receipts.map().get(&id).cloned() else {
            return;
        };
        let n = t.fifo().pop_front();
        if let Some(n) = n {
            t.to.settled(n);
        }
        self.receipts.forget_if_done(id, &t);
    }

    /// A message a pipe layer handed back: to another pipe as the routing
    /// decides, kept for the next pipe when there is none, or counted.
    pub(crate) fn hand_back(&self, m: Message) -> Requeued {
        if self.is_closed() {
            self.count_drop(DropReason::Closed, "handed back while the socket closed");
            return Requeued::Dropped(DropReason::Closed);
        }
        let outcome = {
            let mut live = self.live_pipes();
            if crate::routing::Pipes::ids(&live).is_empty() {
                // under the table's lock: a pipe joining now offers the
                // waiting messages after it is in the table
                let mut w = self.receipts.waiting();
                if w.len() >= MAX_HANDED_BACK {
                    drop(w);
                    drop(live);
                    self.count_drop(
                        DropReason::PipeClosed,
                        "handed back with no pipe, and too many already wait",
                    );
                    return Requeued::Dropped(DropReason::PipeClosed);
                }
                w.push_back(m);
                return Requeued::Waiting;
            }
            self.router.requeue(m, &mut live)
        };
        match outcome {
            Routed::Queued(p) => {
                self.counters.requeued();
                Requeued::Queued(p)
            }
            Routed::Dropped(r) => {
                self.count_drop(r, "handed back by a pipe layer: no pipe took it");
                Requeued::Dropped(r)
            }
            Routed::Wait(_) | Routed::Refused(_) => {
                self.count_drop(
                    DropReason::PipeClosed,
                    "handed back by a pipe layer: no pipe took it",
                );
                Requeued::Dropped(DropReason::PipeClosed)
            }
        }
    }

    /// A pipe joined: the handed-back messages that waited for one go to
    /// the routing now.
    pub(crate) fn offer_waiting(&self) {
        let waiting = std::mem::take(&mut *self.receipts.waiting());
        for m in waiting {
            // queued, kept again (that pipe went already) or counted
            let _ = self.hand_back(m);
        }
    }
}

//! One `ack/1` pipe: what it sent and keeps (`TxSide`), what it received
//! and whether the socket took it (`RxSide`), and the halves and the task
//! that move frames.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker};

use futures::{Sink, Stream};
use sp_core::{BoxStream, Error, Message, Receipts, Result, SocketLink};
use tokio::sync::Notify;

use super::dedup::{Arrival, Fate, PipeKey, Window};
use super::wire::{self, Frame, Hello, DATA_HEADER};
use super::{AckCounters, Config, NAME};
use crate::shared::{Party, Shared};

/// Frames handled in one poll before the reader yields.
const BURST: usize = 64;
/// Bytes of the mark a handed-back message carries in front of its header.
const MARK: usize = 16;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn random_u64() -> u64 {
    RandomState::new().build_hasher().finish()
}

/// A sending socket this socket hears from, and its window.
pub(crate) struct Sender {
    st: Mutex<SenderState>,
    live: AtomicUsize,
    last_used: AtomicU64,
}

struct SenderState {
    window: Window,
    pipes: HashMap<PipeKey, Weak<RxSide>>,
}

/// The layer's state for one socket, shared by its pipes.
pub(crate) struct SocketState {
    pub(crate) identity: u64,
    next_seq: AtomicU64,
    /// Keys the mark of a handed-back message: a peer cannot forge one.
    mark_key: RandomState,
    senders: Mutex<HashMap<u64, Arc<Sender>>>,
    next_key: AtomicU64,
    clock: AtomicU64,
    pub(crate) cfg: Config,
    pub(crate) stats: Arc<AckCounters>,
}

impl SocketState {
    pub(crate) fn new(cfg: Config, stats: Arc<AckCounters>) -> SocketState {
        SocketState {
            identity: random_u64(),
            next_seq: AtomicU64::new(0),
            mark_key: RandomState::new(),
            senders: Mutex::new(HashMap::new()),
            next_key: AtomicU64::new(1),
            clock: AtomicU64::new(0),
            cfg,
            stats,
        }
    }

    fn mark(&self, seq: u64) -> [u8; MARK] {
        let mut b = [0u8; MARK];
        b[..8].copy_from_slice(&seq.to_be_bytes());
        b[8..].copy_from_slice(&self.mark_key.hash_one(seq).to_be_bytes());
        b
    }

    /// The sequence number a handed-back message carries, taken off it.
    fn take_mark(&self, m: &mut Message) -> Option<u64> {
        let h = m.header();
        if h.len() < MARK {
            return None;
        }
        let seq = u64::from_be_bytes(h[..8].try_into().ok()?);
        let tag = u64::from_be_bytes(h[8..MARK].try_into().ok()?);
        if tag != self.mark_key.hash_one(seq) {
            return None;
        }
        for _ in 0..MARK / 4 {
            m.pop_header_u32();
        }
        Some(seq)
    }

    /// The window of the sending socket `identity`, made if new. Refused
    /// when `max_senders` windows are kept and every one has a live pipe.
    fn sender(&self, identity: u64) -> Result<Arc<Sender>> {
        let now = self.clock.fetch_add(1, Relaxed);
        let mut m = lock(&self.senders);
        if let Some(s) = m.get(&identity) {
            s.last_used.store(now, Relaxed);
            return Ok(s.clone());
        }
        if m.len() >= self.cfg.max_senders {
            let idle = m
                .iter()
                .filter(|(_, s)| s.live.load(Relaxed) == 0)
                .min_by_key(|(_, s)| s.last_used.load(Relaxed))
                .map(|(id, _)| *id);
            match idle {
                Some(id) => {
                    m.remove(&id);
                    self.stats.senders_forgotten.fetch_add(1, Relaxed);
                }
                None => {
                    return Err(Error::layer(
                        NAME,
                        format!(
                            "{} sending sockets already have live pipes here (max_senders)",
                            m.len()
                        ),
                    ))
                }
            }
        }
        let s = Arc::new(Sender {
            st: Mutex::new(SenderState {
                window: Window::new(self.cfg.dedup_window),
                pipes: HashMap::new(),
            }),
            live: AtomicUsize::new(0),
            last_used: AtomicU64::new(now),
        });
        m.insert(identity, s.clone());
        Ok(s)
    }

    /// The two sides of a new pipe to a peer that said `peer`.
    pub(crate) fn open_pipe(
        self: &Arc<Self>,
        link: SocketLink,
        peer: Hello,
    ) -> Result<(Arc<TxSide>, Arc<RxSide>)> {
        let sender = self.sender(peer.identity)?;
        let key = self.next_key.fetch_add(1, Relaxed);
        let rx = Arc::new(RxSide {
            key,
            sender: sender.clone(),
            socket: self.clone(),
            peer_window: u64::from(peer.window),
            st: Mutex::new(RxState::default()),
            notify: Arc::new(Notify::new()),
            owed: AtomicBool::new(false),
            armed: AtomicBool::new(false),
        });
        lock(&sender.st).pipes.insert(key, Arc::downgrade(&rx));
        sender.live.fetch_add(1, Relaxed);
        let tx = Arc::new(TxSide {
            socket: self.clone(),
            link,
            st: Mutex::new(TxState::default()),
        });
        Ok((tx, rx))
    }
}

// ---------------------------------------------------------------- sending

/// A message sent and not yet acknowledged.
struct Kept {
    seq: u64,
    msg: Message,
    /// The message carries this layer's frame header in front of its
    /// header (written in place before it was shared: no allocation).
    framed: bool,
}

#[derive(Default)]
struct TxState {
    /// Sent, not yet acknowledged, in this pipe's order.
    unacked: VecDeque<Kept>,
    bytes: usize,
    /// This pipe's index of `unacked[0]`.
    base: u64,
    waker: Option<Waker>,
}

/// What a pipe sent and keeps until the peer acknowledges it.
pub(crate) struct TxSide {
    socket: Arc<SocketState>,
    link: SocketLink,
    st: Mutex<TxState>,
}

impl TxSide {
    /// Ready while the window has room.
    fn poll_window(&self, cx: &mut Context<'_>) -> Poll<()> {
        let cfg = &self.socket.cfg;
        let mut st = lock(&self.st);
        let full = st.unacked.len() >= cfg.window
            || (st.bytes >= cfg.window_bytes && !st.unacked.is_empty());
        if !full {
            return Poll::Ready(());
        }
        if st.waker.is_none() {
            self.socket.stats.window_waits.fetch_add(1, Relaxed);
        }
        st.waker = Some(cx.waker().clone());
        Poll::Pending
    }

    /// Numbers a message (or takes back the number it had, when it was
    /// handed back), keeps it, and frames it for the wire.
    fn keep(&self, mut m: Message) -> Message {
        let stats = &self.socket.stats;
        let seq = match self.socket.take_mark(&mut m) {
            Some(seq) => {
                stats.resent.fetch_add(1, Relaxed);
                seq
            }
            None => {
                stats.sent.fetch_add(1, Relaxed);
                self.socket.next_seq.fetch_add(1, Relaxed)
            }
        };
        let header = wire::data_header(seq);
        // kept by reference, not copied: the frame header goes in place
        // first when the message has the room (a message made with
        // `Socket::new_message` does), else inline after
        let framed = m.is_contiguous() && m.headroom() >= DATA_HEADER && m.is_unique();
        if framed {
            m.push_frame_header(&header);
        }
        {
            let mut st = lock(&self.st);
            st.bytes += m.len();
            st.unacked.push_back(Kept {
                seq,
                msg: m.clone(),
                framed,
            });
        }
        if !framed {
            m.push_frame_header(&header);
        }
        m
    }

    /// The peer settled the first `count` messages of this pipe.
    fn on_ack(&self, count: u64) -> Result<()> {
        let mut st = lock(&self.st);
        let sent = st.base + st.unacked.len() as u64;
        if count > sent {
            return Err(Error::layer(
                NAME,
                format!("the peer acknowledged {count} messages of the {sent} sent"),
            ));
        }
        if count <= st.base {
            return Ok(());
        }
        let n = count - st.base;
        for _ in 0..n {
            if let Some(k) = st.unacked.pop_front() {
                st.bytes = st.bytes.saturating_sub(k.msg.len());
            }
        }
        st.base = count;
        let w = st.waker.take();
        drop(st);
        self.socket.stats.acked.fetch_add(n, Relaxed);
        if let Some(w) = w {
            w.wake();
        }
        Ok(())
    }
}

impl Drop for TxSide {
    /// The pipe is gone (both halves dropped, after the socket let it go):
    /// what the peer never acknowledged goes back to the routing, marked
    /// with its number so the next pipe sends it under the same one.
    fn drop(&mut self) {
        let st = self.st.get_mut().unwrap_or_else(|e| e.into_inner());
        let unacked = std::mem::take(&mut st.unacked);
        if unacked.is_empty() {
            return;
        }
        tracing::debug!(target: "spstack", layer = NAME, n = unacked.len(), "handing back unacknowledged messages");
        for Kept {
            seq,
            mut msg,
            framed,
        } in unacked
        {
            if framed {
                // as the routing queued it: this layer's header off
                let rest = msg.header().get(DATA_HEADER..).unwrap_or(&[]).to_vec();
                msg.set_header(&rest);
            }
            msg.push_header(&self.socket.mark(seq));
            self.socket.stats.returned.fetch_add(1, Relaxed);
            let _ = self.link.requeue(msg);
        }
    }
}

// -------------------------------------------------------------- receiving

struct Yielded {
    index: u64,
    seq: u64,
    settled: bool,
}

/// What settling a message means for the acknowledgements.
#[derive(Clone, Copy, Default)]
struct Owed {
    /// An acknowledgement is owed now.
    grew: bool,
    /// The first one owed since the last acknowledgement.
    first: bool,
    /// `ack_every` are owed now, and were not before.
    full: bool,
}

#[derive(Default)]
struct RxState {
    /// Index the next message from the peer gets on this pipe.
    next_index: u64,
    /// Messages handed to the socket, in that order, not yet settled; the
    /// socket numbers them from `yield_base`.
    yielded: VecDeque<Yielded>,
    yield_base: u64,
    /// Every index below is settled.
    cum: u64,
    above: BTreeSet<u64>,
    /// The count last sent in an acknowledgement.
    acked: u64,
    /// Numbers delivered here that copies on other pipes wait for (the
    /// sender's window is told when one settles): usually empty.
    awaited: HashSet<u64>,
    /// Copies of messages queued through another pipe: index → (seq, message).
    parked: HashMap<u64, (u64, Message)>,
    /// Parked copies to deliver after all: their first copy was lost.
    released: VecDeque<(u64, u64, Message)>,
    waker: Option<Waker>,
}

impl RxState {
    fn settle_index(&mut self, index: u64) {
        if index < self.cum {
            return;
        }
        if index > self.cum {
            self.above.insert(index);
            return;
        }
        self.cum += 1;
        while self.above.remove(&self.cum) {
            self.cum += 1;
        }
    }

    /// Settles `index`; says whether an acknowledgement is now owed, and
    /// whether the acknowledger must hear of it (the first message owed
    /// starts its delay; `every` owed ends it).
    fn settle_owed(&mut self, index: u64, every: u64) -> Owed {
        let before = self.cum - self.acked;
        self.settle_index(index);
        let after = self.cum - self.acked;
        Owed {
            grew: after > before,
            first: after > before && before == 0,
            full: before < every && after >= every,
        }
    }

    fn is_settled(&self, index: u64) -> bool {
        index < self.cum || self.above.contains(&index)
    }
}

/// What a pipe received, and what the socket did with it.
pub(crate) struct RxSide {
    key: PipeKey,
    sender: Arc<Sender>,
    socket: Arc<SocketState>,
    peer_window: u64,
    st: Mutex<RxState>,
    /// Wakes this pipe's acknowledger.
    pub(crate) notify: Arc<Notify>,
    /// Something settled since the last acknowledgement: the writer sends
    /// one ahead of its next message (a reply carries the request's).
    owed: AtomicBool,
    /// The acknowledger has a deadline running.
    armed: AtomicBool,
}

impl RxSide {
    /// A message from the peer: `Some` to deliver, `None` when it is a
    /// copy (dropped, or parked until the first copy's fate is known).
    fn arrive(&self, seq: u64, m: Message) -> Result<Option<Message>> {
        let stats = &self.socket.stats;
        // pipes looked at under the sender's lock, let go after it (the
        // last reference to a pipe may go here, and its drop takes the lock)
        let mut held: Vec<Arc<RxSide>> = Vec::new();
        let mut snd = lock(&self.sender.st);
        // one look at this pipe's state per message: the application's
        // side takes the same lock to settle
        let mut rx = lock(&self.st);
        let index = rx.next_index;
        if index - rx.cum >= self.peer_window {
            return Err(Error::layer(
                NAME,
                format!(
                    "the peer sent past its window of {} unacknowledged messages",
                    self.peer_window
                ),
            ));
        }
        rx.next_index += 1;
        let me = self.key;
        let SenderState { window, pipes } = &mut *snd;
        let forgotten = window.forgotten;
        let arrival = window.arrive(seq, me, index, |owner, at| {
            // only for a copy: ask the pipe the first copy came on
            let ask = |o: &mut RxState| {
                if o.is_settled(at) {
                    Fate::Taken
                } else {
                    // its settle must tell the window: a copy waits
                    o.awaited.insert(seq);
                    Fate::Queued
                }
            };
            if owner == me {
                return Some(ask(&mut rx));
            }
            let p = pipes.get(&owner).and_then(Weak::upgrade)?;
            let fate = ask(&mut lock(&p.st));
            held.push(p);
            Some(fate)
        });
        if window.forgotten != forgotten {
            stats
                .forgotten
                .fetch_add(window.forgotten - forgotten, Relaxed);
        }
        match arrival {
            Arrival::New => {
                rx.yielded.push_back(Yielded {
                    index,
                    seq,
                    settled: false,
                });
                stats.received.fetch_add(1, Relaxed);
                Ok(Some(m))
            }
            Arrival::Taken => {
                let owed = rx.settle_owed(index, self.socket.cfg.ack_every);
                stats.duplicates.fetch_add(1, Relaxed);
                drop(rx);
                drop(snd);
                self.kick(owed);
                Ok(None)
            }
            Arrival::Park => {
                rx.parked.insert(index, (seq, m));
                Ok(None)
            }
        }
    }

    /// The message to hand the socket next, from the parked copies
    /// promoted; registers the reader to hear of later promotions.
    fn next_released(&self, cx: &Context<'_>) -> Option<Message> {
        let mut rx = lock(&self.st);
        match &rx.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => rx.waker = Some(cx.waker().clone()),
        }
        let (index, seq, m) = rx.released.pop_front()?;
        rx.yielded.push_back(Yielded {
            index,
            seq,
            settled: false,
        });
        self.socket.stats.received.fetch_add(1, Relaxed);
        Some(m)
    }

    /// A parked copy is not needed: the first was taken.
    fn drop_parked(&self, index: u64) {
        let mut rx = lock(&self.st);
        let mut owed = Owed::default();
        if rx.parked.remove(&index).is_some() {
            owed = rx.settle_owed(index, self.socket.cfg.ack_every);
            self.socket.stats.duplicates.fetch_add(1, Relaxed);
        }
        drop(rx);
        self.kick(owed);
    }

    /// A parked copy must be delivered after all (it owns its number now).
    fn release_parked(&self, index: u64) {
        let mut rx = lock(&self.st);
        if let Some((seq, m)) = rx.parked.remove(&index) {
            rx.awaited.insert(seq);
            rx.released.push_back((index, seq, m));
            if let Some(w) = rx.waker.take() {
                w.wake();
            }
        }
    }

    /// The count to acknowledge, if it grew since the last acknowledgement.
    pub(crate) fn take_ack(&self) -> Option<u64> {
        let mut rx = lock(&self.st);
        self.owed.store(false, Relaxed);
        (rx.cum > rx.acked).then(|| {
            rx.acked = rx.cum;
            rx.cum
        })
    }

    /// The acknowledgement to send ahead of a message, if one is owed:
    /// one atomic load when none is.
    fn owed_ack(&self) -> Option<Message> {
        if !self.owed.load(Relaxed) {
            return None;
        }
        self.take_ack().map(wire::ack_frame)
    }

    /// Something settled: an acknowledgement is owed. The acknowledger
    /// hears of the first one owed while it has no deadline running, and of
    /// the `ack_every`-th: not of each (a wake-up per message is what a
    /// request/reply round trip would pay).
    fn kick(&self, owed: Owed) {
        if owed.grew {
            self.owed.store(true, Relaxed);
        }
        if owed.full || (owed.first && !self.armed.load(SeqCst)) {
            self.notify.notify_one();
        }
    }

    fn unacknowledged(&self) -> u64 {
        let rx = lock(&self.st);
        rx.cum - rx.acked
    }
}

/// Drops the parked copies `copies` name and promotes the ones `promote`
/// name (pipes upgraded under the sender's lock, acted on after it).
fn settle_copies(
    me: &RxSide,
    copies: Vec<(Option<Arc<RxSide>>, u64)>,
    promote: Vec<(Option<Arc<RxSide>>, u64)>,
) {
    for (p, i) in copies {
        match p {
            Some(p) => p.drop_parked(i),
            None => me.drop_parked(i),
        }
    }
    for (p, i) in promote {
        if let Some(p) = p {
            p.release_parked(i);
        }
    }
}

fn upgrade_all(
    me: PipeKey,
    pipes: &HashMap<PipeKey, Weak<RxSide>>,
    list: Vec<(PipeKey, u64)>,
) -> Vec<(Option<Arc<RxSide>>, u64)> {
    list.into_iter()
        .map(|(k, i)| {
            let p = if k == me {
                None
            } else {
                pipes.get(&k).and_then(Weak::upgrade)
            };
            (p, i)
        })
        .collect()
}

impl Receipts for RxSide {
    fn settled(&self, frame: u64) {
        // the application's side: this pipe's own state only, unless a
        // copy waits for this very message
        let (seq, awaited, owed) = {
            let mut rx = lock(&self.st);
            let Some(i) = frame.checked_sub(rx.yield_base) else {
                return;
            };
            let Some(y) = rx.yielded.get_mut(i as usize) else {
                return;
            };
            if y.settled {
                return;
            }
            y.settled = true;
            let (index, seq) = (y.index, y.seq);
            let owed = rx.settle_owed(index, self.socket.cfg.ack_every);
            while rx.yielded.front().is_some_and(|y| y.settled) {
                rx.yielded.pop_front();
                rx.yield_base += 1;
            }
            let awaited = !rx.awaited.is_empty() && rx.awaited.remove(&seq);
            (seq, awaited, owed)
        };
        self.kick(owed);
        if !awaited {
            return;
        }
        let copies = {
            let mut snd = lock(&self.sender.st);
            let waiters = snd.window.settle(seq, self.key);
            upgrade_all(self.key, &snd.pipes, waiters)
        };
        settle_copies(self, copies, Vec::new());
    }
}

impl Drop for RxSide {
    /// The pipe is gone and the socket will settle nothing more of it:
    /// what it took stays known, what it never delivered is lost here, so
    /// a copy parked on another pipe is delivered instead, and a later
    /// resend is welcome.
    fn drop(&mut self) {
        let key = self.key;
        let rx = self.st.get_mut().unwrap_or_else(|e| e.into_inner());
        let parked: Vec<(u64, u64)> = rx.parked.iter().map(|(i, (s, _))| (*s, *i)).collect();
        let (copies, promote, forgotten) = {
            let mut snd = lock(&self.sender.st);
            let SenderState { window, pipes } = &mut *snd;
            pipes.remove(&key);
            let forgotten = window.forgotten;
            let (lost, copies) = window.retire(key, |i| rx.is_settled(i));
            let mut promote = Vec::new();
            for seq in lost {
                let mut next = window.abandon(seq, key);
                // a copy parked here goes with this pipe too
                while matches!(next, Some((k, _)) if k == key) {
                    next = window.abandon(seq, key);
                }
                promote.extend(next);
            }
            for (seq, index) in parked {
                window.unpark(seq, key, index);
            }
            (
                upgrade_all(key, pipes, copies),
                upgrade_all(key, pipes, promote),
                window.forgotten - forgotten,
            )
        };
        self.sender.live.fetch_sub(1, Relaxed);
        if forgotten > 0 {
            self.socket.stats.forgotten.fetch_add(forgotten, Relaxed);
        }
        // this pipe's own parked copies went with it: only others remain
        let copies = copies.into_iter().filter(|(p, _)| p.is_some()).collect();
        settle_copies(self, copies, promote);
    }
}

/// Sends acknowledgements: as soon as `ack_every` messages settled, else
/// `ack_delay` after the first, unless the writer sent them ahead of a
/// message meanwhile; until the writer's half is gone.
pub(crate) async fn acknowledger(shared: Arc<Shared>, rx: Weak<RxSide>, notify: Arc<Notify>) {
    loop {
        tokio::select! {
            _ = shared.closed() => return,
            _ = notify.notified() => {}
        }
        // batches, while something is owed
        loop {
            let Some(side) = rx.upgrade() else { return };
            let (every, delay, stats) = (
                side.socket.cfg.ack_every,
                side.socket.cfg.ack_delay,
                side.socket.stats.clone(),
            );
            side.armed.store(true, SeqCst);
            drop(side);
            let deadline = tokio::time::Instant::now() + delay;
            // woken again only when `every` are owed
            loop {
                let Some(waiting) = rx.upgrade().map(|s| s.unacknowledged()) else {
                    return;
                };
                if waiting >= every {
                    break;
                }
                tokio::select! {
                    _ = shared.closed() => return,
                    _ = tokio::time::sleep_until(deadline) => break,
                    _ = notify.notified() => {}
                }
            }
            if let Some(count) = rx.upgrade().and_then(|s| s.take_ack()) {
                if shared.send_frame(wire::ack_frame(count)).await.is_err() {
                    return;
                }
                stats.acks_sent.fetch_add(1, Relaxed);
            }
            let Some(side) = rx.upgrade() else { return };
            side.armed.store(false, SeqCst);
            // a message settled while the deadline ran did not wake us
            if side.unacknowledged() == 0 {
                break;
            }
        }
    }
}

// ------------------------------------------------------------- the halves

pub(crate) struct AckSink {
    pub(crate) shared: Arc<Shared>,
    pub(crate) tx: Arc<TxSide>,
    pub(crate) rx: Weak<RxSide>,
    /// The last acknowledgement, sent before the pipe closes.
    pub(crate) last: Option<Message>,
    /// An acknowledgement going out ahead of the next message.
    pub(crate) piggyback: Option<Message>,
    pub(crate) closing: bool,
}

impl Sink<Message> for AckSink {
    type Error = Error;
    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let this = self.get_mut();
        std::task::ready!(this.tx.poll_window(cx));
        if this.piggyback.is_none() {
            this.piggyback = this.rx.upgrade().and_then(|r| r.owed_ack());
        }
        if let Some(ack) = this.piggyback.take() {
            // the acknowledgement goes in the same write as the message:
            // no frame of its own for the peer to wake up for
            match this.shared.poll_ready(cx) {
                Poll::Ready(Ok(())) => {
                    this.shared.start_send(ack)?;
                    if let Some(r) = this.rx.upgrade() {
                        r.socket.stats.acks_sent.fetch_add(1, Relaxed);
                    }
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    this.piggyback = Some(ack);
                    return Poll::Pending;
                }
            }
        }
        this.shared.poll_ready(cx)
    }
    fn start_send(self: Pin<&mut Self>, m: Message) -> Result<()> {
        let m = self.tx.keep(m);
        self.shared.start_send(m)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.shared.poll_flush(Party::Writer, cx)
    }
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let this = self.get_mut();
        if !this.closing {
            // what the application took before the socket closed is
            // acknowledged before the peer sees the end of the stream
            this.closing = true;
            this.last = this
                .rx
                .upgrade()
                .and_then(|r| r.take_ack())
                .map(wire::ack_frame);
        }
        if this.last.is_some() {
            std::task::ready!(this
                .shared
                .poll_send_frame(Party::Writer, cx, &mut this.last))?;
        }
        this.shared.poll_close(cx)
    }
}

impl Drop for AckSink {
    fn drop(&mut self) {
        self.shared.writer_gone();
    }
}

pub(crate) struct AckStream {
    pub(crate) inner: BoxStream,
    pub(crate) tx: Arc<TxSide>,
    pub(crate) rx: Arc<RxSide>,
}

impl Stream for AckStream {
    type Item = Result<Message>;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Message>>> {
        let this = self.get_mut();
        if let Some(m) = this.rx.next_released(cx) {
            return Poll::Ready(Some(Ok(m)));
        }
        for _ in 0..BURST {
            let mut m = match this.inner.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(m))) => m,
                other => return other,
            };
            match wire::parse(m.body()) {
                Ok(Frame::Data(seq)) => {
                    m.trim_body_front(DATA_HEADER);
                    match this.rx.arrive(seq, m) {
                        Ok(Some(m)) => return Poll::Ready(Some(Ok(m))),
                        Ok(None) => {}
                        Err(e) => return Poll::Ready(Some(Err(e))),
                    }
                }
                Ok(Frame::Ack(count)) => {
                    if let Err(e) = this.tx.on_ack(count) {
                        return Poll::Ready(Some(Err(e)));
                    }
                    this.rx.socket.stats.acks_received.fetch_add(1, Relaxed);
                }
                Err(e) => return Poll::Ready(Some(Err(e))),
            }
        }
        // a run of acknowledgements and copies: let the reader breathe
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

//! PUB0 / SUB0, raw and cooked.
//!
//! ```
//! use sp_protocols::Sub0Raw;
//! let sub = Sub0Raw::new();
//! let topics = sub.control().unwrap(); // a raw SUB starts subscribed to everything
//! topics.unsubscribe(b"").unwrap();
//! topics.subscribe(b"weather/").unwrap();
//! assert!(topics.matches(b"weather/paris sunny"));
//! assert!(!topics.matches(b"sports/ 1-0"));
//! ```
//!
//! There is no header on the wire: PUB sends every message to every pipe,
//! SUB keeps those whose body starts with one of its subscriptions (a byte
//! prefix; the empty topic matches everything; no subscription, nothing).
//!
//! * **PUB never blocks.** A pipe whose send queue is full loses the message,
//!   counted as [`DropReason::QueueFull`] on that pipe (`Socket::pipe_stats`)
//!   and on the socket. A message published while no subscriber is connected
//!   goes nowhere (as in nng); `Stats::msgs_out` shows what did go out.
//! * **SUB drops the oldest** when its queue is full (nng's default), counted
//!   as `QueueFull`; a message no subscription wants is counted as
//!   [`DropReason::NoSubscription`].
//! * **Lossless, opt-in** (as ZeroMQ's `XPUB_NODROP`): a [`Pub0Lossless`]
//!   PUB waits until every subscriber's pipe has room instead of dropping,
//!   and a lossless SUB ([`Sub0::lossless`], [`Sub0Raw::lossless`]) stops
//!   reading its pipes while its queues are full instead of dropping the
//!   oldest, so the transport's flow control carries the back-pressure to the
//!   publisher. Together they lose nothing while the pipes stay up: the PUB
//!   then runs at the pace of its slowest subscriber. With no subscriber at
//!   all a message still goes nowhere (`NoPeer`), and what a pipe that
//!   closes held is counted `PipeClosed`, as for any PUB
//!   (`spstack::pub0_lossless()`, `spstack::sub0_lossless()`).
//! * **Raw SUB** ([`Sub0Raw`]) filters with *socket-wide* subscriptions
//!   (nanomsg's xsub does; nng's raw xsub has none and passes everything). It
//!   starts subscribed to everything, so by default it behaves as nng's
//!   xsub, which is what a device wants; its [`SubControl`] narrows it.
//! * **Cooked SUB** ([`Sub0`]) gives every context its own subscriptions
//!   ([`SubControl`], via `Socket::control` / `SocketContext::control`) and
//!   its own bounded queue (`Options::recv_queue` messages and
//!   `recv_queue_bytes` bytes, oldest dropped and counted). A message taken
//!   from the raw socket by whichever context polls is handed to every
//!   context whose subscriptions match. Under it, the raw SUB filters with the
//!   union of all contexts' subscriptions, so a message nobody wants is
//!   dropped by the pipe reader and never pushes a wanted one out of the
//!   shared receive queue.
//!
//! Matching is a radix trie walk: linear in the compared prefix of the
//! message, independent of the number of subscriptions, iterative.

mod trie;

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak};
use std::task::{Context, Poll, Waker};

use futures::Stream;
use sp_core::layer::{ComponentInfo, CookedContext, MessageIo, Overhead};
use sp_core::protocol::{ProtocolId, ProtocolSpec};
use sp_core::queue::WaitKey;
use sp_core::routing::{Pipes, RecvContext, Routed};
use sp_core::{
    CookedProtocol, CookedSocket, DropReason, Error, Message, PipeId, RawSocket, RecvPolicy,
    Result, Routing, Verdict,
};

use trie::TopicTrie;

/// The subscription trie itself, for the fuzz targets (`fuzzing` feature).
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub use trie::TopicTrie as FuzzTopicTrie;

/// Distinct subscriptions one context (or one raw socket) may hold.
pub const MAX_SUBSCRIPTIONS: usize = 1 << 20;
/// Summed length of one context's subscriptions, in bytes.
pub const MAX_SUBSCRIPTION_BYTES: usize = 64 << 20;

fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}
fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

/// The union of every context's subscriptions (a multiset: one count per
/// context subscribed), what the raw SUB under a cooked one filters with.
type Union = RwLock<TopicTrie>;

struct Own {
    trie: TopicTrie,
    attached: bool,
}

/// The subscriptions of one SUB context (cooked) or of a whole raw SUB
/// socket. Reach it with `socket.control::<SubControl>()` or
/// `ctx.control::<SubControl>()`; subscribe and unsubscribe at any time.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> sp_core::Result<()> {
/// use sp_protocols::pubsub::{Sub0, SubControl};
/// let sub = Sub0::new();
/// let socket = sp_core::SocketBuilder::new(sub.raw_protocol()).cooked(sub).build();
/// let subs = socket.control::<SubControl>().unwrap();
/// subs.subscribe("weather/")?;
/// subs.subscribe("")?;           // the empty topic: everything
/// subs.unsubscribe("")?;
/// assert!(subs.matches(b"weather/paris") && !subs.matches(b"sport/"));
/// # Ok(()) }
/// ```
pub struct SubControl {
    own: RwLock<Own>,
    union: Option<Arc<Union>>,
    max_topic: usize,
}

impl fmt::Debug for SubControl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let own = read(&self.own);
        f.debug_struct("SubControl")
            .field("subscriptions", &own.trie.len())
            .field("bytes", &own.trie.bytes())
            .field("attached", &own.attached)
            .finish()
    }
}

impl SubControl {
    fn new(union: Option<Arc<Union>>, max_topic: usize) -> SubControl {
        SubControl {
            own: RwLock::new(Own {
                trie: TopicTrie::default(),
                attached: true,
            }),
            union,
            max_topic,
        }
    }

    /// Receives messages whose body starts with `topic` (the empty topic:
    /// every message). Subscribing twice to a topic is the same as once.
    ///
    /// Errors: [`Error::TooLarge`] for a topic longer than the largest
    /// message this socket accepts (`recv_max_size`; it could never match),
    /// [`Error::State`] beyond [`MAX_SUBSCRIPTIONS`] or
    /// [`MAX_SUBSCRIPTION_BYTES`], [`Error::Closed`] once the context is gone.
    pub fn subscribe(&self, topic: impl AsRef<[u8]>) -> Result<()> {
        let topic = topic.as_ref();
        if topic.len() > self.max_topic {
            return Err(Error::TooLarge {
                size: topic.len() as u64,
                limit: self.max_topic,
            });
        }
        let mut own = write(&self.own);
        if !own.attached {
            return Err(Error::Closed);
        }
        if own.trie.count(topic) > 0 {
            return Ok(());
        }
        if own.trie.len() >= MAX_SUBSCRIPTIONS {
            return Err(Error::State(
                "too many subscriptions (MAX_SUBSCRIPTIONS); use shorter, shared prefixes",
            ));
        }
        if own.trie.bytes().saturating_add(topic.len()) > MAX_SUBSCRIPTION_BYTES {
            return Err(Error::State(
                "subscriptions too large in total (MAX_SUBSCRIPTION_BYTES)",
            ));
        }
        own.trie.insert(topic);
        if let Some(u) = &self.union {
            write(u).insert(topic);
        }
        Ok(())
    }

    /// Stops receiving messages for `topic` (messages already queued stay).
    /// [`Error::State`] if not subscribed to exactly this topic.
    pub fn unsubscribe(&self, topic: impl AsRef<[u8]>) -> Result<()> {
        let topic = topic.as_ref();
        let mut own = write(&self.own);
        if !own.attached {
            return Err(Error::Closed);
        }
        if !own.trie.remove(topic) {
            return Err(Error::State("not subscribed to this topic"));
        }
        if let Some(u) = &self.union {
            write(u).remove(topic);
        }
        Ok(())
    }

    /// True when subscribed to exactly `topic`.
    pub fn is_subscribed(&self, topic: impl AsRef<[u8]>) -> bool {
        read(&self.own).trie.count(topic.as_ref()) > 0
    }

    /// Number of distinct subscriptions.
    pub fn subscriptions(&self) -> usize {
        read(&self.own).trie.len()
    }

    /// Every subscription, in byte order.
    pub fn topics(&self) -> Vec<Vec<u8>> {
        read(&self.own).trie.topics()
    }

    /// True when a message with this body would be delivered here.
    pub fn matches(&self, body: &[u8]) -> bool {
        read(&self.own).trie.matches(body)
    }

    /// The context is gone: its subscriptions leave the union.
    fn detach(&self) {
        let mut own = write(&self.own);
        if !own.attached {
            return;
        }
        own.attached = false;
        let trie = std::mem::take(&mut own.trie);
        if let Some(u) = &self.union {
            let mut u = write(u);
            for t in trie.topics() {
                u.remove(&t);
            }
        }
    }
}

// ---------------------------------------------------------------- raw PUB

/// PUB v0, raw (and the routing under cooked PUB): every message to every
/// pipe; a full pipe queue drops it for that pipe, counted. Never waits.
#[derive(Clone, Copy, Debug, Default)]
pub struct Pub0Raw;

impl Routing for Pub0Raw {
    fn spec(&self) -> ProtocolSpec {
        crate::raw::builtin(ProtocolId::PUB0)
    }
    fn send(&self, msg: Message, pipes: &mut dyn Pipes) -> Routed {
        // with no subscriber connected the message goes nowhere: counted NoPeer
        pipes.broadcast(msg, None);
        Routed::Queued(None)
    }
    fn recv(&self, _: PipeId, _: &mut Message, _: &mut dyn RecvContext) -> Verdict {
        // a SUB never sends; nng discards such data too
        Verdict::Drop(DropReason::Malformed)
    }
    fn recv_headroom(&self) -> usize {
        0
    }
}

/// PUB v0 that never drops for a full pipe (ZeroMQ's `XPUB_NODROP`): a send
/// waits until every pipe has room, then goes to all of them. The wire is
/// PUB's; the peers are ordinary SUBs (make them lossless too, see the
/// module docs, or a slow one still drops the oldest on its side).
#[derive(Clone, Copy, Debug, Default)]
pub struct Pub0Lossless;

impl Routing for Pub0Lossless {
    fn spec(&self) -> ProtocolSpec {
        crate::raw::builtin(ProtocolId::PUB0)
    }
    fn send(&self, msg: Message, pipes: &mut dyn Pipes) -> Routed {
        let n = pipes.ids().len();
        if n > 0 && !pipes.all_room() {
            return Routed::Wait(msg);
        }
        if n == 0 {
            // nobody subscribed: counted NoPeer
            pipes.broadcast(msg, None);
            return Routed::Queued(None);
        }
        // every pipe had room just now; a concurrent sender may have taken
        // the last place meanwhile: go past the bound by that much rather
        // than drop (only a closing pipe refuses, and loses it, counted)
        let mut msg = Some(msg);
        for i in 0..n {
            let id = pipes.ids()[i];
            let Some(m) = (if i + 1 == n { msg.take() } else { msg.clone() }) else {
                break;
            };
            if let Err(r) = pipes.try_push_at(i, m) {
                if pipes.force_push(id, r.msg).is_err() {
                    pipes.dropped(None, DropReason::PipeClosed);
                }
            }
        }
        Routed::Queued(None)
    }
    fn send_ready(&self, pipes: &dyn Pipes) -> bool {
        pipes.ids().is_empty() || pipes.all_room()
    }
    fn recv(&self, _: PipeId, _: &mut Message, _: &mut dyn RecvContext) -> Verdict {
        Verdict::Drop(DropReason::Malformed)
    }
    fn recv_headroom(&self) -> usize {
        0
    }
}

// ---------------------------------------------------------------- raw SUB

#[derive(Clone)]
enum Filter {
    /// Socket-wide subscriptions of a raw SUB.
    Own(Arc<SubControl>),
    /// The union of a cooked SUB's contexts.
    Union(Arc<Union>),
}

/// SUB v0, raw: keeps the messages its socket-wide subscriptions match (it
/// starts subscribed to everything, as nng's raw xsub), drops the oldest
/// when its receive queue is full. Change the subscriptions through
/// `socket.control::<SubControl>()` or [`Sub0Raw::control`].
#[derive(Clone)]
pub struct Sub0Raw {
    filter: Filter,
    /// Waits for room in the receive queue instead of dropping the oldest.
    lossless: bool,
}

impl fmt::Debug for Sub0Raw {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.filter {
            Filter::Own(c) => f.debug_tuple("Sub0Raw").field(c).finish(),
            Filter::Union(u) => f
                .debug_struct("Sub0Raw")
                .field("union_of_contexts", &read(u).len())
                .finish(),
        }
    }
}

impl Default for Sub0Raw {
    fn default() -> Self {
        Sub0Raw::new()
    }
}

impl Sub0Raw {
    /// A raw SUB subscribed to everything (the empty topic).
    pub fn new() -> Sub0Raw {
        let ctl = SubControl::new(None, MAX_SUBSCRIPTION_BYTES);
        // cannot fail: an empty set, an empty topic
        let _ = ctl.subscribe(b"");
        Sub0Raw {
            filter: Filter::Own(Arc::new(ctl)),
            lossless: false,
        }
    }

    /// This raw SUB, lossless: a full receive queue stops it reading its
    /// pipes (back-pressure to the publisher) instead of dropping the
    /// oldest. Pair it with a [`Pub0Lossless`] publisher.
    pub fn lossless(mut self) -> Sub0Raw {
        self.lossless = true;
        self
    }

    /// The socket-wide subscriptions (`None` for the raw half of a cooked
    /// [`Sub0`], which follows its contexts).
    pub fn control(&self) -> Option<Arc<SubControl>> {
        match &self.filter {
            Filter::Own(c) => Some(c.clone()),
            Filter::Union(_) => None,
        }
    }
}

impl Routing for Sub0Raw {
    fn spec(&self) -> ProtocolSpec {
        crate::raw::builtin(ProtocolId::SUB0)
    }
    fn control(&self) -> Option<sp_core::layer::Control> {
        Sub0Raw::control(self).map(|c| c as sp_core::layer::Control)
    }
    fn send(&self, _: Message, _: &mut dyn Pipes) -> Routed {
        crate::raw::cannot_send("SUB cannot send")
    }
    fn recv(&self, _: PipeId, msg: &mut Message, _: &mut dyn RecvContext) -> Verdict {
        let wanted = match &self.filter {
            Filter::Own(c) => c.matches(msg.body()),
            Filter::Union(u) => read(u).matches(msg.body()),
        };
        if wanted {
            Verdict::Deliver
        } else {
            Verdict::Drop(DropReason::NoSubscription)
        }
    }
    fn recv_policy(&self) -> RecvPolicy {
        if self.lossless {
            RecvPolicy::Wait
        } else {
            RecvPolicy::DropOldest
        }
    }
    fn recv_headroom(&self) -> usize {
        0
    }
}

// ---------------------------------------------------------------- cooked SUB

/// Cooked SUB v0: per-context subscriptions and queues over raw SUB. Build
/// the socket over [`Sub0::raw_protocol`], so that the raw SUB filters with
/// the union of the contexts' subscriptions (`spstack::typed::sub0()` does). Over
/// a raw SUB of its own ([`Sub0Raw::new`], subscribed to everything) it
/// still delivers right, with every message passing the pipe reader.
#[derive(Clone)]
pub struct Sub0 {
    union: Arc<Union>,
    lossless: bool,
}

impl fmt::Debug for Sub0 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sub0")
            .field("union_of_contexts", &read(&self.union).len())
            .finish()
    }
}

impl Default for Sub0 {
    fn default() -> Self {
        Sub0::new()
    }
}

impl Sub0 {
    /// A cooked SUB; its contexts start with no subscription (nothing is received).
    pub fn new() -> Sub0 {
        Sub0 {
            union: Arc::new(RwLock::new(TopicTrie::default())),
            lossless: false,
        }
    }

    /// A lossless cooked SUB: its raw half stops reading the pipes while the
    /// receive queue is full, and a message is taken from that queue only
    /// when every context has room for it, so nothing is dropped for a full
    /// queue (a context that does not read holds the others back). Build the
    /// socket over its [`Sub0::raw_protocol`] (`spstack::sub0_lossless()`
    /// does) and publish with [`Pub0Lossless`].
    pub fn lossless() -> Sub0 {
        Sub0 {
            lossless: true,
            ..Sub0::new()
        }
    }

    /// The raw SUB to build the socket with: it filters with the union of
    /// this cooked SUB's context subscriptions.
    pub fn raw_protocol(&self) -> Sub0Raw {
        Sub0Raw {
            filter: Filter::Union(self.union.clone()),
            lossless: self.lossless,
        }
    }
}

impl CookedProtocol for Sub0 {
    fn info(&self) -> ComponentInfo {
        ComponentInfo::new("sub0", Overhead::NONE)
    }
    fn attach(&self, raw: &RawSocket) -> Arc<dyn CookedSocket> {
        Arc::new_cyclic(|me| SubShared {
            me: me.clone(),
            union: self.union.clone(),
            ctxs: Mutex::new(Ctxs::default()),
            next_ctx: AtomicU64::new(1),
            raw: raw.clone(),
            lossless: self.lossless,
        })
    }
}

type CtxId = u64;

struct Slot {
    ctl: Arc<SubControl>,
    queue: VecDeque<Message>,
    bytes: usize,
    waker: Option<Waker>,
}

/// The contexts of a cooked SUB.
#[derive(Default)]
struct Ctxs {
    map: HashMap<CtxId, Slot>,
    /// Lossless: contexts waiting for every context to have room before
    /// they take the next raw message.
    room_waiters: Vec<Waker>,
}

impl std::ops::Deref for Ctxs {
    type Target = HashMap<CtxId, Slot>;
    fn deref(&self) -> &Self::Target {
        &self.map
    }
}

impl std::ops::DerefMut for Ctxs {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.map
    }
}

struct SubShared {
    me: Weak<SubShared>,
    raw: RawSocket,
    union: Arc<Union>,
    ctxs: Mutex<Ctxs>,
    next_ctx: AtomicU64,
    lossless: bool,
}

impl SubShared {
    fn lock(&self) -> MutexGuard<'_, Ctxs> {
        self.ctxs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The queue bounds of a context: count and bytes.
    fn bounds(&self) -> (usize, usize) {
        let o = self.raw.options();
        (o.recv_queue.max(1), o.recv_queue_bytes)
    }

    /// Hands a message from the raw socket to every context it matches
    /// (under the contexts' lock, taken with the message: contexts that
    /// dispatch at once cannot reorder messages); returns whom to wake (all
    /// that wait but `me`, which is running).
    fn dispatch(&self, ctxs: &mut Ctxs, m: Message, me: CtxId) -> Vec<Waker> {
        let (cap, cap_bytes) = self.bounds();
        let counters = self.raw.counters();
        let lossless = self.lossless;
        let mut wake: Vec<Waker> = Vec::new();
        let mut matched = false;
        for (&id, s) in ctxs.iter_mut() {
            if !s.ctl.matches(m.body()) {
                continue;
            }
            matched = true;
            // room for this one, in count and in bytes (a lossless SUB
            // checked there was before it took the message)
            while !lossless
                && !s.queue.is_empty()
                && (s.queue.len() >= cap || s.bytes + m.len() > cap_bytes)
            {
                if let Some(old) = s.queue.pop_front() {
                    s.bytes -= old.len();
                    counters.dropped(DropReason::QueueFull);
                    tracing::debug!(target: "spstack", ctx = id, "SUB context queue full: oldest dropped");
                }
            }
            s.bytes += m.len();
            s.queue.push_back(m.clone());
            if id != me {
                wake.extend(s.waker.take());
            }
        }
        if !matched {
            // its subscriber left, or unsubscribed, after the pipe let it in
            counters.dropped(DropReason::NoSubscription);
        }
        wake
    }
}

impl CookedSocket for SubShared {
    fn context(&self) -> CookedContext {
        let Some(shared) = self.me.upgrade() else {
            unreachable!("a cooked socket is only used while its Arc lives")
        };
        let id = self.next_ctx.fetch_add(1, Ordering::Relaxed);
        let ctl = Arc::new(SubControl::new(
            Some(self.union.clone()),
            self.raw.options().recv_max_size,
        ));
        self.lock().insert(
            id,
            Slot {
                ctl: ctl.clone(),
                queue: VecDeque::new(),
                bytes: 0,
                waker: None,
            },
        );
        let io = MessageIo::new(
            Box::pin(crate::plain::Refuse("SUB cannot send")),
            Box::pin(SubRx {
                shared,
                id,
                key: WaitKey::default(),
            }),
        );
        CookedContext {
            io,
            control: Some(ctl),
        }
    }
}

/// A context's receive half; dropping it ends the context.
struct SubRx {
    shared: Arc<SubShared>,
    id: CtxId,
    key: WaitKey,
}

/// Raw messages a context dispatches to others before it lets other tasks run.
const DISPATCH_BUDGET: usize = 64;

impl Stream for SubRx {
    type Item = Result<Message>;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Message>>> {
        let this = self.get_mut();
        let shared = &this.shared;
        for _ in 0..DISPATCH_BUDGET {
            let wake = {
                let mut ctxs = shared.lock();
                let Some(s) = ctxs.get_mut(&this.id) else {
                    return Poll::Ready(None);
                };
                if let Some(m) = s.queue.pop_front() {
                    s.bytes -= m.len();
                    let waiters = std::mem::take(&mut ctxs.room_waiters);
                    drop(ctxs);
                    // a context waiting for room may take the next one now
                    for w in waiters {
                        w.wake();
                    }
                    // pass on a raw wake-up this context no longer needs
                    shared.raw.cancel_recv(&mut this.key);
                    return Poll::Ready(Some(Ok(m)));
                }
                match &s.waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => s.waker = Some(cx.waker().clone()),
                }
                if shared.lossless {
                    // take the next raw message only when every context
                    // has room for one more (its largest possible share is
                    // the whole message: at most one over the byte bound)
                    let (cap, cap_bytes) = shared.bounds();
                    let full = ctxs.map.values().any(|s| {
                        s.queue.len() >= cap || (s.bytes >= cap_bytes && !s.queue.is_empty())
                    });
                    if full {
                        shared.raw.cancel_recv(&mut this.key);
                        if !ctxs.room_waiters.iter().any(|w| w.will_wake(cx.waker())) {
                            ctxs.room_waiters.push(cx.waker().clone());
                        }
                        return Poll::Pending;
                    }
                }
                match shared.raw.poll_recv(cx, &mut this.key) {
                    Poll::Ready(Ok(m)) => shared.dispatch(&mut ctxs, m, this.id),
                    Poll::Ready(Err(Error::Closed)) => return Poll::Ready(None),
                    Poll::Ready(Err(e)) => return Poll::Ready(Some(Err(e))),
                    Poll::Pending => return Poll::Pending,
                }
            };
            for w in wake {
                w.wake();
            }
        }
        // a stream of messages for other contexts: let them (and others) run
        shared.raw.cancel_recv(&mut this.key);
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl Drop for SubRx {
    fn drop(&mut self) {
        self.shared.raw.cancel_recv(&mut self.key);
        let (slot, waiters) = {
            let mut ctxs = self.shared.lock();
            (
                ctxs.remove(&self.id),
                std::mem::take(&mut ctxs.room_waiters),
            )
        };
        // a lossless SUB's other contexts may have waited for this one
        for w in waiters {
            w.wake();
        }
        if let Some(s) = slot {
            s.ctl.detach();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_is_a_set_and_feeds_the_union() {
        let union = Arc::new(RwLock::new(TopicTrie::default()));
        let a = SubControl::new(Some(union.clone()), 16);
        let b = SubControl::new(Some(union.clone()), 16);
        a.subscribe("x").unwrap();
        a.subscribe("x").unwrap();
        b.subscribe("x").unwrap();
        b.subscribe("y").unwrap();
        assert_eq!(a.subscriptions(), 1);
        assert_eq!(read(&union).count(b"x"), 2);
        a.unsubscribe("x").unwrap();
        assert!(a.unsubscribe("x").is_err(), "not subscribed any more");
        assert!(read(&union).matches(b"x1"), "b still wants x");
        b.detach();
        assert!(!read(&union).matches(b"x1") && !read(&union).matches(b"y"));
        assert!(matches!(b.subscribe("z"), Err(Error::Closed)));
        assert!(matches!(
            a.subscribe([0u8; 17]),
            Err(Error::TooLarge {
                size: 17,
                limit: 16
            })
        ));
        assert_eq!(read(&union).len(), 0);
    }

    #[test]
    fn raw_sub_starts_with_everything() {
        let r = Sub0Raw::new();
        let mut m = Message::from(&b"news"[..]);
        let mut p = sp_core::routing::MemPipes::new(&[1], 1);
        assert!(matches!(r.recv(1, &mut m, &mut p), Verdict::Deliver));
        let c = r.control().unwrap();
        c.unsubscribe("").unwrap();
        c.subscribe("a").unwrap();
        assert!(matches!(
            r.recv(1, &mut m, &mut p),
            Verdict::Drop(DropReason::NoSubscription)
        ));
        assert!(matches!(
            r.recv(1, &mut Message::from(&b"abc"[..]), &mut p),
            Verdict::Deliver
        ));
    }
}

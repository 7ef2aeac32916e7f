//! `ack/1`: delivery that survives a dying pipe.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> spstack::Result<()> {
//! use sp_reliable::ack::Ack;
//!
//! let (a, b) = (
//!     spstack::pull0().pipe_layer(Ack::new().layer()).build(),
//!     spstack::pull0().pipe_layer(Ack::new().layer()).build(),
//! );
//! let ea = a.listen("tcp://127.0.0.1:0").await?;
//! let eb = b.listen("tcp://127.0.0.1:0").await?;
//! let ack = Ack::new();
//! let stats = ack.stats();
//! let push = spstack::push0().pipe_layer(ack.layer()).build();
//! push.dial(ea.url()).await?;
//! push.dial(eb.url()).await?;
//!
//! for i in 0u8..10 {
//!     push.send(vec![i]).await?; // round robin: half of them to `a`
//! }
//! // `a` closes without reading: its application took nothing, so nothing
//! // it held was acknowledged, and the pusher sends it all to `b`
//! a.close();
//! let mut got = Vec::new();
//! while got.len() < 10 {
//!     got.push(b.recv().await?.body()[0]);
//! }
//! got.sort();
//! assert_eq!(got, (0..10).collect::<Vec<u8>>());
//! assert!(stats.snapshot().returned > 0);
//! # Ok(()) }
//! ```
//!
//! # What it does
//!
//! No SP library keeps a message once its pipe took it: when the pipe dies,
//! what the kernel, the network and the peer's receive queue held is gone
//! (counted, in spstack, but gone). With `ack/1` on both sides:
//!
//! * every message a socket sends is numbered (one counter per socket) and
//!   kept until the peer acknowledges it; at most `window` messages (and
//!   `window_bytes`) per pipe are unacknowledged, and a full window makes
//!   the pipe's writer wait, which the routing sees as a full pipe
//!   (back-pressure);
//! * the receiving socket acknowledges a message only when the application
//!   took it from the socket (or the protocol used or dropped it, counted),
//!   learned from the socket through [`sp_core::Receipts`]. What a closing
//!   socket throws away unread is not acknowledged;
//! * when a pipe dies, everything it sent that was not acknowledged goes
//!   back to the socket's routing ([`sp_core::SocketLink::requeue`]), which
//!   sends it on another pipe if the protocol moves messages between pipes
//!   (PUSH, REQ, polyamorous PAIR1) or drops it, counted (REP's replies,
//!   PUB: their pipe was the point). It goes out again under its number;
//! * the receiving socket remembers, per sending socket, which numbers it
//!   already has, so the copy of a message whose acknowledgement was lost
//!   with its pipe is dropped rather than delivered twice;
//! * a handed-back message with no pipe left to go to is kept by the
//!   socket (`Requeued::Waiting`) until its dialer has reconnected.
//!
//! So "one PUSH, two PULLs, one PULL closed half-way" delivers every
//! message to an application exactly once (`tests/delivery_ack.rs`): a
//! closing socket acknowledges everything its application took before its
//! pipes end. A receiver that *vanishes* (power loss) cannot: what its
//! application took in its last `ack_delay` (at most `ack_every` messages
//! per pipe) is then delivered again by whichever socket gets it next.
//! Within one receiving socket copies are always dropped; across sockets
//! that is at-least-once, as it must be without a shared store.
//!
//! Acknowledgements go ahead of the next message a pipe sends (a REP's
//! reply carries its request's), else in a frame of their own once
//! `ack_every` messages settled or `ack_delay` passed.
//!
//! # Where the state lives
//!
//! Per *socket*, not per pipe: a message comes back on a different pipe
//! than it left on, so its number and the memory of what arrived must
//! outlive pipes. Each socket using the layer gets a random 64-bit identity
//! and a sequence counter (its identity is exchanged in each pipe's
//! handshake). A receiving socket keeps one window per sending identity,
//! written by the pipes' readers only: which pipe (and index there) each of
//! the last numbers came on, and copies waiting for a first copy's fate. A
//! copy of a message that was taken is dropped at once; a copy of one still
//! in the receive queue is held, and delivered after all if the first copy
//! is lost — in either order: the first copy may also come *after* its
//! resend, when a partition heals. Per *pipe*: the unacknowledged messages
//! it sent, and what it received and whether the socket settled it (asked
//! by the window only when a copy shows up, so the application's side,
//! which settles every message, never touches the window). A handed-back
//! message carries its number through the routing as a 16-byte mark in
//! front of its header, keyed with a secret of the socket so that no peer
//! can forge one; the next pipe's layer takes it off. The identities are
//! trusted as announced: between untrusted peers put an authenticating
//! layer (Noise) below.
//!
//! # Bounded, and counted
//!
//! Unacknowledged: `window` messages and `window_bytes` bytes per pipe. A
//! peer may not send past the window it announced (the pipe closes).
//! Duplicate memory: between half and all of the last `dedup_window`
//! numbers per sending socket (a copy of an older one would be delivered
//! again: `forgotten` counts what left the window), at most `max_senders`
//! sending sockets (an idle one is forgotten for a new one, counted; with
//! all busy a new pipe is refused). Nothing is dropped by the
//! layer itself: handed-back messages the routing cannot place are counted
//! by the socket (`Stats::returned`, and the drop reason), and
//! [`AckCounters`] counts what was sent, resent, acknowledged, returned,
//! suppressed as a duplicate, and forgotten from a full window.
//!
//! # REQ/REP
//!
//! A request the server's socket never took is handed back when its pipe
//! dies and goes at once to another server, without waiting for REQ's
//! resend timer: for a raw REQ (a device), where nothing else would resend
//! it, and for a cooked one. A cooked REQ also resends on its own when the
//! pipe its request went out on dies (acknowledged or not, since the reply
//! is lost either way), so that request may reach a second server twice
//! (the REP side drops the second copy only when both reach the same
//! socket): REQ stays at-least-once. With `heartbeat/1` under `ack/1`,
//! `Options::req_resend(None)` is safe: a dead or frozen server is noticed
//! within the heartbeat's interval and the request resent then, instead of
//! on a blind timer. A reply whose pipe died is dropped, counted (a reply
//! has only one way back), and REQ's resend covers it.
//!
//! # Stack and negotiation
//!
//! `ack/1` must be the last pipe layer added (nearest the protocol): it
//! numbers the frames the socket hands it and must see the socket's frames,
//! not another layer's; its handshake refuses any other place. An
//! encryption layer goes below it (a handed-back message is then sealed
//! again for the next pipe; as `ack/1` keeps a reference to each frame, an
//! in-place layer below it copies each frame once). Like every pipe layer
//! it is announced, and both sides must have it: a peer without it (a plain
//! nng or nanomsg peer included) is refused with `LayerMismatch`.
//!
//! # Wire
//!
//! See [the frame table](wire). The cost: 9 bytes per message, one 9-byte
//! acknowledgement per `ack_every` messages (or per `ack_delay`), one hash
//! insertion and a few uncontended locks per message, a reference (not a
//! copy) kept per unacknowledged message. Measured in `benches/README.md`
//! (`SPBENCH_ACK=1`, `benches/run_reliable.sh`).

mod dedup;
mod pipe;
pub mod wire;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use sp_core::layer::{ComponentInfo, Field, Handshake, Overhead, PipeLayer};
use sp_core::{BoxFuture, Connection, Error, Result, SocketLink};

use self::pipe::{acknowledger, AckSink, AckStream, SocketState};
use self::wire::Hello;
use crate::shared::Shared;

/// The layer's name, as both sides announce it.
pub const NAME: &str = "ack/1";

/// Largest window a peer may announce.
const MAX_PEER_WINDOW: u32 = 1 << 20;

#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) window: usize,
    pub(crate) window_bytes: usize,
    pub(crate) dedup_window: usize,
    pub(crate) max_senders: usize,
    pub(crate) ack_every: u64,
    pub(crate) ack_delay: Duration,
}

/// The `ack/1` pipe layer and its settings. One value serves one socket
/// (it keeps that socket's identity and windows); make one per socket.
pub struct Ack {
    cfg: Config,
    stats: Arc<AckCounters>,
    /// The state of each socket this layer serves, kept while the socket
    /// lives (not only while it has pipes: what it remembers must outlive a
    /// reconnection).
    sockets: Mutex<Vec<(SocketLink, Arc<SocketState>)>>,
}

impl Default for Ack {
    fn default() -> Self {
        Ack::new()
    }
}

impl std::fmt::Debug for Ack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ack").field("cfg", &self.cfg).finish()
    }
}

/// An `ack/1` layer with the default settings.
pub fn layer() -> PipeLayer<Ack> {
    Ack::new().layer()
}

impl Ack {
    /// Defaults: a window of 4096 messages and 16 MiB per pipe, an
    /// acknowledgement per 256 messages or 10 ms (or ahead of the next
    /// message the pipe sends, a reply carrying its request's), the last
    /// 65,536 numbers remembered per sending socket, 1024 sending sockets.
    pub fn new() -> Ack {
        Ack {
            cfg: Config {
                window: 4096,
                window_bytes: 16 << 20,
                dedup_window: 1 << 16,
                max_senders: 1024,
                ack_every: 256,
                ack_delay: Duration::from_millis(10),
            },
            stats: Arc::default(),
            sockets: Mutex::new(Vec::new()),
        }
    }

    /// Most unacknowledged messages per pipe (1 ..= 2^20): when a pipe has
    /// that many, its writer waits for acknowledgements.
    pub fn window(mut self, n: usize) -> Ack {
        self.cfg.window = n.clamp(1, MAX_PEER_WINDOW as usize);
        self
    }

    /// Most unacknowledged bytes per pipe (one larger message still goes).
    pub fn window_bytes(mut self, n: usize) -> Ack {
        self.cfg.window_bytes = n.max(1);
        self
    }

    /// Numbers remembered per sending socket (between `n / 2` and `n` of
    /// the last to arrive; at least 1): a copy of an older one would be
    /// delivered again (`forgotten` counts what left the memory). It must
    /// well exceed what a peer can have unacknowledged when a pipe dies,
    /// its window, plus what arrives meanwhile. Default 65,536.
    pub fn dedup_window(mut self, n: usize) -> Ack {
        self.cfg.dedup_window = n.max(1);
        self
    }

    /// Sending sockets remembered at most (at least 1).
    pub fn max_senders(mut self, n: usize) -> Ack {
        self.cfg.max_senders = n.max(1);
        self
    }

    /// Acknowledge once this many messages settled (at least 1), or after
    /// `ack_delay`, whichever is first.
    pub fn ack_every(mut self, n: u64) -> Ack {
        self.cfg.ack_every = n.max(1);
        self
    }

    /// The longest an acknowledgement waits for company (default 10 ms).
    /// Shorter narrows what a receiver that *vanishes* had taken without
    /// saying so (its sender then delivers that elsewhere again; a receiver
    /// that closes acknowledges everything it took first); longer costs
    /// less: at 1 ms the wake-ups added about 10 µs to a REQ/REP round trip
    /// here (`benches/README.md`).
    pub fn ack_delay(mut self, d: Duration) -> Ack {
        self.cfg.ack_delay = d;
        self
    }

    /// Counters of every pipe this layer serves.
    pub fn stats(&self) -> Arc<AckCounters> {
        self.stats.clone()
    }

    /// The pipe layer.
    pub fn layer(self) -> PipeLayer<Ack> {
        PipeLayer::new(self)
    }

    fn socket(&self, link: &SocketLink) -> Result<Arc<SocketState>> {
        let Some(id) = link.socket_id() else {
            return Err(Error::layer(
                NAME,
                "needs a socket: it hands messages back to the socket's routing",
            ));
        };
        let mut v = self.sockets.lock().unwrap_or_else(|e| e.into_inner());
        v.retain(|(l, _)| l.socket_alive());
        if let Some((_, s)) = v.iter().find(|(l, _)| l.socket_id() == Some(id)) {
            return Ok(s.clone());
        }
        let s = Arc::new(SocketState::new(self.cfg.clone(), self.stats.clone()));
        v.push((link.for_socket(), s.clone()));
        Ok(s)
    }
}

/// Live counters of an [`Ack`] layer (every pipe of its socket).
#[derive(Debug, Default)]
pub struct AckCounters {
    pub(crate) sent: AtomicU64,
    pub(crate) resent: AtomicU64,
    pub(crate) acked: AtomicU64,
    pub(crate) returned: AtomicU64,
    pub(crate) received: AtomicU64,
    pub(crate) duplicates: AtomicU64,
    pub(crate) forgotten: AtomicU64,
    pub(crate) senders_forgotten: AtomicU64,
    pub(crate) acks_sent: AtomicU64,
    pub(crate) acks_received: AtomicU64,
    pub(crate) window_waits: AtomicU64,
}

/// A snapshot of [`AckCounters`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AckStats {
    /// Messages numbered and sent for the first time.
    pub sent: u64,
    /// Messages sent again under their number after their pipe died.
    pub resent: u64,
    /// Messages the peers acknowledged.
    pub acked: u64,
    /// Unacknowledged messages handed back to the socket when their pipe died.
    pub returned: u64,
    /// Messages received and handed to the socket (first copies).
    pub received: u64,
    /// Copies of messages this socket already had, dropped.
    pub duplicates: u64,
    /// Numbers that left a full duplicate window (a copy of one of them
    /// would be delivered again).
    pub forgotten: u64,
    /// Idle sending sockets forgotten to make room for a new one.
    pub senders_forgotten: u64,
    /// Acknowledgements written.
    pub acks_sent: u64,
    /// Acknowledgements received.
    pub acks_received: u64,
    /// Times a pipe's writer waited for a full window.
    pub window_waits: u64,
}

impl AckStats {
    /// Messages sent and neither acknowledged nor handed back yet.
    pub fn in_flight(&self) -> u64 {
        (self.sent + self.resent).saturating_sub(self.acked + self.returned)
    }
}

impl AckCounters {
    /// The counters now.
    pub fn snapshot(&self) -> AckStats {
        AckStats {
            sent: self.sent.load(Relaxed),
            resent: self.resent.load(Relaxed),
            acked: self.acked.load(Relaxed),
            returned: self.returned.load(Relaxed),
            received: self.received.load(Relaxed),
            duplicates: self.duplicates.load(Relaxed),
            forgotten: self.forgotten.load(Relaxed),
            senders_forgotten: self.senders_forgotten.load(Relaxed),
            acks_sent: self.acks_sent.load(Relaxed),
            acks_received: self.acks_received.load(Relaxed),
            window_waits: self.window_waits.load(Relaxed),
        }
    }
}

impl Handshake for Ack {
    fn info(&self) -> ComponentInfo {
        ComponentInfo::new(NAME, Overhead::header(wire::DATA_HEADER))
            .with_header(vec![Field::be("type", 1), Field::be("seq", 8)])
    }

    fn handshake(&self, mut conn: Connection) -> BoxFuture<'static, Result<Connection>> {
        let socket = self.socket(&conn.info.link);
        let window = self.cfg.window as u32;
        Box::pin(async move {
            if conn.info.local.layers.last().map(String::as_str) != Some(NAME) {
                return Err(Error::layer(
                    NAME,
                    "must be the last pipe layer added (nearest the protocol): it numbers the socket's own frames",
                ));
            }
            let socket = socket?;
            let mine = Hello {
                identity: socket.identity,
                window,
            };
            conn.tx.send(mine.encode()).await?;
            let theirs = conn.rx.next().await.ok_or(Error::ConnectionClosed)??;
            let peer = Hello::decode(theirs.body())?;
            if peer.window == 0 || peer.window > MAX_PEER_WINDOW {
                return Err(Error::layer(
                    NAME,
                    format!("the peer's window of {} is out of range", peer.window),
                ));
            }
            let link = conn.info.link.clone();
            let (tx, rx) = socket.open_pipe(link.clone(), peer)?;
            if !link.watch_settled(rx.clone()) {
                return Err(Error::layer(
                    NAME,
                    "the socket will not say what it took from this pipe",
                ));
            }
            link.retain_frames();
            let limit = &conn.info.recv_limit;
            limit.set(limit.get().saturating_add(wire::DATA_HEADER));
            let shared = Shared::new(conn.tx);
            tokio::spawn(acknowledger(
                shared.clone(),
                Arc::downgrade(&rx),
                rx.notify.clone(),
            ));
            conn.tx = Box::pin(AckSink {
                shared,
                tx: tx.clone(),
                rx: Arc::downgrade(&rx),
                last: None,
                piggyback: None,
                closing: false,
            });
            conn.rx = Box::pin(AckStream {
                inner: conn.rx,
                tx,
                rx,
            });
            Ok(conn)
        })
    }
}

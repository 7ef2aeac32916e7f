//! `heartbeat/1`: a peer that vanishes without a FIN is noticed.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> spstack::Result<()> {
//! use std::time::Duration;
//! use sp_reliable::heartbeat::Heartbeat;
//!
//! // idle for 200 ms: send a ping; nothing heard for 3 × 200 ms: the peer is gone
//! let beat = Heartbeat::new(Duration::from_millis(200));
//! let seen = beat.stats();
//! let pull = spstack::pull0().pipe_layer(beat.layer()).build();
//! let ep = pull.listen("tcp://127.0.0.1:0").await?;
//! let push = spstack::push0()
//!     .pipe_layer(Heartbeat::new(Duration::from_millis(200)).layer())
//!     .build();
//! push.dial(ep.url()).await?;
//!
//! tokio::time::sleep(Duration::from_millis(700)).await; // idle: pings keep the pipe
//! push.send("still here").await?;
//! assert_eq!(pull.recv().await?.body(), b"still here");
//! assert!(seen.snapshot().pings_received > 0);
//! assert_eq!(pull.stats().rejects(spstack::RejectReason::Unresponsive), 0);
//! # Ok(()) }
//! ```
//!
//! # What it does
//!
//! Each side sends a small ping when it has written nothing for half the
//! agreed interval, so a live peer hears something at least once per
//! interval whatever the traffic. A side that hears nothing at all (no
//! message, no ping) for `misses` intervals in a row closes the pipe with
//! [`Error::PeerSilent`], counted as [`RejectReason::Unresponsive`](sp_core::RejectReason::Unresponsive)
//! (`socket.stats().rejects(..)`, and [`HeartbeatStats::timeouts`]); what
//! the pipe had queued moves to other pipes or is counted, as for any pipe
//! that dies, and a dialer redials. Detection comes between `misses` and
//! `misses + 1` intervals after the last frame heard (556–607 ms with
//! 200 ms × 3 in `tests/heartbeat.rs`). Pings are the layer's own frames:
//! they keep the pipe alive without counting as messages in
//! `socket.stats()`.
//!
//! Silence is only held against the peer while this side is reading: a
//! socket whose application stopped taking messages (a full receive queue
//! stops the pipe's reader) blames nobody; when it reads again the peer's
//! buffered frames count as heard.
//!
//! # Wire
//!
//! The handshake exchanges one frame each way, `'H' 'B' 01` and the sender's
//! interval in milliseconds (u32 BE); both then ping at the shorter of the
//! two intervals. Every frame afterwards starts with one type byte: `00`
//! a frame of the layers above, `01` a ping (nothing follows).
//!
//! # Interoperability: a plain nng or nanomsg peer
//!
//! `heartbeat/1` is optional ([`Handshake::plain_peer_ok`]): with a plain
//! peer (nng, nanomsg, an spstack socket without pipe layers) it is simply
//! not negotiated, when every pipe layer of the stack is optional too.
//!
//! * Listening, the socket reads the dialer's 8-byte header before sending
//!   its own (every dialer sends without waiting): a plain header gets the
//!   plain header back, and the pipe runs with no pipe layers
//!   (`PipeInfo::local` lists none; the pipe's span records `plain`); a
//!   layered one gets the announcement, which must match as always.
//! * Dialing, it announces its layers; a plain peer answers with the plain
//!   header and drops the connection (nng and nanomsg reject version byte
//!   01). That attempt is counted `RejectReason::PlainPeer` and raised as a
//!   `PipeEvent::Refused`; the dialer remembers and redials the endpoint
//!   plain at once, and keeps dialing it plain until a peer there answers
//!   the plain header layered.
//!
//! Such a pipe has no liveness check: a silent plain peer is found as
//! without the layer (TCP errors, the WebSocket keepalive). Over tcp, ipc
//! and inproc both ways; over quic a listener serves plain dialers, but a
//! dialer stays strict (the plain listener's SP_MISMATCH close overtakes
//! its plain header); WebSocket, whose layers ride in the
//! subprotocol token, keeps the strict exchange, and there its own
//! ping/pong keepalive (`sp_ws::WsConfig::ping_interval`, `ping_timeout`,
//! on by default at 30 s) is answered by any peer, nng's included, counted
//! as the same `RejectReason::Unresponsive`.
//!
//! [`Heartbeat::required`] refuses plain peers instead (counted
//! `LayerMismatch`, naming `heartbeat/1`). A stack with any layer that is
//! not optional (`ack/1`, Noise, integrity) never runs plain: dropping it
//! would be a downgrade a peer could force.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{Sink, SinkExt, Stream, StreamExt};
use sp_core::layer::{ComponentInfo, Field, Handshake, Overhead, PipeLayer};
use sp_core::{BoxFuture, BoxStream, Connection, Error, Message, Result};
use tokio::time::{Instant, Sleep};

use crate::shared::{Party, Shared};

/// The layer's name, as both sides announce it.
pub const NAME: &str = "heartbeat/1";

const DATA: u8 = 0;
const PING: u8 = 1;
const HELLO_LEN: usize = 7;
/// Longest interval a peer may ask for: a day.
const MAX_INTERVAL_MS: u32 = 24 * 3600 * 1000;
/// Pings consumed in one poll before the reader yields.
const BURST: usize = 64;

/// The `heartbeat/1` pipe layer's settings. Build with [`Heartbeat::new`],
/// add with [`Heartbeat::layer`].
#[derive(Clone, Debug)]
pub struct Heartbeat {
    interval: Duration,
    misses: u32,
    required: bool,
    stats: Arc<HeartbeatCounters>,
}

/// A `heartbeat/1` layer pinging when idle for `interval`, giving up after
/// three silent intervals.
pub fn layer(interval: Duration) -> PipeLayer<Heartbeat> {
    Heartbeat::new(interval).layer()
}

impl Heartbeat {
    /// Ping when the pipe has been idle for `interval` (at least 1 ms, at
    /// most a day); give up after 3 silent intervals.
    pub fn new(interval: Duration) -> Heartbeat {
        Heartbeat {
            interval: interval.clamp(
                Duration::from_millis(1),
                Duration::from_millis(MAX_INTERVAL_MS as u64),
            ),
            misses: 3,
            required: false,
            stats: Arc::default(),
        }
    }

    /// Silent intervals in a row before the peer is given up (at least 2,
    /// so one late ping is never fatal). Default 3.
    pub fn misses(mut self, n: u32) -> Heartbeat {
        self.misses = n.max(2);
        self
    }

    /// Refuse plain peers: without this, a peer without pipe layers (nng,
    /// nanomsg) is served plain, without the heartbeat (see the module's
    /// Interoperability section); with it, such a peer is refused
    /// (`LayerMismatch`), as for any layer that is not optional.
    pub fn required(mut self) -> Heartbeat {
        self.required = true;
        self
    }

    /// The configured interval.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// How long a peer may be silent before its pipe is closed.
    pub fn timeout(&self) -> Duration {
        self.interval * self.misses
    }

    /// Counters of every pipe this layer serves.
    pub fn stats(&self) -> Arc<HeartbeatCounters> {
        self.stats.clone()
    }

    /// The pipe layer.
    pub fn layer(self) -> PipeLayer<Heartbeat> {
        PipeLayer::new(self)
    }
}

/// Live counters of a [`Heartbeat`] layer.
#[derive(Debug, Default)]
pub struct HeartbeatCounters {
    pings_sent: AtomicU64,
    pings_received: AtomicU64,
    timeouts: AtomicU64,
}

/// A snapshot of [`HeartbeatCounters`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HeartbeatStats {
    /// Pings written.
    pub pings_sent: u64,
    /// Pings received.
    pub pings_received: u64,
    /// Pipes closed because the peer went silent.
    pub timeouts: u64,
}

impl HeartbeatCounters {
    /// The counters now.
    pub fn snapshot(&self) -> HeartbeatStats {
        HeartbeatStats {
            pings_sent: self.pings_sent.load(Relaxed),
            pings_received: self.pings_received.load(Relaxed),
            timeouts: self.timeouts.load(Relaxed),
        }
    }
}

fn hello(interval: Duration) -> Message {
    let ms = interval.as_millis().min(MAX_INTERVAL_MS as u128) as u32;
    let mut b = vec![b'H', b'B', 1];
    b.extend_from_slice(&ms.to_be_bytes());
    Message::from(b)
}

fn parse_hello(b: &[u8]) -> Result<Duration> {
    if b.len() != HELLO_LEN || b[0] != b'H' || b[1] != b'B' {
        return Err(Error::layer(
            NAME,
            "the peer's hello is not a heartbeat/1 hello",
        ));
    }
    if b[2] != 1 {
        return Err(Error::layer(
            NAME,
            format!("the peer speaks heartbeat version {}", b[2]),
        ));
    }
    let ms = u32::from_be_bytes([b[3], b[4], b[5], b[6]]);
    if ms == 0 || ms > MAX_INTERVAL_MS {
        return Err(Error::layer(
            NAME,
            format!("the peer's interval of {ms} ms is out of range"),
        ));
    }
    Ok(Duration::from_millis(ms as u64))
}

impl Handshake for Heartbeat {
    fn info(&self) -> ComponentInfo {
        ComponentInfo::new(NAME, Overhead::header(1)).with_header(vec![Field::be("type", 1)])
    }

    /// Liveness is an extra, not a guarantee a peer could take away by
    /// answering plain: a plain peer is served without it unless
    /// [`Heartbeat::required`].
    fn plain_peer_ok(&self) -> bool {
        !self.required
    }

    fn handshake(&self, mut conn: Connection) -> BoxFuture<'static, Result<Connection>> {
        let (interval, misses, stats) = (self.interval, self.misses, self.stats.clone());
        Box::pin(async move {
            conn.tx.send(hello(interval)).await?;
            let theirs = conn.rx.next().await.ok_or(Error::ConnectionClosed)??;
            let peer = parse_hello(theirs.body())?;
            // the peer gives up on us after its own interval × misses: ping
            // often enough for the stricter of the two
            let period = interval.min(peer);
            let limit = &conn.info.recv_limit;
            limit.set(limit.get().saturating_add(1));
            let shared = Shared::new(conn.tx);
            tokio::spawn(pinger(shared.clone(), period, stats.clone()));
            conn.tx = Box::pin(BeatSink { shared });
            conn.rx = Box::pin(BeatStream {
                inner: conn.rx,
                interval,
                misses,
                timer: Box::pin(tokio::time::sleep(interval)),
                heard: 0,
                heard_at_tick: 0,
                silent: 0,
                stats,
            });
            Ok(conn)
        })
    }
}

/// Pings whenever nothing was written for half the period, until the
/// writer's half is gone.
async fn pinger(shared: Arc<Shared>, period: Duration, stats: Arc<HeartbeatCounters>) {
    let tick = (period / 2).max(Duration::from_millis(1));
    let mut seen = shared.writes();
    loop {
        tokio::select! {
            _ = shared.closed() => return,
            _ = tokio::time::sleep(tick) => {}
        }
        let now = shared.writes();
        if now != seen {
            seen = now;
            continue;
        }
        // a write stuck behind a full kernel buffer holds this up too,
        // which is right: the peer is then not reading, and its own
        // detection is the one that counts
        if shared.send_frame(Message::from(&[PING][..])).await.is_err() {
            return;
        }
        stats.pings_sent.fetch_add(1, Relaxed);
        seen = shared.writes();
    }
}

struct BeatSink {
    shared: Arc<Shared>,
}

impl Sink<Message> for BeatSink {
    type Error = Error;
    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.shared.poll_ready(cx)
    }
    fn start_send(self: Pin<&mut Self>, mut m: Message) -> Result<()> {
        m.push_frame_header(&[DATA]);
        self.shared.start_send(m)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.shared.poll_flush(Party::Writer, cx)
    }
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.shared.poll_close(cx)
    }
}

impl Drop for BeatSink {
    fn drop(&mut self) {
        self.shared.writer_gone();
    }
}

struct BeatStream {
    inner: BoxStream,
    interval: Duration,
    misses: u32,
    timer: Pin<Box<Sleep>>,
    /// Frames heard (any kind): counted, never timed, on the hot path.
    heard: u64,
    heard_at_tick: u64,
    silent: u32,
    stats: Arc<HeartbeatCounters>,
}

impl BeatStream {
    /// The reader waits for the peer: has a whole interval passed in silence?
    fn poll_silence(&mut self, cx: &mut Context<'_>) -> Poll<Error> {
        // one tick per look, however long the reader was away: a socket
        // that stopped reading must not blame the peer for its own pause
        while self.timer.as_mut().poll(cx).is_ready() {
            if self.heard != self.heard_at_tick {
                self.heard_at_tick = self.heard;
                self.silent = 0;
            } else {
                self.silent += 1;
            }
            if self.silent >= self.misses {
                self.stats.timeouts.fetch_add(1, Relaxed);
                return Poll::Ready(Error::PeerSilent {
                    by: NAME.into(),
                    after: self.interval * self.misses,
                });
            }
            let next = Instant::now() + self.interval;
            self.timer.as_mut().reset(next);
        }
        Poll::Pending
    }
}

impl Stream for BeatStream {
    type Item = Result<Message>;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Message>>> {
        let this = self.get_mut();
        for _ in 0..BURST {
            match this.inner.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(mut m))) => {
                    this.heard += 1;
                    match m.body().first() {
                        Some(&DATA) => {
                            m.trim_body_front(1);
                            return Poll::Ready(Some(Ok(m)));
                        }
                        Some(&PING) if m.body().len() == 1 => {
                            this.stats.pings_received.fetch_add(1, Relaxed);
                        }
                        _ => {
                            return Poll::Ready(Some(Err(Error::layer(
                                NAME,
                                "a frame that is neither data nor a ping",
                            ))))
                        }
                    }
                }
                Poll::Ready(other) => return Poll::Ready(other),
                Poll::Pending => {
                    return match this.poll_silence(cx) {
                        Poll::Ready(e) => Poll::Ready(Some(Err(e))),
                        Poll::Pending => Poll::Pending,
                    }
                }
            }
        }
        // a flood of pings: let the reader's other work run
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

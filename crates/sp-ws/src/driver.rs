//! One task per WebSocket pipe: it moves SP messages between the pipe's
//! channels and the WebSocket, answers and sends pings, and closes with the
//! right code. One task (rather than split halves) because a ping must be
//! sent from the timer while reads and writes proceed independently; all
//! three are polled from one `poll` so a blocked write never stops reading
//! (two peers both writing would otherwise deadlock).

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::channel::mpsc;
use futures::{Sink, SinkExt, Stream};
use sp_core::layer::RecvLimit;
use sp_core::transport::PipeConfig;
use sp_core::{Connection, Error, Message, PipeInfo, Result};
use tokio::time::{Instant, Sleep};

use crate::WsConfig;

/// Messages queued between a pipe and its driver, each way.
const CHANNEL: usize = 8;
/// How long a closing handshake may take once we decided to close.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// A received WebSocket message, whatever library parsed it.
pub(crate) enum In {
    Binary(Bytes),
    Text,
    Alive,
    Close,
}

/// What the driver needs of a WebSocket: tokio-tungstenite's stream or
/// axum's `WebSocket`.
pub(crate) trait Wire:
    Stream<Item = std::result::Result<Self::Msg, Self::Err>>
    + Sink<Self::Msg, Error = Self::Err>
    + Unpin
    + Send
    + 'static
{
    type Msg: Send + Unpin;
    type Err: std::fmt::Display + Send;
    fn classify(m: Self::Msg) -> In;
    /// Queues `b` as one binary message, split into frames of at most
    /// `frame` bytes where the library can send fragments.
    fn binary(b: Bytes, frame: usize, out: &mut VecDeque<Self::Msg>);
    fn ping() -> Self::Msg;
    fn close(code: u16, reason: &'static str) -> Self::Msg;
    /// Maps an error, and says which close code (if any) to send.
    fn error(e: Self::Err) -> (Error, Option<(u16, &'static str)>);
    /// Called for every complete message or control frame received.
    fn progress(&mut self) {}
}

/// Starts the driver task for `ws` and returns the pipe.
pub(crate) fn spawn<W: Wire>(
    ws: W,
    cfg: &PipeConfig,
    ws_cfg: &WsConfig,
    info: PipeInfo,
) -> Connection {
    let (out_tx, out_rx) = mpsc::channel::<Bytes>(CHANNEL);
    let (in_tx, in_rx) = mpsc::channel::<(Message, usize)>(CHANNEL);
    let fail = Arc::new(Mutex::new(None));
    let demand = Arc::new(Demand::default());
    let keepalive = ws_cfg.ping_interval.map(|interval| {
        let period = interval
            .min(ws_cfg.ping_timeout)
            .max(Duration::from_millis(1));
        Keepalive {
            interval,
            timeout: ws_cfg.ping_timeout,
            period,
            timer: Box::pin(tokio::time::sleep(period)),
            ping_sent: None,
        }
    });
    let driver = Driver {
        ws,
        out_rx,
        in_tx,
        pending_in: None,
        pending_out: VecDeque::new(),
        send_frame: ws_cfg.send_frame_size.max(1),
        ping_due: false,
        need_flush: false,
        keepalive,
        last_rx: Instant::now(),
        in_blocked: false,
        closing: None,
        fail: fail.clone(),
        limit: cfg.recv_limit.clone(),
        opened_limit: cfg.recv_limit.get(),
        demand: demand.clone(),
        counters: cfg.counters.clone(),
    };
    tokio::spawn(driver);
    // the conversion runs in the pipe's writer, where copies are counted:
    // none for a frame already in one slice; the WebSocket library then
    // copies it once into its write buffer, counted here too
    let tx = out_tx
        .sink_map_err(|_| Error::ConnectionClosed)
        .with(|m: Message| {
            let b = m.into_frame_bytes();
            sp_core::record_copy(b.len());
            std::future::ready(Ok::<_, Error>(b))
        });
    Connection {
        tx: Box::pin(tx),
        rx: Box::pin(Rx {
            rx: in_rx,
            fail,
            done: false,
            demand,
        }),
        info,
    }
}

/// The pipe's receive half: the driver's messages, then its error if any.
/// Each comes with the bytes the WebSocket library copied to build it (a
/// message reassembled from fragments), counted here, in the pipe's reader.
struct Rx {
    rx: mpsc::Receiver<(Message, usize)>,
    fail: Arc<Mutex<Option<Error>>>,
    done: bool,
    demand: Arc<Demand>,
}

impl Stream for Rx {
    type Item = Result<Message>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Message>>> {
        if self.done {
            return Poll::Ready(None);
        }
        match Pin::new(&mut self.rx).poll_next(cx) {
            Poll::Ready(Some((m, copied))) => {
                sp_core::record_copy(copied);
                Poll::Ready(Some(Ok(m)))
            }
            Poll::Ready(None) => {
                self.done = true;
                let e = self.fail.lock().unwrap_or_else(|e| e.into_inner()).take();
                Poll::Ready(e.map(Err))
            }
            Poll::Pending => {
                self.demand.ask();
                Poll::Pending
            }
        }
    }
}

struct Keepalive {
    interval: Duration,
    timeout: Duration,
    period: Duration,
    timer: Pin<Box<Sleep>>,
    ping_sent: Option<Instant>,
}

struct Closing<M> {
    frame: Option<M>,
    deadline: Pin<Box<Sleep>>,
}

struct Driver<W: Wire> {
    ws: W,
    out_rx: mpsc::Receiver<Bytes>,
    in_tx: mpsc::Sender<(Message, usize)>,
    /// A received message waiting for room in the pipe's queue.
    pending_in: Option<(Message, usize)>,
    /// Frames of the message being written (several when fragmented).
    pending_out: VecDeque<W::Msg>,
    send_frame: usize,
    ping_due: bool,
    need_flush: bool,
    keepalive: Option<Keepalive>,
    last_rx: Instant,
    /// The pipe's queue was full at the last look: we are not reading, so a
    /// missing pong proves nothing.
    in_blocked: bool,
    closing: Option<Closing<W::Msg>>,
    fail: Arc<Mutex<Option<Error>>>,
    limit: RecvLimit,
    /// The limit the pipe opened with: below it a pipe layer is in its
    /// handshake and reads wait for [`Demand`].
    opened_limit: usize,
    demand: Arc<Demand>,
    counters: Arc<sp_core::stats::Counters>,
}

/// The pipe's reader asking for a message. While a pipe layer holds the
/// receive limit low for its handshake, the driver reads one message per
/// request: a message that follows the last handshake message in the same
/// read is parsed only after the layer has finished with that message and
/// raised the limit, instead of being refused against the handshake's cap.
#[derive(Default)]
struct Demand {
    wanted: std::sync::atomic::AtomicBool,
    driver: futures::task::AtomicWaker,
}

impl Demand {
    fn ask(&self) {
        self.wanted
            .store(true, std::sync::atomic::Ordering::Release);
        self.driver.wake();
    }
    /// Whether the reader waits for a message; if not, the driver is
    /// woken when it does.
    fn wanted(&self, cx: &mut Context<'_>) -> bool {
        use std::sync::atomic::Ordering;
        if self.wanted.load(Ordering::Acquire) {
            return true;
        }
        self.driver.register(cx.waker());
        self.wanted.load(Ordering::Acquire)
    }
    /// A message went to the reader: the request is answered.
    fn served(&self) {
        self.wanted
            .store(false, std::sync::atomic::Ordering::Release);
    }
}

enum Step {
    Continue,
    Done,
}

impl<W: Wire> Driver<W> {
    /// Records why the pipe ends and starts closing with `code`.
    fn fail(&mut self, e: Error, code: Option<(u16, &'static str)>) {
        tracing::debug!(target: "spstack", error = %e, "websocket pipe closing");
        let mut slot = self.fail.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            *slot = Some(e);
        }
        drop(slot);
        self.start_close(code.map(|(c, r)| W::close(c, r)));
    }

    fn start_close(&mut self, frame: Option<W::Msg>) {
        if self.closing.is_none() {
            self.closing = Some(Closing {
                frame,
                deadline: Box::pin(tokio::time::sleep(CLOSE_GRACE)),
            });
        }
        // nothing more goes to the pipe: let it see the end (and the error)
        self.in_tx.close_channel();
    }

    fn poll_closing(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(c) = &mut self.closing else {
            return Poll::Pending;
        };
        if c.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(());
        }
        if let Some(f) = c.frame.take() {
            match Pin::new(&mut self.ws).poll_ready(cx) {
                Poll::Ready(Ok(())) => {
                    if Pin::new(&mut self.ws).start_send(f).is_err() {
                        return Poll::Ready(());
                    }
                }
                Poll::Ready(Err(_)) => return Poll::Ready(()),
                Poll::Pending => {
                    c.frame = Some(f);
                    return Poll::Pending;
                }
            }
        }
        match Pin::new(&mut self.ws).poll_close(cx) {
            Poll::Ready(_) => Poll::Ready(()),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_keepalive(&mut self, cx: &mut Context<'_>) {
        let Some(ka) = &mut self.keepalive else {
            return;
        };
        while ka.timer.as_mut().poll(cx).is_ready() {
            let now = Instant::now();
            ka.timer.as_mut().reset(now + ka.period);
            match ka.ping_sent {
                Some(sent) if self.last_rx >= sent => ka.ping_sent = None,
                Some(_) if self.in_blocked => {
                    // the socket is not reading this pipe, so neither are
                    // we: wait for it rather than blame the peer
                    ka.ping_sent = None;
                }
                Some(sent) if now.duration_since(sent) >= ka.timeout => {
                    let timeout = ka.timeout;
                    // counted as `RejectReason::Unresponsive`, as the
                    // `heartbeat/1` pipe layer's verdict is
                    self.fail(
                        Error::PeerSilent {
                            by: "the WebSocket keepalive (no pong; see WsConfig::ping_timeout)"
                                .into(),
                            after: timeout,
                        },
                        Some((1011, "keepalive timeout")),
                    );
                    return;
                }
                Some(_) => {}
                None => {}
            }
            if ka.ping_sent.is_none() && now.duration_since(self.last_rx) >= ka.interval {
                ka.ping_sent = Some(now);
                self.ping_due = true;
            }
        }
    }

    fn poll_write(&mut self, cx: &mut Context<'_>) -> Step {
        // copies below (a TLS session under the WebSocket) count on the socket
        let counters = self.counters.clone();
        let _s = sp_core::CopyScope::socket(&counters, sp_core::Direction::Send);
        loop {
            if self.pending_out.is_empty() {
                if self.ping_due {
                    self.ping_due = false;
                    self.pending_out.push_back(W::ping());
                } else {
                    match Pin::new(&mut self.out_rx).poll_next(cx) {
                        Poll::Ready(Some(b)) => {
                            W::binary(b, self.send_frame, &mut self.pending_out);
                        }
                        Poll::Ready(None) => {
                            // the pipe was dropped: a normal close
                            self.start_close(Some(W::close(1000, "")));
                            return Step::Continue;
                        }
                        Poll::Pending => break,
                    }
                }
            }
            match Pin::new(&mut self.ws).poll_ready(cx) {
                Poll::Ready(Ok(())) => {
                    let Some(m) = self.pending_out.pop_front() else {
                        break;
                    };
                    if let Err(e) = Pin::new(&mut self.ws).start_send(m) {
                        let (e, code) = W::error(e);
                        self.fail(e, code);
                        return Step::Continue;
                    }
                    self.need_flush = true;
                }
                Poll::Ready(Err(e)) => {
                    let (e, code) = W::error(e);
                    self.fail(e, code);
                    return Step::Continue;
                }
                Poll::Pending => break,
            }
        }
        if self.need_flush {
            match Pin::new(&mut self.ws).poll_flush(cx) {
                Poll::Ready(Ok(())) => self.need_flush = false,
                Poll::Ready(Err(e)) => {
                    let (e, code) = W::error(e);
                    self.fail(e, code);
                }
                Poll::Pending => {}
            }
        }
        Step::Continue
    }

    fn poll_read(&mut self, cx: &mut Context<'_>) -> Step {
        let counters = self.counters.clone();
        let _s = sp_core::CopyScope::socket(&counters, sp_core::Direction::Recv);
        loop {
            match self.in_tx.poll_ready(cx) {
                Poll::Ready(Ok(())) => self.in_blocked = false,
                Poll::Ready(Err(_)) => {
                    // the pipe stopped reading (closed by the socket)
                    self.start_close(Some(W::close(1000, "")));
                    return Step::Continue;
                }
                Poll::Pending => {
                    self.in_blocked = true;
                    return Step::Continue;
                }
            }
            if let Some(m) = self.pending_in.take() {
                if self.in_tx.start_send(m).is_err() {
                    self.start_close(Some(W::close(1000, "")));
                    return Step::Continue;
                }
                continue;
            }
            if self.limit.get() < self.opened_limit && !self.demand.wanted(cx) {
                // a pipe layer's handshake: one message per request
                self.in_blocked = true;
                return Step::Continue;
            }
            match Pin::new(&mut self.ws).poll_next(cx) {
                Poll::Ready(Some(Ok(m))) => {
                    self.ws.progress();
                    self.last_rx = Instant::now();
                    match W::classify(m) {
                        In::Binary(b) => {
                            let limit = self.limit.get();
                            if b.len() > limit {
                                self.fail(
                                    Error::TooLarge {
                                        size: b.len() as u64,
                                        limit,
                                    },
                                    Some((1009, "message too big")),
                                );
                                return Step::Continue;
                            }
                            // a message that came in one frame is a view of
                            // the library's read buffer (shared); one it
                            // reassembled from fragments is a buffer of its
                            // own, copied once
                            let copied = if b.is_unique() { b.len() } else { 0 };
                            self.pending_in = Some((Message::from(b), copied));
                            self.demand.served();
                        }
                        In::Text => {
                            self.fail(
                                Error::protocol(
                                    "the peer sent a WebSocket text frame; SP over WebSocket carries binary frames only (closed with 1003, as nng does). Use the sp_ws::Opcodes layer to exchange text end to end",
                                ),
                                Some((1003, "text frames not supported")),
                            );
                            return Step::Continue;
                        }
                        In::Alive => {}
                        In::Close => {}
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    let (e, code) = W::error(e);
                    match e {
                        Error::ConnectionClosed => {
                            self.in_tx.close_channel();
                            return Step::Done;
                        }
                        e => self.fail(e, code),
                    }
                    return Step::Continue;
                }
                Poll::Ready(None) => {
                    // the closing handshake finished (or the stream ended)
                    self.in_tx.close_channel();
                    return Step::Done;
                }
                Poll::Pending => return Step::Continue,
            }
        }
    }
}

impl<W: Wire> Future for Driver<W> {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        if this.closing.is_some() {
            return this.poll_closing(cx);
        }
        this.poll_keepalive(cx);
        if this.closing.is_none() {
            if let Step::Done = this.poll_read(cx) {
                return Poll::Ready(());
            }
        }
        if this.closing.is_none() {
            let _ = this.poll_write(cx);
        }
        if this.closing.is_some() {
            return this.poll_closing(cx);
        }
        Poll::Pending
    }
}

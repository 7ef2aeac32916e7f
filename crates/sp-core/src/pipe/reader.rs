//! A pipe's reader task: takes every frame already decoded, lets the routing
//! parse each, and delivers the batch to the socket's receive queue under one
//! lock and at most one wake-up.
//!
//! When the socket closes the reader keeps reading, counting what still
//! arrives as dropped (`Closed`), until the peer hangs up or the linger
//! passes: the peer's writes then end cleanly and it learns the pipe is gone
//! from the end of the stream, and what it had sent is counted on this side.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;

use futures::StreamExt;
use tracing::{debug, warn};

use super::link::Tracked;
use super::scope::Counted;
use super::table::{PipeEntry, ReaderContext};
use crate::core::Core;
use crate::queue::WaitKey;
use crate::routing::{RecvPolicy, Verdict};
use crate::stats::{DropReason, RejectReason};
use crate::{BoxStream, Error, Message};

const BATCH: usize = 64;
const BATCH_BYTES: usize = 256 << 10;

/// Why the reader stopped.
enum Stop {
    /// The peer ended the stream.
    Eof,
    /// A read error or a protocol violation.
    Broken,
    /// The pipe was aborted.
    Aborted,
    /// Nothing arrived for `Options::idle_timeout`.
    Idle,
}

/// Fires when the idle timer does; never without one.
async fn idle(timer: &mut Option<Pin<Box<tokio::time::Sleep>>>) {
    match timer {
        Some(t) => t.as_mut().await,
        None => std::future::pending().await,
    }
}

impl Core {
    pub(crate) async fn reader(self: Arc<Self>, p: Arc<PipeEntry>, mut rx: Counted<BoxStream>) {
        // pinned once: it fires when the socket closes or the pipe is
        // aborted, and then the reader looks which
        let drained = p.drain.cancelled();
        tokio::pin!(drained);
        let mut draining = false;
        let mut batch: VecDeque<Message> = VecDeque::new();
        let mut key = WaitKey::default();
        let idle_after = self.opts.idle_timeout;
        let mut idle_timer = idle_after.map(|d| Box::pin(tokio::time::sleep(d)));
        // a layer that acknowledges what the socket took hears about every
        // frame by its number (see `SocketLink`)
        let tracked = self.tracked(p.id);
        let mut frame_no: u64 = 0;
        let mut evicted: Vec<Message> = Vec::new();
        let stop = 'read: loop {
            if draining {
                if p.abort.is_cancelled() {
                    break 'read Stop::Aborted;
                }
                break 'read self.drain(&p, &mut rx).await;
            }
            if let (Some(t), Some(d)) = (&mut idle_timer, idle_after) {
                // from now: time spent waiting for room in the receive
                // queue is the application's, not the peer's silence
                t.as_mut().reset(tokio::time::Instant::now() + d);
            }
            let stop = tokio::select! {
                biased;
                _ = &mut drained => {
                    draining = true;
                    continue;
                }
                s = std::future::poll_fn(|cx| {
                    self.poll_frames(&p, &mut rx, cx, &mut batch, &mut frame_no, tracked.as_deref())
                }) => s,
                _ = idle(&mut idle_timer) => break 'read Stop::Idle,
            };
            if !batch.is_empty() && self.router.recv_policy() == RecvPolicy::DropOldest {
                for m in batch.drain(..) {
                    match self.recv.push_evict_into(m, &mut evicted) {
                        Ok(n) => {
                            for _ in 0..n {
                                p.stats.dropped(DropReason::QueueFull);
                                self.count_drop(
                                    DropReason::QueueFull,
                                    "receive queue full: oldest dropped",
                                );
                            }
                        }
                        Err(_) => {
                            if let Some(t) = &tracked {
                                t.unqueue(1);
                            }
                            self.count_drop(DropReason::Closed, "socket closed")
                        }
                    }
                    // dropped and counted: done with, as if taken
                    for old in evicted.drain(..) {
                        if tracked.is_some() || self.receipts.active() {
                            self.settle_taken(&old);
                        }
                    }
                }
            }
            if !batch.is_empty() {
                let pushed = tokio::select! {
                    biased;
                    _ = &mut drained, if !draining => {
                        draining = true;
                        Err(if p.abort.is_cancelled() { DropReason::PipeClosed } else { DropReason::Closed })
                    }
                    r = std::future::poll_fn(|cx| self.recv.poll_push_batch(cx, &mut key, &mut batch)) => r.map_err(|()| DropReason::Closed),
                };
                if let Err(reason) = pushed {
                    self.recv.cancel_push(&mut key);
                    if let Some(t) = &tracked {
                        t.unqueue(batch.len());
                    }
                    for _ in batch.drain(..) {
                        p.stats.dropped(reason);
                        self.count_drop(reason, "received, never delivered");
                    }
                }
            }
            if let Some(s) = stop {
                break 'read s;
            }
        };
        self.recv.cancel_push(&mut key);
        if let Stop::Idle = stop {
            self.counters.rejected(RejectReason::IdleTimeout);
            warn!(target: "spstack", timeout = ?idle_after, "nothing received for the idle timeout; closing pipe");
        }
        if let Some(t) = &tracked {
            self.reader_done(p.id, t);
        }
        // the peer hung up: our write in flight may still finish; anything
        // else stops the pipe now
        self.detach(&p, matches!(stop, Stop::Eof));
    }

    /// The socket is closing: read what the peer still sends, count it, and
    /// stop at the end of the stream or when the linger passes.
    async fn drain(&self, p: &PipeEntry, rx: &mut Counted<BoxStream>) -> Stop {
        let aborted = p.abort.cancelled();
        tokio::pin!(aborted);
        loop {
            let next = tokio::select! {
                biased;
                _ = &mut aborted => return Stop::Aborted,
                n = rx.next() => n,
            };
            match next {
                Some(Ok(m)) => {
                    let len = m.len();
                    p.stats.received(len);
                    self.counters.received(len);
                    p.stats.dropped(DropReason::Closed);
                    self.count_drop(DropReason::Closed, "arrived while the socket closed");
                }
                Some(Err(_)) => return Stop::Broken,
                None => return Stop::Eof,
            }
        }
    }

    /// Takes every frame the stream has ready (up to a batch), parsing each
    /// into `batch` (numbered from `frame_no` on), in one poll with one copy
    /// scope; counts them once.
    /// `Pending` only when no frame was ready; `Ready(Some(stop))` when the
    /// stream ended or the pipe must close.
    fn poll_frames(
        &self,
        p: &PipeEntry,
        rx: &mut Counted<BoxStream>,
        cx: &mut std::task::Context<'_>,
        batch: &mut VecDeque<Message>,
        frame_no: &mut u64,
        tracked: Option<&Tracked>,
    ) -> std::task::Poll<Option<Stop>> {
        use std::task::Poll;
        let (mut n, mut bytes) = (0usize, 0usize);
        let mut stop = None;
        {
            let _scope = crate::CopyScope::enter(&rx.socket, &rx.pipe, crate::Direction::Recv);
            loop {
                match rx.inner.as_mut().poll_next(cx) {
                    Poll::Ready(Some(Ok(m))) => {
                        n += 1;
                        bytes += m.len();
                        // every frame gets its number, in order, for a
                        // layer that acknowledges what the socket took
                        let no = *frame_no;
                        *frame_no += 1;
                        if let Err(why) = self.accept_frame(p, m, batch, no, tracked) {
                            warn!(target: "spstack", why, "protocol violation; closing pipe");
                            stop = Some(Stop::Broken);
                            break;
                        }
                        if batch.len() >= BATCH || bytes >= BATCH_BYTES {
                            break;
                        }
                    }
                    Poll::Ready(Some(Err(e))) => {
                        self.count_pipe_error(p, &e);
                        stop = Some(Stop::Broken);
                        break;
                    }
                    Poll::Ready(None) => {
                        debug!(target: "spstack", "peer closed the pipe");
                        stop = Some(Stop::Eof);
                        break;
                    }
                    Poll::Pending if n == 0 => return Poll::Pending,
                    Poll::Pending => break,
                }
            }
        }
        p.stats.received_many(n, bytes);
        self.counters.received_many(n, bytes);
        Poll::Ready(stop)
    }

    /// Parses one received frame (counted by the caller); queues it for
    /// delivery or drops it. `Err` means the peer broke the protocol and the
    /// pipe must close.
    fn accept_frame(
        &self,
        p: &PipeEntry,
        mut m: Message,
        out: &mut VecDeque<Message>,
        n: u64,
        tracked: Option<&Tracked>,
    ) -> Result<(), String> {
        let mut cx = ReaderContext {
            core: self,
            live: None,
        };
        match self.router.recv(p.id, &mut m, &mut cx) {
            Verdict::Deliver => {
                m.set_pipe(Some(p.id));
                if let Some(t) = tracked {
                    t.queued(n);
                }
                out.push_back(m);
                Ok(())
            }
            Verdict::Consumed => {
                if let Some(t) = tracked {
                    t.settle(n);
                }
                Ok(())
            }
            Verdict::Drop(r) => {
                p.stats.dropped(r);
                self.count_drop(r, "dropped on receive");
                if let Some(t) = tracked {
                    t.settle(n);
                }
                Ok(())
            }
            Verdict::Close(why) => {
                p.stats.dropped(DropReason::Malformed);
                self.count_drop(DropReason::Malformed, "broke the protocol");
                self.counters.rejected(RejectReason::ProtocolError);
                Err(why)
            }
        }
    }

    fn count_pipe_error(&self, p: &PipeEntry, e: &Error) {
        let reason = match e {
            Error::TooLarge { .. } => {
                self.counters.dropped(DropReason::TooLarge);
                p.stats.dropped(DropReason::TooLarge);
                RejectReason::ProtocolError
            }
            Error::Io(_) | Error::ConnectionClosed => RejectReason::Io,
            Error::PeerSilent { .. } => RejectReason::Unresponsive,
            _ => RejectReason::ProtocolError,
        };
        if reason != RejectReason::Io {
            self.counters.rejected(reason);
        }
        warn!(target: "spstack", error = %e, "pipe closed");
    }
}

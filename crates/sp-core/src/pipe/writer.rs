//! A pipe's writer task: takes batches off the pipe's send queue, prepares
//! each frame once as the stack's [`FramePlan`](crate::layer::FramePlan)
//! says, feeds them through the pipe layers and flushes them with one
//! vectored write per batch.
//!
//! A message counts as sent once the transport has taken it (the flush
//! returned). If the write fails or the pipe is aborted, what was fed and not
//! flushed is counted dropped, what was not fed yet goes back to the routing
//! (another pipe) or is counted, and so does what is left in the queue.
//!
//! **Write-through.** A request/reply protocol ([`Routing::write_through`])
//! answering a message it received writes its next message itself, in the
//! sender's thread, when the pipe is idle (nothing queued, nothing being
//! written): no hand-over to this task, so no wake-up of another thread
//! for a lone request or reply. Anything the transport does not take at once
//! is left to this task, which is poked to finish it; everything else goes
//! through the queue as before, so streams keep their batching.
//!
//! [`Routing::write_through`]: crate::routing::Routing::write_through

use std::collections::VecDeque;
use std::sync::{Arc, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::SinkExt;
use tracing::debug;

use super::scope::Counted;
use super::table::PipeEntry;
use crate::core::Core;
use crate::queue::WaitKey;
use crate::stats::DropReason;
use crate::{BoxSink, CopyScope, Direction, Error, Message};

/// Small batches in a row after which a writer gives back the room a burst
/// made it take.
const SHRINK_AFTER: u8 = 64;
/// Bytes a writer gathers into one write before it flushes (what it was
/// handed at once still goes whole).
const WRITE_BATCH_BYTES: usize = 256 << 10;

/// What a pipe's writer holds: its half of the connection and the messages
/// on their way into it. Locked by the writer task for each poll, and by a
/// sender writing through.
pub(crate) struct WriterState {
    tx: Counted<BoxSink>,
    /// Popped, not yet fed to the transport.
    pending: VecDeque<Message>,
    /// Fed and not yet flushed (messages, bytes).
    fed: (usize, usize),
    /// A sender wrote through and left part of it unflushed.
    unflushed: bool,
    /// Batches in a row that were small.
    small: u8,
}

impl WriterState {
    pub(crate) fn new(tx: Counted<BoxSink>) -> WriterState {
        WriterState {
            tx,
            pending: VecDeque::new(),
            fed: (0, 0),
            unflushed: false,
            small: 0,
        }
    }
}

enum End {
    /// The queue closed and every message in it was written.
    Drained,
    /// The write failed or the pipe was aborted.
    Broken,
}

/// Drops a pipe's writer state (its half of the connection) when the
/// writer task goes, however it goes.
struct ReleaseOnDrop(Arc<PipeEntry>);

impl Drop for ReleaseOnDrop {
    fn drop(&mut self) {
        let state = lock(&self.0).take();
        drop(state);
    }
}

fn lock(p: &PipeEntry) -> MutexGuard<'_, Option<WriterState>> {
    p.writer.lock().unwrap_or_else(|e| e.into_inner())
}

impl Core {
    pub(crate) async fn writer(self: Arc<Self>, p: Arc<PipeEntry>) {
        // the connection's write half lives in the pipe entry (for senders
        // writing through), which the socket keeps: if this task is dropped
        // unfinished (its runtime shut down), it must not keep the
        // connection open behind a peer's back — the peer hears the FIN
        // that a killed process would send
        let _release = ReleaseOnDrop(p.clone());
        let mut key = WaitKey::default();
        // one cancellation future for the pipe's life: re-creating it per
        // batch would register a fresh waiter every time
        let aborted = p.abort.cancelled();
        tokio::pin!(aborted);
        let end = loop {
            // work: queued messages, or what a sender left unflushed
            let n = tokio::select! {
                biased;
                _ = &mut aborted => break End::Broken,
                n = std::future::poll_fn(|cx| {
                    let mut g = lock(&p);
                    let Some(w) = g.as_mut() else {
                        return Poll::Ready(0);
                    };
                    if w.unflushed {
                        return Poll::Ready(usize::MAX);
                    }
                    p.queue.poll_pop_into(cx, &mut key, &mut w.pending, self.opts.write_batch)
                }) => n,
            };
            if n == 0 {
                break End::Drained;
            }
            if n != usize::MAX {
                self.wake_senders();
            }
            let res = tokio::select! {
                biased;
                _ = &mut aborted => Err(Error::Closed),
                r = std::future::poll_fn(|cx| match lock(&p).as_mut() {
                    Some(w) => self.poll_feed(cx, &p, w),
                    None => Poll::Ready(Err(Error::Closed)),
                }) => r,
            };
            let mut g = lock(&p);
            let Some(w) = g.as_mut() else {
                break End::Broken;
            };
            let fed = std::mem::take(&mut w.fed);
            w.unflushed = false;
            match res {
                Ok(()) => {
                    p.stats.sent_many(fed.0, fed.1);
                    self.counters.sent_many(fed.0, fed.1);
                    // a pipe that has sent little for a while keeps little
                    w.small = if n < 16 { w.small.saturating_add(1) } else { 0 };
                    if w.small == SHRINK_AFTER && w.pending.capacity() > 16 {
                        w.pending.shrink_to(16);
                    }
                }
                Err(e) => {
                    debug!(target: "spstack", error = %e, unflushed = fed.0, unfed = w.pending.len(), "pipe write failed");
                    self.settle_unflushed(&p, fed);
                    break End::Broken;
                }
            }
        };
        p.queue.cancel_pop(&mut key);
        // from here on no sender writes through: the state leaves the pipe
        let state = lock(&p).take();
        let Some(mut w) = state else { return };
        if let End::Broken = end {
            // what the last attempt fed and could not flush (an abort while
            // it waited) is lost with the connection
            let fed = std::mem::take(&mut w.fed);
            self.settle_unflushed(&p, fed);
            // leave the table first, so the routing does not offer our
            // unsent messages back to us
            self.detach(&p, false);
            for m in w.pending.drain(..) {
                self.requeue_or_count(m, DropReason::PipeClosed);
            }
            self.release_queue(&p);
        }
        // the peer sees the stream end (a FIN) once everything is written
        let _ = tokio::time::timeout(Duration::from_millis(100), w.tx.close()).await;
    }

    /// Settles `fed` (messages, bytes) fed to a pipe whose write failed:
    /// a layer that keeps what it was fed answers for it (hands it back or
    /// counts it), so for this writer it left as sent; otherwise each is
    /// counted dropped.
    fn settle_unflushed(&self, p: &PipeEntry, fed: (usize, usize)) {
        if p.info.link.retains_frames() {
            p.stats.sent_many(fed.0, fed.1);
            self.counters.sent_many(fed.0, fed.1);
            return;
        }
        let n = fed.0;
        let reason = if self.is_closed() {
            DropReason::Closed
        } else {
            DropReason::PipeClosed
        };
        for _ in 0..n {
            p.stats.dropped(reason);
            self.count_drop(reason, "fed to a pipe whose write failed");
        }
    }

    /// Feeds every pending message to the pipe's sink, then whatever the
    /// senders queued meanwhile (up to `write_batch` messages in all), and
    /// flushes: in one poll with one copy scope, each frame prepared once as
    /// the stack's plan says. `w.fed` counts what the sink took.
    fn poll_feed(
        &self,
        cx: &mut Context<'_>,
        p: &PipeEntry,
        w: &mut WriterState,
    ) -> Poll<Result<(), Error>> {
        let tx = &mut w.tx;
        let _scope = CopyScope::enter(&tx.socket, &tx.pipe, Direction::Send);
        loop {
            while !w.pending.is_empty() {
                std::task::ready!(tx.inner.as_mut().poll_ready(cx))?;
                let Some(m) = w.pending.pop_front() else {
                    break;
                };
                let m = self.prepare(m);
                let len = m.len();
                tx.inner.as_mut().start_send(m)?;
                w.fed.0 += 1;
                w.fed.1 += len;
            }
            // what was queued while these were fed goes in the same write,
            // up to a bound in bytes too: large messages would otherwise keep
            // one write gathering while the peer waits for its first bytes
            let room = self.opts.write_batch.saturating_sub(w.fed.0);
            if room == 0
                || w.fed.1 >= WRITE_BATCH_BYTES
                || p.queue.try_pop_into(&mut w.pending, room) == 0
            {
                break;
            }
            self.wake_senders();
        }
        tx.inner.as_mut().poll_flush(cx)
    }

    /// Prepares a frame once, before any layer, as the plan says: unique, in
    /// one slice, with all the room the layers declared.
    fn prepare(&self, mut m: Message) -> Message {
        if self.plan.contiguous {
            let (head, tail) = self.plan.room(m.frame_len());
            m.reserve_frame(head, tail);
        }
        m
    }

    /// Writes `m` to the pipe from the sender's thread when the pipe is idle
    /// (see the module docs); gives it back, untouched, when it is not (the
    /// caller queues it). On `Ok` the message was written, or left to the
    /// writer task to finish, or counted as dropped with its pipe.
    pub(crate) fn write_through(&self, p: &PipeEntry, m: Message) -> Result<(), Message> {
        let Ok(mut g) = p.writer.try_lock() else {
            return Err(m);
        };
        let Some(w) = g.as_mut() else {
            return Err(m);
        };
        // the writer's own work and everything queued go first
        if w.unflushed
            || w.fed.0 > 0
            || !w.pending.is_empty()
            || !p.queue.is_empty()
            || p.abort.is_cancelled()
        {
            return Err(m);
        }
        let res = {
            let mut cx = Context::from_waker(futures::task::noop_waker_ref());
            let tx = &mut w.tx;
            let _scope = CopyScope::enter(&tx.socket, &tx.pipe, Direction::Send);
            match tx.inner.as_mut().poll_ready(&mut cx) {
                Poll::Ready(Ok(())) => {}
                // busy or broken: the writer task deals with it
                _ => return Err(m),
            }
            let m = self.prepare(m);
            let len = m.len();
            let res = match tx.inner.as_mut().start_send(m) {
                Ok(()) => tx.inner.as_mut().poll_flush(&mut cx),
                Err(e) => Poll::Ready(Err(e)),
            };
            (res, len)
        };
        match res {
            (Poll::Ready(Ok(())), len) => {
                drop(g);
                p.stats.sent(len);
                self.counters.sent(len);
            }
            (Poll::Pending, len) => {
                // the transport took part of it: the writer task finishes
                // the flush with a waker of its own
                w.fed = (1, len);
                w.unflushed = true;
                drop(g);
                p.queue.wake_poppers();
            }
            (Poll::Ready(Err(e)), len) => {
                drop(g);
                debug!(target: "spstack", error = %e, "pipe write failed (written through)");
                self.settle_unflushed(p, (1, len));
                p.abort.cancel();
            }
        }
        Ok(())
    }
}

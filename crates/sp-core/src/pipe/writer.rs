//! A pipe's writer task: takes batches off the pipe's send queue, prepares
//! each frame once as the stack's [`FramePlan`](crate::layer::FramePlan)
//! says, feeds them through the pipe layers and flushes them with one
//! vectored write per batch.
//!
//! A message counts as sent once the transport has taken it (the flush
//! returned). If the write fails or the pipe is aborted, what was fed and not
//! flushed is counted dropped, what was not fed yet goes back to the routing
//! (another pipe) or is counted, and so does what is left in the queue.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use std::task::{Context, Poll};

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

enum End {
    /// The queue closed and every message in it was written.
    Drained,
    /// The write failed or the pipe was aborted.
    Broken,
}

impl Core {
    pub(crate) async fn writer(self: Arc<Self>, p: Arc<PipeEntry>, mut tx: Counted<BoxSink>) {
        // popped and not yet fed to the transport
        let mut pending: VecDeque<Message> = VecDeque::new();
        // batches in a row that were small
        let mut small = 0u8;
        let mut key = WaitKey::default();
        // one cancellation future for the pipe's life: re-creating it per
        // batch would register a fresh waiter every time
        let aborted = p.abort.cancelled();
        tokio::pin!(aborted);
        let end = loop {
            let n = tokio::select! {
                biased;
                _ = &mut aborted => break End::Broken,
                n = std::future::poll_fn(|cx| p.queue.poll_pop_into(cx, &mut key, &mut pending, self.opts.write_batch)) => n,
            };
            if n == 0 {
                break End::Drained;
            }
            self.wake_senders();
            let mut fed = (0usize, 0usize);
            let res = tokio::select! {
                biased;
                _ = &mut aborted => Err(Error::Closed),
                r = std::future::poll_fn(|cx| self.poll_feed(cx, &p, &mut tx, &mut pending, &mut fed)) => r,
            };
            match res {
                Ok(()) => {
                    p.stats.sent_many(fed.0, fed.1);
                    self.counters.sent_many(fed.0, fed.1);
                    // a pipe that has sent little for a while keeps little
                    small = if n < 16 { small.saturating_add(1) } else { 0 };
                    if small == SHRINK_AFTER && pending.capacity() > 16 {
                        pending.shrink_to(16);
                    }
                }
                Err(e) => {
                    debug!(target: "spstack", error = %e, unflushed = fed.0, unfed = pending.len(), "pipe write failed");
                    let reason = if self.is_closed() {
                        DropReason::Closed
                    } else {
                        DropReason::PipeClosed
                    };
                    for _ in 0..fed.0 {
                        p.stats.dropped(reason);
                        self.count_drop(reason, "fed to a pipe whose write failed");
                    }
                    break End::Broken;
                }
            }
        };
        p.queue.cancel_pop(&mut key);
        if let End::Broken = end {
            // leave the table first, so the routing does not offer our
            // unsent messages back to us
            self.detach(&p, false);
            for m in pending.drain(..) {
                self.requeue_or_count(m, DropReason::PipeClosed);
            }
            self.release_queue(&p);
        }
        // the peer sees the stream end (a FIN) once everything is written
        let _ = tokio::time::timeout(Duration::from_millis(100), tx.close()).await;
    }

    /// Feeds every pending message to the pipe's sink, then whatever the
    /// senders queued meanwhile (up to `write_batch` messages in all), and
    /// flushes: in one poll with one copy scope, each frame prepared once as
    /// the stack's plan says. `fed` counts what the sink took (messages,
    /// bytes).
    fn poll_feed(
        &self,
        cx: &mut Context<'_>,
        p: &PipeEntry,
        tx: &mut Counted<BoxSink>,
        pending: &mut VecDeque<Message>,
        fed: &mut (usize, usize),
    ) -> Poll<Result<(), Error>> {
        let _scope = CopyScope::enter(&tx.socket, &tx.pipe, Direction::Send);
        let plan = &self.plan;
        loop {
            while !pending.is_empty() {
                std::task::ready!(tx.inner.as_mut().poll_ready(cx))?;
                let Some(mut m) = pending.pop_front() else {
                    break;
                };
                if plan.contiguous {
                    // once, before any layer: the frame unique, in one slice,
                    // with all the room the layers declared
                    let (head, tail) = plan.room(m.frame_len());
                    m.reserve_frame(head, tail);
                }
                let len = m.len();
                tx.inner.as_mut().start_send(m)?;
                fed.0 += 1;
                fed.1 += len;
            }
            // what was queued while these were fed goes in the same write
            let room = self.opts.write_batch.saturating_sub(fed.0);
            if room == 0 || p.queue.try_pop_into(pending, room) == 0 {
                break;
            }
            self.wake_senders();
        }
        tx.inner.as_mut().poll_flush(cx)
    }
}

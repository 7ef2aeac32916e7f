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

use futures::SinkExt;
use tracing::debug;

use super::scope::Counted;
use super::table::PipeEntry;
use crate::core::Core;
use crate::queue::WaitKey;
use crate::stats::DropReason;
use crate::{BoxSink, Direction, Error, Message};

enum End {
    /// The queue closed and every message in it was written.
    Drained,
    /// The write failed or the pipe was aborted.
    Broken,
}

impl Core {
    pub(crate) async fn writer(self: Arc<Self>, p: Arc<PipeEntry>, mut tx: Counted<BoxSink>) {
        let mut batch: Vec<Message> = Vec::with_capacity(self.opts.write_batch.min(1024));
        let mut pending: VecDeque<Message> = VecDeque::new();
        let mut key = WaitKey::default();
        // one cancellation future for the pipe's life: re-creating it per
        // batch would register a fresh waiter every time
        let aborted = p.abort.cancelled();
        tokio::pin!(aborted);
        let end = loop {
            let n = tokio::select! {
                biased;
                _ = &mut aborted => break End::Broken,
                n = std::future::poll_fn(|cx| p.queue.poll_pop_batch(cx, &mut key, &mut batch, self.opts.write_batch)) => n,
            };
            if n == 0 {
                break End::Drained;
            }
            self.wake_senders();
            pending.extend(batch.drain(..));
            let mut fed = (0usize, 0usize);
            let plan = &self.plan;
            let write = async {
                while let Some(mut m) = pending.pop_front() {
                    if plan.contiguous {
                        // once, before any layer: the frame unique, in one
                        // slice, with all the room the layers declared
                        let (head, tail) = plan.room(m.frame_len());
                        tx.counting(Direction::Send, || m.reserve_frame(head, tail));
                    }
                    let len = m.len();
                    tx.feed(m).await?;
                    fed.0 += 1;
                    fed.1 += len;
                }
                tx.flush().await
            };
            let res = tokio::select! {
                biased;
                _ = &mut aborted => Err(Error::Closed),
                r = write => r,
            };
            match res {
                Ok(()) => {
                    p.stats.sent_many(fed.0, fed.1);
                    self.counters.sent_many(fed.0, fed.1);
                }
                Err(e) => {
                    debug!(target: "spstack", error = %e, unflushed = fed.0, unfed = pending.len(), "pipe write failed");
                    if p.info.link.retains_frames() {
                        // a layer keeps what it was fed and answers for it
                        // (hands it back or counts it): it left this writer
                        p.stats.sent_many(fed.0, fed.1);
                        self.counters.sent_many(fed.0, fed.1);
                        break End::Broken;
                    }
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
            for m in pending.drain(..).chain(batch.drain(..)) {
                self.requeue_or_count(m, DropReason::PipeClosed);
            }
            self.release_queue(&p);
        }
        // the peer sees the stream end (a FIN) once everything is written
        let _ = tokio::time::timeout(Duration::from_millis(100), tx.close()).await;
    }
}

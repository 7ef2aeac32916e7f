//! Attaching a pipe (hooks, then admission and insertion under one lock) and
//! detaching it (what it still held goes to another pipe, or is counted).

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tracing::{Instrument, Span};

use super::scope::Counted;
use super::table::{next_pipe_id, LivePipes, PipeEntry};
use crate::core::{Core, PipeEvent};
use crate::endpoint::ListenerSlot;
use crate::queue::Queue;
use crate::routing::Routed;
use crate::stats::{Counters, DropReason, RejectReason};
use crate::{Connection, Error, Message, Result};

impl Core {
    /// Adds an open pipe: hooks, admission, then its writer and reader
    /// tasks, which run in `span` (the one its handshake ran in). `endpoint`
    /// is the token of the dialer or listener it came from: closing that
    /// endpoint aborts the pipe. `slot` is its place among a listener's
    /// pipes, if it came from one.
    pub(crate) fn attach(
        self: &Arc<Self>,
        conn: Connection,
        span: Span,
        endpoint: &CancellationToken,
        slot: Option<ListenerSlot>,
    ) -> Result<Arc<PipeEntry>> {
        if self.is_closed() {
            return Err(Error::Closed);
        }
        let id = next_pipe_id();
        span.record("id", id);
        let _in = span.enter();
        let info = Arc::new(conn.info);
        if !self.fire(&PipeEvent::AddPre(id, info.clone())) {
            self.refuse(
                &info.peer_addr,
                RejectReason::Hook,
                None,
                "refused by a pipe event hook".into(),
            );
            return Err(Error::State("pipe refused by hook"));
        }
        let abort = endpoint.child_token();
        let entry = Arc::new(PipeEntry {
            id,
            queue: Queue::with_bytes(
                self.opts.send_queue,
                self.opts.send_queue_bytes,
                Message::len,
            ),
            info: info.clone(),
            stats: Arc::new(Counters::default()),
            drain: abort.child_token(),
            abort,
            gone: CancellationToken::new(),
            slot: std::sync::Mutex::new(slot),
            writer: std::sync::Mutex::new(None),
        });
        // the limit and the insert under one lock: two pipes racing for a
        // PAIR's one place cannot both get it
        let refused = {
            let mut t = self.write_pipes();
            if t.len() >= self.router.max_pipes() {
                Some(RejectReason::PipeLimit)
            } else {
                let view = LivePipes {
                    table: &*t,
                    core: self,
                    inline: false,
                };
                match self.router.admit(&view, &info) {
                    Ok(()) => {
                        t.insert(entry.clone());
                        None
                    }
                    Err(r) => Some(r),
                }
            }
        };
        if let Some(reason) = refused {
            self.refuse(
                &info.peer_addr,
                reason,
                None,
                format!("the {} protocol takes no more pipes", self.spec.name),
            );
            return Err(Error::State("protocol takes no more pipes"));
        }
        if self.is_closed() {
            // closed while it was joining: it lingers like the others
            entry.queue.close_input();
            entry.drain.cancel();
        }
        self.router.pipe_added(id);
        self.link_attached(&info.link, id);
        self.counters.pipe_opened();
        tracing::info!(target: "spstack", "pipe added");
        let Connection { tx, rx, .. } = conn;
        let tx = Counted {
            inner: tx,
            socket: self.counters.clone(),
            pipe: entry.stats.clone(),
        };
        let rx = Counted {
            inner: rx,
            socket: self.counters.clone(),
            pipe: entry.stats.clone(),
        };
        *entry.writer.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(super::writer::WriterState::new(tx));
        let core = self.clone();
        let e2 = entry.clone();
        self.tasks
            .spawn(async move { core.writer(e2).await }.instrument(span.clone()));
        let core = self.clone();
        let e2 = entry.clone();
        self.tasks
            .spawn(async move { core.reader(e2, rx).await }.instrument(span.clone()));
        self.fire(&PipeEvent::AddPost(id, info));
        self.wake_senders();
        self.offer_waiting();
        Ok(entry)
    }

    /// Takes the pipe out of the table (once, whoever asks first). With
    /// `graceful` (the peer hung up) the write in flight may finish within
    /// the linger; otherwise the pipe stops at once.
    pub(crate) fn detach(&self, p: &Arc<PipeEntry>, graceful: bool) {
        if graceful && !self.opts.linger.is_zero() {
            let abort = p.abort.clone();
            let linger = self.opts.linger;
            if let Ok(h) = tokio::runtime::Handle::try_current() {
                h.spawn(async move {
                    tokio::select! {
                        _ = abort.cancelled() => {}
                        _ = tokio::time::sleep(linger) => abort.cancel(),
                    }
                });
            } else {
                p.abort.cancel();
            }
        } else {
            p.abort.cancel();
        }
        if self.write_pipes().remove(p.id).is_none() {
            return;
        }
        drop(p.slot.lock().unwrap_or_else(|e| e.into_inner()).take());
        self.router.pipe_removed(p.id);
        self.counters.pipe_closed();
        if !self.is_closed() {
            // while the socket lives, unsent work moves to other pipes; a
            // closing socket's writer keeps its queue until the linger ends
            self.release_queue(p);
        }
        tracing::info!(target: "spstack", pipe = p.id, "pipe removed");
        p.gone.cancel();
        self.fire(&PipeEvent::RemovePost(p.id, p.info.clone()));
    }

    /// Closes the pipe's queue and settles what it held.
    pub(crate) fn release_queue(&self, p: &PipeEntry) {
        for m in p.queue.close() {
            self.requeue_or_count(m, DropReason::PipeClosed);
        }
    }

    /// A message that left a pipe unwritten: to another pipe when the
    /// protocol wants that and the socket is open, else counted (`Closed`
    /// while closing, `reason` otherwise).
    pub(crate) fn requeue_or_count(&self, m: Message, reason: DropReason) {
        if self.is_closed() {
            return self.count_drop(DropReason::Closed, "still queued when the linger ended");
        }
        let outcome = {
            let mut live = self.live_pipes();
            self.router.requeue(m, &mut live)
        };
        match outcome {
            Routed::Queued(_) => self.counters.requeued(),
            Routed::Dropped(r) => self.count_drop(r, "its pipe closed before it was written"),
            Routed::Wait(_) | Routed::Refused(_) => {
                self.count_drop(reason, "its pipe closed before it was written")
            }
        }
    }
}

//! One lower sink, two writers: the pipe's writer task and a layer's own
//! frames (heartbeats, acknowledgements).
//!
//! The socket's writer only polls a pipe's sink while it has messages, so a
//! layer that must write when the pipe is idle needs a task of its own. A
//! channel to a task owning the sink would cost a hand-off per message;
//! instead both share the sink under a lock, each poll brief, with two
//! rules:
//!
//! * the sink is polled with a waker that wakes both parties, so neither
//!   misses the wake-up the sink stored for the other;
//! * a layer frame never goes between the writer's `poll_ready` and its
//!   `start_send` (a sink may have reserved room for exactly that message).
//!
//! When the writer half is dropped the lower sink is dropped with it, so a
//! layer task still holding this never keeps a connection open.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};

use futures::task::AtomicWaker;
use futures::Sink;
use sp_core::{BoxSink, Error, Message, Result};
use tokio::sync::Notify;

struct Wakers {
    writer: AtomicWaker,
    control: AtomicWaker,
}

impl Wake for Wakers {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.writer.wake();
        self.control.wake();
    }
}

struct State {
    inner: Option<BoxSink>,
    /// The writer was told "ready" and has not sent yet.
    reserved: bool,
    /// The writer started closing: no more layer frames.
    closing: bool,
    /// Frames written by either party (a heartbeat's idleness test).
    writes: u64,
}

/// Which party polls.
#[derive(Clone, Copy)]
pub(crate) enum Party {
    Writer,
    Control,
}

pub(crate) struct Shared {
    state: Mutex<State>,
    wakers: Arc<Wakers>,
    both: Waker,
    gone: AtomicBool,
    gone_notify: Notify,
}

impl Shared {
    pub(crate) fn new(inner: BoxSink) -> Arc<Shared> {
        let wakers = Arc::new(Wakers {
            writer: AtomicWaker::new(),
            control: AtomicWaker::new(),
        });
        Arc::new(Shared {
            state: Mutex::new(State {
                inner: Some(inner),
                reserved: false,
                closing: false,
                writes: 0,
            }),
            both: Waker::from(wakers.clone()),
            wakers,
            gone: AtomicBool::new(false),
            gone_notify: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn register(&self, who: Party, cx: &Context<'_>) {
        match who {
            Party::Writer => self.wakers.writer.register(cx.waker()),
            Party::Control => self.wakers.control.register(cx.waker()),
        }
    }

    fn sink(s: &mut State) -> Result<Pin<&mut (dyn Sink<Message, Error = Error> + Send)>> {
        match s.inner.as_mut() {
            Some(i) => Ok(i.as_mut()),
            None => Err(Error::ConnectionClosed),
        }
    }

    /// Frames written so far by either party.
    pub(crate) fn writes(&self) -> u64 {
        self.lock().writes
    }

    /// True once the writer closed or dropped its half.
    pub(crate) fn is_closed(&self) -> bool {
        self.gone.load(Ordering::Acquire) || self.lock().closing
    }

    /// Resolves once the writer's half is gone (dropped or closed).
    pub(crate) async fn closed(&self) {
        let n = self.gone_notify.notified();
        tokio::pin!(n);
        n.as_mut().enable();
        if self.is_closed() {
            return;
        }
        n.await;
    }

    // ---- the writer's half ----

    pub(crate) fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.register(Party::Writer, cx);
        let mut s = self.lock();
        let mut bcx = Context::from_waker(&self.both);
        let r = Self::sink(&mut s)?.poll_ready(&mut bcx);
        if let Poll::Ready(Ok(())) = r {
            s.reserved = true;
        }
        r
    }

    pub(crate) fn start_send(&self, m: Message) -> Result<()> {
        let mut s = self.lock();
        s.reserved = false;
        s.writes += 1;
        let r = Self::sink(&mut s)?.start_send(m);
        drop(s);
        // a layer frame may be waiting for this reservation to be used
        self.wakers.control.wake();
        r
    }

    pub(crate) fn poll_flush(&self, who: Party, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.register(who, cx);
        let mut s = self.lock();
        let mut bcx = Context::from_waker(&self.both);
        Self::sink(&mut s)?.poll_flush(&mut bcx)
    }

    pub(crate) fn poll_close(&self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.register(Party::Writer, cx);
        let mut s = self.lock();
        if !s.closing {
            s.closing = true;
            self.gone_notify.notify_waiters();
        }
        let mut bcx = Context::from_waker(&self.both);
        Self::sink(&mut s)?.poll_close(&mut bcx)
    }

    /// The writer's half was dropped: the lower sink goes with it.
    pub(crate) fn writer_gone(&self) {
        let inner = {
            let mut s = self.lock();
            s.closing = true;
            s.inner.take()
        };
        drop(inner);
        self.gone.store(true, Ordering::Release);
        self.gone_notify.notify_waiters();
        self.wakers.control.wake();
    }

    // ---- a layer's own frames ----

    /// Sends `*slot` (when `Some`) as soon as the writer holds no
    /// reservation, then flushes. `who` says whose waker to register: a
    /// layer task, or the writer sending a last frame from `poll_close`.
    pub(crate) fn poll_send_frame(
        &self,
        who: Party,
        cx: &mut Context<'_>,
        slot: &mut Option<Message>,
    ) -> Poll<Result<()>> {
        self.register(who, cx);
        let mut s = self.lock();
        if s.closing && matches!(who, Party::Control) {
            return Poll::Ready(Err(Error::ConnectionClosed));
        }
        let mut bcx = Context::from_waker(&self.both);
        if slot.is_some() {
            if s.reserved && matches!(who, Party::Control) {
                // woken by the writer's start_send
                return Poll::Pending;
            }
            match Self::sink(&mut s)?.poll_ready(&mut bcx) {
                Poll::Ready(Ok(())) => {
                    if let Some(m) = slot.take() {
                        s.writes += 1;
                        Self::sink(&mut s)?.start_send(m)?;
                    }
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Self::sink(&mut s)?.poll_flush(&mut bcx)
    }

    /// A layer task's frame: sent and flushed, or the error.
    pub(crate) async fn send_frame(&self, m: Message) -> Result<()> {
        let mut slot = Some(m);
        std::future::poll_fn(|cx| self.poll_send_frame(Party::Control, cx, &mut slot)).await
    }
}

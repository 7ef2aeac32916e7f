//! The send path: the routing decides, the socket waits.
//!
//! A send asks the protocol's [`Routing`](crate::routing::Routing) once; an
//! answer of `Wait` registers the sender, which is woken when a pipe writer
//! frees room or a pipe joins, and asks again. A sender announces its wait
//! before it looks a last time, and a writer frees room before it reads the
//! count of waiters (both fence), so one of the two always sees the other.

use std::sync::atomic::{fence, Ordering};
use std::task::{Context, Poll};

use crate::core::Core;
use crate::queue::WaitKey;
use crate::routing::{Pipes, Refused, Routed};
use crate::stats::DropReason;
use crate::{Error, Message, PipeId, Result};

/// What [`RawSocket::send_now`](crate::RawSocket::send_now) did with a message.
#[derive(Debug)]
pub enum Handover {
    /// Accepted: queued (on this pipe, when one pipe was chosen), or
    /// dropped and counted.
    Queued(Option<PipeId>),
    /// Not accepted: no pipe could take it now. Offer it again after
    /// `poll_send_ready`.
    Kept(Message),
}

impl Core {
    fn route(&self, msg: Message) -> Routed {
        let mut live = self.live_pipes();
        live.inline = self.answering();
        self.router.send(msg, &mut live)
    }

    /// True when this send may write through an idle pipe: the protocol is
    /// request/reply and the socket received since it last sent (a reply,
    /// or a request after its answer), so the send is most likely a lone
    /// one that someone waits for rather than part of a stream.
    fn answering(&self) -> bool {
        if !self.write_through {
            return false;
        }
        let seen = self.counters.msgs_in();
        self.answered_in.swap(seen, Ordering::Relaxed) != seen
    }

    fn ready_now(&self) -> bool {
        let live = self.live_pipes();
        self.router.send_ready(&live)
    }

    /// Sends `*slot` as the routing decides, waiting while it says so.
    /// `Ok(Some(pipe))` when one pipe took it.
    pub(crate) fn poll_send(
        &self,
        cx: &mut Context<'_>,
        key: &mut WaitKey,
        slot: &mut Option<Message>,
    ) -> Poll<Result<Option<PipeId>>> {
        if self.is_closed() {
            self.release_send_key(key);
            return Poll::Ready(Err(Error::Closed));
        }
        // a send that never waits (PUB, a roomy queue) must still yield now
        // and then, or a hot send loop starves the pipe writers of its worker
        let coop = std::task::ready!(tokio::task::coop::poll_proceed(cx));
        // a routing that says Wait while it reports ready breaks its contract;
        // asking twice keeps that from spinning
        for _ in 0..2 {
            let Some(m) = slot.take() else {
                return Poll::Ready(Ok(None));
            };
            let outcome = match self.route(m) {
                Routed::Queued(p) => Ok(p),
                Routed::Dropped(r) => {
                    self.count_drop(r, "dropped by the protocol's routing");
                    Ok(None)
                }
                Routed::Refused(e) => Err(e),
                Routed::Wait(m) => {
                    *slot = Some(m);
                    if self.register_and_recheck(cx, key)? {
                        continue;
                    }
                    return Poll::Pending;
                }
            };
            self.release_send_key(key);
            coop.made_progress();
            return Poll::Ready(outcome);
        }
        // still refused after a second look: wait for the next room event
        self.register(cx, key);
        Poll::Pending
    }

    fn register(&self, cx: &mut Context<'_>, key: &mut WaitKey) {
        let mut w = self.send_waiters.lock().unwrap_or_else(|e| e.into_inner());
        if !key.is_registered() {
            self.send_waiting.fetch_add(1, Ordering::SeqCst);
        }
        w.register(key, cx.waker());
    }

    /// Registers the sender, then looks once more. True when there is room
    /// now (the registration is released); `Err` once closed.
    fn register_and_recheck(&self, cx: &mut Context<'_>, key: &mut WaitKey) -> Result<bool> {
        self.register(cx, key);
        fence(Ordering::SeqCst);
        if self.is_closed() {
            self.release_send_key(key);
            return Err(Error::Closed);
        }
        if self.ready_now() {
            self.release_send_key(key);
            return Ok(true);
        }
        Ok(false)
    }

    /// Ready when a message handed to [`Core::send_now`] would be accepted
    /// without waiting. Cancelling this wait loses nothing: no message is held.
    pub(crate) fn poll_send_ready(
        &self,
        cx: &mut Context<'_>,
        key: &mut WaitKey,
    ) -> Poll<Result<()>> {
        if self.is_closed() {
            self.release_send_key(key);
            return Poll::Ready(Err(Error::Closed));
        }
        let coop = std::task::ready!(tokio::task::coop::poll_proceed(cx));
        let ready = self.ready_now() || self.register_and_recheck(cx, key)?;
        if ready {
            self.release_send_key(key);
            coop.made_progress();
            return Poll::Ready(Ok(()));
        }
        Poll::Pending
    }

    /// Hands a message over without waiting. Gives it back only if the
    /// routing would wait.
    pub(crate) fn send_now(&self, msg: Message) -> Result<Handover> {
        if self.is_closed() {
            return Err(Error::Closed);
        }
        match self.route(msg) {
            Routed::Queued(p) => Ok(Handover::Queued(p)),
            Routed::Dropped(r) => {
                self.count_drop(r, "dropped by the protocol's routing");
                Ok(Handover::Queued(None))
            }
            Routed::Refused(e) => Err(e),
            Routed::Wait(m) => Ok(Handover::Kept(m)),
        }
    }

    /// Queues a message on one pipe, bypassing the routing.
    pub(crate) fn send_to(&self, pipe: PipeId, msg: Message) -> Result<(), Refused> {
        if self.is_closed() {
            return Err(Refused {
                msg,
                reason: DropReason::Closed,
            });
        }
        let mut live = self.live_pipes();
        live.inline = self.answering();
        live.try_push(pipe, msg)
    }

    fn release_send_key(&self, key: &mut WaitKey) {
        if key.is_registered() {
            let mut w = self.send_waiters.lock().unwrap_or_else(|e| e.into_inner());
            if key.is_registered() {
                w.release(key);
                self.send_waiting.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }

    /// Forgets a sender that stopped waiting.
    pub(crate) fn cancel_send(&self, key: &mut WaitKey) {
        self.release_send_key(key);
    }

    /// Wakes waiting senders: room was freed or a pipe joined.
    pub(crate) fn wake_senders(&self) {
        fence(Ordering::SeqCst);
        if self.send_waiting.load(Ordering::SeqCst) > 0 {
            let wakes = {
                let mut w = self.send_waiters.lock().unwrap_or_else(|e| e.into_inner());
                w.wake_all();
                w.take_wakes()
            };
            wakes.wake();
        }
    }
}

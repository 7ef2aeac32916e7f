//! Cooked REP v0: remembers each request's backtrace per context and puts it
//! on the reply — a message layer over raw REP. [`serve`] answers requests
//! with any `tower::Service`, many at once.
//!
//! ```no_run
//! # async fn demo(rep: sp_core::Socket) {
//! use sp_core::Message;
//! let echo = tower::service_fn(|m: Message| async move { Ok::<_, std::convert::Infallible>(m) });
//! sp_protocols::rep::serve(rep, echo, 16).await; // 16 requests at once, until the socket closes
//! # }
//! ```

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures::{Sink, Stream, StreamExt};
use sp_core::layer::{ComponentInfo, CookedContext, MessageIo, Overhead};
use sp_core::queue::WaitKey;
use sp_core::{CookedProtocol, CookedSocket, Error, Handover, Message, RawSocket, Result, Socket};

/// Cooked REP v0.
#[derive(Clone, Copy, Debug, Default)]
pub struct Rep0;

impl CookedProtocol for Rep0 {
    fn info(&self) -> ComponentInfo {
        ComponentInfo::new("rep0", Overhead::NONE)
    }
    fn attach(&self, raw: &RawSocket) -> Arc<dyn CookedSocket> {
        Arc::new(RepShared { raw: raw.clone() })
    }
}

struct RepShared {
    raw: RawSocket,
}

impl CookedSocket for RepShared {
    fn context(&self) -> CookedContext {
        let bt = Arc::new(Mutex::new(None::<Vec<u8>>));
        MessageIo::new(
            Box::pin(RepTx {
                raw: self.raw.clone(),
                bt: bt.clone(),
                key: WaitKey::default(),
                out: None,
            }),
            Box::pin(RepRx {
                raw: self.raw.clone(),
                bt,
                key: WaitKey::default(),
            }),
        )
        .into()
    }
}

type Backtrace = Arc<Mutex<Option<Vec<u8>>>>;

struct RepRx {
    raw: RawSocket,
    bt: Backtrace,
    key: WaitKey,
}

impl Stream for RepRx {
    type Item = Result<Message>;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Message>>> {
        let this = self.get_mut();
        match this.raw.poll_recv(cx, &mut this.key) {
            Poll::Ready(Ok(mut m)) => {
                let mut slot = this.bt.lock().unwrap_or_else(|e| e.into_inner());
                // a new request replaces one left unanswered (as nng)
                let v = slot.get_or_insert_with(Vec::new);
                v.clear();
                v.extend_from_slice(m.header());
                m.clear_header();
                Poll::Ready(Some(Ok(m)))
            }
            Poll::Ready(Err(Error::Closed)) => Poll::Ready(None),
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for RepRx {
    fn drop(&mut self) {
        self.raw.cancel_recv(&mut self.key);
    }
}

struct RepTx {
    raw: RawSocket,
    bt: Backtrace,
    key: WaitKey,
    out: Option<Message>,
}

impl RepTx {
    fn poll_out(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        if self.out.is_none() {
            return Poll::Ready(Ok(()));
        }
        self.raw
            .poll_send(cx, &mut self.key, &mut self.out)
            .map_ok(|_| ())
    }
}

impl Sink<Message> for RepTx {
    type Error = Error;
    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.get_mut().poll_out(cx)
    }
    fn start_send(self: Pin<&mut Self>, mut msg: Message) -> Result<()> {
        let this = self.get_mut();
        let bt = this.bt.lock().unwrap_or_else(|e| e.into_inner()).take();
        let Some(bt) = bt else {
            return Err(Error::State(
                "no request to reply to on this context: receive one first",
            ));
        };
        msg.set_header(&bt);
        // replies are routed by their backtrace and never wait (a full pipe drops them, counted)
        if let Handover::Kept(m) = this.raw.send_now(msg)? {
            this.out = Some(m);
        }
        Ok(())
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.get_mut().poll_out(cx)
    }
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.get_mut().poll_out(cx)
    }
}

impl Drop for RepTx {
    fn drop(&mut self) {
        self.raw.cancel_send(&mut self.key);
    }
}

/// Answers requests on a REP socket with `service`, up to `concurrency` at
/// once (each on its own context). Runs until the socket closes.
///
/// A request whose handler fails gets **no reply**: the error is logged (a
/// `tracing` warning, target `"spstack"`) and the requester's REQ sends the
/// request again after its `req_resend` (60 s by default), so the handler
/// runs again then. To answer a failure at once instead, map the error to a
/// reply with [`Serve::on_error`].
///
/// `socket` is a cooked REP: `spstack::Rep` or an untyped `Socket`.
///
/// ```no_run
/// # async fn demo(rep: sp_core::Socket) {
/// let echo = tower::service_fn(|req: sp_core::Message| async move { Ok::<_, std::convert::Infallible>(req) });
/// sp_protocols::rep::serve(rep, echo, 16).await;
/// # }
/// ```
pub async fn serve<S>(socket: impl Into<Socket>, service: S, concurrency: usize)
where
    S: tower::Service<Message, Response = Message> + Clone + Send + 'static,
    S::Error: std::fmt::Display + Send,
    S::Future: Send,
{
    Serve::new(service)
        .concurrency(concurrency)
        .run(socket)
        .await
}

type OnError<E> = Arc<dyn Fn(E) -> Option<Message> + Send + Sync>;

/// [`serve`] with its settings: how many requests run at once and what a
/// failed request is answered with.
///
/// ```no_run
/// # async fn demo(rep: sp_core::Socket) {
/// use sp_core::Message;
/// let checked = tower::service_fn(|req: Message| async move {
///     if req.body().is_empty() {
///         return Err("empty request");
///     }
///     Ok(req)
/// });
/// sp_protocols::rep::Serve::new(checked)
///     .concurrency(8)
///     // the requester gets this reply at once instead of resending later
///     .on_error(|e| Some(Message::from(format!("error: {e}"))))
///     .run(rep)
///     .await;
/// # }
/// ```
pub struct Serve<S: tower::Service<Message>> {
    service: S,
    concurrency: usize,
    on_error: Option<OnError<S::Error>>,
}

impl<S> Serve<S>
where
    S: tower::Service<Message, Response = Message> + Clone + Send + 'static,
    S::Error: std::fmt::Display + Send,
    S::Future: Send,
{
    /// Serves with `service`, one request at a time, failures unanswered
    /// (see [`serve`]).
    pub fn new(service: S) -> Self {
        Serve {
            service,
            concurrency: 1,
            on_error: None,
        }
    }

    /// Runs up to `n` requests at once, each on its own context (at least 1).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// What a request whose handler failed (or whose service was not ready)
    /// is answered with: `Some(reply)` goes back to the requester at once,
    /// `None` sends nothing, as without a hook (the requester resends after
    /// its `req_resend`). Either way the failure is logged.
    pub fn on_error(
        mut self,
        map: impl Fn(S::Error) -> Option<Message> + Send + Sync + 'static,
    ) -> Self {
        self.on_error = Some(Arc::new(map));
        self
    }

    /// Answers requests on the REP socket until it closes.
    pub async fn run(self, socket: impl Into<Socket>) {
        let socket = socket.into();
        let workers = (0..self.concurrency).map(|_| {
            let mut ctx = socket.context();
            let svc = self.service.clone();
            let on_error = self.on_error.clone();
            async move {
                loop {
                    let req = match ctx.next().await {
                        Some(Ok(m)) => m,
                        Some(Err(e)) => {
                            tracing::debug!(target: "spstack", error = %e, "serve: receive failed");
                            continue;
                        }
                        None => return,
                    };
                    let reply = match tower::ServiceExt::oneshot(svc.clone(), req).await {
                        Ok(reply) => reply,
                        Err(e) => {
                            tracing::warn!(target: "spstack", error = %e, hook = on_error.is_some(), "serve: handler failed");
                            match on_error.as_ref().and_then(|map| map(e)) {
                                Some(reply) => reply,
                                None => continue,
                            }
                        }
                    };
                    if let Err(Error::Closed) = ctx.send(reply).await {
                        return;
                    }
                }
            }
        });
        futures::future::join_all(workers).await;
    }
}

//! Contexts: independent protocol state over the socket's shared pipes.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskCx, Poll};

use futures::lock::Mutex;
use futures::{Sink, SinkExt, Stream, StreamExt};

use super::Shared;
use crate::layer::{BoxSink, BoxStream, Control, MessageIo};
use crate::{Error, Message, Result};

/// One context of a socket: independent protocol state over shared pipes.
/// Also a `Sink<Message>` and `Stream<Item = Result<Message>>`.
///
/// [`send`](SocketContext::send) and [`recv`](SocketContext::recv) take
/// `&self`, as [`Socket::send`](crate::Socket::send) does, so a context can
/// be shared (an `Arc`) and one task may receive while another sends. Two
/// sends at once on one context take turns; for REQ the second replaces the
/// first's request, as it would one after the other. The `Sink` and
/// `Stream` implementations need `&mut self` and take no lock.
pub struct SocketContext {
    tx: Mutex<BoxSink>,
    rx: Mutex<BoxStream>,
    control: Option<Control>,
    shared: Arc<Shared>,
}

impl SocketContext {
    pub(crate) fn new(io: MessageIo, control: Option<Control>, shared: Arc<Shared>) -> Self {
        SocketContext {
            tx: Mutex::new(io.tx),
            rx: Mutex::new(io.rx),
            control,
            shared,
        }
    }

    /// This context's protocol settings, as the protocol's own type.
    pub fn control<T: std::any::Any + Send + Sync>(&self) -> Option<Arc<T>> {
        self.control.clone()?.downcast::<T>().ok()
    }

    /// Sends on this context.
    pub async fn send(&self, msg: impl Into<Message>) -> Result<()> {
        let msg = msg.into();
        let fut = async {
            let mut tx = self.tx.lock().await;
            tx.send(msg).await
        };
        match self.shared.raw.options().send_timeout {
            Some(t) => tokio::time::timeout(t, fut)
                .await
                .map_err(|_| Error::TimedOut(t))?,
            None => fut.await,
        }
    }
    /// Receives on this context.
    pub async fn recv(&self) -> Result<Message> {
        let fut = async {
            let mut rx = self.rx.lock().await;
            rx.next().await.unwrap_or_else(|| Err(Error::Closed))
        };
        match self.shared.raw.options().recv_timeout {
            Some(t) => tokio::time::timeout(t, fut)
                .await
                .map_err(|_| Error::TimedOut(t))?,
            None => fut.await,
        }
    }
    /// Splits into the two halves (each keeps the socket alive).
    pub fn into_io(self) -> MessageIo {
        MessageIo::new(self.tx.into_inner(), self.rx.into_inner())
    }
}

impl Sink<Message> for SocketContext {
    type Error = Error;
    fn poll_ready(self: Pin<&mut Self>, cx: &mut TaskCx<'_>) -> Poll<Result<()>> {
        self.get_mut().tx.get_mut().as_mut().poll_ready(cx)
    }
    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<()> {
        self.get_mut().tx.get_mut().as_mut().start_send(item)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskCx<'_>) -> Poll<Result<()>> {
        self.get_mut().tx.get_mut().as_mut().poll_flush(cx)
    }
    fn poll_close(self: Pin<&mut Self>, cx: &mut TaskCx<'_>) -> Poll<Result<()>> {
        self.get_mut().tx.get_mut().as_mut().poll_close(cx)
    }
}

impl Stream for SocketContext {
    type Item = Result<Message>;
    fn poll_next(self: Pin<&mut Self>, cx: &mut TaskCx<'_>) -> Poll<Option<Result<Message>>> {
        self.get_mut().rx.get_mut().as_mut().poll_next(cx)
    }
}

/// One context as a `tower::Service<Message>` (send, then receive the
/// answer), kept for code written before the typed sockets: it is a
/// `Service` whatever the protocol, and `poll_ready` is always ready.
/// `spstack::ReqContext::into_service` is the honest one (REQ only, ready
/// when there is capacity).
#[deprecated(
    since = "0.1.0",
    note = "use spstack's typed `ReqContext::into_service` (REQ only, honest poll_ready)"
)]
#[derive(Clone)]
pub struct ContextService {
    ctx: Arc<tokio::sync::Mutex<SocketContext>>,
}

#[allow(deprecated)]
impl SocketContext {
    /// This context as a `tower::Service` whatever its protocol (see
    /// [`ContextService`]).
    #[deprecated(
        since = "0.1.0",
        note = "use spstack's typed `ReqContext::into_service` (REQ only, honest poll_ready)"
    )]
    pub fn into_service(self) -> ContextService {
        ContextService {
            ctx: Arc::new(tokio::sync::Mutex::new(self)),
        }
    }
}

#[allow(deprecated)]
impl tower::Service<Message> for ContextService {
    type Response = Message;
    type Error = Error;
    type Future = crate::BoxFuture<'static, Result<Message>>;
    fn poll_ready(&mut self, _: &mut TaskCx<'_>) -> Poll<Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, req: Message) -> Self::Future {
        let ctx = self.ctx.clone();
        // one call at a time: a context has one request outstanding, and the
        // lock keeps the calls in call order
        Box::pin(async move {
            let c = ctx.lock_owned().await;
            c.send(req).await?;
            c.recv().await
        })
    }
}

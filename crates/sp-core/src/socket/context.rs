//! Contexts: independent protocol state over the socket's shared pipes.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskCx, Poll};

use futures::{Sink, SinkExt, Stream, StreamExt};

use super::Shared;
use crate::layer::{BoxSink, BoxStream, Control, MessageIo};
use crate::{Error, Message, Result};

/// One context of a socket: independent protocol state over shared pipes.
/// Also a `Sink<Message>` and `Stream<Item = Result<Message>>`.
pub struct SocketContext {
    tx: BoxSink,
    rx: BoxStream,
    control: Option<Control>,
    shared: Arc<Shared>,
}

impl SocketContext {
    pub(crate) fn new(io: MessageIo, control: Option<Control>, shared: Arc<Shared>) -> Self {
        SocketContext {
            tx: io.tx,
            rx: io.rx,
            control,
            shared,
        }
    }

    /// This context's protocol settings, as the protocol's own type.
    pub fn control<T: std::any::Any + Send + Sync>(&self) -> Option<Arc<T>> {
        self.control.clone()?.downcast::<T>().ok()
    }

    /// Sends on this context.
    pub async fn send(&mut self, msg: impl Into<Message>) -> Result<()> {
        let fut = self.tx.send(msg.into());
        match self.shared.raw.options().send_timeout {
            Some(t) => tokio::time::timeout(t, fut)
                .await
                .map_err(|_| Error::TimedOut(t))?,
            None => fut.await,
        }
    }
    /// Receives on this context.
    pub async fn recv(&mut self) -> Result<Message> {
        let t = self.shared.raw.options().recv_timeout;
        let fut = self.rx.next();
        match t {
            Some(t) => tokio::time::timeout(t, fut)
                .await
                .map_err(|_| Error::TimedOut(t))?
                .unwrap_or_else(|| Err(Error::Closed)),
            None => fut.await.unwrap_or_else(|| Err(Error::Closed)),
        }
    }
    /// Splits into the two halves (each keeps the socket alive).
    pub fn into_io(self) -> MessageIo {
        MessageIo::new(self.tx, self.rx)
    }
}

impl Sink<Message> for SocketContext {
    type Error = Error;
    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut TaskCx<'_>) -> Poll<Result<()>> {
        self.tx.as_mut().poll_ready(cx)
    }
    fn start_send(mut self: Pin<&mut Self>, item: Message) -> Result<()> {
        self.tx.as_mut().start_send(item)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskCx<'_>) -> Poll<Result<()>> {
        self.tx.as_mut().poll_flush(cx)
    }
    fn poll_close(mut self: Pin<&mut Self>, cx: &mut TaskCx<'_>) -> Poll<Result<()>> {
        self.tx.as_mut().poll_close(cx)
    }
}

impl Stream for SocketContext {
    type Item = Result<Message>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskCx<'_>) -> Poll<Option<Result<Message>>> {
        self.rx.as_mut().poll_next(cx)
    }
}

/// One context as a `tower::Service<Message>`: calls on it run one at a time
/// (a context has one request outstanding), in call order.
#[derive(Clone)]
pub struct ContextService {
    ctx: Arc<tokio::sync::Mutex<SocketContext>>,
}

impl SocketContext {
    /// This context as a `tower::Service`.
    pub fn into_service(self) -> ContextService {
        ContextService {
            ctx: Arc::new(tokio::sync::Mutex::new(self)),
        }
    }
}

impl tower::Service<Message> for ContextService {
    type Response = Message;
    type Error = Error;
    type Future = crate::BoxFuture<'static, Result<Message>>;
    fn poll_ready(&mut self, _: &mut TaskCx<'_>) -> Poll<Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, req: Message) -> Self::Future {
        let ctx = self.ctx.clone();
        Box::pin(async move {
            let mut c = ctx.lock_owned().await;
            c.send(req).await?;
            c.recv().await
        })
    }
}

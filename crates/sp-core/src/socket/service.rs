//! A cooked REQ socket as a `tower::Service`.

use std::task::{Context as TaskCx, Poll};

use super::Socket;
use crate::{Error, Message, Result};

/// A cooked REQ socket is a `tower::Service<Message>`: each call runs on a
/// fresh context (send, then await the reply), so calls run concurrently and
/// timeout, retry, concurrency-limit and load-shed middleware apply as they are.
impl tower::Service<Message> for Socket {
    type Response = Message;
    type Error = Error;
    type Future = crate::BoxFuture<'static, Result<Message>>;
    fn poll_ready(&mut self, _: &mut TaskCx<'_>) -> Poll<Result<()>> {
        if self.inner.shared.raw.is_closed() {
            return Poll::Ready(Err(Error::Closed));
        }
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, req: Message) -> Self::Future {
        let mut ctx = self.context();
        Box::pin(async move {
            ctx.send(req).await?;
            ctx.recv().await
        })
    }
}

//! A cooked REQ socket as a `tower::Service`, kept for code written for the
//! untyped socket. `spstack::Req` (from `spstack::typed::req0()`) is the
//! honest edge: only REQ is a `Service` there, and its `poll_ready` waits
//! for a pipe and queue room.

use std::task::{Context as TaskCx, Poll};

use super::Socket;
use crate::{Error, Message, Result};

/// A cooked REQ socket is a `tower::Service<Message>`: each call runs on a
/// fresh context (send, then await the reply), so calls run concurrently and
/// timeout, retry, concurrency-limit and load-shed middleware apply as they are.
///
/// The untyped socket is a `Service` whatever its protocol (a PUSH fails at
/// run time) and `poll_ready` is ready until it closes; prefer
/// `spstack::typed::req0()`, whose `Req` is the only typed `Service` and
/// whose readiness reflects capacity.
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
        let ctx = self.context();
        Box::pin(async move {
            ctx.send(req).await?;
            ctx.recv().await
        })
    }
}

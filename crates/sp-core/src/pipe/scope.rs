//! A pipe's halves, with copies made inside them counted on the socket and
//! the pipe (see [`crate::message`]'s `CopyScope`).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::{Sink, Stream};

use crate::stats::Counters;
use crate::{BoxSink, BoxStream, CopyScope, Direction, Error, Message, Result};

pub(crate) struct Counted<T> {
    pub inner: T,
    pub socket: Arc<Counters>,
    pub pipe: Arc<Counters>,
}

impl Sink<Message> for Counted<BoxSink> {
    type Error = Error;
    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let this = &mut *self;
        let _s = CopyScope::enter(&this.socket, &this.pipe, Direction::Send);
        this.inner.as_mut().poll_ready(cx)
    }
    fn start_send(mut self: Pin<&mut Self>, m: Message) -> Result<()> {
        let this = &mut *self;
        let _s = CopyScope::enter(&this.socket, &this.pipe, Direction::Send);
        this.inner.as_mut().start_send(m)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let this = &mut *self;
        let _s = CopyScope::enter(&this.socket, &this.pipe, Direction::Send);
        this.inner.as_mut().poll_flush(cx)
    }
    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let this = &mut *self;
        let _s = CopyScope::enter(&this.socket, &this.pipe, Direction::Send);
        this.inner.as_mut().poll_close(cx)
    }
}

impl Stream for Counted<BoxStream> {
    type Item = Result<Message>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Message>>> {
        let this = &mut *self;
        let _s = CopyScope::enter(&this.socket, &this.pipe, Direction::Recv);
        this.inner.as_mut().poll_next(cx)
    }
}

/// A context's halves, with copies made by message layers and the cooked
/// protocol (in the application's own task) counted on the socket.
pub(crate) struct Scoped<T> {
    inner: T,
    socket: Arc<Counters>,
}

impl<T> Scoped<T> {
    pub fn new(inner: T, socket: Arc<Counters>) -> Self {
        Scoped { inner, socket }
    }
}

impl Sink<Message> for Scoped<BoxSink> {
    type Error = Error;
    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let this = &mut *self;
        let _s = CopyScope::socket(&this.socket, Direction::Send);
        this.inner.as_mut().poll_ready(cx)
    }
    fn start_send(mut self: Pin<&mut Self>, m: Message) -> Result<()> {
        let this = &mut *self;
        let _s = CopyScope::socket(&this.socket, Direction::Send);
        this.inner.as_mut().start_send(m)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let this = &mut *self;
        let _s = CopyScope::socket(&this.socket, Direction::Send);
        this.inner.as_mut().poll_flush(cx)
    }
    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let this = &mut *self;
        let _s = CopyScope::socket(&this.socket, Direction::Send);
        this.inner.as_mut().poll_close(cx)
    }
}

impl Stream for Scoped<BoxStream> {
    type Item = Result<Message>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Message>>> {
        let this = &mut *self;
        let _s = CopyScope::socket(&this.socket, Direction::Recv);
        this.inner.as_mut().poll_next(cx)
    }
}

//! `trace/1`: a message layer that numbers every message a context sends
//! (a u32 BE in front of the body) and strips the number on receipt. It sits
//! above the protocol, so devices carry the number untouched: a receiver
//! sees the sender's own count. A message too short to carry a number is
//! refused and counted in the socket's own counters (`DropReason::Rejected`)
//! through the handle the socket gives the layer.

use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use futures::Stream;
use spstack::layer::{
    edit_sink, ComponentInfo, Field, LayerHandle, MessageIo, MessageLayer, Overhead,
};
use spstack::{BoxStream, DropReason, Message, Result};

/// The layer's name.
pub const NAME: &str = "trace/1";

/// The layer. Clones share the last number seen.
#[derive(Clone, Default)]
pub struct Trace {
    handle: Arc<OnceLock<LayerHandle>>,
    seen: Arc<AtomicU32>,
}

impl Trace {
    /// A trace layer.
    pub fn new() -> Trace {
        Trace::default()
    }
    /// The number carried by the last message received through any context.
    pub fn last_seen(&self) -> u32 {
        self.seen.load(Ordering::Relaxed)
    }
}

impl tower::Layer<MessageIo> for Trace {
    type Service = MessageIo;
    fn layer(&self, io: MessageIo) -> MessageIo {
        let handle = self
            .handle
            .get()
            .cloned()
            .unwrap_or_else(|| LayerHandle::detached(NAME));
        let mut next = 0u32;
        MessageIo::new(
            edit_sink(io.tx, move |m| {
                next = next.wrapping_add(1);
                m.prepend_body(&next.to_be_bytes());
                Ok(())
            }),
            Box::pin(Strip {
                inner: io.rx,
                handle,
                seen: self.seen.clone(),
            }),
        )
    }
}

impl MessageLayer for Trace {
    fn info(&self) -> ComponentInfo {
        ComponentInfo::new(NAME, Overhead::header(4)).with_header(vec![Field::be("seq", 4)])
    }
    fn attach(&self, handle: &LayerHandle) {
        let _ = self.handle.set(handle.clone());
    }
}

struct Strip {
    inner: BoxStream,
    handle: LayerHandle,
    seen: Arc<AtomicU32>,
}

impl Stream for Strip {
    type Item = Result<Message>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Message>>> {
        loop {
            match self.inner.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(mut m))) => {
                    let Some(seq) = m.body().get(..4).map(|b| [b[0], b[1], b[2], b[3]]) else {
                        // too short to be ours: refused, counted where the
                        // application looks (`socket.stats()`)
                        self.handle.dropped(DropReason::Rejected);
                        continue;
                    };
                    self.seen.store(u32::from_be_bytes(seq), Ordering::Relaxed);
                    m.trim_body_front(4);
                    return Poll::Ready(Some(Ok(m)));
                }
                other => return other,
            }
        }
    }
}

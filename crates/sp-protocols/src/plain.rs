//! The cooked form of protocols with no header (PAIR0, PUSH0, PULL0): every
//! context is another handle on the raw socket; a send drops any header a
//! reused message still carries (nng #123).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::Sink;
use sp_core::layer::{ComponentInfo, CookedContext, MessageIo, Overhead};
use sp_core::{raw_io, BoxSink, CookedProtocol, CookedSocket, Core, Error, Message, Result};

/// Cooked form of a headerless protocol.
#[derive(Clone, Debug)]
pub struct Plain {
    name: &'static str,
}

impl Plain {
    /// Cooked PAIR0.
    pub const PAIR0: Plain = Plain { name: "pair0" };
    /// Cooked PUSH0.
    pub const PUSH0: Plain = Plain { name: "push0" };
    /// Cooked PULL0.
    pub const PULL0: Plain = Plain { name: "pull0" };
}

impl CookedProtocol for Plain {
    fn info(&self) -> ComponentInfo {
        ComponentInfo::new(self.name, Overhead::NONE)
    }
    fn attach(&self, raw: Arc<Core>) -> Arc<dyn CookedSocket> {
        Arc::new(PlainSocket { raw })
    }
}

struct PlainSocket {
    raw: Arc<Core>,
}

impl CookedSocket for PlainSocket {
    fn context(&self) -> CookedContext {
        let io = raw_io(self.raw.clone());
        MessageIo::new(Box::pin(ClearHeader(io.tx)), io.rx).into()
    }
}

struct ClearHeader(BoxSink);

impl Sink<Message> for ClearHeader {
    type Error = Error;
    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.0.as_mut().poll_ready(cx)
    }
    fn start_send(mut self: Pin<&mut Self>, mut m: Message) -> Result<()> {
        m.clear_header();
        self.0.as_mut().start_send(m)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.0.as_mut().poll_flush(cx)
    }
    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.0.as_mut().poll_close(cx)
    }
}

//! The cooked form of protocols with no header (PAIR0, PUSH0, PULL0, PUB0,
//! BUS0): every context is another handle on the raw socket; a send drops any
//! header or pipe a reused message still carries (nng #123), so a BUS
//! message received from one peer and sent on reaches every peer; the half a
//! protocol lacks (PUSH and PUB receive nothing) fails at once.
//!
//! ```
//! use sp_core::CookedProtocol;
//! use sp_protocols::Plain;
//! // PUSH, PULL, PAIR0, PUB and BUS need no state above their raw form
//! assert_eq!(Plain::PUSH0.info().name, "push0");
//! ```

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::{Sink, Stream};
use sp_core::layer::{ComponentInfo, CookedContext, MessageIo, Overhead};
use sp_core::{CookedProtocol, CookedSocket, Error, Message, RawSocket, Result};

/// Cooked form of a headerless protocol.
#[derive(Clone, Debug)]
pub struct Plain {
    name: &'static str,
    /// `None` when the protocol receives; otherwise why it does not.
    no_recv: Option<&'static str>,
}

impl Plain {
    /// Cooked PAIR0.
    pub const PAIR0: Plain = Plain {
        name: "pair0",
        no_recv: None,
    };
    /// Cooked PUSH0.
    pub const PUSH0: Plain = Plain {
        name: "push0",
        no_recv: Some("PUSH cannot receive"),
    };
    /// Cooked PULL0.
    pub const PULL0: Plain = Plain {
        name: "pull0",
        no_recv: None,
    };
    /// Cooked PUB0: never waits for a subscriber; what a full pipe drops is counted.
    pub const PUB0: Plain = Plain {
        name: "pub0",
        no_recv: Some("PUB cannot receive"),
    };
    /// Cooked BUS0: a send reaches every peer.
    pub const BUS0: Plain = Plain {
        name: "bus0",
        no_recv: None,
    };
}

impl CookedProtocol for Plain {
    fn info(&self) -> ComponentInfo {
        ComponentInfo::new(self.name, Overhead::NONE)
    }
    fn attach(&self, raw: &RawSocket) -> Arc<dyn CookedSocket> {
        Arc::new(PlainSocket {
            raw: raw.clone(),
            no_recv: self.no_recv,
        })
    }
}

struct PlainSocket {
    raw: RawSocket,
    no_recv: Option<&'static str>,
}

impl CookedSocket for PlainSocket {
    fn context(&self) -> CookedContext {
        let io = self.raw.io();
        let rx = match self.no_recv {
            None => io.rx,
            Some(why) => Box::pin(Refuse(why)),
        };
        // a reused message's header and pipe must not go out with it
        let tx = sp_core::layer::edit_sink(io.tx, |m| {
            m.clear_header();
            m.set_pipe(None);
            Ok(())
        });
        MessageIo::new(tx, rx).into()
    }
}

/// The half of a context a protocol does not have: fails at once.
pub(crate) struct Refuse(pub(crate) &'static str);

impl Stream for Refuse {
    type Item = Result<Message>;
    fn poll_next(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Message>>> {
        Poll::Ready(Some(Err(Error::NotSupported(self.0))))
    }
}

impl Sink<Message> for Refuse {
    type Error = Error;
    fn poll_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<()>> {
        Poll::Ready(Err(Error::NotSupported(self.0)))
    }
    fn start_send(self: Pin<&mut Self>, _: Message) -> Result<()> {
        Err(Error::NotSupported(self.0))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<()>> {
        Poll::Ready(Ok(()))
    }
}

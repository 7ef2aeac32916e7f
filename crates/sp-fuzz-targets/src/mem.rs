//! A stream transport over in-memory pipes: the network-level targets hand
//! a listener one end of a `tokio::io::duplex` and write the fuzz input
//! into the other, as a peer on a socket would, with no system call.

use std::sync::Arc;

use sp_core::transport::{StreamConn, StreamListener, StreamTransport, StreamUpgrade};
use sp_core::{BoxFuture, Error, Result};
use tokio::io::DuplexStream;
use tokio::sync::{mpsc, Mutex};

/// The listening side's streams, and the handle that makes new ones.
pub(crate) struct MemStreams {
    incoming: Arc<Mutex<mpsc::UnboundedReceiver<DuplexStream>>>,
}

/// Connects to a [`MemStreams`] listener.
#[derive(Clone)]
pub(crate) struct MemConnector {
    tx: mpsc::UnboundedSender<DuplexStream>,
}

impl MemConnector {
    /// A new connection; the listener gets the other end.
    pub(crate) fn connect(&self) -> DuplexStream {
        let (ours, theirs) = tokio::io::duplex(64 << 10);
        self.tx
            .send(theirs)
            .expect("the listener's accept loop lives as long as its socket");
        ours
    }
}

pub(crate) fn mem_streams() -> (MemStreams, MemConnector) {
    let (tx, rx) = mpsc::unbounded_channel();
    (
        MemStreams {
            incoming: Arc::new(Mutex::new(rx)),
        },
        MemConnector { tx },
    )
}

impl StreamTransport for MemStreams {
    fn name(&self) -> &'static str {
        "mem"
    }
    fn connect(&self, _: &str) -> BoxFuture<'static, Result<StreamUpgrade>> {
        Box::pin(async { Err(Error::NotSupported("the fuzz transport only listens")) })
    }
    fn bind(&self, _: &str) -> BoxFuture<'static, Result<Box<dyn StreamListener>>> {
        let incoming = self.incoming.clone();
        Box::pin(async move { Ok(Box::new(MemListener { incoming }) as Box<dyn StreamListener>) })
    }
}

struct MemListener {
    incoming: Arc<Mutex<mpsc::UnboundedReceiver<DuplexStream>>>,
}

impl StreamListener for MemListener {
    fn local_addr(&self) -> String {
        "fuzz:1".into()
    }
    fn accept(&self) -> BoxFuture<'_, Result<StreamUpgrade>> {
        Box::pin(async move {
            let io = self
                .incoming
                .lock()
                .await
                .recv()
                .await
                .ok_or(Error::Closed)?;
            let conn = StreamConn {
                io: Box::new(io),
                local_addr: "fuzz:1".into(),
                peer_addr: "fuzz:2".into(),
                peer_identity: None,
            };
            Ok(StreamUpgrade::ready(conn))
        })
    }
}

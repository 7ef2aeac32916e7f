//! `quic://host:port`: SP/TCP's announcement and framing on the pipe's QUIC
//! stream, and the close codes of `docs/quic-mapping.md` §6.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::Stream;
use sp_core::layer::{ComponentInfo, Overhead};
use sp_core::transport::{Copying, Listener, PipeConfig, Transport, Unannounced};
use sp_core::{BoxFuture, Connection, Error, Message, Result};
use sp_transports::framed::authority;
use sp_transports::stream::{exchange_as, FrameReader, FrameWriter, Framing};

use crate::addr::url_of;
use crate::codes;
use crate::config::QuicConfig;
use crate::stream::{Handshake, QuicListener, QuicRecv, QuicStreams, Shared};
use crate::QuicStats;

/// The schemes of [`Quic`].
pub const SCHEMES: &[&str] = &["quic"];

/// `quic://host:port`: the Scalability Protocols over QUIC.
///
/// One value dials and listens: a listener needs
/// [`TlsConfig::server_identity`](sp_transports::TlsConfig::server_identity),
/// a dialer [`TlsConfig::roots`](sp_transports::TlsConfig::roots). The
/// QUIC handshake, the SP header exchange and every pipe layer's handshake
/// run under the socket's handshake deadline and half-open cap.
pub struct Quic {
    streams: Arc<QuicStreams>,
}

impl std::fmt::Debug for Quic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Quic")
            .field("streams", &self.streams)
            .finish()
    }
}

impl Quic {
    /// `quic://` with these settings.
    pub fn new(cfg: QuicConfig) -> Self {
        Quic {
            streams: Arc::new(QuicStreams::new(cfg)),
        }
    }
    /// What it counted: connections closed or refused, by reason.
    pub fn stats(&self) -> QuicStats {
        self.streams.stats()
    }
}

impl Transport for Quic {
    fn schemes(&self) -> &'static [&'static str] {
        SCHEMES
    }
    fn info(&self) -> ComponentInfo {
        // the length prefix travels inside QUIC's encrypted packets, and
        // quinn copies every byte into them and out of them
        ComponentInfo::new("quic", Overhead::header(8))
            .opaque()
            .copying()
    }
    fn dial(&self, url: &str) -> BoxFuture<'static, Result<Box<dyn Unannounced>>> {
        let dial = authority(url).map(|a| self.streams.dial_owned(a.to_string(), false));
        Box::pin(async move {
            let (peer, hs) = dial?.await?;
            Ok(Box::new(Pending { peer, hs }) as Box<dyn Unannounced>)
        })
    }
    fn listen(&self, url: &str) -> BoxFuture<'static, Result<Box<dyn Listener>>> {
        let bind = authority(url).map(|a| self.streams.bind_owned(a.to_string()));
        Box::pin(async move {
            let l = bind?.await?;
            let url = l.local_addr().map(url_of).unwrap_or_default();
            Ok(Box::new(QuicListen { l, url }) as Box<dyn Listener>)
        })
    }
}

struct QuicListen {
    l: QuicListener,
    url: String,
}

impl Listener for QuicListen {
    fn url(&self) -> String {
        self.url.clone()
    }
    fn accept(&self) -> BoxFuture<'_, Result<Box<dyn Unannounced>>> {
        Box::pin(async move {
            let (peer, hs) = self.l.next(false).await?;
            Ok(Box::new(Pending { peer, hs }) as Box<dyn Unannounced>)
        })
    }
}

/// A connection attempt: the QUIC handshake, the stream, the SP header
/// exchange, all inside `announce`.
struct Pending {
    peer: SocketAddr,
    hs: Handshake,
}

impl Unannounced for Pending {
    fn peer_addr(&self) -> String {
        // `ip:port`: the half-open cap counts handshakes per source IP
        self.peer.to_string()
    }
    fn announce(
        self: Box<Self>,
        cfg: PipeConfig,
        dialer: bool,
    ) -> BoxFuture<'static, Result<Connection>> {
        Box::pin(async move {
            let mut io = self.hs.await?;
            let shared = io.shared().clone();
            let mut cfg = cfg;
            // the dialer sends on the stream first (QUIC shows the listener
            // a stream only once bytes are on it): a listener of optional
            // layers reads first and answers a plain dialer plain
            let peer = match exchange_as(&mut io, &mut cfg, dialer).await {
                Ok(p) => p,
                Err(e) => {
                    // an I/O failure has its own reason already (closed by
                    // the peer, timed out); the rest is the peer's bytes
                    if !matches!(e, Error::Io(_)) {
                        shared.close(codes::PROTOCOL_ERROR, &e.to_string());
                    }
                    return Err(e);
                }
            };
            // the socket checks the peer too; checking here as well lets
            // the peer learn why in the close code
            if let Some(expected) = cfg.local.protocol.peer() {
                if let Err(e) = cfg.local.check_peer(expected, &peer) {
                    shared.close(codes::MISMATCH, &e.to_string());
                    return Err(e);
                }
            }
            shared.established();
            let identity = io.identity.take();
            let (local_addr, _) = io.addrs();
            let (r, w) = io.split();
            let mut info = cfg.pipe_info("quic", local_addr, url_of(self.peer), peer, dialer);
            info.peer_identity = identity;
            Ok(Connection {
                tx: Box::pin(FrameWriter::new(Copying(w), Framing::Tcp)),
                rx: Box::pin(Reader {
                    inner: FrameReader::new(Copying(r), Framing::Tcp, &cfg),
                    shared,
                }),
                info,
            })
        })
    }
}

/// SP frames in; a frame the peer should not have sent closes the
/// connection with the code that says why, so the peer learns it.
struct Reader {
    inner: FrameReader<Copying<QuicRecv>>,
    shared: Arc<Shared>,
}

impl Stream for Reader {
    type Item = Result<Message>;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Message>>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_next(cx);
        if let Poll::Ready(Some(Err(e))) = &r {
            match e {
                Error::TooLarge { .. } => this.shared.close(codes::TOO_LARGE, &e.to_string()),
                Error::Protocol(_) => this.shared.close(codes::PROTOCOL_ERROR, &e.to_string()),
                _ => {}
            }
        }
        r
    }
}

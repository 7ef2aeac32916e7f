//! SP's own framing (the 8-byte announcement, then `[u64 BE length][frame]`)
//! over any [`StreamTransport`]: how `tls+tcp://` is TCP's mapping carried
//! inside TLS. The stream's handshake (TLS) runs inside `announce`, so it is
//! bounded by the socket's handshake deadline and half-open cap.
//!
//! ```
//! use sp_core::transport::Transport;
//! use sp_transports::{Framed, Tcp};
//! // SP/TCP framing over TCP as a byte stream: the same wire as `Tcp`.
//! let t = Framed::new(Tcp, &["tcp+stream"]);
//! assert_eq!(t.schemes(), &["tcp+stream"]);
//! ```

use std::sync::Arc;

use sp_core::layer::{ComponentInfo, Field, Overhead};
use sp_core::transport::{
    Listener, PipeConfig, StreamListener, StreamTransport, StreamUpgrade, Transport, Unannounced,
};
use sp_core::{split_url, BoxFuture, Connection, Error, Result};

use crate::stream::{open, Framing};

/// SP/TCP framing over the byte streams of `S`, serving the given schemes.
pub struct Framed<S> {
    streams: Arc<S>,
    schemes: &'static [&'static str],
}

impl<S: StreamTransport> Framed<S> {
    /// SP framing over `streams`, for URLs of the given schemes
    /// (`scheme://host:port`).
    pub fn new(streams: S, schemes: &'static [&'static str]) -> Self {
        Framed {
            streams: Arc::new(streams),
            schemes,
        }
    }
}

/// `host:port` of `scheme://host:port[/]`.
pub fn authority(url: &str) -> Result<&str> {
    let (_, rest) = split_url(url).ok_or_else(|| Error::Address {
        url: url.into(),
        reason: "expected scheme://host:port".into(),
    })?;
    Ok(rest.trim_end_matches('/'))
}

impl<S: StreamTransport> Transport for Framed<S> {
    fn schemes(&self) -> &'static [&'static str] {
        self.schemes
    }
    fn info(&self) -> ComponentInfo {
        let info = ComponentInfo::new(self.streams.name(), Overhead::header(8));
        if self.streams.transforms() {
            // the length prefix travels inside the stream's records too
            info.opaque().copying()
        } else {
            info.with_header(vec![Field::be("length", 8)])
        }
    }
    fn dial(&self, url: &str) -> BoxFuture<'static, Result<Box<dyn Unannounced>>> {
        let connect = authority(url).map(|a| self.streams.connect(a));
        let scheme = self.streams.name();
        Box::pin(async move {
            let upgrade = connect?.await?;
            Ok(Box::new(FramedUnannounced { upgrade, scheme }) as Box<dyn Unannounced>)
        })
    }
    fn listen(&self, url: &str) -> BoxFuture<'static, Result<Box<dyn Listener>>> {
        let bind = authority(url).map(|a| self.streams.bind(a));
        let scheme = self.schemes.first().copied().unwrap_or("tcp");
        let name = self.streams.name();
        Box::pin(async move {
            let l = bind?.await?;
            Ok(Box::new(FramedListen { l, scheme, name }) as Box<dyn Listener>)
        })
    }
}

struct FramedListen {
    l: Box<dyn StreamListener>,
    scheme: &'static str,
    name: &'static str,
}

impl Listener for FramedListen {
    fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.l.local_addr())
    }
    fn accept(&self) -> BoxFuture<'_, Result<Box<dyn Unannounced>>> {
        Box::pin(async move {
            let upgrade = self.l.accept().await?;
            Ok(Box::new(FramedUnannounced {
                upgrade,
                scheme: self.name,
            }) as Box<dyn Unannounced>)
        })
    }
}

struct FramedUnannounced {
    upgrade: StreamUpgrade,
    scheme: &'static str,
}

impl Unannounced for FramedUnannounced {
    fn peer_addr(&self) -> String {
        // the stream's peer (`ip:port`) before its handshake (TLS) runs:
        // the half-open cap's source while it does
        self.upgrade.peer_addr().to_string()
    }
    fn announce(
        self: Box<Self>,
        cfg: PipeConfig,
        dialer: bool,
    ) -> BoxFuture<'static, Result<Connection>> {
        let FramedUnannounced { upgrade, scheme } = *self;
        Box::pin(async move {
            let s = upgrade.await?;
            let identity = s.peer_identity;
            let mut conn = open(
                s.io,
                tokio::io::split,
                Framing::Tcp,
                cfg,
                dialer,
                (scheme, s.local_addr, s.peer_addr),
            )
            .await?;
            conn.info.peer_identity = identity;
            Ok(conn)
        })
    }
}

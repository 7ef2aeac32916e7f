//! What a transport provides: connections that announce themselves and then
//! carry frames. A transport knows nothing of the protocol above it.

use crate::layer::{BoxFuture, ComponentInfo, Connection, PipeInfo, RecvLimit};
use crate::{Announcement, Result};

/// Per-pipe settings a transport needs.
#[derive(Clone, Debug)]
pub struct PipeConfig {
    /// Largest frame accepted, checked before allocating.
    pub recv_max_size: usize,
    /// Free bytes to leave in front of each received frame.
    pub recv_headroom: usize,
    /// What this side announces.
    pub local: Announcement,
    /// The frame limit the transport's reader checks, shared with the pipe
    /// layers (see [`RecvLimit`]).
    pub recv_limit: RecvLimit,
    /// The socket's counters, for a transport that moves frames in a task of
    /// its own: it counts the copies made there with
    /// `CopyScope::socket(&cfg.counters, ..)`.
    pub counters: std::sync::Arc<crate::stats::Counters>,
}

impl PipeConfig {
    /// What a transport knows about a pipe it just announced.
    pub fn pipe_info(
        &self,
        transport: &'static str,
        local_addr: String,
        peer_addr: String,
        peer: Announcement,
        dialer: bool,
    ) -> PipeInfo {
        PipeInfo {
            transport,
            local_addr,
            peer_addr,
            local: self.local.clone(),
            peer,
            peer_identity: None,
            recv_max_size: self.recv_max_size,
            recv_limit: self.recv_limit.clone(),
            dialer,
            link: crate::SocketLink::detached(),
        }
    }
}

/// A transport: `tcp`, `ipc`, `inproc`...
pub trait Transport: Send + Sync + 'static {
    /// URL schemes it serves, e.g. `["tcp", "tcp4", "tcp6"]`.
    fn schemes(&self) -> &'static [&'static str];
    /// Its framing, for `describe` (e.g. the u64 BE length of TCP).
    fn info(&self) -> ComponentInfo;
    /// Connects; the announcement exchange is left to [`Unannounced::announce`].
    fn dial(&self, url: &str) -> BoxFuture<'static, Result<Box<dyn Unannounced>>>;
    /// Binds.
    fn listen(&self, url: &str) -> BoxFuture<'static, Result<Box<dyn Listener>>>;
}

/// A bound listener.
pub trait Listener: Send + Sync {
    /// The bound address as a URL (a port of 0 is resolved).
    fn url(&self) -> String;
    /// Waits for the next connection.
    fn accept(&self) -> BoxFuture<'_, Result<Box<dyn Unannounced>>>;
}

/// A connected transport stream before the announcement exchange.
pub trait Unannounced: Send {
    /// The peer's address.
    fn peer_addr(&self) -> String;
    /// Exchanges announcements (for TCP and IPC: the 8-byte SP header) and
    /// returns a framed connection. Runs under the socket's handshake deadline.
    fn announce(
        self: Box<Self>,
        cfg: PipeConfig,
        dialer: bool,
    ) -> BoxFuture<'static, Result<Connection>>;
}

/// Splits `scheme://rest`.
pub fn split_url(url: &str) -> Option<(&str, &str)> {
    let i = url.find("://")?;
    Some((&url[..i], &url[i + 3..]))
}

/// A connected byte stream: a TCP socket, a TLS session over one...
pub trait ByteStream:
    tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static
{
}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static> ByteStream for T {}

/// A byte stream and what its layers learned about it.
pub struct StreamConn {
    /// The bytes.
    pub io: Box<dyn ByteStream>,
    /// Local address, as text.
    pub local_addr: String,
    /// Peer address, as text.
    pub peer_addr: String,
    /// Identity a stream layer verified (e.g. a TLS client certificate, DER).
    pub peer_identity: Option<Vec<u8>>,
}

impl std::fmt::Debug for StreamConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamConn")
            .field("local_addr", &self.local_addr)
            .field("peer_addr", &self.peer_addr)
            .finish_non_exhaustive()
    }
}

/// The part of opening a stream that talks to the peer (a TLS handshake).
/// Framings run it inside [`Unannounced::announce`], so it counts against the
/// socket's handshake deadline and half-open cap and never blocks an accept
/// loop.
pub type StreamUpgrade = BoxFuture<'static, Result<StreamConn>>;

/// Byte streams to `host:port`: what a framing (SP's length prefix,
/// WebSocket) runs over. TCP is one; TLS over any stream transport is another.
/// A stream transport knows nothing of framing; a framing never opens a
/// socket itself.
pub trait StreamTransport: Send + Sync + 'static {
    /// Short name for addresses and logs: `tcp`, `tls+tcp`.
    fn name(&self) -> &'static str;
    /// True when the bytes on the wire are not the framing's own (TLS
    /// encrypts them, copying every byte into its records): a capture is
    /// opaque, and the copies are declared and counted (see [`Copying`]).
    fn transforms(&self) -> bool {
        false
    }
    /// Connects to `host:port` (a `[v6]:port` literal works too). The
    /// returned upgrade finishes the stream's own handshake.
    fn connect(&self, addr: &str) -> BoxFuture<'static, Result<StreamUpgrade>>;
    /// Binds `host:port` (`*` or an empty host: every address).
    fn bind(&self, addr: &str) -> BoxFuture<'static, Result<Box<dyn StreamListener>>>;
}

/// A bound stream listener.
pub trait StreamListener: Send + Sync {
    /// The bound `host:port` (a port of 0 is resolved).
    fn local_addr(&self) -> String;
    /// Waits for the next connection; its handshake is left to the upgrade.
    fn accept(&self) -> BoxFuture<'_, Result<StreamUpgrade>>;
}

/// A byte stream whose every byte read and written is counted as a copy of
/// message data ([`crate::record_copy`]): for stream layers that copy what
/// they carry (a TLS session encrypts the plaintext into its own records and
/// decrypts into the reader's buffer).
pub struct Copying<T>(pub T);

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Copying<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = std::pin::Pin::new(&mut self.0).poll_read(cx, buf);
        crate::record_copy(buf.filled().len() - before);
        r
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Copying<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.0).poll_write(cx, buf);
        if let std::task::Poll::Ready(Ok(n)) = &r {
            crate::record_copy(*n);
        }
        r
    }
    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.0).poll_write_vectored(cx, bufs);
        if let std::task::Poll::Ready(Ok(n)) = &r {
            crate::record_copy(*n);
        }
        r
    }
    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

//! QUIC as a stream transport: a pipe is one connection carrying one
//! bidirectional stream that the dialer opens (`docs/quic-mapping.md` §3).
//! What runs on the stream is a framing's business (SP's length prefix in
//! [`crate::Quic`], or any [`sp_core::transport::StreamTransport`] framing).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use quinn::{Connection, Endpoint, RecvStream, SendStream};
use sp_core::transport::{StreamConn, StreamListener, StreamTransport, StreamUpgrade};
use sp_core::{BoxFuture, Error, Result};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tracing::debug;

use crate::codes::{self, connection_error, reason_bytes, varint};
use crate::config::{QuicConfig, ALPN};
use crate::stats::Counters;
use crate::{quic_err, QuicStats};

/// QUIC streams to `host:port`: the byte-stream seam under [`crate::Quic`]
/// (SP framing) and under any other framing.
pub struct QuicStreams {
    cfg: QuicConfig,
    // built once on first use: a dial-only config never needs a server
    // certificate and vice versa; errors kept as text to report each time
    client: OnceLock<std::result::Result<quinn::ClientConfig, String>>,
    server: OnceLock<std::result::Result<quinn::ServerConfig, String>>,
    pub(crate) counters: Arc<Counters>,
}

impl std::fmt::Debug for QuicStreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuicStreams")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

fn text_of(e: Error) -> String {
    match e {
        Error::Layer { reason, .. } => reason,
        e => e.to_string(),
    }
}

impl QuicStreams {
    /// Streams with these settings.
    pub fn new(cfg: QuicConfig) -> Self {
        QuicStreams {
            cfg,
            client: OnceLock::new(),
            server: OnceLock::new(),
            counters: Arc::new(Counters::default()),
        }
    }
    /// What this transport counted.
    pub fn stats(&self) -> QuicStats {
        self.counters.snapshot()
    }

    fn client_config(&self) -> Result<quinn::ClientConfig> {
        self.client
            .get_or_init(|| self.cfg.quinn_client().map_err(text_of))
            .clone()
            .map_err(quic_err)
    }
    fn server_config(&self) -> Result<quinn::ServerConfig> {
        self.server
            .get_or_init(|| self.cfg.quinn_server().map_err(text_of))
            .clone()
            .map_err(quic_err)
    }

    /// Connects: resolves the address and starts the QUIC handshake; the
    /// returned future finishes it and opens the pipe's stream. `established`:
    /// whether the stream is handed over as the pipe itself (no SP handshake
    /// follows in this crate).
    pub(crate) fn dial_owned(
        &self,
        addr: String,
        established: bool,
    ) -> impl std::future::Future<Output = Result<(SocketAddr, Handshake)>> + Send + 'static {
        // everything is taken now: the future must not borrow the transport
        let client = self.client_config();
        let name = self.cfg.tls.server_name_for(&addr);
        let own_endpoint = self.cfg.client_endpoint.clone();
        let verified = self.cfg.tls.verifies_server();
        let linger = self.cfg.close_linger;
        let counters = self.counters.clone();
        async move {
            let client = client?;
            let url = format!("quic://{addr}");
            let target = crate::addr::resolve(&url, false)
                .await?
                .into_iter()
                .next()
                .ok_or_else(|| crate::addr::bad(&url, "no address"))?;
            let endpoint = match own_endpoint {
                Some(ep) => ep,
                None => {
                    let any: SocketAddr = if target.is_ipv4() {
                        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
                    } else {
                        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
                    };
                    Endpoint::client(any)?
                }
            };
            let connecting = endpoint
                .connect_with(client, target, &name)
                .map_err(|e| quic_err(format!("cannot dial {url} (server name {name:?}): {e}")))?;
            let fut = async move {
                let conn = match connecting.await {
                    Ok(c) => c,
                    Err(e) => {
                        counters.handshake_failed.fetch_add(1, Ordering::Relaxed);
                        return Err(connection_error(&e, true));
                    }
                };
                let guard = Shared::new(conn, Some(endpoint), linger, counters, true);
                check_alpn(&guard)?;
                let (send, recv) = guard
                    .conn
                    .open_bi()
                    .await
                    .map_err(|e| connection_error(&e, true))?;
                let identity = if verified {
                    peer_certificate(&guard.conn)
                } else {
                    None
                };
                Ok(QuicIo::new(guard, send, recv, identity, established))
            };
            Ok((target, Box::pin(fut) as Handshake))
        }
    }

    pub(crate) fn bind_owned(
        &self,
        addr: String,
    ) -> impl std::future::Future<Output = Result<QuicListener>> + Send + 'static {
        let server = self.server_config();
        let retry_above = self.cfg.retry_above;
        let verified = self.cfg.tls.verifies_clients();
        let linger = self.cfg.close_linger;
        let counters = self.counters.clone();
        async move {
            let server = server?;
            let url = format!("quic://{addr}");
            let at = crate::addr::resolve(&url, true)
                .await?
                .into_iter()
                .next()
                .ok_or_else(|| crate::addr::bad(&url, "no address"))?;
            let endpoint = Endpoint::server(server, at)?;
            Ok(QuicListener {
                endpoint,
                in_flight: Arc::new(AtomicUsize::new(0)),
                retry_above,
                verified,
                linger,
                counters,
            })
        }
    }
}

/// The rest of a pipe's opening: the QUIC handshake, then its stream.
pub(crate) type Handshake = BoxFuture<'static, Result<QuicIo>>;

fn check_alpn(s: &Shared) -> Result<()> {
    let proto = s
        .conn
        .handshake_data()
        .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|d| d.protocol);
    if proto.as_deref() == Some(ALPN) {
        return Ok(());
    }
    // rustls refuses a mismatch during the handshake; this catches a peer
    // that negotiated none at all
    let why = "no ALPN \"sp/1\" negotiated: the peer does not speak SP over QUIC";
    s.close(codes::PROTOCOL_ERROR, why);
    Err(quic_err(why))
}

fn peer_certificate(conn: &Connection) -> Option<Vec<u8>> {
    conn.peer_identity()
        .and_then(|any| {
            any.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
                .ok()
        })
        .and_then(|certs| certs.first().map(|c| c.to_vec()))
}

/// A bound QUIC endpoint taking connections.
pub(crate) struct QuicListener {
    endpoint: Endpoint,
    in_flight: Arc<AtomicUsize>,
    retry_above: usize,
    verified: bool,
    linger: Duration,
    counters: Arc<Counters>,
}

/// Counts a handshake in progress on a listener while it lives.
struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl QuicListener {
    pub(crate) fn local_addr(&self) -> Option<SocketAddr> {
        self.endpoint.local_addr().ok()
    }

    /// The next connection attempt worth a half-open slot, and the future
    /// that runs its handshake (to be run under the socket's deadline).
    pub(crate) async fn next(&self, established: bool) -> Result<(SocketAddr, Handshake)> {
        // bounded: each turn consumes one queued attempt, and quinn holds at
        // most `max_incoming` of them
        loop {
            let incoming = self.endpoint.accept().await.ok_or(Error::Closed)?;
            let busy = self.in_flight.load(Ordering::Relaxed) >= self.retry_above;
            if busy && !incoming.remote_address_validated() && incoming.may_retry() {
                // stateless: a spoofed source never comes back with the token
                self.counters.retries.fetch_add(1, Ordering::Relaxed);
                if let Err(e) = incoming.retry() {
                    debug!(target: "spstack", error = %e, "quic retry not sent");
                }
                continue;
            }
            let remote = incoming.remote_address();
            self.in_flight.fetch_add(1, Ordering::Relaxed);
            let slot = InFlight(self.in_flight.clone());
            let verified = self.verified;
            let linger = self.linger;
            let counters = self.counters.clone();
            let fut = async move {
                let _slot = slot;
                let connecting = incoming.accept().map_err(|e| {
                    counters.handshake_failed.fetch_add(1, Ordering::Relaxed);
                    connection_error(&e, false)
                })?;
                let conn = match connecting.await {
                    Ok(c) => c,
                    Err(e) => {
                        counters.handshake_failed.fetch_add(1, Ordering::Relaxed);
                        return Err(connection_error(&e, false));
                    }
                };
                let guard = Shared::new(conn, None, linger, counters, false);
                check_alpn(&guard)?;
                let (send, recv) = guard
                    .conn
                    .accept_bi()
                    .await
                    .map_err(|e| connection_error(&e, false))?;
                let identity = if verified {
                    peer_certificate(&guard.conn)
                } else {
                    None
                };
                Ok(QuicIo::new(guard, send, recv, identity, established))
            };
            return Ok((remote, Box::pin(fut) as Handshake));
        }
    }
}

impl Drop for QuicListener {
    fn drop(&mut self) {
        // pipes already open keep their connections (the endpoint driver
        // lives while they do); only new attempts stop
        self.endpoint.set_server_config(None);
    }
}

/// What both halves of a pipe's stream share: the connection, and how it
/// ends when the last half goes.
pub(crate) struct Shared {
    pub(crate) conn: Connection,
    // a dialer's own endpoint, kept for as long as its only connection
    endpoint: Option<Endpoint>,
    established: AtomicBool,
    send: Mutex<Option<SendStream>>,
    linger: Duration,
    counters: Arc<Counters>,
    dialer: bool,
}

impl Shared {
    fn new(
        conn: Connection,
        endpoint: Option<Endpoint>,
        linger: Duration,
        counters: Arc<Counters>,
        dialer: bool,
    ) -> Arc<Shared> {
        Arc::new(Shared {
            conn,
            endpoint,
            established: AtomicBool::new(false),
            send: Mutex::new(None),
            linger,
            counters,
            dialer,
        })
    }

    /// Closes at once with an SP code; the first close wins.
    pub(crate) fn close(&self, code: u32, reason: &str) {
        if self.conn.close_reason().is_some() {
            return;
        }
        match code {
            codes::PROTOCOL_ERROR => &self.counters.closed_protocol_error,
            codes::MISMATCH => &self.counters.closed_mismatch,
            codes::TOO_LARGE => &self.counters.closed_too_large,
            codes::HANDSHAKE_TIMEOUT => &self.counters.abandoned,
            _ => &self.counters.closed_normally,
        }
        .fetch_add(1, Ordering::Relaxed);
        self.conn.close(varint(code), &reason_bytes(reason));
    }

    pub(crate) fn established(&self) {
        self.established.store(true, Ordering::Relaxed);
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        if !self.established.load(Ordering::Relaxed) {
            // the handshake future was dropped: its deadline passed, or the
            // half-open cap evicted it (a failure closed with its own code
            // already, and this does nothing)
            self.close(
                codes::HANDSHAKE_TIMEOUT,
                "SP handshake abandoned (deadline or half-open cap)",
            );
            return;
        }
        if self.conn.close_reason().is_some() {
            return;
        }
        // the graceful end (§6): FIN, wait until the peer has acknowledged
        // everything we sent (it delivers acknowledged data even after the
        // close), then CONNECTION_CLOSE. Closing at once would discard
        // what is still in flight, which TCP's close never does.
        let send = self.send.lock().unwrap_or_else(|e| e.into_inner()).take();
        let conn = self.conn.clone();
        let linger = self.linger;
        let counters = self.counters.clone();
        let ending = async move {
            if let Some(mut s) = send {
                let _ = s.finish();
                if tokio::time::timeout(linger, s.stopped()).await.is_err() {
                    counters.linger_expired.fetch_add(1, Ordering::Relaxed);
                }
            }
            counters.closed_normally.fetch_add(1, Ordering::Relaxed);
            conn.close(varint(codes::NO_ERROR), b"");
        };
        match tokio::runtime::Handle::try_current() {
            Ok(h) => {
                h.spawn(ending);
            }
            Err(_) => self.conn.close(varint(codes::NO_ERROR), b""),
        }
    }
}

/// The pipe's stream, both directions: a byte stream for a framing.
pub struct QuicIo {
    r: QuicRecv,
    w: QuicSend,
    /// The peer's verified certificate (DER), if one was verified.
    pub(crate) identity: Option<Vec<u8>>,
}

impl QuicIo {
    fn new(
        shared: Arc<Shared>,
        send: SendStream,
        recv: RecvStream,
        identity: Option<Vec<u8>>,
        established: bool,
    ) -> QuicIo {
        if established {
            shared.established();
        }
        QuicIo {
            r: QuicRecv {
                recv,
                shared: shared.clone(),
            },
            w: QuicSend {
                send: Some(send),
                shared,
                gather: Vec::new(),
            },
            identity,
        }
    }
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.r.shared
    }
    /// The two directions, each usable from its own task.
    pub(crate) fn split(self) -> (QuicRecv, QuicSend) {
        (self.r, self.w)
    }
    /// Local and peer `ip:port` (a listener knows only its local IP per
    /// connection; its port is the listener's).
    pub(crate) fn addrs(&self) -> (String, String) {
        let sh = &self.r.shared;
        let local = match &sh.endpoint {
            Some(ep) => ep.local_addr().map(|a| a.to_string()).ok(),
            None => sh.conn.local_ip().map(|ip| ip.to_string()),
        };
        (
            local.unwrap_or_default(),
            sh.conn.remote_address().to_string(),
        )
    }
}

/// The receiving direction.
pub struct QuicRecv {
    recv: RecvStream,
    shared: Arc<Shared>,
}

/// The sending direction.
pub struct QuicSend {
    send: Option<SendStream>,
    shared: Arc<Shared>,
    gather: Vec<u8>,
}

/// Writes below this size are gathered into one.
const GATHER: usize = 16 << 10;

impl Drop for QuicSend {
    fn drop(&mut self) {
        // handed to the connection's end, which finishes it (§6)
        if let Some(s) = self.send.take() {
            *self.shared.send.lock().unwrap_or_else(|e| e.into_inner()) = Some(s);
        }
    }
}

/// A quinn stream error as an I/O error whose text says why.
fn stream_io_error(e: io::Error, shared: &Shared) -> io::Error {
    match shared.conn.close_reason() {
        Some(c) => codes::io_error(&c, shared.dialer),
        None => e,
    }
}

impl AsyncRead for QuicRecv {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match Pin::new(&mut this.recv).poll_read(cx, buf) {
            Poll::Ready(Err(e)) => Poll::Ready(Err(stream_io_error(e, &this.shared))),
            r => r,
        }
    }
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "stream already handed back")
}

impl AsyncWrite for QuicSend {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let Some(s) = this.send.as_mut() else {
            return Poll::Ready(Err(gone()));
        };
        match AsyncWrite::poll_write(Pin::new(s), cx, buf) {
            Poll::Ready(Err(e)) => Poll::Ready(Err(stream_io_error(e, &this.shared))),
            r => r,
        }
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let Some(s) = this.send.as_mut() else {
            return Poll::Ready(Err(gone()));
        };
        // quinn takes one buffer per call (and copies it into its own):
        // small frames (a length prefix, a short message) are gathered so
        // that a batch of them costs one call, large ones go as they are
        let first = bufs.iter().position(|b| !b.is_empty());
        let Some(first) = first else {
            return Poll::Ready(Ok(0));
        };
        let r = if bufs[first].len() >= GATHER {
            AsyncWrite::poll_write(Pin::new(s), cx, &bufs[first])
        } else {
            this.gather.clear();
            for b in &bufs[first..] {
                if this.gather.len() + b.len() > GATHER {
                    break;
                }
                this.gather.extend_from_slice(b);
            }
            let r = AsyncWrite::poll_write(Pin::new(s), cx, &this.gather);
            if let Poll::Ready(Ok(n)) = &r {
                sp_core::record_copy(*n);
            }
            r
        };
        match r {
            Poll::Ready(Err(e)) => Poll::Ready(Err(stream_io_error(e, &this.shared))),
            r => r,
        }
    }
    fn is_write_vectored(&self) -> bool {
        true
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // quinn sends what it was given without being asked
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.send.as_mut() {
            Some(s) => Pin::new(s).poll_shutdown(cx),
            None => Poll::Ready(Ok(())),
        }
    }
}

impl AsyncRead for QuicIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.r).poll_read(cx, buf)
    }
}

impl AsyncWrite for QuicIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.w).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.w).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        true
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.w).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.w).poll_shutdown(cx)
    }
}

fn stream_conn(io: QuicIo) -> StreamConn {
    let (local_addr, peer_addr) = io.addrs();
    let identity = io.identity.clone();
    StreamConn {
        io: Box::new(sp_core::transport::Copying(io)),
        local_addr,
        peer_addr,
        peer_identity: identity,
    }
}

/// QUIC as a byte stream for any framing: the stream is handed over as
/// soon as it is open, so a framing's handshake (WebSocket's) runs on it.
impl StreamTransport for QuicStreams {
    fn name(&self) -> &'static str {
        "quic"
    }
    fn transforms(&self) -> bool {
        // QUIC encrypts every byte into its packets
        true
    }
    fn connect(&self, addr: &str) -> BoxFuture<'static, Result<StreamUpgrade>> {
        let dial = self.dial_owned(addr.to_string(), true);
        Box::pin(async move {
            let (peer, hs) = dial.await?;
            Ok(StreamUpgrade::new(peer.to_string(), async move {
                Ok(stream_conn(hs.await?))
            }))
        })
    }
    fn bind(&self, addr: &str) -> BoxFuture<'static, Result<Box<dyn StreamListener>>> {
        let bind = self.bind_owned(addr.to_string());
        Box::pin(async move { Ok(Box::new(bind.await?) as Box<dyn StreamListener>) })
    }
}

impl StreamListener for QuicListener {
    fn local_addr(&self) -> String {
        self.local_addr().map(|a| a.to_string()).unwrap_or_default()
    }
    fn accept(&self) -> BoxFuture<'_, Result<StreamUpgrade>> {
        Box::pin(async move {
            let (peer, hs) = self.next(true).await?;
            Ok(StreamUpgrade::new(peer.to_string(), async move {
                Ok(stream_conn(hs.await?))
            }))
        })
    }
}

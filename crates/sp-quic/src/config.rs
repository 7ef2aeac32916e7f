//! What a QUIC endpoint offers and accepts: the TLS settings of
//! `tls+tcp://` plus the limits QUIC adds (windows, idle timeout, Retry).

use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{IdleTimeout, TransportConfig, VarInt};
use sp_core::{Error, Result};
use sp_transports::tls::TlsConfig;

use crate::quic_err;

/// The one ALPN value of this mapping (`docs/quic-mapping.md` §2): which SP
/// protocol runs is said by the SP header inside the stream, not here.
pub const ALPN: &[u8] = b"sp/1";

/// Settings of a QUIC transport: certificates, CAs and client
/// certificates exactly as for `tls+tcp://` ([`TlsConfig`]), and QUIC's own
/// limits. Every limit is finite.
///
/// | setting | default | why |
/// |---|---|---|
/// | [`idle_timeout`](QuicConfig::idle_timeout) | 30 s | RFC 9308 §3.2; a silent peer's pipe ends |
/// | [`keep_alive`](QuicConfig::keep_alive) | 10 s | an idle SP pipe (a REP waiting) stays open, as on TCP |
/// | [`stream_window`](QuicConfig::stream_window) | 2 MiB | most a peer may have in flight to us: the receive buffer of the pipe, also the connection's |
/// | [`send_window`](QuicConfig::send_window) | 4 MiB | most we keep unacknowledged |
/// | [`retry_above`](QuicConfig::retry_above) | 16 | handshakes in progress on a listener beyond which a new client must prove its address (Retry) first |
/// | [`max_incoming`](QuicConfig::max_incoming) | 1024 | connection attempts quinn holds before the accept loop takes them |
/// | [`close_linger`](QuicConfig::close_linger) | 2 s | how long a closing pipe waits for its last bytes to be acknowledged |
///
/// The handshake deadline and the half-open cap are the socket's
/// (`Options::handshake_timeout`, `Options::max_half_open`) and cover the
/// QUIC handshake too; the message limit is `Options::recv_max_size`.
#[derive(Clone, Debug)]
pub struct QuicConfig {
    pub(crate) tls: TlsConfig,
    pub(crate) idle_timeout: Duration,
    pub(crate) keep_alive: Option<Duration>,
    pub(crate) stream_window: u32,
    pub(crate) send_window: u64,
    pub(crate) retry_above: usize,
    pub(crate) max_incoming: usize,
    pub(crate) close_linger: Duration,
    pub(crate) client_endpoint: Option<quinn::Endpoint>,
}

impl QuicConfig {
    /// QUIC with these TLS settings: a listener needs
    /// [`TlsConfig::server_identity`], a dialer [`TlsConfig::roots`]; client
    /// certificates, `server_name` and `danger_accept_invalid_certs` work
    /// as for `tls+tcp://`. QUIC needs TLS 1.3 (a config limited to 1.2 is
    /// refused with an error that says so).
    pub fn new(tls: TlsConfig) -> Self {
        QuicConfig {
            tls,
            idle_timeout: Duration::from_secs(30),
            keep_alive: Some(Duration::from_secs(10)),
            stream_window: 2 << 20,
            send_window: 4 << 20,
            retry_above: 16,
            max_incoming: 1024,
            close_linger: Duration::from_secs(2),
            client_endpoint: None,
        }
    }
    /// The TLS settings.
    pub fn tls(&self) -> &TlsConfig {
        &self.tls
    }
    /// A connection silent for this long is dead (the smaller of both
    /// sides' values applies). Clamped to 1 ms ..= 10 min.
    pub fn idle_timeout(mut self, d: Duration) -> Self {
        self.idle_timeout = d.clamp(Duration::from_millis(1), Duration::from_secs(600));
        self
    }
    /// PINGs sent after this much silence so that an idle pipe is not
    /// taken for a dead one; `None` lets idle pipes time out.
    pub fn keep_alive(mut self, d: Option<Duration>) -> Self {
        self.keep_alive = d;
        self
    }
    /// The receive window of the pipe's stream and of the connection: how
    /// much a peer can make us buffer. At least 16 KiB.
    pub fn stream_window(mut self, bytes: u32) -> Self {
        self.stream_window = bytes.max(16 << 10);
        self
    }
    /// The most data sent and not yet acknowledged. At least 16 KiB.
    pub fn send_window(mut self, bytes: u64) -> Self {
        self.send_window = bytes.max(16 << 10);
        self
    }
    /// When more than `n` handshakes are in progress on a listener, a new
    /// client whose address is not yet validated gets a stateless Retry
    /// and must come back with its token: spoofed sources then cost no
    /// state and never take a half-open slot. `usize::MAX` turns it off,
    /// 0 retries every client.
    pub fn retry_above(mut self, n: usize) -> Self {
        self.retry_above = n;
        self
    }
    /// Connection attempts quinn queues before the listener's accept loop
    /// takes them (beyond: refused). At least 1.
    pub fn max_incoming(mut self, n: usize) -> Self {
        self.max_incoming = n.max(1);
        self
    }
    /// How long a pipe that ends waits for the peer to acknowledge what it
    /// sent before the connection closes (`docs/quic-mapping.md` §6).
    pub fn close_linger(mut self, d: Duration) -> Self {
        self.close_linger = d;
        self
    }
    /// Dials from this quinn endpoint (its UDP socket) instead of a new one
    /// per pipe: one socket for many pipes, or one the application rebinds
    /// when its network changes ([`quinn::Endpoint::rebind`]; the pipes
    /// survive, QUIC migrates them). It needs no server config.
    pub fn client_endpoint(mut self, ep: quinn::Endpoint) -> Self {
        self.client_endpoint = Some(ep);
        self
    }

    fn transport(&self, listener: bool) -> Arc<TransportConfig> {
        let mut t = TransportConfig::default();
        // one pipe = one bidirectional stream opened by the dialer; nothing
        // else may be opened (a peer that tries breaks QUIC's stream limit
        // and its connection is closed with STREAM_LIMIT_ERROR)
        t.max_concurrent_bidi_streams(VarInt::from_u32(u32::from(listener)));
        t.max_concurrent_uni_streams(VarInt::from_u32(0));
        // no DATAGRAM frames: a peer that sends one commits a protocol violation
        t.datagram_receive_buffer_size(None);
        let idle = IdleTimeout::try_from(self.idle_timeout)
            .unwrap_or(IdleTimeout::from(VarInt::from_u32(30_000)));
        t.max_idle_timeout(Some(idle));
        t.keep_alive_interval(self.keep_alive.filter(|k| *k < self.idle_timeout));
        let w = VarInt::from_u32(self.stream_window);
        t.stream_receive_window(w);
        // the connection window would be unbounded by default; with one
        // stream it need not exceed the stream's
        t.receive_window(w);
        t.send_window(self.send_window);
        Arc::new(t)
    }

    pub(crate) fn quinn_client(&self) -> Result<quinn::ClientConfig> {
        self.need_tls13()?;
        let mut tls = (*self.tls.client_config()?).clone();
        tls.alpn_protocols = vec![ALPN.to_vec()];
        // 0-RTT carries nothing in this mapping (§7): never offer it
        tls.enable_early_data = false;
        let crypto = QuicClientConfig::try_from(Arc::new(tls))
            .map_err(|e| quic_err(format!("the TLS provider cannot run QUIC: {e}")))?;
        let mut c = quinn::ClientConfig::new(Arc::new(crypto));
        c.transport_config(self.transport(false));
        Ok(c)
    }

    pub(crate) fn quinn_server(&self) -> Result<quinn::ServerConfig> {
        self.need_tls13()?;
        let mut tls = (*self.tls.server_config()?).clone();
        tls.alpn_protocols = vec![ALPN.to_vec()];
        // no 0-RTT (§7): early data would be replayable and unauthenticated
        tls.max_early_data_size = 0;
        let crypto = QuicServerConfig::try_from(Arc::new(tls))
            .map_err(|e| quic_err(format!("the TLS provider cannot run QUIC: {e}")))?;
        let mut s = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        s.transport_config(self.transport(true));
        s.migration(true);
        s.max_incoming(self.max_incoming);
        // datagrams quinn buffers for a connection attempt not yet accepted
        // (defaults 10 MB each, 100 MB in all): a few Initial packets' worth
        s.incoming_buffer_size(64 << 10);
        s.incoming_buffer_size_total(4 << 20);
        Ok(s)
    }

    fn need_tls13(&self) -> Result<()> {
        if self.tls.allows_tls13() {
            Ok(())
        } else {
            Err(Error::layer(
                "quic",
                "QUIC runs TLS 1.3 only, and this TlsConfig allows at most TLS 1.2; \
                 widen TlsConfig::versions",
            ))
        }
    }
}

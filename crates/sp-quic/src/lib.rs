//! # sp-quic: `quic://`, the Scalability Protocols over QUIC
//!
//! A pipe is one QUIC connection carrying one bidirectional stream that the
//! dialer opens; on it run exactly SP/TCP's 8-byte header exchange and
//! u64 BE length framing, so pipe layers (Noise), message layers
//! (integrity) and devices work over it unchanged. The wire is written down
//! in `docs/quic-mapping.md` (ALPN `sp/1`, stream rules, close codes,
//! 0-RTT, idle timeout, migration).
//!
//! ```
//! use std::sync::Arc;
//! use sp_quic::{Quic, QuicConfig};
//! use sp_transports::tls::{Identity, Roots, TlsConfig};
//!
//! # fn main() -> sp_core::Result<()> {
//! # tokio::runtime::Runtime::new()?.block_on(async {
//! // A self-signed certificate for "localhost" (bring your own: PEM files
//! // through Identity::from_pem_files and Roots::from_pem_file).
//! let c = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("certificate");
//! let (cert, key) = (c.cert.pem(), c.key_pair.serialize_pem());
//! let tls = TlsConfig::new()
//!     .server_identity(Identity::from_pem(cert.as_bytes(), key.as_bytes())?)
//!     .roots(Roots::from_pem(cert.as_bytes())?)
//!     .server_name("localhost");
//! let quic = Arc::new(Quic::new(QuicConfig::new(tls)));
//!
//! let rep = spstack::rep0().transport(quic.clone()).build();
//! let ep = rep.listen("quic://127.0.0.1:0").await?;
//! let req = spstack::req0().transport(quic.clone()).build();
//! req.dial(ep.url()).await?;
//!
//! req.send("ping").await?;
//! let request = rep.recv().await?;
//! assert_eq!(request.body(), b"ping");
//! rep.send("pong").await?;
//! assert_eq!(req.recv().await?.body(), b"pong");
//! // the server's certificate, verified, is the pipe's peer identity
//! let pipe = req.pipes()[0];
//! assert!(req.pipe_info(pipe).and_then(|i| i.peer_identity.clone()).is_some());
//! # Ok(()) })
//! # }
//! ```
//!
//! Certificates, CAs, client certificates and `server_name` are those of
//! `tls+tcp://` ([`sp_transports::TlsConfig`]); QUIC runs TLS 1.3 with the
//! `ring` provider, as the rest of spstack. [`QuicConfig`] adds QUIC's own
//! finite limits (windows, idle timeout, keep-alive, Retry under load).
//! [`QuicStreams`] is the same connections as a
//! [`StreamTransport`](sp_core::transport::StreamTransport), for other
//! framings.

mod addr;
pub mod codes;
mod config;
mod stats;
mod stream;
mod transport;

pub use config::{QuicConfig, ALPN};
pub use stats::QuicStats;
pub use stream::{QuicIo, QuicRecv, QuicSend, QuicStreams};
pub use transport::{Quic, SCHEMES};

/// Re-exported for [`QuicConfig::client_endpoint`].
pub use quinn;

/// `quic://` with `tls`'s certificates and the default limits.
pub fn quic(tls: sp_transports::TlsConfig) -> Quic {
    Quic::new(QuicConfig::new(tls))
}

pub(crate) fn quic_err(reason: impl Into<String>) -> sp_core::Error {
    sp_core::Error::layer("quic", reason)
}

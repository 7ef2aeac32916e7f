//! TLS over any [`StreamTransport`], and `tls+tcp://` (nng's TLS mapping:
//! TCP, then a TLS session, then inside it exactly the SP/TCP mapping).
//!
//! [`Tls`] is a stream layer: it wraps the byte streams of another stream
//! transport (TCP by default) and runs the TLS handshake inside the
//! [`StreamUpgrade`], so the handshake counts against the socket's handshake
//! deadline and half-open cap and never blocks an accept loop. Framings run
//! over it unchanged: [`tls_tcp`] is SP framing ([`Framed`]), a WebSocket
//! framing gives `wss://`.
//!
//! One rustls crypto provider (`ring`) is passed explicitly to every config;
//! the process-wide default provider is never read or installed.
//!
//! ```no_run
//! use std::sync::Arc;
//! use sp_transports::tls::{tls_tcp, Identity, Roots, TlsConfig};
//!
//! # fn main() -> sp_core::Result<()> {
//! // A listener's side: its certificate chain and key.
//! let server = TlsConfig::new()
//!     .server_identity(Identity::from_pem_files("server.pem", "server.key")?);
//! // A dialer's side: the CA that signed the server certificate. The server
//! // name checked is the URL's host unless `server_name` overrides it.
//! let client = TlsConfig::new().roots(Roots::from_pem_file("ca.pem")?);
//! let _listen_with: Arc<dyn sp_core::transport::Transport> = Arc::new(tls_tcp(server));
//! let _dial_with: Arc<dyn sp_core::transport::Transport> = Arc::new(tls_tcp(client));
//! // SocketBuilder::new(..).transport(_dial_with).build().dial("tls+tcp://localhost:5555")
//! # Ok(()) }
//! ```

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{
    AlertDescription, CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore,
    ServerConfig, SignatureScheme, SupportedProtocolVersion,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{ServerName, UnixTime};
use sp_core::transport::{Copying, StreamConn, StreamListener, StreamTransport, StreamUpgrade};
use sp_core::{BoxFuture, Error, Result};
use tokio_rustls::{TlsAcceptor, TlsConnector};

pub use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::{Framed, Tcp};

/// The schemes of [`tls_tcp`], as in nng.
pub const TLS_TCP_SCHEMES: &[&str] = &["tls+tcp", "tls+tcp4", "tls+tcp6"];

/// `tls+tcp://host:port` (also `tls+tcp4`, `tls+tcp6`): SP/TCP framing inside
/// TLS over TCP, the wire of nng's `tls+tcp` transport.
///
/// The same value dials and listens: a listener needs
/// [`TlsConfig::server_identity`], a dialer needs [`TlsConfig::roots`].
/// The address family of `tls+tcp4`/`tls+tcp6` is not enforced: the host
/// decides, as with a plain `host:port`.
pub fn tls_tcp(cfg: TlsConfig) -> Framed<Tls<Tcp>> {
    Framed::new(Tls::new(Tcp, cfg), TLS_TCP_SCHEMES)
}

fn tls_err(reason: impl Into<String>) -> Error {
    Error::layer("tls", reason)
}

/// The one crypto provider of this module. Passed explicitly to every config
/// so a second provider compiled in by another crate can never make rustls
/// pick one at run time (or panic because it cannot).
fn provider() -> Arc<CryptoProvider> {
    static P: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    P.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// A TLS protocol version. TLS 1.0 and 1.1 are not offered (nng 2.0 dropped
/// them too).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    /// TLS 1.2.
    Tls12,
    /// TLS 1.3.
    Tls13,
}

/// A certificate chain (end entity first) and its private key: what a
/// listener shows to dialers, or a dialer to a listener that asks for a
/// client certificate.
pub struct Identity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Identity {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // never print the key
        f.debug_struct("Identity")
            .field("chain_len", &self.chain.len())
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// From DER: the chain (end entity first) and a PKCS#8, PKCS#1 or SEC1 key.
    pub fn from_der(chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> Self {
        Identity { chain, key }
    }

    /// From PEM text: every `CERTIFICATE` block of `certs` (end entity
    /// first) and the first private key block of `key`. The two may be the
    /// same text.
    pub fn from_pem(certs: &[u8], key: &[u8]) -> Result<Self> {
        let chain = certs_from_pem(certs, "certificate PEM")?;
        let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| {
            tls_err(format!(
                "no usable private key in the key PEM ({e}); expected a PKCS#8, PKCS#1 or SEC1 \"PRIVATE KEY\" block"
            ))
        })?;
        Ok(Identity { chain, key })
    }

    /// From PEM files, as nng's `nng_tls_config_cert_key_file` (the key file
    /// may be the certificate file when it holds both).
    pub fn from_pem_files(certs: impl AsRef<Path>, key: impl AsRef<Path>) -> Result<Self> {
        let c = read_file(certs.as_ref(), "certificate")?;
        let k = read_file(key.as_ref(), "private key")?;
        Identity::from_pem(&c, &k).map_err(|e| {
            tls_err(format!(
                "{} / {}: {}",
                certs.as_ref().display(),
                key.as_ref().display(),
                reason_of(e)
            ))
        })
    }

    /// The end-entity certificate (DER): what the peer sees as
    /// `peer_identity`.
    pub fn end_entity(&self) -> Option<&[u8]> {
        self.chain.first().map(|c| c.as_ref())
    }
}

/// Trust anchors: the CA certificates a peer's chain must lead to.
#[derive(Clone, Debug, Default)]
pub struct Roots {
    certs: Vec<CertificateDer<'static>>,
}

impl Roots {
    /// No anchors yet.
    pub fn new() -> Self {
        Roots::default()
    }
    /// From DER certificates.
    pub fn from_der(certs: Vec<CertificateDer<'static>>) -> Self {
        Roots { certs }
    }
    /// Adds one DER certificate.
    pub fn add_der(mut self, cert: CertificateDer<'static>) -> Self {
        self.certs.push(cert);
        self
    }
    /// From every `CERTIFICATE` block of PEM text.
    pub fn from_pem(pem: &[u8]) -> Result<Self> {
        Ok(Roots {
            certs: certs_from_pem(pem, "CA PEM")?,
        })
    }
    /// From a PEM file (nng's `nng_tls_config_ca_file`, nngcat's `--cacert`).
    pub fn from_pem_file(path: impl AsRef<Path>) -> Result<Self> {
        let pem = read_file(path.as_ref(), "CA certificate")?;
        Roots::from_pem(&pem)
            .map_err(|e| tls_err(format!("{}: {}", path.as_ref().display(), reason_of(e))))
    }
    /// How many anchors.
    pub fn len(&self) -> usize {
        self.certs.len()
    }
    /// True without anchors.
    pub fn is_empty(&self) -> bool {
        self.certs.is_empty()
    }

    fn store(&self) -> Result<RootCertStore> {
        let mut store = RootCertStore::empty();
        for (i, c) in self.certs.iter().enumerate() {
            store.add(c.clone()).map_err(|e| {
                tls_err(format!("CA certificate #{i} cannot be a trust anchor: {e}"))
            })?;
        }
        Ok(store)
    }
}

fn reason_of(e: Error) -> String {
    match e {
        Error::Layer { reason, .. } => reason,
        e => e.to_string(),
    }
}

fn read_file(path: &Path, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path)
        .map_err(|e| tls_err(format!("cannot read {what} file {}: {e}", path.display())))
}

fn certs_from_pem(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| tls_err(format!("malformed {what}: {e}")))?;
    if certs.is_empty() {
        return Err(tls_err(format!("no \"CERTIFICATE\" block in the {what}")));
    }
    Ok(certs)
}

/// What a TLS endpoint presents and what it accepts. One config serves both
/// roles: a listener uses the server part, a dialer the client part.
///
/// Defaults: TLS 1.2 and 1.3, no client certificates asked for, the server
/// name checked is the dialed URL's host.
#[derive(Clone, Debug)]
pub struct TlsConfig {
    server: Option<Identity>,
    client: Option<Identity>,
    roots: Option<Roots>,
    server_name: Option<String>,
    client_auth: Option<Roots>,
    min: TlsVersion,
    max: TlsVersion,
    insecure: bool,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            server: None,
            client: None,
            roots: None,
            server_name: None,
            client_auth: None,
            min: TlsVersion::Tls12,
            max: TlsVersion::Tls13,
            insecure: false,
        }
    }
}

impl TlsConfig {
    /// An empty config: add an identity for listening, roots for dialing.
    pub fn new() -> Self {
        TlsConfig::default()
    }
    /// The certificate and key a listener presents. Required to listen.
    pub fn server_identity(mut self, id: Identity) -> Self {
        self.server = Some(id);
        self
    }
    /// The certificate and key a dialer presents when the listener asks
    /// (see [`TlsConfig::require_client_cert`]).
    pub fn client_identity(mut self, id: Identity) -> Self {
        self.client = Some(id);
        self
    }
    /// The CAs a dialer trusts for server certificates. Required to dial,
    /// unless [`TlsConfig::danger_accept_invalid_certs`].
    pub fn roots(mut self, roots: Roots) -> Self {
        self.roots = Some(roots);
        self
    }
    /// The name the server certificate must hold, instead of the URL's host
    /// (e.g. dialing `tls+tcp://10.0.0.5:5555` a server whose certificate
    /// names `broker.example`). A DNS name or an IP address.
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }
    /// Makes a listener refuse dialers without a client certificate issued
    /// by one of `roots`. The verified certificate becomes the pipe's
    /// `peer_identity`.
    pub fn require_client_cert(mut self, roots: Roots) -> Self {
        self.client_auth = Some(roots);
        self
    }
    /// The TLS versions offered and accepted, from `min` to `max` inclusive
    /// (the two are swapped if given in the wrong order).
    pub fn versions(mut self, min: TlsVersion, max: TlsVersion) -> Self {
        self.min = min.min(max);
        self.max = max.max(min);
        self
    }
    /// Dials without verifying the server certificate (nngcat `--insecure`).
    /// The session is still encrypted and the handshake signature checked,
    /// but anyone in the middle can impersonate the server: for tests only.
    /// No `peer_identity` is reported, since nothing was verified.
    pub fn danger_accept_invalid_certs(mut self) -> Self {
        self.insecure = true;
        self
    }

    /// The name a dialer checks the server certificate against when it
    /// dials `addr` (`host:port` or `[v6]:port`): [`TlsConfig::server_name`]
    /// if set, else the host. For other transports that take this config
    /// (QUIC).
    pub fn server_name_for(&self, addr: &str) -> String {
        self.server_name
            .clone()
            .unwrap_or_else(|| host_of(addr).to_string())
    }
    /// False after [`TlsConfig::danger_accept_invalid_certs`]: the server
    /// certificate is not verified, so it is no `peer_identity`.
    pub fn verifies_server(&self) -> bool {
        !self.insecure
    }
    /// True when a listener requires and verifies client certificates
    /// ([`TlsConfig::require_client_cert`]), so they are `peer_identity`.
    pub fn verifies_clients(&self) -> bool {
        self.client_auth.is_some()
    }
    /// True when TLS 1.3 is among the versions (QUIC needs it).
    pub fn allows_tls13(&self) -> bool {
        self.max >= TlsVersion::Tls13
    }

    fn protocol_versions(&self) -> Vec<&'static SupportedProtocolVersion> {
        let mut v = Vec::new();
        if self.min <= TlsVersion::Tls12 {
            v.push(&rustls::version::TLS12);
        }
        if self.max >= TlsVersion::Tls13 {
            v.push(&rustls::version::TLS13);
        }
        v
    }

    /// The rustls client config this describes.
    pub fn client_config(&self) -> Result<Arc<ClientConfig>> {
        let p = provider();
        let b = ClientConfig::builder_with_provider(p.clone())
            .with_protocol_versions(&self.protocol_versions())
            .map_err(|e| tls_err(format!("cannot use the TLS versions asked for: {e}")))?;
        let b = if self.insecure {
            b.dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyServerCert(p)))
        } else {
            let roots = self
                .roots
                .as_ref()
                .filter(|r| !r.is_empty())
                .ok_or_else(|| {
                    tls_err(
                        "no CA certificate to verify the server with; set TlsConfig::roots \
                     (spcat: --cacert FILE), or for tests only \
                     TlsConfig::danger_accept_invalid_certs (spcat: --insecure)",
                    )
                })?;
            b.with_root_certificates(roots.store()?)
        };
        let cfg = match &self.client {
            Some(id) => b
                .with_client_auth_cert(id.chain.clone(), id.key.clone_key())
                .map_err(|e| tls_err(format!("client certificate or key unusable: {e}")))?,
            None => b.with_no_client_auth(),
        };
        Ok(Arc::new(cfg))
    }

    /// The rustls server config this describes.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>> {
        let p = provider();
        let id = self.server.as_ref().ok_or_else(|| {
            tls_err(
                "a TLS listener needs a certificate and key; set TlsConfig::server_identity \
                 (spcat: --cert FILE --key FILE)",
            )
        })?;
        let b = ServerConfig::builder_with_provider(p.clone())
            .with_protocol_versions(&self.protocol_versions())
            .map_err(|e| tls_err(format!("cannot use the TLS versions asked for: {e}")))?;
        let b = match &self.client_auth {
            Some(roots) => {
                let v = WebPkiClientVerifier::builder_with_provider(Arc::new(roots.store()?), p)
                    .build()
                    .map_err(|e| {
                        tls_err(format!(
                            "cannot verify client certificates with these CAs: {e}"
                        ))
                    })?;
                b.with_client_cert_verifier(v)
            }
            None => b.with_no_client_auth(),
        };
        let cfg = b
            .with_single_cert(id.chain.clone(), id.key.clone_key())
            .map_err(|e| tls_err(format!("server certificate or key unusable: {e}")))?;
        Ok(Arc::new(cfg))
    }
}

/// `--insecure`: accepts any server certificate but still checks the
/// handshake signature with the provider's own algorithms (so the session
/// key is bound to the presented key; nothing is hand-rolled).
#[derive(Debug)]
struct AcceptAnyServerCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Which end of the handshake failed, for the error text.
#[derive(Clone, Copy)]
enum Side<'a> {
    Client { name: &'a str },
    Server,
}

/// A failed handshake as an error that says what to change.
fn handshake_error(e: io::Error, side: Side<'_>) -> Error {
    let tls = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    let Some(tls) = tls else {
        return match e.kind() {
            io::ErrorKind::UnexpectedEof => tls_err(
                "peer closed the connection during the TLS handshake (is it a TLS endpoint? \
                 does it accept our certificate and TLS versions?)",
            ),
            _ => tls_err(format!("TLS handshake failed: {e}")),
        };
    };
    use rustls::Error as R;
    let reason = match (tls, side) {
        (R::InvalidCertificate(c), Side::Client { name }) => match c {
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                format!(
                    "server certificate not valid for name {name}; set TlsConfig::server_name \
                     to a name the certificate holds ({c:?})"
                )
            }
            CertificateError::UnknownIssuer => "server certificate not issued by a trusted CA; \
                 add its CA with TlsConfig::roots (spcat: --cacert)"
                .into(),
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. } => {
                format!("server certificate outside its validity period: {c:?}")
            }
            c => format!("server certificate refused: {c:?}"),
        },
        (R::InvalidCertificate(c), Side::Server) => match c {
            CertificateError::UnknownIssuer => "client certificate not issued by a CA given to \
                 TlsConfig::require_client_cert"
                .into(),
            c => format!("client certificate refused: {c:?}"),
        },
        (R::NoCertificatesPresented, Side::Server) => "dialer presented no client certificate \
             and this listener requires one (dialer: TlsConfig::client_identity, spcat --cert)"
            .into(),
        (R::AlertReceived(a), _) => {
            let hint = match a {
                AlertDescription::CertificateRequired => {
                    "the listener requires a client certificate; set TlsConfig::client_identity \
                     (spcat: --cert/--key)"
                }
                AlertDescription::UnknownCA | AlertDescription::BadCertificate => {
                    "the peer does not trust our certificate; use one issued by a CA it trusts"
                }
                AlertDescription::ProtocolVersion | AlertDescription::HandshakeFailure => {
                    "no TLS version or cipher suite in common; check TlsConfig::versions"
                }
                AlertDescription::CloseNotify => "the peer ended the session mid-handshake",
                _ => "see the peer's log",
            };
            format!("peer sent TLS alert {a:?}: {hint}")
        }
        (R::PeerIncompatible(p), _) => format!(
            "no TLS version or cipher suite in common ({p:?}); check TlsConfig::versions on both sides"
        ),
        (R::InvalidMessage(m), _) => {
            format!("peer does not speak TLS or broke its framing ({m:?})")
        }
        (other, _) => format!("TLS handshake failed: {other}"),
    };
    tls_err(reason)
}

/// TLS over the byte streams of `S`: a stream transport whose upgrade runs
/// the TLS handshake. `peer_identity` is the peer's verified end-entity
/// certificate (DER): the server's on a dialer, the client's on a listener
/// that requires client certificates.
pub struct Tls<S = Tcp> {
    inner: S,
    cfg: TlsConfig,
    name: &'static str,
    // built once on first use, so a dial-only config never needs a server
    // certificate and vice versa; errors are kept as text to report each time
    client: OnceLock<std::result::Result<Arc<ClientConfig>, String>>,
    server: OnceLock<std::result::Result<Arc<ServerConfig>, String>>,
}

impl<S> fmt::Debug for Tls<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("name", &self.name)
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl<S: StreamTransport> Tls<S> {
    /// TLS over `inner`, named `tls+tcp`.
    pub fn new(inner: S, cfg: TlsConfig) -> Self {
        Tls {
            inner,
            cfg,
            name: "tls+tcp",
            client: OnceLock::new(),
            server: OnceLock::new(),
        }
    }
    /// Renames it (the name reaches `PipeInfo::transport` through a framing).
    pub fn named(mut self, name: &'static str) -> Self {
        self.name = name;
        self
    }
    /// Its configuration.
    pub fn config(&self) -> &TlsConfig {
        &self.cfg
    }

    fn client_config(&self) -> Result<Arc<ClientConfig>> {
        self.client
            .get_or_init(|| self.cfg.client_config().map_err(reason_of))
            .clone()
            .map_err(tls_err)
    }
    fn server_config(&self) -> Result<Arc<ServerConfig>> {
        self.server
            .get_or_init(|| self.cfg.server_config().map_err(reason_of))
            .clone()
            .map_err(tls_err)
    }
}

/// The host of `host:port` or `[v6]:port`.
fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map(|(h, _)| h).unwrap_or(addr);
    host.trim_start_matches('[').trim_end_matches(']')
}

impl<S: StreamTransport> StreamTransport for Tls<S> {
    fn name(&self) -> &'static str {
        self.name
    }

    fn transforms(&self) -> bool {
        true
    }

    fn connect(&self, addr: &str) -> BoxFuture<'static, Result<StreamUpgrade>> {
        let name = self
            .cfg
            .server_name
            .clone()
            .unwrap_or_else(|| host_of(addr).to_string());
        let client = self.client_config();
        let verified = !self.cfg.insecure;
        let addr_text = addr.to_string();
        // checked before connecting: a bad config or name fails at once
        let checked = client.and_then(|c| {
            let sn = ServerName::try_from(name.clone()).map_err(|_| {
                tls_err(format!(
                    "{name:?} (from {addr_text}) is neither a DNS name nor an IP address; \
                     set TlsConfig::server_name"
                ))
            })?;
            Ok((c, sn))
        });
        let inner = checked.as_ref().ok().map(|_| self.inner.connect(addr));
        Box::pin(async move {
            let (client, server_name) = checked?;
            let upgrade = match inner {
                Some(f) => f.await?,
                None => return Err(tls_err("internal: no inner connect")),
            };
            let peer = upgrade.peer_addr().to_string();
            Ok(StreamUpgrade::new(peer, async move {
                let conn = upgrade.await?;
                let tls = TlsConnector::from(client)
                    .connect(server_name, conn.io)
                    .await
                    .map_err(|e| handshake_error(e, Side::Client { name: &name }))?;
                let peer_identity = if verified {
                    end_entity(tls.get_ref().1.peer_certificates())
                } else {
                    None
                };
                Ok(StreamConn {
                    io: Box::new(Copying(tls)),
                    local_addr: conn.local_addr,
                    peer_addr: conn.peer_addr,
                    peer_identity,
                })
            }))
        })
    }

    fn bind(&self, addr: &str) -> BoxFuture<'static, Result<Box<dyn StreamListener>>> {
        let server = self.server_config();
        let inner = server.as_ref().ok().map(|_| self.inner.bind(addr));
        let verified = self.cfg.client_auth.is_some();
        Box::pin(async move {
            let server = server?;
            let l = match inner {
                Some(f) => f.await?,
                None => return Err(tls_err("internal: no inner bind")),
            };
            Ok(Box::new(TlsListen {
                l,
                acceptor: TlsAcceptor::from(server),
                verified,
            }) as Box<dyn StreamListener>)
        })
    }
}

fn end_entity(certs: Option<&[CertificateDer<'static>]>) -> Option<Vec<u8>> {
    certs.and_then(|c| c.first()).map(|c| c.to_vec())
}

struct TlsListen {
    l: Box<dyn StreamListener>,
    acceptor: TlsAcceptor,
    verified: bool,
}

impl StreamListener for TlsListen {
    fn local_addr(&self) -> String {
        self.l.local_addr()
    }
    fn accept(&self) -> BoxFuture<'_, Result<StreamUpgrade>> {
        Box::pin(async move {
            let upgrade = self.l.accept().await?;
            let acceptor = self.acceptor.clone();
            let verified = self.verified;
            // the handshake runs later, inside announce: a slow client holds
            // only its own half-open slot, never this accept loop; its
            // address is the TCP peer's, known now, for that slot's source
            let peer = upgrade.peer_addr().to_string();
            Ok(StreamUpgrade::new(peer, async move {
                let conn = upgrade.await?;
                let tls = acceptor
                    .accept(conn.io)
                    .await
                    .map_err(|e| handshake_error(e, Side::Server))?;
                let peer_identity = if verified {
                    end_entity(tls.get_ref().1.peer_certificates())
                } else {
                    None
                };
                Ok(StreamConn {
                    io: Box::new(Copying(tls)),
                    local_addr: conn.local_addr,
                    peer_addr: conn.peer_addr,
                    peer_identity,
                })
            }))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_of_handles_names_and_v6() {
        assert_eq!(host_of("localhost:5555"), "localhost");
        assert_eq!(host_of("[::1]:5555"), "::1");
        assert_eq!(host_of("127.0.0.1:1"), "127.0.0.1");
    }

    #[test]
    fn missing_parts_are_named() {
        let e = TlsConfig::new()
            .client_config()
            .err()
            .map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("TlsConfig::roots")));
        let e = TlsConfig::new()
            .server_config()
            .err()
            .map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("TlsConfig::server_identity")));
    }

    #[test]
    fn versions_select_protocols() {
        let c = TlsConfig::new().versions(TlsVersion::Tls13, TlsVersion::Tls13);
        assert_eq!(c.protocol_versions().len(), 1);
        let c = TlsConfig::new().versions(TlsVersion::Tls13, TlsVersion::Tls12);
        assert_eq!(c.protocol_versions().len(), 2);
    }
}

//! Shared by the TLS tests: a test PKI made with rcgen at run time, socket
//! builders over `tls+tcp`, and payloads.
#![allow(dead_code)] // each test file uses a different part

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls_pki_types::{CertificateDer, PrivatePkcs8KeyDer};
use sp_core::{Options, Socket, SocketBuilder};
use sp_protocols::{raw, Plain, Rep0, Req0};
use sp_transports::tls::{tls_tcp, Identity, Roots, TlsConfig};

/// Upper bound for any single wait.
pub const WAIT: Duration = Duration::from_secs(10);

/// A certificate and its key, as DER and PEM.
pub struct Leaf {
    pub der: CertificateDer<'static>,
    pub cert_pem: String,
    pub key_pem: String,
    key_der: Vec<u8>,
}

impl Leaf {
    pub fn identity(&self) -> Identity {
        Identity::from_der(
            vec![self.der.clone()],
            PrivatePkcs8KeyDer::from(self.key_der.clone()).into(),
        )
    }
}

/// A CA, a server certificate it signed (for `localhost` and 127.0.0.1,
/// or the names given) and a client certificate it signed.
pub struct Pki {
    pub ca: Leaf,
    pub server: Leaf,
    pub client: Leaf,
}

fn ca(name: &str) -> (rcgen::Certificate, KeyPair, Leaf) {
    let key = KeyPair::generate().expect("ca key");
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::CrlSign,
    ];
    let cert = p.self_signed(&key).expect("ca cert");
    let leaf = Leaf {
        der: cert.der().clone(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        key_der: key.serialize_der(),
    };
    (cert, key, leaf)
}

fn leaf(
    names: &[&str],
    cn: &str,
    eku: ExtendedKeyUsagePurpose,
    issuer: &rcgen::Certificate,
    issuer_key: &KeyPair,
) -> Leaf {
    let key = KeyPair::generate().expect("leaf key");
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let mut p = CertificateParams::new(names).expect("leaf params");
    p.distinguished_name.push(DnType::CommonName, cn);
    p.extended_key_usages = vec![eku];
    let cert = p.signed_by(&key, issuer, issuer_key).expect("leaf cert");
    Leaf {
        der: cert.der().clone(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        key_der: key.serialize_der(),
    }
}

/// A PKI whose server certificate is for `localhost` and 127.0.0.1.
pub fn pki(ca_name: &str) -> Pki {
    pki_for(ca_name, &["localhost", "127.0.0.1"])
}

/// A PKI whose server certificate holds exactly `server_names`.
pub fn pki_for(ca_name: &str, server_names: &[&str]) -> Pki {
    let (ca_cert, ca_key, ca) = ca(ca_name);
    let server = leaf(
        server_names,
        "server",
        ExtendedKeyUsagePurpose::ServerAuth,
        &ca_cert,
        &ca_key,
    );
    let client = leaf(
        &["client.test"],
        "client",
        ExtendedKeyUsagePurpose::ClientAuth,
        &ca_cert,
        &ca_key,
    );
    Pki { ca, server, client }
}

impl Pki {
    pub fn roots(&self) -> Roots {
        Roots::from_der(vec![self.ca.der.clone()])
    }
    /// A listener's config: this PKI's server certificate.
    pub fn server_cfg(&self) -> TlsConfig {
        TlsConfig::new().server_identity(self.server.identity())
    }
    /// A dialer's config: trusts this PKI's CA.
    pub fn client_cfg(&self) -> TlsConfig {
        TlsConfig::new().roots(self.roots())
    }
    /// Writes ca.pem, server.pem, server.key, client.pem, client.key and
    /// server+key.pem (certificate and key in one file) under `dir`.
    pub fn write(&self, dir: &Path) -> PkiFiles {
        std::fs::create_dir_all(dir).expect("mkdir");
        let w = |name: &str, text: &str| {
            let p = dir.join(name);
            std::fs::write(&p, text).expect("write pem");
            p
        };
        PkiFiles {
            ca: w("ca.pem", &self.ca.cert_pem),
            server_cert: w("server.pem", &self.server.cert_pem),
            server_key: w("server.key", &self.server.key_pem),
            server_both: w(
                "server+key.pem",
                &format!("{}{}", self.server.cert_pem, self.server.key_pem),
            ),
            client_cert: w("client.pem", &self.client.cert_pem),
            client_key: w("client.key", &self.client.key_pem),
        }
    }
}

/// Paths of a written PKI.
pub struct PkiFiles {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub server_both: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

/// A fresh temporary directory (removed on drop).
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "sp-tls-{tag}-{}-{}",
            std::process::id(),
            fastrand_suffix()
        ));
        std::fs::create_dir_all(&p).expect("mkdir temp");
        TempDir(p)
    }
}

fn fastrand_suffix() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Large enough for the 1 MiB payloads plus headers.
pub fn opts() -> Options {
    Options::default()
        .recv_max_size(2 << 20)
        .handshake_timeout(Duration::from_secs(5))
}

fn with(b: SocketBuilder, cfg: TlsConfig, o: Options) -> Socket {
    b.transport(Arc::new(tls_tcp(cfg))).options(o).build()
}

pub fn req(cfg: TlsConfig) -> Socket {
    with(SocketBuilder::new(raw::Req0Raw).cooked(Req0), cfg, opts())
}
pub fn rep(cfg: TlsConfig) -> Socket {
    rep_with(cfg, opts())
}
pub fn rep_with(cfg: TlsConfig, o: Options) -> Socket {
    with(SocketBuilder::new(raw::Rep0Raw).cooked(Rep0), cfg, o)
}
pub fn push(cfg: TlsConfig) -> Socket {
    with(
        SocketBuilder::new(raw::Push0Raw).cooked(Plain::PUSH0),
        cfg,
        opts(),
    )
}
pub fn pull(cfg: TlsConfig) -> Socket {
    with(
        SocketBuilder::new(raw::Pull0Raw).cooked(Plain::PULL0),
        cfg,
        opts(),
    )
}

/// The reference payload of the interop peers: byte i is
/// (i*31 + index*7 + 1) & 0xFF.
pub fn payload(size: usize, index: usize) -> Vec<u8> {
    (0..size)
        .map(|i| ((i * 31 + index * 7 + 1) & 0xFF) as u8)
        .collect()
}

/// The port of a bound `scheme://host:port` URL.
pub fn port_of(url: &str) -> u16 {
    url.rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .expect("bound url has a port")
}

//! Shared by the QUIC tests: a test PKI made with rcgen at run time (the
//! same as the TLS tests'), sockets over `quic://`, payloads.
#![allow(dead_code)] // each test file uses a different part

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls_pki_types::{CertificateDer, PrivatePkcs8KeyDer};
use sp_quic::{Quic, QuicConfig};
use sp_transports::tls::{Identity, Roots, TlsConfig};
use spstack::{Options, Socket, SocketBuilder};

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

/// A PKI whose server certificate is for `localhost`, 127.0.0.1 and ::1.
pub fn pki(ca_name: &str) -> Pki {
    pki_for(ca_name, &["localhost", "127.0.0.1", "::1"])
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
            "sp-quic-{tag}-{}-{}",
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

/// Large enough for the 1 MiB payloads plus headers; a short handshake
/// deadline so refused dials end quickly.
pub fn opts() -> Options {
    Options::default()
        .recv_max_size(2 << 20)
        .handshake_timeout(Duration::from_secs(5))
}

/// A config that listens with the PKI's server certificate and dials
/// trusting its CA (by the name `localhost`).
pub fn both(pki: &Pki) -> TlsConfig {
    TlsConfig::new()
        .server_identity(pki.server.identity())
        .roots(pki.roots())
        .server_name("localhost")
}

pub fn quic(tls: TlsConfig) -> Arc<Quic> {
    Arc::new(Quic::new(QuicConfig::new(tls)))
}

/// `b` over quic with `t`, the test options.
pub fn over(b: SocketBuilder, t: &Arc<Quic>) -> Socket {
    b.transport(t.clone()).options(opts()).build()
}

/// Listens on `quic://host:0` and returns the bound URL.
pub async fn listen(s: &Socket, host: &str) -> String {
    let ep = tokio::time::timeout(WAIT, s.listen(&format!("quic://{host}:0")))
        .await
        .expect("listen in time")
        .expect("listen");
    ep.url().to_string()
}

/// Dials and waits until the pipe is open.
pub async fn dial(s: &Socket, url: &str) {
    tokio::time::timeout(WAIT, s.dial(url))
        .await
        .expect("dial in time")
        .expect("dial");
}

/// A dial that must be refused; its error.
pub async fn dial_err(s: &Socket, url: &str) -> spstack::Error {
    match tokio::time::timeout(WAIT, s.dial(url))
        .await
        .expect("dial ends in time")
    {
        Ok(_) => panic!("dial to {url} should have been refused"),
        Err(e) => e,
    }
}

/// Waits (bounded) until `f` holds.
pub async fn until(what: &str, mut f: impl FnMut() -> bool) {
    tokio::time::timeout(WAIT, async {
        while !f() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what}: not within {WAIT:?}"));
}

/// Awaits `f` for at most [`WAIT`].
pub async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: no result within {WAIT:?}"))
}

/// Byte i of payload `index` is (i*31 + index*7 + 1) & 0xFF.
pub fn payload(size: usize, index: usize) -> Vec<u8> {
    (0..size)
        .map(|i| ((i * 31 + index * 7 + 1) & 0xFF) as u8)
        .collect()
}

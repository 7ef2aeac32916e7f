//! A CA and a server certificate it signed, made by rcgen per test, for
//! TLS peers on both sides (wss://, tls+tcp://): our listener or pynng's
//! presents the certificate, the dialers trust the CA and verify
//! [`SERVER_NAME`].
#![allow(dead_code)]

use std::path::PathBuf;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use sp_transports::tls::{Identity, Roots, TlsConfig};

/// The name the server certificate holds and both dialers verify.
pub const SERVER_NAME: &str = "localhost";

/// A CA and a server certificate it signed, as PEM files in a temp dir
/// (removed on drop).
pub struct Pki {
    dir: PathBuf,
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

impl Pki {
    pub fn new(tag: &str) -> Pki {
        let ca_key = KeyPair::generate().expect("ca key");
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name
            .push(DnType::CommonName, "spstack interop CA");
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::CrlSign,
        ];
        let ca = p.self_signed(&ca_key).expect("ca cert");
        let key = KeyPair::generate().expect("server key");
        let mut p = CertificateParams::new(vec![SERVER_NAME.to_string(), "127.0.0.1".to_string()])
            .expect("server params");
        p.distinguished_name.push(DnType::CommonName, SERVER_NAME);
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = p.signed_by(&key, &ca, &ca_key).expect("server cert");
        let dir = std::env::temp_dir().join(format!("spstack-wss-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let pki = Pki {
            dir,
            ca_pem: ca.pem(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        };
        std::fs::write(pki.ca_file(), &pki.ca_pem).expect("write ca.pem");
        std::fs::write(
            pki.cert_key_file(),
            format!("{}{}", pki.cert_pem, pki.key_pem),
        )
        .expect("write server+key.pem");
        pki
    }
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
    pub fn cert_key_file(&self) -> PathBuf {
        self.dir.join("server+key.pem")
    }
    /// spstack's TLS settings: the server certificate when listening, the
    /// CA and [`SERVER_NAME`] when dialing.
    pub fn ours(&self, listens: bool) -> TlsConfig {
        if listens {
            TlsConfig::new().server_identity(
                Identity::from_pem(self.cert_pem.as_bytes(), self.key_pem.as_bytes())
                    .expect("identity"),
            )
        } else {
            TlsConfig::new()
                .roots(Roots::from_pem(self.ca_pem.as_bytes()).expect("roots"))
                .server_name(SERVER_NAME)
        }
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

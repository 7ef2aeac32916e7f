//! spcat over `quic://` with nngcat's TLS flags (`--cert`/`-E`, `--key`,
//! `--cacert`, `--insecure`/`-k`), spcat to spcat, with certificates made
//! by rcgen at test time. Every child process is killed after a time limit.
//! (nngcat has no QUIC transport to test against.)

use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

mod common;

use common::{finish, listening, Out, SPCAT};

fn run(prog: &str, args: &[&str]) -> Out {
    common::run(prog, args, Duration::from_secs(10))
}

/// PEM files of a test PKI: a CA, and a server certificate for
/// `localhost` only (so dialing 127.0.0.1 is a name mismatch).
struct Pki {
    dir: PathBuf,
    ca: String,
    cert: String,
    key: String,
    both: String,
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn pki(tag: &str) -> Pki {
    let dir = std::env::temp_dir().join(format!("spcat-quic-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let ca_key = KeyPair::generate().expect("key");
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name
        .push(DnType::CommonName, "spcat test CA");
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = p.self_signed(&ca_key).expect("ca");
    let key = KeyPair::generate().expect("key");
    let mut p = CertificateParams::new(vec!["localhost".to_string()]).expect("params");
    p.distinguished_name.push(DnType::CommonName, "localhost");
    p.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let cert = p.signed_by(&key, &ca, &ca_key).expect("cert");
    let w = |name: &str, text: &str| -> String {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write");
        path_str(&path)
    };
    Pki {
        ca: w("ca.pem", &ca.pem()),
        cert: w("cert.pem", &cert.pem()),
        key: w("key.pem", &key.serialize_pem()),
        both: w(
            "both.pem",
            &format!("{}{}", cert.pem(), key.serialize_pem()),
        ),
        dir,
    }
}

fn path_str(p: &Path) -> String {
    p.to_str().expect("utf-8 temp path").to_string()
}

/// `url` with `localhost` for 127.0.0.1: the name the certificate holds.
fn by_name(url: &str) -> String {
    url.replacen("127.0.0.1", "localhost", 1)
}

/// A REP spcat answering "pong" once over quic and a REQ spcat sending
/// "ping": both see the other's message.
fn req_rep(server: &[&str], client: &[&str]) {
    let mut sa = vec![
        "--rep0",
        "--listen",
        "quic://127.0.0.1:0",
        "-v",
        "-D",
        "pong",
        "-Q",
        "-C",
        "1",
    ];
    sa.extend_from_slice(server);
    let (srv, url) = listening(SPCAT, &sa);
    let dial = by_name(&url);
    let mut ca = vec!["--req0", "--dial", &dial, "-D", "ping", "-Q", "-C", "1"];
    ca.extend_from_slice(client);
    let o = run(SPCAT, &ca);
    let r = finish(srv, Duration::from_secs(5));
    assert_eq!(o.code, Some(0), "client: {}", o.stderr);
    assert_eq!(o.stdout, b"\"pong\"\n", "client");
    assert_eq!(r.code, Some(0), "server: {}", r.stderr);
    assert_eq!(
        String::from_utf8_lossy(&r.stdout),
        format!("Listening at: {url}\n\"ping\"\n"),
    );
}

#[test]
fn spcat_to_spcat_over_quic() {
    let p = pki("s2s");
    req_rep(&["--cert", &p.cert, "--key", &p.key], &["--cacert", &p.ca]);
    // certificate and key in one file, -E alias; the dialer skips checks
    req_rep(&["-E", &p.both], &["-k"]);
}

#[test]
fn push_pull_over_quic_with_verbose_listen_url() {
    let p = pki("pp");
    let (pull, url) = listening(
        SPCAT,
        &[
            "--pull0",
            "--listen",
            "quic://127.0.0.1:0",
            "--cert",
            &p.both,
            "-Q",
            "-C",
            "1",
            "-v",
        ],
    );
    let port = url
        .strip_prefix("quic://127.0.0.1:")
        .unwrap_or_else(|| panic!("{url}"));
    assert!(
        port.parse::<u16>().is_ok_and(|p| p != 0),
        "port 0 resolved: {url}"
    );
    let dial = by_name(&url);
    let o = run(
        SPCAT,
        &[
            "--push0",
            "--dial",
            &dial,
            "--cacert",
            &p.ca,
            "-D",
            "over quic",
            "-C",
            "1",
        ],
    );
    let r = finish(pull, Duration::from_secs(5));
    assert_eq!(o.code, Some(0), "push: {}", o.stderr);
    assert_eq!(r.code, Some(0), "pull: {}", r.stderr);
    assert_eq!(
        String::from_utf8_lossy(&r.stdout),
        format!("Listening at: {url}\n\"over quic\"\n")
    );
}

#[test]
fn quic_errors_say_what_to_do() {
    let p = pki("err");
    let (srv, listen) = listening(
        SPCAT,
        &[
            "--rep0",
            "--listen",
            "quic://127.0.0.1:0",
            "-v",
            "--cert",
            &p.both,
            "-D",
            "x",
        ],
    );
    // no CA and no --insecure
    let url = by_name(&listen);
    let o = run(SPCAT, &["--req0", "--dial", &url, "-D", "x"]);
    assert_eq!(o.code, Some(1));
    assert!(
        o.stderr.starts_with(&format!("Unable to dial on {url}:")) && o.stderr.contains("--cacert"),
        "{}",
        o.stderr
    );
    // the certificate names localhost, not 127.0.0.1
    let o = run(
        SPCAT,
        &["--req0", "--dial", &listen, "-D", "x", "--cacert", &p.ca],
    );
    assert_eq!(o.code, Some(1));
    assert!(
        o.stderr.contains("Peer could not be authenticated")
            && o.stderr.contains("not valid for name"),
        "{}",
        o.stderr
    );
    let _ = finish(srv, Duration::from_millis(100));
    // a listener without a certificate
    let o = run(SPCAT, &["--rep0", "--listen", "quic://127.0.0.1:0"]);
    assert_eq!(o.code, Some(1));
    assert!(o.stderr.contains("--cert"), "{}", o.stderr);
}

//! spcat over `tls+tcp://` with nngcat's TLS flags (`--cert`/`-E`, `--key`,
//! `--cacert`, `--insecure`/`-k`): spcat to spcat, and both directions
//! against nngcat 1.5 itself (nng's TLS over mbedTLS), with certificates made
//! by rcgen at test time. Every child process is killed after a time limit.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

mod common;

use common::{finish, free_port, spawn, Out, SPCAT};

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
    let dir = std::env::temp_dir().join(format!("spcat-tls-{tag}-{}", std::process::id()));
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

/// Waits until something accepts TCP connections on `port`.
fn wait_listening(port: u16) {
    let end = Instant::now() + Duration::from_secs(5);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < end, "nothing listens on {port}");
        thread::sleep(Duration::from_millis(20));
    }
}

fn require_nngcat() {
    let ok = Command::new("nngcat")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    assert!(
        ok,
        "nngcat is missing: install nng 1.5's nngcat (built with TLS)"
    );
}

/// A REP server (`prog`) answering "pong" once, and a REQ client (`prog`)
/// sending "ping": both must see the other's message.
fn req_rep(server: (&str, &[&str]), client: (&str, &[&str]), port: u16) {
    let listen = format!("tls+tcp://127.0.0.1:{port}");
    let dial = format!("tls+tcp://localhost:{port}");
    let mut sa = vec!["--rep0", "--listen", &listen, "-D", "pong", "-Q", "-C", "1"];
    sa.extend_from_slice(server.1);
    let srv = spawn(server.0, &sa);
    wait_listening(port);
    let mut ca = vec!["--req0", "--dial", &dial, "-D", "ping", "-Q", "-C", "1"];
    ca.extend_from_slice(client.1);
    let o = run(client.0, &ca);
    let r = finish(srv, Duration::from_secs(5));
    assert_eq!(o.code, Some(0), "{} client: {}", client.0, o.stderr);
    assert_eq!(o.stdout, b"\"pong\"\n", "{} client", client.0);
    assert_eq!(r.code, Some(0), "{} server: {}", server.0, r.stderr);
    assert_eq!(r.stdout, b"\"ping\"\n", "{} server", server.0);
}

#[test]
fn spcat_to_spcat_over_tls() {
    let p = pki("s2s");
    req_rep(
        (SPCAT, &["--cert", &p.cert, "--key", &p.key]),
        (SPCAT, &["--cacert", &p.ca]),
        free_port(),
    );
    // certificate and key in one file, -E alias; the dialer skips checks
    req_rep((SPCAT, &["-E", &p.both]), (SPCAT, &["-k"]), free_port());
}

#[test]
fn spcat_and_nngcat_over_tls_both_ways() {
    require_nngcat();
    let p = pki("nng");
    req_rep(
        ("nngcat", &["--cert", &p.cert, "--key", &p.key]),
        (SPCAT, &["--cacert", &p.ca]),
        free_port(),
    );
    // nngcat dials spcat: PUSH, since nngcat 1.5's REQ intermittently
    // fails with "Cannot set recv timeout" before sending anything
    let port = free_port();
    let listen = format!("tls+tcp://127.0.0.1:{port}");
    let pull = spawn(
        SPCAT,
        &[
            "--pull0", "--listen", &listen, "--cert", &p.cert, "--key", &p.key, "-Q", "-C", "1",
        ],
    );
    wait_listening(port);
    let dial = format!("tls+tcp://localhost:{port}");
    let o = run(
        "nngcat",
        &[
            "--push0",
            "--dial",
            &dial,
            "--cacert",
            &p.ca,
            "-D",
            "from nngcat",
            "-C",
            "1",
        ],
    );
    let r = finish(pull, Duration::from_secs(5));
    assert_eq!(o.code, Some(0), "nngcat push: {}", o.stderr);
    assert_eq!(r.code, Some(0), "spcat pull: {}", r.stderr);
    assert_eq!(r.stdout, b"\"from nngcat\"\n");
}

#[test]
fn push_pull_over_tls_with_verbose_listen_url() {
    let p = pki("pp");
    let port = free_port();
    let listen = format!("tls+tcp://127.0.0.1:{port}");
    let pull = spawn(
        SPCAT,
        &[
            "--pull0", "--listen", &listen, "--cert", &p.both, "-Q", "-C", "1", "-v",
        ],
    );
    wait_listening(port);
    let dial = format!("tls+tcp://localhost:{port}");
    let o = run(
        SPCAT,
        &[
            "--push0", "--dial", &dial, "--cacert", &p.ca, "-D", "over tls", "-C", "1",
        ],
    );
    let r = finish(pull, Duration::from_secs(5));
    assert_eq!(o.code, Some(0), "push: {}", o.stderr);
    assert_eq!(r.code, Some(0), "pull: {}", r.stderr);
    assert_eq!(
        String::from_utf8_lossy(&r.stdout),
        format!("Listening at: {listen}\n\"over tls\"\n")
    );
}

#[test]
fn tls_errors_say_what_to_do() {
    let p = pki("err");
    let port = free_port();
    let listen = format!("tls+tcp://127.0.0.1:{port}");
    let srv = spawn(
        SPCAT,
        &["--rep0", "--listen", &listen, "--cert", &p.both, "-D", "x"],
    );
    wait_listening(port);
    // no CA and no --insecure
    let url = format!("tls+tcp://localhost:{port}");
    let o = run(SPCAT, &["--req0", "--dial", &url, "-D", "x"]);
    assert_eq!(o.code, Some(1));
    assert!(
        o.stderr.starts_with(&format!("Unable to dial on {url}:")) && o.stderr.contains("--cacert"),
        "{}",
        o.stderr
    );
    // the certificate names localhost, not 127.0.0.1
    let url = format!("tls+tcp://127.0.0.1:{port}");
    let o = run(
        SPCAT,
        &["--req0", "--dial", &url, "-D", "x", "--cacert", &p.ca],
    );
    assert_eq!(o.code, Some(1));
    assert!(
        o.stderr.contains("not valid for name 127.0.0.1"),
        "{}",
        o.stderr
    );
    let _ = finish(srv, Duration::from_millis(100));
    // a listener without a certificate
    let o = run(SPCAT, &["--rep0", "--listen", "tls+tcp://127.0.0.1:0"]);
    assert_eq!(o.code, Some(1));
    assert!(o.stderr.contains("--cert"), "{}", o.stderr);
    // --key alone
    let o = run(
        SPCAT,
        &[
            "--rep0",
            "--listen",
            "tls+tcp://127.0.0.1:0",
            "--key",
            &p.key,
        ],
    );
    assert_eq!(o.code, Some(1));
    assert!(
        o.stderr
            .starts_with("Unable to configure TLS: --key given without --cert"),
        "{}",
        o.stderr
    );
}

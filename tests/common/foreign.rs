//! The foreign peers of the interop suites: pynng (`tests/interop/peer.py`)
//! and nanocat (`tests/interop/nano.py`), started as child processes that
//! follow the payload convention of `tests/interop/README.md`. A missing
//! pynng or nanocat fails the test with the command that installs it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use spstack::{Options, Socket};
use tokio::process::Command;
use tokio::time::{sleep, timeout};

/// How long one step (a send, a receive, a peer becoming ready) may take.
pub const STEP: Duration = Duration::from_secs(30);

/// Message `index` of a sequence; its answer is `payload(size, index + 1000)`.
pub fn payload(size: usize, index: usize) -> Vec<u8> {
    (0..size)
        .map(|i| ((i * 31 + index * 7 + 1) & 0xff) as u8)
        .collect()
}

/// Which real library plays the peer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Peer {
    /// pynng 0.9 (nng).
    Nng,
    /// nanocat (nanomsg 1.1.5).
    Nano,
}

/// The transports the libraries share with us (nanomsg: not wss, not
/// tls+tcp).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Tr {
    Tcp,
    Ipc,
    /// WebSocket on path [`WS_PATH`].
    Ws,
    /// WebSocket over TLS on path [`WS_PATH`].
    Wss,
    /// nng's TLS mapping: SP/TCP inside TLS.
    TlsTcp,
}

/// The path of [`Tr::Ws`] and [`Tr::Wss`] URLs.
pub const WS_PATH: &str = "/sp";

/// An address to listen on: port 0 on 127.0.0.1 (tcp, ws, wss), which
/// the listener replaces with a port it bound, or an ipc path named by
/// `tag`. The peer is handed the URL the listener reports:
/// [`listen`] for ours, [`Child::url`] for a foreign one.
pub fn url(tr: Tr, tag: &str) -> String {
    match tr {
        Tr::Tcp => "tcp://127.0.0.1:0".to_string(),
        Tr::Ws => format!("ws://127.0.0.1:0{WS_PATH}"),
        Tr::Wss => format!("wss://127.0.0.1:0{WS_PATH}"),
        Tr::TlsTcp => "tls+tcp://127.0.0.1:0".to_string(),
        Tr::Ipc => format!(
            "ipc:///tmp/spstack-interop-{}-{tag}.ipc",
            std::process::id()
        ),
    }
}

/// Listens on `url` (within [`STEP`]) and returns the URL to dial: with
/// port 0 resolved to the port the socket bound.
pub async fn listen(s: &Socket, url: &str) -> String {
    within(&format!("listen on {url}"), s.listen(url))
        .await
        .url()
        .to_string()
}

/// Fails the test with an install hint unless `peer`'s tool is installed.
pub fn preflight(peer: Peer) {
    static NNG: OnceLock<bool> = OnceLock::new();
    static NANO: OnceLock<bool> = OnceLock::new();
    match peer {
        Peer::Nng => assert!(
            *NNG.get_or_init(|| std::process::Command::new("python3")
                .args(["-c", "import pynng"])
                .output()
                .is_ok_and(|o| o.status.success())),
            "pynng is missing: run `python3 -m pip install pynng==0.9.0` for the nng interop tests"
        ),
        Peer::Nano => assert!(
            *NANO.get_or_init(|| std::process::Command::new("which")
                .arg("nanocat")
                .output()
                .is_ok_and(|o| o.status.success())),
            "nanocat is missing: run `apt-get install nanomsg-utils` for the nanomsg interop tests"
        ),
    }
}

/// The foreign peer's side of a TLS connection (pynng only): the listener
/// presents `cert_key`; the dialer trusts `ca` and verifies `server_name`.
pub struct PeerTls<'a> {
    /// Certificate and key in one PEM file.
    pub cert_key: &'a Path,
    /// The CA's certificate, PEM.
    pub ca: &'a Path,
    /// The name the listener's certificate must hold.
    pub server_name: &'a str,
}

/// Options for our side: room for 1 MiB plus headers, quick redials (nanocat
/// starts one process per message).
pub fn opts() -> Options {
    Options::default()
        .recv_max_size(2 << 20)
        .reconnect_min(Duration::from_millis(20))
        .reconnect_max(Duration::from_millis(200))
}

/// Awaits `f` within [`STEP`], panicking with `what` otherwise.
pub async fn within<T>(what: &str, f: impl std::future::Future<Output = spstack::Result<T>>) -> T {
    timeout(STEP, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: timed out"))
        .unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// A running foreign peer.
pub struct Child {
    child: tokio::process::Child,
    what: String,
    url: String,
}

/// Starts a foreign peer for `sizes`; in listen mode waits until it is
/// bound and learns where ([`Child::url`]: pynng binds port 0 and reports
/// the port; nano.py picks one for nanocat, and another when it was taken).
pub async fn foreign(peer: Peer, proto: &str, mode: &str, url: &str, sizes: &[usize]) -> Child {
    foreign_tls(peer, proto, mode, url, sizes, None).await
}

/// [`foreign`], with TLS settings for a `wss://` (or `tls+tcp://`) peer.
pub async fn foreign_tls(
    peer: Peer,
    proto: &str,
    mode: &str,
    url: &str,
    sizes: &[usize],
    tls: Option<&PeerTls<'_>>,
) -> Child {
    preflight(peer);
    // many peers start from one URL (port 0): a number keeps their files apart
    static N: AtomicUsize = AtomicUsize::new(0);
    let tag = format!(
        "{}-{proto}-{mode}-{}",
        url.replace(['/', ':', '.'], "_"),
        N.fetch_add(1, Ordering::Relaxed)
    );
    let ready = std::env::temp_dir().join(format!("spstack-ready-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_file(&ready);
    let sizes_arg = sizes
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/interop")
        .join(match peer {
            Peer::Nng => "peer.py",
            Peer::Nano => "nano.py",
        });
    let mut cmd = Command::new("python3");
    cmd.arg(script)
        .args(["--proto", proto, "--mode", mode, "--url", url])
        .args(["--sizes", &sizes_arg, "--timeout", "20"])
        .arg("--ready-file")
        .arg(&ready)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if peer == Peer::Nano {
        cmd.args(["--send-delay", "0.3", "--linger", "0.3"]);
    }
    if let Some(t) = tls {
        assert!(peer == Peer::Nng, "only the pynng peer speaks TLS");
        cmd.arg("--tls-cert-key")
            .arg(t.cert_key)
            .arg("--tls-ca")
            .arg(t.ca)
            .args(["--tls-server-name", t.server_name]);
    }
    let what = format!("{peer:?} {proto} {mode} {url}");
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run python3 for {what}: {e}"));
    let mut url = url.to_string();
    if mode == "listen" {
        let t0 = Instant::now();
        while !ready.exists() {
            if let Ok(Some(_)) = child.try_wait() {
                let out = child.wait_with_output().await.unwrap();
                panic!(
                    "{what}: exited before it was ready ({:?})\nstderr: {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            assert!(t0.elapsed() < STEP, "{what}: never became ready");
            sleep(Duration::from_millis(20)).await;
        }
        // the ready file holds the URL the peer listens on (README: Readiness)
        let text = std::fs::read_to_string(&ready)
            .unwrap_or_else(|e| panic!("{what}: read {}: {e}", ready.display()));
        url = text.trim().to_string();
        assert!(
            url.contains("://") && !url.contains(":0/") && !url.ends_with(":0"),
            "{what}: the ready file names no bound URL: {text:?}"
        );
        let _ = std::fs::remove_file(&ready);
    }
    let what = format!("{peer:?} {proto} {mode} {url}");
    Child { child, what, url }
}

impl Child {
    /// Where the peer listens (port resolved), or what it dials.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Waits for the peer; panics unless it checked everything and said OK.
    /// Returns false when nano.py says nanomsg cannot do this (exit 3).
    pub async fn finish(self) -> bool {
        self.finish_or_unsupported().await.is_ok()
    }

    /// [`Child::finish`], with nano.py's reason when nanomsg cannot do this.
    pub async fn finish_or_unsupported(self) -> Result<(), String> {
        let what = self.what.clone();
        let out = timeout(Duration::from_secs(60), self.child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("{what}: peer did not exit"))
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.code() == Some(3) {
            eprintln!("{what}: unsupported by nanomsg: {stderr}");
            return Err(stderr.trim().to_string());
        }
        assert!(
            out.status.success() && stdout.contains("OK"),
            "{what}: peer failed ({:?})\nstdout: {stdout}\nstderr: {stderr}",
            out.status
        );
        Ok(())
    }
}

//! The foreign peers of the interop suite: pynng (`tests/interop/peer.py`)
//! and nanocat (`tests/interop/nano.py`, which also checks ws:// ports),
//! started as child processes; copied from the root crate's harness.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use tokio::process::Command;
use tokio::time::{sleep, timeout};

/// How long one step (a send, a receive, a peer becoming ready) may take.
pub const STEP: Duration = Duration::from_secs(30);

static PORT: AtomicU16 = AtomicU16::new(0);

/// A free port on 127.0.0.1 (a different range from the root suites).
pub fn free_port() -> u16 {
    if PORT.load(Ordering::Relaxed) == 0 {
        let base = 31000 + (std::process::id() % 20000) as u16;
        let _ = PORT.compare_exchange(0, base, Ordering::Relaxed, Ordering::Relaxed);
    }
    loop {
        let p = PORT.fetch_add(1, Ordering::Relaxed);
        if std::net::TcpListener::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
}

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

/// Options for our side: room for 1 MiB plus headers, quick redials (nanocat
/// starts one process per message).
pub fn opts() -> sp_core::Options {
    sp_core::Options::default()
        .recv_max_size(2 << 20)
        .reconnect_min(Duration::from_millis(20))
        .reconnect_max(Duration::from_millis(200))
}

/// Awaits `f` within [`STEP`], panicking with `what` otherwise.
pub async fn within<T>(what: &str, f: impl std::future::Future<Output = sp_core::Result<T>>) -> T {
    timeout(STEP, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: timed out"))
        .unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// A running foreign peer.
pub struct Child {
    child: tokio::process::Child,
    what: String,
}

/// Starts a foreign peer for `sizes`; in listen mode waits until it is bound.
pub async fn foreign(peer: Peer, proto: &str, mode: &str, url: &str, sizes: &[usize]) -> Child {
    let tag = format!("{}-{proto}-{mode}", url.replace(['/', ':', '.'], "_"));
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
    let what = format!("{peer:?} {proto} {mode} {url}");
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run python3 for {what}: {e}"));
    if mode == "listen" {
        let t0 = Instant::now();
        while !ready.exists() {
            assert!(t0.elapsed() < STEP, "{what}: never became ready");
            sleep(Duration::from_millis(20)).await;
        }
    }
    Child { child, what }
}

impl Child {
    /// Waits for the peer; panics unless it checked everything and said OK.
    /// Returns false when nano.py says nanomsg cannot do this (exit 3).
    pub async fn finish(self) -> bool {
        let what = self.what.clone();
        let out = timeout(Duration::from_secs(60), self.child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("{what}: peer did not exit"))
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.code() == Some(3) {
            eprintln!("{what}: unsupported by nanomsg: {stderr}");
            return false;
        }
        assert!(
            out.status.success() && stdout.contains("OK"),
            "{what}: peer failed ({:?})\nstdout: {stdout}\nstderr: {stderr}",
            out.status
        );
        true
    }
}

//! Interop with an independent Noise implementation: `noise_peer.py` runs
//! the Python `noiseprotocol` package (not snow) with the same prologue and
//! record format and talks to a spstack PAIR0 socket over TCP, as initiator
//! (Python dials) and as responder (spstack dials). Messages of up to 300
//! KiB go both ways, with both sides rekeying.
//!
//! Requires `pip install noiseprotocol==0.3.1`; without it the tests FAIL
//! with that instruction. Child processes are killed at `WAIT`.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use sp_core::{Message, Options, Socket, SocketBuilder};
use sp_crypto::noise::{self, NoiseConfig, StaticKeypair};
use sp_protocols::{raw, Plain};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(30);

fn script() -> String {
    format!("{}/tests/noise_peer.py", env!("CARGO_MANIFEST_DIR"))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Fails the test, with the fix, when the Python package is missing.
fn require_noiseprotocol() {
    let ok = std::process::Command::new("python3")
        .args(["-c", "import noise.connection"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "the Python package noiseprotocol is not installed (or python3 is missing): run `pip install noiseprotocol==0.3.1`"
    );
}

fn socket(cfg: NoiseConfig) -> Socket {
    SocketBuilder::new(raw::Pair0Raw)
        .cooked(Plain::PAIR0)
        .transport(Arc::new(sp_transports::Tcp))
        .pipe_layer(noise::layer(cfg.rekey_after_messages(3)))
        .options(Options::default().recv_max_size(4 << 20))
        .build()
}

fn peer(mode: &[&str], py: &StaticKeypair, rust_pub: [u8; 32]) -> Child {
    Command::new("python3")
        .arg(script())
        .args(mode)
        .args(["--priv", &hex(py.secret_bytes())])
        .args(["--peer-pub", &hex(&rust_pub)])
        .args(["--rekey", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start python3 noise_peer.py")
}

fn payload(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(13).wrapping_add(seed) ^ (i >> 8) as u8)
        .collect()
}

/// Sends messages of chunk-boundary and 100 KiB+ sizes; the peer answers
/// each XORed with 0x5A, which only a correct decrypt-then-encrypt can do.
async fn exchange(s: &Socket, py: &StaticKeypair) {
    for (i, n) in [0usize, 1, 65514, 65515, 65519, 65520, 150 << 10, 300 << 10]
        .into_iter()
        .enumerate()
    {
        let body = payload(n, i as u8);
        timeout(WAIT, s.send(body.clone()))
            .await
            .expect("send timed out")
            .expect("send");
        let reply: Message = timeout(WAIT, s.recv())
            .await
            .expect("no reply from the Python peer")
            .expect("recv");
        let want: Vec<u8> = body.iter().map(|b| b ^ 0x5A).collect();
        assert_eq!(reply.body().len(), n, "reply to {n} bytes");
        assert!(reply.body() == &want[..], "reply to {n} bytes differs");
    }
    let pipe = s.pipes()[0];
    let info = s.pipe_info(pipe).expect("pipe info");
    assert_eq!(
        info.peer_identity.as_deref(),
        Some(&py.public().as_bytes()[..])
    );
    timeout(WAIT, s.send("bye"))
        .await
        .expect("send timed out")
        .expect("send");
    let ack = timeout(WAIT, s.recv())
        .await
        .expect("no ack")
        .expect("recv");
    assert_eq!(ack.body(), b"bye-ack");
}

async fn finish(mut child: Child) {
    let status = timeout(WAIT, child.wait())
        .await
        .expect("the Python peer did not exit")
        .expect("wait");
    assert!(status.success(), "the Python peer failed: {status}");
}

#[tokio::test]
async fn python_initiator_dials_spstack() {
    require_noiseprotocol();
    let (rk, pk) = (StaticKeypair::generate(), StaticKeypair::generate());
    let rust_pub = rk.public();
    let s = socket(NoiseConfig::new(rk).allow(pk.public()));
    let ep = s.listen("tcp://127.0.0.1:0").await.expect("listen");
    let addr = ep.url().trim_start_matches("tcp://").to_string();
    let child = peer(&["dial", &addr], &pk, rust_pub.to_bytes());
    exchange(&s, &pk).await;
    finish(child).await;
}

#[tokio::test]
async fn spstack_dials_python_responder() {
    require_noiseprotocol();
    let (rk, pk) = (StaticKeypair::generate(), StaticKeypair::generate());
    let rust_pub = rk.public();
    let mut child = peer(&["listen"], &pk, rust_pub.to_bytes());
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let line = timeout(WAIT, lines.next_line())
        .await
        .expect("the Python peer did not report its port")
        .expect("read")
        .expect("a PORT line");
    let port = line
        .strip_prefix("PORT ")
        .expect("PORT <n>")
        .trim()
        .to_string();
    let s = socket(NoiseConfig::new(rk).allow(pk.public()));
    timeout(WAIT, s.dial(&format!("tcp://127.0.0.1:{port}")))
        .await
        .expect("dial timed out")
        .expect("dial");
    exchange(&s, &pk).await;
    // keep reading stdout so the child never blocks on a full pipe
    let _ = timeout(WAIT, lines.next_line()).await;
    finish(child).await;
}

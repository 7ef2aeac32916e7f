//! `tls+tcp://` against nng itself (pynng 0.9.0, nng 1.x with mbedTLS), both
//! directions: the wire is nng's TLS mapping byte for byte, certificates
//! made by rcgen verify on both stacks, and nng's client certificate reaches
//! our `peer_identity`. Payloads of 1 B, 64 KiB and 1 MiB are checked byte by
//! byte on both sides (tests/tls_peer.py checks its half).
//!
//! Fails (does not skip) when pynng is missing.

mod tls_common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use sp_core::{Error, Socket};
use tls_common::*;
use tokio::process::{Child, Command};
use tokio::time::{sleep, timeout};

const SIZES: &[usize] = &[1, 65_536, 1 << 20];

fn require_pynng() {
    let out = std::process::Command::new("python3")
        .args(["-c", "import pynng; print(pynng.__version__)"])
        .output();
    match out {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "pynng is not importable ({}); pip install pynng==0.9.0",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => panic!("cannot run python3 ({e}); install it, then pip install pynng==0.9.0"),
    }
}

fn sizes_arg() -> String {
    SIZES
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

struct Peer {
    child: Child,
    what: String,
    /// Where it listens (the port it bound for port 0), or what it dials.
    url: String,
}

/// Starts tls_peer.py; in listen mode waits until it is bound and reads
/// the URL it listens on from the ready file.
async fn peer(proto: &str, mode: &str, url: &str, dir: &Path, extra: &[&str]) -> Peer {
    require_pynng();
    let ready = dir.join(format!("ready-{proto}-{mode}"));
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/tls_peer.py");
    let child = Command::new("python3")
        .arg(script)
        .args(["--proto", proto, "--mode", mode, "--url", url])
        .args(["--sizes", &sizes_arg(), "--timeout", "20"])
        .arg("--ready-file")
        .arg(&ready)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run python3 tests/tls_peer.py");
    let what = format!("pynng {proto} {mode} {url}");
    let t0 = Instant::now();
    let mut url = url.to_string();
    if mode == "listen" {
        while !ready.exists() {
            assert!(t0.elapsed() < WAIT, "{what}: never became ready");
            sleep(Duration::from_millis(20)).await;
        }
        url = std::fs::read_to_string(&ready)
            .unwrap_or_else(|e| panic!("{what}: read the ready file: {e}"))
            .trim()
            .to_string();
        assert!(port_of(&url) != 0, "{what}: listens on {url}");
    }
    Peer { child, what, url }
}

impl Peer {
    /// Our side failed: stop the peer and panic with its output too.
    async fn abort(mut self, why: String) -> ! {
        let _ = self.child.start_kill();
        let out = timeout(WAIT, self.child.wait_with_output()).await;
        let (o, e) = match out {
            Ok(Ok(o)) => (
                String::from_utf8_lossy(&o.stdout).into_owned(),
                String::from_utf8_lossy(&o.stderr).into_owned(),
            ),
            _ => (String::new(), String::new()),
        };
        panic!("{}: {why}\npeer stdout: {o}\npeer stderr: {e}", self.what);
    }
    /// Waits for the peer; panics unless it checked everything and said OK.
    async fn finish(self) {
        let what = self.what;
        let out = timeout(Duration::from_secs(60), self.child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("{what}: peer did not exit"))
            .expect("peer output");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stdout.contains(&format!("OK {} messages", SIZES.len())),
            "{what}: peer failed ({:?})\nstdout: {stdout}\nstderr: {stderr}",
            out.status
        );
    }
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

async fn run_req(client: &Socket) {
    timeout(Duration::from_secs(30), async {
        for (i, &size) in SIZES.iter().enumerate() {
            client.send(payload(size, i)).await?;
            let r = client.recv().await?;
            assert_eq!(
                r.body(),
                &payload(size, i + 1000)[..],
                "reply {i} of {size} bytes"
            );
        }
        Ok::<_, Error>(())
    })
    .await
    .expect("requests in time")
    .expect("requests");
}

#[tokio::test]
async fn our_req_dials_pynng_rep() {
    let pki = pki("interop-a");
    let dir = TempDir::new("interop-a");
    let f = pki.write(&dir.0);
    let p = peer(
        "rep0",
        "listen",
        "tls+tcp://127.0.0.1:0",
        &dir.0,
        &["--cert-key", s(&f.server_both)],
    )
    .await;
    let port = port_of(&p.url);
    let client = req(pki.client_cfg());
    timeout(WAIT, client.dial(&format!("tls+tcp://localhost:{port}")))
        .await
        .expect("dial in time")
        .expect("dial nng's TLS listener");
    let pipes = client.pipes();
    let info = client.pipe_info(pipes[0]).expect("info");
    assert_eq!(info.transport, "tls+tcp");
    assert_eq!(info.peer_identity.as_deref(), Some(pki.server.der.as_ref()));
    run_req(&client).await;
    client.close();
    p.finish().await;
}

#[tokio::test]
async fn pynng_req_with_client_cert_dials_our_rep() {
    let pki = pki("interop-b");
    let dir = TempDir::new("interop-b");
    let f = pki.write(&dir.0);
    let client_both = dir.0.join("client+key.pem");
    std::fs::write(
        &client_both,
        format!("{}{}", pki.client.cert_pem, pki.client.key_pem),
    )
    .expect("write client pem");
    let server = rep(pki.server_cfg().require_client_cert(pki.roots()));
    let ep = server
        .listen("tls+tcp://127.0.0.1:0")
        .await
        .expect("listen");
    let port = port_of(ep.url());
    let p = peer(
        "req0",
        "dial",
        &format!("tls+tcp://localhost:{port}"),
        &dir.0,
        &[
            "--ca",
            s(&f.ca),
            "--server-name",
            "localhost",
            "--cert-key",
            s(&client_both),
        ],
    )
    .await;
    timeout(Duration::from_secs(30), async {
        for (i, &size) in SIZES.iter().enumerate() {
            let m = server.recv().await?;
            assert_eq!(
                m.body(),
                &payload(size, i)[..],
                "request {i} of {size} bytes"
            );
            server.send(payload(size, i + 1000)).await?;
        }
        Ok::<_, Error>(())
    })
    .await
    .expect("requests in time")
    .expect("requests");
    let pipes = server.pipes();
    assert_eq!(pipes.len(), 1);
    let info = server.pipe_info(pipes[0]).expect("info");
    assert_eq!(
        info.peer_identity.as_deref(),
        Some(pki.client.der.as_ref()),
        "nng's client certificate is the pipe's identity"
    );
    p.finish().await;
}

#[tokio::test]
async fn our_push_dials_pynng_pull() {
    let pki = pki("interop-c");
    let dir = TempDir::new("interop-c");
    let f = pki.write(&dir.0);
    let p = peer(
        "pull0",
        "listen",
        "tls+tcp://127.0.0.1:0",
        &dir.0,
        &["--cert-key", s(&f.server_both)],
    )
    .await;
    let pusher = push(pki.client_cfg());
    timeout(WAIT, pusher.dial(&p.url))
        .await
        .expect("dial in time")
        .expect("dial");
    timeout(Duration::from_secs(30), async {
        for (i, &size) in SIZES.iter().enumerate() {
            pusher.send(payload(size, i)).await?;
        }
        Ok::<_, Error>(())
    })
    .await
    .expect("sends in time")
    .expect("sends");
    // pynng exits after checking all; keep our socket open until then
    p.finish().await;
    pusher.close();
}

#[tokio::test]
async fn pynng_push_dials_our_pull() {
    let pki = pki("interop-d");
    let dir = TempDir::new("interop-d");
    let f = pki.write(&dir.0);
    let puller = pull(pki.server_cfg());
    let ep = puller
        .listen("tls+tcp://127.0.0.1:0")
        .await
        .expect("listen");
    let port = port_of(ep.url());
    let p = peer(
        "push0",
        "dial",
        &format!("tls+tcp://localhost:{port}"),
        &dir.0,
        // a TLS config set on an nng socket replaces the endpoint's own, so
        // nng does not take the name from the URL: give it
        &["--ca", s(&f.ca), "--server-name", "localhost"],
    )
    .await;
    let r = timeout(Duration::from_secs(30), async {
        for (i, &size) in SIZES.iter().enumerate() {
            let m = puller.recv().await?;
            assert_eq!(
                m.body(),
                &payload(size, i)[..],
                "message {i} of {size} bytes"
            );
        }
        Ok::<_, Error>(())
    })
    .await;
    match r {
        Ok(Ok(())) => {}
        Ok(Err(e)) => p.abort(format!("receiving: {e}")).await,
        Err(_) => p.abort("messages did not arrive in time".into()).await,
    }
    puller.close();
    p.finish().await;
}

//! Interop against the real libraries: pynng (nng) and nanocat (nanomsg) as
//! peers, both directions, tcp and ipc, PAIR0, PUSH/PULL and REQ/REP, with
//! payloads of 0 B, 1 B, 64 KiB and 1 MiB checked byte for byte; and REQ/REP
//! through an spstack device with nng at both ends.
//!
//! The foreign side is `tests/interop/peer.py` (pynng) or `tests/interop/nano.py`
//! (drives the `nanocat` binary); see `tests/interop/README.md` for the
//! payload convention both sides follow. `scripts/test.sh` installs both.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use spstack::{Options, Protocol, Socket};
use tokio::process::Command;
use tokio::time::timeout;

const SIZES: [usize; 4] = [0, 1, 65536, 1 << 20];
/// nanomsg's NN_RCVMAXSIZE is 1 MiB including the 4-byte request id, and
/// nanocat cannot raise it (tests/interop/README.md, N10).
const NANO_REQREP_SIZES: [usize; 4] = [0, 1, 65536, (1 << 20) - 4];
const STEP: Duration = Duration::from_secs(30);

fn payload(size: usize, index: usize) -> Vec<u8> {
    (0..size)
        .map(|i| ((i * 31 + index * 7 + 1) & 0xff) as u8)
        .collect()
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Peer {
    Nng,
    Nano,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Tr {
    Tcp,
    Ipc,
}

static PORT: AtomicU16 = AtomicU16::new(0);

fn url(tr: Tr, tag: &str) -> String {
    match tr {
        Tr::Tcp => {
            // a port range per process; pick ports the OS is not using
            if PORT.load(Ordering::Relaxed) == 0 {
                let base = 20000 + (std::process::id() % 20000) as u16;
                let _ = PORT.compare_exchange(0, base, Ordering::Relaxed, Ordering::Relaxed);
            }
            loop {
                let p = PORT.fetch_add(1, Ordering::Relaxed);
                if std::net::TcpListener::bind(("127.0.0.1", p)).is_ok() {
                    return format!("tcp://127.0.0.1:{p}");
                }
            }
        }
        Tr::Ipc => format!(
            "ipc:///tmp/spstack-interop-{}-{tag}.ipc",
            std::process::id()
        ),
    }
}

fn script(peer: Peer) -> PathBuf {
    let name = match peer {
        Peer::Nng => "peer.py",
        Peer::Nano => "nano.py",
    };
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/interop")
        .join(name)
}

struct Child {
    child: tokio::process::Child,
    what: String,
}

/// Starts the foreign peer; in listen mode waits until it is bound.
async fn foreign(
    peer: Peer,
    proto: &str,
    mode: &str,
    url: &str,
    sizes: &[usize],
    tag: &str,
) -> Child {
    let ready = std::env::temp_dir().join(format!("spstack-ready-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_file(&ready);
    let sizes_arg = sizes
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let mut cmd = Command::new("python3");
    cmd.arg(script(peer))
        .args([
            "--proto",
            proto,
            "--mode",
            mode,
            "--url",
            url,
            "--sizes",
            &sizes_arg,
            "--timeout",
            "20",
        ])
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
        let t0 = std::time::Instant::now();
        while !ready.exists() {
            assert!(t0.elapsed() < STEP, "{what}: never became ready");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Child { child, what }
}

impl Child {
    /// Waits for the peer; panics unless it checked everything and said OK.
    /// Returns false when nano.py says nanomsg cannot do this (exit 3).
    async fn finish(self) -> bool {
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

fn sock(p: Protocol) -> Socket {
    spstack::cooked(p)
        .options(
            Options::default()
                .recv_max_size(2 << 20)
                .reconnect_min(Duration::from_millis(20))
                .reconnect_max(Duration::from_millis(200)),
        )
        .build()
}

async fn within<T>(what: &str, f: impl std::future::Future<Output = spstack::Result<T>>) -> T {
    timeout(STEP, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: timed out"))
        .unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// Runs spstack's end of the sequence for `role` against the foreign peer.
async fn run(peer: Peer, role: Protocol, tr: Tr, spstack_listens: bool) {
    let (ours, theirs) = match role {
        Protocol::Push0 => ("push0", "pull0"),
        Protocol::Pull0 => ("pull0", "push0"),
        Protocol::Req0 => ("req0", "rep0"),
        Protocol::Rep0 => ("rep0", "req0"),
        Protocol::Pair0 => ("pair0", "pair0"),
        _ => unreachable!(),
    };
    let reqrep = matches!(role, Protocol::Req0 | Protocol::Rep0);
    let sizes: &[usize] = if peer == Peer::Nano && reqrep {
        &NANO_REQREP_SIZES
    } else {
        &SIZES
    };
    let tag = format!("{peer:?}-{ours}-{tr:?}-{spstack_listens}");
    let u = url(tr, &tag);
    let s = sock(role);
    let child = if spstack_listens {
        within("listen", s.listen(&u)).await;
        foreign(peer, theirs, "dial", &u, sizes, &tag).await
    } else {
        let c = foreign(peer, theirs, "listen", &u, sizes, &tag).await;
        s.dial_background(&u).unwrap();
        c
    };
    let ctx = format!("spstack {ours} vs {tag}");
    // PAIR: the dialer sends first
    let we_send_first = match role {
        Protocol::Pair0 => !spstack_listens,
        Protocol::Push0 | Protocol::Req0 => true,
        _ => false,
    };
    for (i, &size) in sizes.iter().enumerate() {
        match role {
            Protocol::Push0 => within(&ctx, s.send(payload(size, i))).await,
            Protocol::Pull0 => {
                let m = within(&ctx, s.recv()).await;
                assert!(
                    m.body() == &payload(size, i)[..],
                    "{ctx}: message {i} ({size} B) differs"
                );
            }
            _ if we_send_first => {
                within(&ctx, s.send(payload(size, i))).await;
                let m = within(&ctx, s.recv()).await;
                assert!(
                    m.body() == &payload(size, i + 1000)[..],
                    "{ctx}: reply {i} ({size} B) differs"
                );
            }
            _ => {
                let m = within(&ctx, s.recv()).await;
                assert!(
                    m.body() == &payload(size, i)[..],
                    "{ctx}: request {i} ({size} B) differs"
                );
                within(&ctx, s.send(payload(size, i + 1000))).await;
            }
        }
    }
    // keep our socket open until the peer has checked everything (N6)
    child.finish().await;
    drop(s);
}

macro_rules! interop {
    ($($name:ident: $peer:expr, $role:expr;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            for tr in [Tr::Tcp, Tr::Ipc] {
                for listens in [true, false] {
                    run($peer, $role, tr, listens).await;
                }
            }
        }
    )*};
}

interop! {
    nng_push_to_spstack_pull: Peer::Nng, Protocol::Pull0;
    spstack_push_to_nng_pull: Peer::Nng, Protocol::Push0;
    spstack_req_to_nng_rep: Peer::Nng, Protocol::Req0;
    nng_req_to_spstack_rep: Peer::Nng, Protocol::Rep0;
    nng_pair_with_spstack_pair: Peer::Nng, Protocol::Pair0;
    nanomsg_push_to_spstack_pull: Peer::Nano, Protocol::Pull0;
    spstack_push_to_nanomsg_pull: Peer::Nano, Protocol::Push0;
    spstack_req_to_nanomsg_rep: Peer::Nano, Protocol::Req0;
    nanomsg_req_to_spstack_rep: Peer::Nano, Protocol::Rep0;
    nanomsg_pair_with_spstack_pair: Peer::Nano, Protocol::Pair0;
}

/// nng REQ → spstack device (raw REP | raw REQ) → nng REP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nng_req_through_spstack_device_to_nng_rep() {
    for tr in [Tr::Tcp, Tr::Ipc] {
        let back_url = url(tr, "dev-back");
        let front_url = url(tr, "dev-front");
        let rep = foreign(Peer::Nng, "rep0", "listen", &back_url, &SIZES, "dev-rep").await;
        let opts = Options::default()
            .recv_max_size(2 << 20)
            .reconnect_min(Duration::from_millis(20));
        let front = spstack::raw(Protocol::Rep0).options(opts.clone()).build();
        within("device listen", front.listen(&front_url)).await;
        let back = spstack::raw(Protocol::Req0).options(opts).build();
        back.dial_background(&back_url).unwrap();
        let (f, b) = (front.clone(), back.clone());
        let dev = tokio::spawn(async move { spstack::device(&f, &b).await });
        let req = foreign(Peer::Nng, "req0", "dial", &front_url, &SIZES, "dev-req").await;
        assert!(
            req.finish().await,
            "nng REQ got every reply through the device"
        );
        assert!(
            rep.finish().await,
            "nng REP saw every request through the device"
        );
        assert_eq!(front.stats().msgs_in, SIZES.len() as u64, "{tr:?}");
        assert_eq!(back.stats().msgs_in, SIZES.len() as u64, "{tr:?}");
        dev.abort();
    }
}

//! PUB/SUB interop against the real libraries, both directions, tcp and ipc,
//! each side listening and dialing:
//!
//! * nng PUB (pynng) and nanomsg PUB (nanocat) → one spstack SUB whose
//!   contexts hold different subscriptions; each context gets exactly the
//!   messages its prefixes select.
//! * one spstack PUB → several SUBs at once: nng, nanomsg (both subscribed
//!   to everything) and two spstack SUBs with different subscriptions.
//!
//! Payloads of 0 B, 1 B, 64 KiB and 1 MiB, checked byte for byte; the
//! foreign side is `tests/interop/peer.py` / `nano.py` (see the README there).

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use futures::FutureExt;
use spstack::{Options, SocketContext, SubControl};
use tokio::process::Command;
use tokio::time::timeout;

const SIZES: [usize; 4] = [0, 1, 65536, 1 << 20];
const STEP: Duration = Duration::from_secs(30);

fn payload(size: usize, index: usize) -> Vec<u8> {
    (0..size)
        .map(|i| ((i * 31 + index * 7 + 1) & 0xff) as u8)
        .collect()
}

// The first bytes of the sequence: message 0 is empty, 1 is [08],
// 2 starts 0f 2e, 3 starts 16 35.
const MSG1: &[u8] = &[0x08];
const MSG2_PREFIX: &[u8] = &[0x0f, 0x2e];
const MSG3_PREFIX: &[u8] = &[0x16];

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
            if PORT.load(Ordering::Relaxed) == 0 {
                // another range than tests/interop.rs uses for the same pid
                let base = 30000 + (std::process::id() % 20000) as u16;
                let _ = PORT.compare_exchange(0, base, Ordering::Relaxed, Ordering::Relaxed);
            }
            loop {
                let p = PORT.fetch_add(1, Ordering::Relaxed);
                if std::net::TcpListener::bind(("127.0.0.1", p)).is_ok() {
                    return format!("tcp://127.0.0.1:{p}");
                }
            }
        }
        Tr::Ipc => format!("ipc:///tmp/spstack-ps-{}-{tag}.ipc", std::process::id()),
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
async fn foreign(peer: Peer, proto: &str, mode: &str, url: &str, tag: &str) -> Child {
    let ready = std::env::temp_dir().join(format!("spstack-ps-ready-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_file(&ready);
    let sizes = SIZES.map(|s| s.to_string()).join(",");
    let mut cmd = Command::new("python3");
    cmd.arg(script(peer))
        .args(["--proto", proto, "--mode", mode, "--url", url])
        .args(["--sizes", &sizes, "--timeout", "20"])
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
    async fn finish(self) {
        let what = self.what.clone();
        let out = timeout(Duration::from_secs(60), self.child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("{what}: peer did not exit"))
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stdout.contains("OK 4 messages"),
            "{what}: peer failed ({:?})\nstdout: {stdout}\nstderr: {stderr}",
            out.status
        );
    }
}

fn opts() -> Options {
    Options::default()
        .recv_max_size(2 << 20)
        .reconnect_min(Duration::from_millis(20))
        .reconnect_max(Duration::from_millis(200))
}

async fn within<T>(what: &str, f: impl std::future::Future<Output = spstack::Result<T>>) -> T {
    timeout(STEP, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: timed out"))
        .unwrap_or_else(|e| panic!("{what}: {e}"))
}

fn subscribe(ctl: &SubControl, topics: &[&[u8]]) {
    for t in topics {
        ctl.subscribe(t).unwrap();
    }
}

async fn expect(what: &str, ctx: &mut SocketContext, index: usize) {
    let size = SIZES[index];
    let m = within(what, ctx.recv()).await;
    assert!(
        m.body() == &payload(size, index)[..],
        "{what}: message {index} ({size} B) differs (got {} B)",
        m.len()
    );
}

/// Foreign PUB → one spstack SUB with four contexts: everything; message 1
/// only; messages 2 and 3; a prefix longer than message 1 (nothing).
async fn foreign_pub_to_sub_contexts(peer: Peer, tr: Tr, spstack_listens: bool) {
    let tag = format!("{peer:?}-pub-{tr:?}-{spstack_listens}");
    let u = url(tr, &tag);
    let s = spstack::sub0().options(opts()).build();
    subscribe(&s.control::<SubControl>().unwrap(), &[b""]);
    let mut one = s.context();
    subscribe(&one.control::<SubControl>().unwrap(), &[MSG1]);
    let mut two_three = s.context();
    subscribe(
        &two_three.control::<SubControl>().unwrap(),
        &[MSG2_PREFIX, MSG3_PREFIX],
    );
    let mut none = s.context();
    subscribe(
        &none.control::<SubControl>().unwrap(),
        &[&[0x08, 0x00], &[0x01]],
    );

    let child = if spstack_listens {
        within("listen", s.listen(&u)).await;
        foreign(peer, "pub0", "dial", &u, &tag).await
    } else {
        let c = foreign(peer, "pub0", "listen", &u, &tag).await;
        s.dial_background(&u).unwrap();
        c
    };
    let what = format!("spstack sub0 vs {tag}");
    for (i, &size) in SIZES.iter().enumerate() {
        let m = within(&what, s.recv()).await;
        assert!(
            m.body() == &payload(size, i)[..],
            "{what}: message {i} ({size} B) differs"
        );
    }
    // the default context got message 3 after every context had its share
    expect(&format!("{what} [08]"), &mut one, 1).await;
    expect(&format!("{what} [0f 2e]|[16]"), &mut two_three, 2).await;
    expect(&format!("{what} [0f 2e]|[16]"), &mut two_three, 3).await;
    for ctx in [&mut one, &mut two_three, &mut none] {
        assert!(
            ctx.recv().now_or_never().is_none(),
            "{what}: a context got a message its subscriptions do not match"
        );
    }
    child.finish().await;
    assert_eq!(s.stats().total_drops(), 0, "{what}: {}", s.stats());
}

/// One spstack PUB → nng SUB, nanomsg SUB and two spstack SUBs.
async fn spstack_pub_to_several_subs(tr: Tr, pub_listens: bool) {
    let tag = format!("multi-{tr:?}-{pub_listens}");
    let p = spstack::pub0().options(opts()).build();
    let all = spstack::sub0().options(opts()).build();
    subscribe(&all.control::<SubControl>().unwrap(), &[b""]);
    let some = spstack::sub0().options(opts()).build();
    subscribe(&some.control::<SubControl>().unwrap(), &[MSG1, MSG3_PREFIX]);

    let (nng, nano) = if pub_listens {
        let u = url(tr, &tag);
        within("listen", p.listen(&u)).await;
        let nng = foreign(Peer::Nng, "sub0", "dial", &u, &format!("{tag}-nng")).await;
        let nano = foreign(Peer::Nano, "sub0", "dial", &u, &format!("{tag}-nano")).await;
        within("dial", all.dial(&u)).await;
        within("dial", some.dial(&u)).await;
        (nng, nano)
    } else {
        let (u1, u2, u3, u4) = (
            url(tr, &format!("{tag}-1")),
            url(tr, &format!("{tag}-2")),
            url(tr, &format!("{tag}-3")),
            url(tr, &format!("{tag}-4")),
        );
        let nng = foreign(Peer::Nng, "sub0", "listen", &u1, &format!("{tag}-nng")).await;
        let nano = foreign(Peer::Nano, "sub0", "listen", &u2, &format!("{tag}-nano")).await;
        within("listen", all.listen(&u3)).await;
        within("listen", some.listen(&u4)).await;
        for u in [&u1, &u2, &u3, &u4] {
            within("dial", p.dial(u)).await;
        }
        (nng, nano)
    };
    // PUB drops what it sends before a subscriber's pipe exists
    let t0 = std::time::Instant::now();
    while p.pipes().len() < 4 {
        assert!(t0.elapsed() < STEP, "{tag}: only {} pipes", p.pipes().len());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for (i, &size) in SIZES.iter().enumerate() {
        within(&tag, p.send(payload(size, i))).await;
    }
    for (i, &size) in SIZES.iter().enumerate() {
        let m = within(&tag, all.recv()).await;
        assert!(m.body() == &payload(size, i)[..], "{tag}: all: {i} differs");
    }
    for i in [1, 3] {
        let m = within(&tag, some.recv()).await;
        assert!(
            m.body() == &payload(SIZES[i], i)[..],
            "{tag}: some: {i} differs"
        );
    }
    // keep the PUB open until the foreign SUBs have checked everything
    nng.finish().await;
    nano.finish().await;
    let st = p.stats();
    assert_eq!(st.total_drops(), 0, "{tag}: {st}");
    assert_eq!(st.msgs_out, 4 * SIZES.len() as u64, "{tag}: {st}");
    assert_eq!(some.stats().drops(spstack::DropReason::NoSubscription), 2);
}

macro_rules! both_ways {
    ($($name:ident: $body:expr;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            for tr in [Tr::Tcp, Tr::Ipc] {
                for listens in [true, false] {
                    $body(tr, listens).await;
                }
            }
        }
    )*};
}

both_ways! {
    nng_pub_to_spstack_sub_contexts: |tr, l| foreign_pub_to_sub_contexts(Peer::Nng, tr, l);
    spstack_pub_to_nng_nanomsg_and_spstack_subs: spstack_pub_to_several_subs;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nanomsg_pub_to_spstack_sub_contexts_tcp() {
    for listens in [true, false] {
        foreign_pub_to_sub_contexts(Peer::Nano, Tr::Tcp, listens).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nanomsg_pub_to_spstack_sub_contexts_ipc() {
    for listens in [true, false] {
        foreign_pub_to_sub_contexts(Peer::Nano, Tr::Ipc, listens).await;
    }
}

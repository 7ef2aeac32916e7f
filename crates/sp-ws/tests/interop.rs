//! Interop over ws:// against the real libraries: pynng (nng 1.x) and
//! nanocat (nanomsg), both directions, REQ/REP, PUSH/PULL and (nng) PUB/SUB,
//! with payloads checked byte for byte. The foreign side follows the
//! payload convention of the root crate's `tests/interop/README.md`.
//!
//! Needs `python3 -m pip install pynng==0.9.0` and `nanocat` (Debian:
//! `apt-get install nanomsg-utils`); a missing tool fails with that hint.

mod common;

use std::time::Duration;

use common::foreign::{foreign, free_port, payload, Peer, STEP};
use common::sock;

/// nng's WebSocket layer limits a message to 1 MiB, headers included.
const SIZES: [usize; 4] = [0, 1, 65536, 500_000];

fn preflight(peer: Peer) {
    match peer {
        Peer::Nng => {
            let ok = std::process::Command::new("python3")
                .args(["-c", "import pynng"])
                .status()
                .is_ok_and(|s| s.success());
            assert!(
                ok,
                "pynng is missing: run `python3 -m pip install pynng==0.9.0` for the nng interop tests"
            );
        }
        Peer::Nano => {
            let ok = std::process::Command::new("which")
                .arg("nanocat")
                .output()
                .is_ok_and(|o| o.status.success());
            assert!(
                ok,
                "nanocat is missing: run `apt-get install nanomsg-utils` for the nanomsg interop tests"
            );
        }
    }
}

async fn within<T>(what: &str, f: impl std::future::Future<Output = sp_core::Result<T>>) -> T {
    tokio::time::timeout(STEP, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: timed out"))
        .unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// Runs spstack's end (`ours`) of the sequence against the foreign peer.
async fn run(peer: Peer, ours: &str, spstack_listens: bool) {
    preflight(peer);
    let theirs = match ours {
        "push" => "pull0",
        "pull" => "push0",
        "req" => "rep0",
        "rep" => "req0",
        "pub" => "sub0",
        "sub" => "pub0",
        o => panic!("no foreign role for {o}"),
    };
    // nanomsg 1.1.5 refuses to bind a ws:// URL with a path ("Can't bind:
    // Invalid argument"); it serves the root then
    let path = if peer == Peer::Nano && !spstack_listens {
        ""
    } else {
        "/sp"
    };
    let url = format!("ws://127.0.0.1:{}{path}", free_port());
    let ctx = format!("spstack {ours} vs {peer:?} {theirs} listens={spstack_listens} {url}");
    let s = sock(ours);
    if ours == "sub" {
        s.control::<sp_protocols::SubControl>()
            .expect("sub control")
            .subscribe(b"")
            .expect("subscribe");
    }
    let child = if spstack_listens {
        within(&ctx, s.listen(&url)).await;
        foreign(peer, theirs, "dial", &url, &SIZES).await
    } else {
        let c = foreign(peer, theirs, "listen", &url, &SIZES).await;
        s.dial_background(&url).expect("dial");
        c
    };
    if ours == "pub" {
        // PUB drops without a pipe: wait for the subscriber, and give nng a
        // moment to attach its end too
        tokio::time::timeout(STEP, async {
            while s.pipes().is_empty() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{ctx}: no subscriber"));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    for (i, &size) in SIZES.iter().enumerate() {
        match ours {
            "push" | "pub" => within(&ctx, s.send(payload(size, i))).await,
            "pull" | "sub" => {
                let m = within(&ctx, s.recv()).await;
                assert!(
                    m.body() == &payload(size, i)[..],
                    "{ctx}: message {i} ({size} B) differs"
                );
            }
            "req" => {
                within(&ctx, s.send(payload(size, i))).await;
                let m = within(&ctx, s.recv()).await;
                assert!(
                    m.body() == &payload(size, i + 1000)[..],
                    "{ctx}: reply {i} differs"
                );
            }
            _ => {
                let m = within(&ctx, s.recv()).await;
                assert!(
                    m.body() == &payload(size, i)[..],
                    "{ctx}: request {i} differs"
                );
                within(&ctx, s.send(payload(size, i + 1000))).await;
            }
        }
    }
    // keep our socket open until the peer has checked everything
    assert!(
        child.finish().await,
        "{ctx}: the peer could not run this case"
    );
    drop(s);
}

macro_rules! interop {
    ($($name:ident: $peer:expr, $ours:expr;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            for listens in [true, false] {
                run($peer, $ours, listens).await;
            }
        }
    )*};
}

interop! {
    ws_spstack_req_to_nng_rep: Peer::Nng, "req";
    ws_nng_req_to_spstack_rep: Peer::Nng, "rep";
    ws_spstack_push_to_nng_pull: Peer::Nng, "push";
    ws_nng_push_to_spstack_pull: Peer::Nng, "pull";
    ws_spstack_pub_to_nng_sub: Peer::Nng, "pub";
    ws_nng_pub_to_spstack_sub: Peer::Nng, "sub";
    ws_spstack_req_to_nanomsg_rep: Peer::Nano, "req";
    ws_nanomsg_req_to_spstack_rep: Peer::Nano, "rep";
    ws_spstack_push_to_nanomsg_pull: Peer::Nano, "push";
    ws_nanomsg_push_to_spstack_pull: Peer::Nano, "pull";
}

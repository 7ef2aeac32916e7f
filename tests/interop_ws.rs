//! WebSocket interop against the real libraries, both directions (spstack
//! listening and dialing), payloads checked byte for byte:
//!
//! * pynng (nng 1.x) over ws:// and wss:// for REQ/REP, PUSH/PULL, PUB/SUB;
//! * nanocat (nanomsg 1.1.5) over ws:// for REQ/REP and PUSH/PULL.
//!
//! wss:// uses a CA and a server certificate for `localhost` and 127.0.0.1
//! made by rcgen at run time: pynng's listener presents it, pynng's dialer
//! and spstack's dialer trust the CA and verify the name `localhost`.
//! The foreign side is `tests/interop/peer.py` / `nano.py` (see the README
//! there); a missing pynng or nanocat fails with the install command.

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use common::foreign::{
    foreign_tls, listen, opts, payload, url, within, Peer, PeerTls, Tr, STEP, WS_PATH,
};
use common::pki::{Pki, SERVER_NAME};
use sp_transports::tls::{Tls, TlsConfig};
use sp_ws::Ws;
use spstack::{Protocol, Socket, SubControl};

const SIZES: [usize; 4] = [0, 1, 65536, 1 << 20];
/// REQ/REP with nanocat: 1 MiB including the 4-byte request id, since
/// nanomsg's NN_RCVMAXSIZE is 1 MiB inclusive and nanocat cannot raise it
/// (tests/interop/README.md, N10). nng takes the full 1 MiB + 4 B: spstack
/// sends large messages in 64 KiB fragments as nng does (nng refuses a
/// single frame over 1 MiB; `WsConfig::send_frame_size`).
const NANO_REQREP_SIZES: [usize; 4] = [0, 1, 65536, (1 << 20) - 4];
/// A cooked spstack socket for `role` with ws:// (or wss:// with `tls`).
fn sock(role: Protocol, tls: Option<TlsConfig>) -> Socket {
    let ws: Arc<dyn spstack::transport::Transport> = match tls {
        None => Arc::new(Ws::new(spstack::Tcp)),
        Some(cfg) => Arc::new(Ws::secure(Tls::new(spstack::Tcp, cfg))),
    };
    let s = spstack::cooked(role).transport(ws).options(opts()).build();
    if role == Protocol::Sub0 {
        s.control::<SubControl>()
            .expect("sub control")
            .subscribe(b"")
            .expect("subscribe");
    }
    s
}

/// Runs spstack's end (`role`) of the sequence against the foreign peer.
async fn run(peer: Peer, role: Protocol, tr: Tr, spstack_listens: bool, pki: Option<&Pki>) {
    let (ours, theirs) = match role {
        Protocol::Push0 => ("push0", "pull0"),
        Protocol::Pull0 => ("pull0", "push0"),
        Protocol::Req0 => ("req0", "rep0"),
        Protocol::Rep0 => ("rep0", "req0"),
        Protocol::Pub0 => ("pub0", "sub0"),
        Protocol::Sub0 => ("sub0", "pub0"),
        _ => unreachable!(),
    };
    let sizes: &[usize] = if peer == Peer::Nano && matches!(role, Protocol::Req0 | Protocol::Rep0) {
        &NANO_REQREP_SIZES
    } else {
        &SIZES
    };
    let tag = format!("{peer:?}-{ours}-{tr:?}-{spstack_listens}");
    let mut u = url(tr, &tag);
    if peer == Peer::Nano && !spstack_listens {
        // nanomsg 1.1.5 refuses to bind a ws:// URL with a path ("Can't
        // bind: Invalid argument"); it serves the root then
        u.truncate(u.len() - WS_PATH.len());
    }
    let s = sock(role, pki.map(|p| p.ours(spstack_listens)));
    let (cert_key, ca) = pki.map_or((PathBuf::new(), PathBuf::new()), |p| {
        (p.cert_key_file(), p.ca_file())
    });
    let peer_tls = pki.map(|_| PeerTls {
        cert_key: &cert_key,
        ca: &ca,
        server_name: SERVER_NAME,
    });
    let child = if spstack_listens {
        let at = listen(&s, &u).await;
        foreign_tls(peer, theirs, "dial", &at, sizes, peer_tls.as_ref()).await
    } else {
        let c = foreign_tls(peer, theirs, "listen", &u, sizes, peer_tls.as_ref()).await;
        s.dial_background(c.url()).expect("dial");
        c
    };
    let ctx = format!(
        "spstack {ours} vs {peer:?} {theirs} listens={spstack_listens} {}",
        child.url()
    );
    if role == Protocol::Pub0 {
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
    for (i, &size) in sizes.iter().enumerate() {
        match role {
            Protocol::Push0 | Protocol::Pub0 => within(&ctx, s.send(payload(size, i))).await,
            Protocol::Pull0 | Protocol::Sub0 => {
                let m = within(&ctx, s.recv()).await;
                assert!(
                    m.body() == &payload(size, i)[..],
                    "{ctx}: message {i} ({size} B) differs"
                );
            }
            Protocol::Req0 => {
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
    // keep our socket open until the peer has checked everything
    assert!(
        child.finish().await,
        "{ctx}: the peer could not run this case"
    );
    drop(s);
}

macro_rules! interop {
    ($($name:ident: $peer:expr, $role:expr, $tr:expr;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let pki = ($tr == Tr::Wss).then(|| Pki::new(stringify!($name)));
            for listens in [true, false] {
                run($peer, $role, $tr, listens, pki.as_ref()).await;
            }
        }
    )*};
}

interop! {
    ws_spstack_req_to_nng_rep: Peer::Nng, Protocol::Req0, Tr::Ws;
    ws_nng_req_to_spstack_rep: Peer::Nng, Protocol::Rep0, Tr::Ws;
    ws_spstack_push_to_nng_pull: Peer::Nng, Protocol::Push0, Tr::Ws;
    ws_nng_push_to_spstack_pull: Peer::Nng, Protocol::Pull0, Tr::Ws;
    ws_spstack_pub_to_nng_sub: Peer::Nng, Protocol::Pub0, Tr::Ws;
    ws_nng_pub_to_spstack_sub: Peer::Nng, Protocol::Sub0, Tr::Ws;
    wss_spstack_req_to_nng_rep: Peer::Nng, Protocol::Req0, Tr::Wss;
    wss_nng_req_to_spstack_rep: Peer::Nng, Protocol::Rep0, Tr::Wss;
    wss_spstack_push_to_nng_pull: Peer::Nng, Protocol::Push0, Tr::Wss;
    wss_nng_push_to_spstack_pull: Peer::Nng, Protocol::Pull0, Tr::Wss;
    wss_spstack_pub_to_nng_sub: Peer::Nng, Protocol::Pub0, Tr::Wss;
    wss_nng_pub_to_spstack_sub: Peer::Nng, Protocol::Sub0, Tr::Wss;
    ws_spstack_req_to_nanomsg_rep: Peer::Nano, Protocol::Req0, Tr::Ws;
    ws_nanomsg_req_to_spstack_rep: Peer::Nano, Protocol::Rep0, Tr::Ws;
    ws_spstack_push_to_nanomsg_pull: Peer::Nano, Protocol::Push0, Tr::Ws;
    ws_nanomsg_push_to_spstack_pull: Peer::Nano, Protocol::Pull0, Tr::Ws;
    ws_spstack_pub_to_nanomsg_sub: Peer::Nano, Protocol::Pub0, Tr::Ws;
    ws_nanomsg_pub_to_spstack_sub: Peer::Nano, Protocol::Sub0, Tr::Ws;
}

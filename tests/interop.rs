//! Interop against the real libraries: pynng (nng) and nanocat (nanomsg) as
//! peers, both directions, tcp and ipc, PAIR0, PUSH/PULL and REQ/REP, with
//! payloads of 0 B, 1 B, 64 KiB and 1 MiB checked byte for byte; and REQ/REP
//! through an spstack device with nng at both ends.
//!
//! The foreign side is `tests/interop/peer.py` (pynng) or `tests/interop/nano.py`
//! (drives the `nanocat` binary); see `tests/interop/README.md` for the
//! payload convention both sides follow. `scripts/test.sh` installs both.

mod common;

use common::foreign::{foreign, listen, opts, payload, url, within, Peer, Tr};
use spstack::{Protocol, Socket};

const SIZES: [usize; 4] = [0, 1, 65536, 1 << 20];
/// nanomsg's NN_RCVMAXSIZE is 1 MiB including the 4-byte request id, and
/// nanocat cannot raise it (tests/interop/README.md, N10).
const NANO_REQREP_SIZES: [usize; 4] = [0, 1, 65536, (1 << 20) - 4];

fn sock(p: Protocol) -> Socket {
    spstack::cooked(p).options(opts()).build()
}

/// Runs spstack's end of the sequence for `role` against the foreign peer.
async fn run(peer: Peer, role: Protocol, tr: Tr, spstack_listens: bool) {
    let s = sock(role);
    // the peer reports what it checked; nanocat cannot run every case
    // (tests/interop/README.md), so only the sequence on our side counts here
    let _ = run_on(&s, peer, role, tr, spstack_listens).await;
    drop(s);
}

/// [`run`] on a socket of the caller's (`s` speaks `role`): true when the
/// foreign peer saw everything it expected.
async fn run_on(s: &Socket, peer: Peer, role: Protocol, tr: Tr, spstack_listens: bool) -> bool {
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
    let child = if spstack_listens {
        let at = listen(s, &u).await;
        foreign(peer, theirs, "dial", &at, sizes).await
    } else {
        let c = foreign(peer, theirs, "listen", &u, sizes).await;
        s.dial_background(c.url()).unwrap();
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
    // the caller keeps our socket open until the peer has checked
    // everything (N6)
    child.finish().await
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
        let rep = foreign(Peer::Nng, "rep0", "listen", &back_url, &SIZES).await;
        let front = spstack::raw(Protocol::Rep0).options(opts()).build();
        let front_at = listen(&front, &front_url).await;
        let back = spstack::raw(Protocol::Req0).options(opts()).build();
        back.dial_background(rep.url()).unwrap();
        let (f, b) = (front.clone(), back.clone());
        let dev = tokio::spawn(async move { spstack::device(&f, &b).await });
        let req = foreign(Peer::Nng, "req0", "dial", &front_at, &SIZES).await;
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

/// `heartbeat/1` is optional: an nng or nanomsg peer, which knows no pipe
/// layers, is served by a socket with it, both ways. spstack listening
/// answers the peer's plain header plain; spstack dialing sees the peer
/// answer plain (and drop the layered header), counts `PlainPeer` and
/// redials plain at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nng_and_nanomsg_with_spstack_heartbeat_run_plain_both_directions() {
    use sp_reliable::heartbeat;
    use spstack::RejectReason;
    for (peer, tr) in [
        (Peer::Nng, Tr::Tcp),
        (Peer::Nng, Tr::Ipc),
        (Peer::Nano, Tr::Tcp),
    ] {
        for (role, listens) in [
            (Protocol::Rep0, true),
            (Protocol::Req0, false),
            (Protocol::Pull0, true),
            (Protocol::Push0, false),
        ] {
            let s = spstack::cooked(role)
                .pipe_layer(heartbeat::layer(std::time::Duration::from_millis(200)))
                .options(opts())
                .build();
            let ctx = format!("{peer:?} {role:?} {tr:?} listens={listens}");
            assert!(
                run_on(&s, peer, role, tr, listens).await,
                "{ctx}: the foreign peer saw every message"
            );
            // nanocat runs one process per message: a dialer may meet it
            // again after its first plain pipe, still plain
            let redials = s.stats().rejects(RejectReason::PlainPeer);
            if listens {
                assert_eq!(redials, 0, "{ctx}");
            } else {
                assert_eq!(redials, 1, "{ctx}: counted once, then remembered");
            }
            assert_eq!(s.stats().rejects(RejectReason::LayerMismatch), 0, "{ctx}");
            drop(s);
        }
    }
}

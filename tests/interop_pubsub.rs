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

mod common;

use std::time::Duration;

use common::foreign::{foreign, listen, opts, payload, url, within, Peer, Tr, STEP};

use futures::FutureExt;
use spstack::SubContext;

const SIZES: [usize; 4] = [0, 1, 65536, 1 << 20];
const MSG1: &[u8] = &[0x08];
const MSG2_PREFIX: &[u8] = &[0x0f, 0x2e];
const MSG3_PREFIX: &[u8] = &[0x16];

fn subscribe(sub: impl Fn(&[u8]) -> spstack::Result<()>, topics: &[&[u8]]) {
    for t in topics {
        sub(t).unwrap();
    }
}

async fn expect(what: &str, ctx: &SubContext, index: usize) {
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
    let s = spstack::typed::sub0().options(opts()).build();
    subscribe(|t| s.subscribe(t), &[b""]);
    let one = s.context();
    subscribe(|t| one.subscribe(t), &[MSG1]);
    let two_three = s.context();
    subscribe(|t| two_three.subscribe(t), &[MSG2_PREFIX, MSG3_PREFIX]);
    let none = s.context();
    subscribe(|t| none.subscribe(t), &[&[0x08, 0x00], &[0x01]]);

    let child = if spstack_listens {
        let at = listen(s.socket(), &u).await;
        foreign(peer, "pub0", "dial", &at, &SIZES).await
    } else {
        let c = foreign(peer, "pub0", "listen", &u, &SIZES).await;
        s.dial_background(c.url()).unwrap();
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
    expect(&format!("{what} [08]"), &one, 1).await;
    expect(&format!("{what} [0f 2e]|[16]"), &two_three, 2).await;
    expect(&format!("{what} [0f 2e]|[16]"), &two_three, 3).await;
    for ctx in [&one, &two_three, &none] {
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
    let p = spstack::typed::pub0().options(opts()).build();
    let all = spstack::typed::sub0().options(opts()).build();
    subscribe(|t| all.subscribe(t), &[b""]);
    let some = spstack::typed::sub0().options(opts()).build();
    subscribe(|t| some.subscribe(t), &[MSG1, MSG3_PREFIX]);

    let (nng, nano) = if pub_listens {
        let u = listen(p.socket(), &url(tr, &tag)).await;
        let nng = foreign(Peer::Nng, "sub0", "dial", &u, &SIZES).await;
        let nano = foreign(Peer::Nano, "sub0", "dial", &u, &SIZES).await;
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
        let nng = foreign(Peer::Nng, "sub0", "listen", &u1, &SIZES).await;
        let nano = foreign(Peer::Nano, "sub0", "listen", &u2, &SIZES).await;
        let u3 = listen(all.socket(), &u3).await;
        let u4 = listen(some.socket(), &u4).await;
        for u in [nng.url(), nano.url(), &u3, &u4] {
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

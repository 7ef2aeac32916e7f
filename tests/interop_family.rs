//! Interop of SURVEYOR/RESPONDENT, BUS and PAIR1 against the real libraries:
//! pynng (nng 1.11) and nanocat (nanomsg 1.1.5) as peers, tcp and ipc, with
//! spstack listening and dialing. Payloads follow `tests/interop/README.md`
//! (message i is `payload(size, i)`, its answer `payload(size, i + 1000)`).
//!
//! * SURVEYOR: spstack surveys several foreign respondents (3 nng, or 2
//!   nanocat — one survey per nanocat run, README N7), collects one answer
//!   from each, and the survey then ends with `Error::TimedOut` at its
//!   deadline. RESPONDENT: a foreign surveyor surveys spstack.
//! * BUS, three nodes: spstack as the hub two foreign nodes dial (it answers
//!   once both have spoken, so each gets the answer), and spstack dialing two
//!   foreign nodes (each answers it). With nng, also nng → one spstack raw
//!   BUS socket reflecting (`spstack::reflect`) → nng.
//! * PAIR1 with nng only (nanomsg has none, README N11).

mod common;

use std::time::{Duration, Instant};

use common::foreign::{foreign, listen, opts, payload, url, within, Child, Peer, Tr, STEP};
use spstack::{Error, Protocol, Socket};
use tokio::time::{sleep, timeout};

const SIZES: [usize; 3] = [0, 1, 65536];
async fn wait_pipes(s: &Socket, n: usize, what: &str) {
    let t0 = Instant::now();
    while s.pipes().len() < n {
        assert!(
            t0.elapsed() < STEP,
            "{what}: only {} pipes",
            s.pipes().len()
        );
        sleep(Duration::from_millis(10)).await;
    }
}

async fn finish_all(children: Vec<Child>) {
    for c in children {
        c.finish().await;
    }
}

// ---------------------------------------------------------------------------
// SURVEYOR / RESPONDENT
// ---------------------------------------------------------------------------

/// spstack SURVEYOR against `n` foreign respondents, each answering every survey.
async fn surveyor_vs_respondents(peer: Peer, n: usize, tr: Tr, we_listen: bool) {
    // nanocat's respondent serves one survey per run (README N7)
    let sizes: &[usize] = if peer == Peer::Nano { &[65536] } else { &SIZES };
    let s = spstack::typed::surveyor0().options(opts()).build();
    let base = format!("surv-{peer:?}-{tr:?}-{we_listen}");
    let mut children = Vec::new();
    if we_listen {
        let at = listen(s.socket(), &url(tr, &base)).await;
        for _ in 0..n {
            children.push(foreign(peer, "respondent0", "dial", &at, sizes).await);
        }
    } else {
        for k in 0..n {
            let u = url(tr, &format!("{base}-{k}"));
            let c = foreign(peer, "respondent0", "listen", &u, sizes).await;
            s.dial_background(c.url()).unwrap();
            children.push(c);
        }
    }
    let ctx = format!("spstack surveyor vs {n} {peer:?} respondents, {base}");
    // a survey sent before a respondent is connected does not reach it
    wait_pipes(s.socket(), n, &ctx).await;
    for (i, &size) in sizes.iter().enumerate() {
        within(&ctx, s.send(payload(size, i))).await;
        for k in 0..n {
            let m = within(&ctx, s.recv()).await;
            assert!(
                m.body() == &payload(size, i + 1000)[..],
                "{ctx}: answer {k} to survey {i} ({size} B) differs"
            );
        }
    }
    // everyone answered the last survey; it ends at its deadline (1 s, as nng's)
    let t0 = Instant::now();
    match timeout(STEP, s.recv()).await {
        Ok(Err(Error::TimedOut(d))) => assert_eq!(d, Duration::from_secs(1)),
        other => panic!("{ctx}: expected the deadline, got {other:?}"),
    }
    assert!(t0.elapsed() < Duration::from_millis(1500), "{ctx}");
    finish_all(children).await;
    assert_eq!(s.stats().total_drops(), 0, "{ctx}");
}

/// A foreign SURVEYOR surveys an spstack RESPONDENT.
async fn respondent_vs_surveyor(peer: Peer, tr: Tr, we_listen: bool) {
    let r = spstack::typed::respondent0().options(opts()).build();
    let u = url(tr, &format!("resp-{peer:?}-{tr:?}-{we_listen}"));
    let child = if we_listen {
        let at = listen(r.socket(), &u).await;
        foreign(peer, "surveyor0", "dial", &at, &SIZES).await
    } else {
        let c = foreign(peer, "surveyor0", "listen", &u, &SIZES).await;
        r.dial_background(c.url()).unwrap();
        c
    };
    let ctx = format!("spstack respondent vs {peer:?} surveyor {}", child.url());
    for (i, &size) in SIZES.iter().enumerate() {
        let m = within(&ctx, r.recv()).await;
        assert!(
            m.body() == &payload(size, i)[..],
            "{ctx}: survey {i} differs"
        );
        within(&ctx, r.send(payload(size, i + 1000))).await;
    }
    child.finish().await;
}

macro_rules! each_way {
    ($($name:ident: $body:expr;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            for tr in [Tr::Tcp, Tr::Ipc] {
                for we_listen in [true, false] {
                    let f: &dyn Fn(Tr, bool) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>> = &$body;
                    f(tr, we_listen).await;
                }
            }
        }
    )*};
}

each_way! {
    spstack_surveyor_with_three_nng_respondents: |tr, l| Box::pin(surveyor_vs_respondents(Peer::Nng, 3, tr, l));
    spstack_surveyor_with_two_nanomsg_respondents: |tr, l| Box::pin(surveyor_vs_respondents(Peer::Nano, 2, tr, l));
    nng_surveyor_with_spstack_respondent: |tr, l| Box::pin(respondent_vs_surveyor(Peer::Nng, tr, l));
    nanomsg_surveyor_with_spstack_respondent: |tr, l| Box::pin(respondent_vs_surveyor(Peer::Nano, tr, l));
    spstack_bus_with_two_nng_nodes: |tr, l| Box::pin(bus_three_nodes(Peer::Nng, tr, l));
    spstack_bus_with_two_nanomsg_nodes: |tr, l| Box::pin(bus_three_nodes(Peer::Nano, tr, l));
    spstack_pair1_with_nng: |tr, l| Box::pin(pair1_vs_nng(tr, l));
}

// ---------------------------------------------------------------------------
// BUS
// ---------------------------------------------------------------------------

/// Three nodes: spstack and two foreign BUS nodes. Listening, spstack is the
/// hub both foreign nodes dial (they speak first, README "dialer sends
/// first"); dialing, spstack speaks first to two listening foreign nodes.
async fn bus_three_nodes(peer: Peer, tr: Tr, we_listen: bool) {
    let sizes: &[usize] = if peer == Peer::Nano {
        &[1, 65536]
    } else {
        &SIZES
    };
    let s = spstack::typed::bus0().options(opts()).build();
    let base = format!("bus-{peer:?}-{tr:?}-{we_listen}");
    let ctx = format!("spstack bus with two {peer:?} nodes, {base}");
    let mut children = Vec::new();
    if we_listen {
        let at = listen(s.socket(), &url(tr, &base)).await;
        for _ in 0..2 {
            children.push(foreign(peer, "bus0", "dial", &at, sizes).await);
        }
        for (i, &size) in sizes.iter().enumerate() {
            // both nodes say message i; one answer on the bus reaches both
            for _ in 0..2 {
                let m = within(&ctx, s.recv()).await;
                assert!(
                    m.body() == &payload(size, i)[..],
                    "{ctx}: message {i} differs"
                );
            }
            within(&ctx, s.send(payload(size, i + 1000))).await;
        }
    } else {
        for k in 0..2 {
            let u = url(tr, &format!("{base}-{k}"));
            let c = foreign(peer, "bus0", "listen", &u, sizes).await;
            s.dial_background(c.url()).unwrap();
            children.push(c);
        }
        wait_pipes(s.socket(), 2, &ctx).await;
        for (i, &size) in sizes.iter().enumerate() {
            within(&ctx, s.send(payload(size, i))).await;
            for _ in 0..2 {
                let m = within(&ctx, s.recv()).await;
                assert!(
                    m.body() == &payload(size, i + 1000)[..],
                    "{ctx}: answer to {i} differs"
                );
            }
        }
    }
    finish_all(children).await;
}

/// nng BUS (dials) → one spstack raw BUS socket, reflecting → nng BUS
/// (listens): the reflector floods each message to the other node only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nng_bus_through_a_spstack_reflector() {
    for tr in [Tr::Tcp, Tr::Ipc] {
        let hub = spstack::raw(Protocol::Bus0).options(opts()).build();
        let hub_url = url(tr, "reflector-hub");
        let far_url = url(tr, "reflector-far");
        let server = foreign(Peer::Nng, "bus0", "listen", &far_url, &SIZES).await;
        let hub_at = listen(&hub, &hub_url).await;
        hub.dial_background(server.url()).unwrap();
        wait_pipes(&hub, 1, "reflector to server").await;
        let h = hub.clone();
        let dev = tokio::spawn(async move { spstack::reflect(&h).await });
        let client = foreign(Peer::Nng, "bus0", "dial", &hub_at, &SIZES).await;
        client.finish().await;
        server.finish().await;
        assert_eq!(hub.stats().msgs_in, 2 * SIZES.len() as u64, "{tr:?}");
        assert_eq!(hub.stats().total_drops(), 0, "{tr:?}");
        dev.abort();
    }
}

// ---------------------------------------------------------------------------
// PAIR1
// ---------------------------------------------------------------------------

/// spstack PAIR1 with nng's: the dialer sends first.
async fn pair1_vs_nng(tr: Tr, we_listen: bool) {
    let sizes: &[usize] = &[0, 1, 65536, 1 << 20];
    let s = spstack::typed::pair1().options(opts()).build();
    let u = url(tr, &format!("pair1-{tr:?}-{we_listen}"));
    let child = if we_listen {
        let at = listen(s.socket(), &u).await;
        foreign(Peer::Nng, "pair1", "dial", &at, sizes).await
    } else {
        let c = foreign(Peer::Nng, "pair1", "listen", &u, sizes).await;
        s.dial_background(c.url()).unwrap();
        c
    };
    let ctx = format!("spstack pair1 vs nng {}", child.url());
    for (i, &size) in sizes.iter().enumerate() {
        if we_listen {
            let m = within(&ctx, s.recv()).await;
            assert!(m.body() == &payload(size, i)[..], "{ctx}: {i} differs");
            within(&ctx, s.send(payload(size, i + 1000))).await;
        } else {
            within(&ctx, s.send(payload(size, i))).await;
            let m = within(&ctx, s.recv()).await;
            assert!(
                m.body() == &payload(size, i + 1000)[..],
                "{ctx}: reply {i} differs"
            );
        }
    }
    child.finish().await;
    assert_eq!(s.stats().total_drops(), 0, "{ctx}");
}

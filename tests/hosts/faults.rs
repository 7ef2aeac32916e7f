//! Each fault of the proxy against each stack, PUSH on one host to PULL on
//! another: what arrives, what is counted, what the layers refuse. Also:
//! the same seed gives the same fates.
//!
//! | fault | plain SP | integrity (one way) | Noise |
//! |---|---|---|---|
//! | delay, jitter, loss | all, in order, once | same | same |
//! | duplicated frame | delivered twice (SP has no ids on PUSH) | the copy dropped, counted `replayed` | pipe closed, no copy delivered |
//! | reordered frames | delivered out of order | out of order (inside the replay window), once each | pipe closed, never out of order |
//! | truncated frame | pipe closed, no partial message | same | same |
//! | reset | pipe closed, redialed | same | same |
//!
//! And tls+tcp, whose stream the proxy cuts in reads rather than frames:
//! delay, jitter and loss pass unseen; a duplicated read or a truncation
//! fails a TLS record and closes the pipe, never delivering a copy or a part.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sp_crypto::integrity::{Integrity, IntegrityConfig, IntegrityStats};
use sp_crypto::keys::SigningKeypair;
use sp_crypto::noise::{self, NoiseConfig, StaticKeypair};
use spstack::{SocketBuilder, Stats};

use crate::net::{Net, Node};
use crate::proxy::{Dir, Faults, Proxy, ProxyStats, Spec};
use crate::{eventually, opts, serial, within};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Stack {
    Plain,
    Integrity,
    Noise,
    /// tls+tcp: the proxy cuts the encrypted stream in reads of up to 64 KiB
    /// (`Framing::Bytes`), TLS records know nothing of SP frames.
    Tls,
}

/// Message `seq`: its number, then bytes that depend on it; every 50th is
/// 20 KiB (several TCP segments, one SP frame).
fn message(seq: u32) -> Vec<u8> {
    let len = if seq % 50 == 49 { 20 << 10 } else { 200 };
    let mut m = seq.to_be_bytes().to_vec();
    m.extend((4..len).map(|i| (i as u32 ^ seq.wrapping_mul(2654435761)) as u8));
    m
}

/// The message number, after checking every byte.
fn check(body: &[u8]) -> u32 {
    assert!(body.len() >= 4, "a message of {} bytes arrived", body.len());
    let seq = u32::from_be_bytes(body[..4].try_into().unwrap());
    assert!(
        body == message(seq).as_slice(),
        "message {seq} arrived altered ({} bytes)",
        body.len()
    );
    seq
}

struct Outcome {
    /// Message numbers in the order the application got them.
    got: Vec<u32>,
    push: Stats,
    pull: Stats,
    proxy: ProxyStats,
    integrity: Option<IntegrityStats>,
    /// Fates of the first connection's messages (for the seed test).
    fates: Vec<crate::proxy::Fate>,
}

/// Sends `n` messages from a PUSH on host a, through a proxy on a with
/// `faults` on the way up, to a PULL on host b; returns once every message
/// is written or counted and nothing more arrives.
async fn push_through(stack: Stack, faults: Faults, seed: u64, n: u32) -> Outcome {
    push_paced(stack, faults, seed, n, None).await
}

/// [`push_through`], with a pause between sends so that a cut finds little
/// in flight and the next messages meet the fates that follow.
async fn push_paced(
    stack: Stack,
    faults: Faults,
    seed: u64,
    n: u32,
    pace: Option<Duration>,
) -> Outcome {
    let net = Net::new("faults");
    let s = net.segment();
    let (a, b) = (net.host("a", &[s]), net.host("b", &[s]));
    let (na, nb) = (Node::start(&a, "push"), Node::start(&b, "pull"));
    let (push_noise, pull_noise) = (StaticKeypair::generate(), StaticKeypair::generate());
    let signer = SigningKeypair::generate();
    let trusted = signer.verifying_key();
    let layers = move |b: SocketBuilder, me: &StaticKeypair, peer: &StaticKeypair| match stack {
        Stack::Noise => b.pipe_layer(noise::layer(
            NoiseConfig::new(me.clone()).allow(peer.public()),
        )),
        _ => b,
    };
    let pull_at = std::net::SocketAddr::from((b.addr(s), 7100));
    let scheme = if stack == Stack::Tls {
        "tls+tcp"
    } else {
        "tcp"
    };
    let pki = Arc::new(crate::pki::Pki::new(&format!("hosts-faults-{seed}")));
    let tls = move |b: SocketBuilder, listens: bool| match stack {
        Stack::Tls => b.transport(Arc::new(sp_transports::tls::tls_tcp(pki.ours(listens)))),
        _ => b,
    };
    let tls2 = tls.clone();
    let (pk, ppk) = (pull_noise.clone(), push_noise.clone());
    let got: Arc<Mutex<Vec<u32>>> = Arc::default();
    let g = got.clone();
    let (pull, integrity) = nb
        .run(async move {
            let mut builder = tls(layers(spstack::pull0().options(opts()), &pk, &ppk), true);
            let mut stats = None;
            if stack == Stack::Integrity {
                let layer = Integrity::new(
                    IntegrityConfig::new(SigningKeypair::generate(), [trusted], "hosts-faults")
                        .expect("config"),
                );
                stats = Some(layer.stats());
                builder = builder.message_layer(layer);
            }
            let pull = builder.build();
            pull.listen(&format!("{scheme}://{pull_at}"))
                .await
                .expect("listen");
            let p = pull.clone();
            tokio::spawn(async move {
                while let Ok(m) = p.recv().await {
                    let seq = check(m.body());
                    g.lock().unwrap().push(seq);
                }
            });
            (pull, stats)
        })
        .await;
    let mut spec = Spec::sp(seed, faults, Faults::default());
    if stack == Stack::Tls {
        spec.framing = crate::proxy::Framing::Bytes;
    }
    let (proxy, push) = within(
        120,
        &format!("{stack:?}: sending {n} messages"),
        na.run(async move {
            let proxy = Proxy::start("127.0.0.1:0".parse().unwrap(), pull_at, spec)
                .await
                .expect("proxy");
            let mut builder = tls2(
                layers(spstack::push0().options(opts()), &push_noise, &pull_noise),
                false,
            );
            if stack == Stack::Integrity {
                builder = builder.message_layer(Integrity::new(
                    IntegrityConfig::new(
                        signer,
                        Vec::<ed25519_dalek::VerifyingKey>::new(),
                        "hosts-faults",
                    )
                    .expect("config"),
                ));
            }
            let push = builder.build();
            push.dial_background(&format!("{scheme}://{}", proxy.addr))
                .unwrap();
            for seq in 0..n {
                push.send(message(seq)).await.expect("send");
                if let Some(p) = pace {
                    tokio::time::sleep(p).await;
                }
            }
            (proxy, push)
        }),
    )
    .await;
    let all = n as u64;
    eventually(
        60,
        "every message written or counted",
        || push.stats(),
        |st| st.msgs_out + st.total_drops() >= all,
    )
    .await;
    // quiet: what is still in flight arrives (the proxy's longest stall is
    // 200 ms << 2^5, and a reset loses the rest)
    let mut last = usize::MAX;
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = got.lock().unwrap().len();
        if now == last && proxy.stats().units > 0 {
            break;
        }
        last = now;
    }
    let out = Outcome {
        got: got.lock().unwrap().clone(),
        push: push.stats(),
        pull: pull.stats(),
        proxy: proxy.stats(),
        integrity,
        fates: proxy.fates(0, Dir::Up),
    };
    drop(proxy);
    out
}

/// Adjacent inversions: one per reordered pair.
fn inversions(got: &[u32]) -> u64 {
    got.windows(2).filter(|w| w[1] < w[0]).count() as u64
}

fn each_once(got: &[u32], n: u32) {
    let mut sorted = got.to_vec();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        (0..n).collect::<Vec<_>>(),
        "every message exactly once"
    );
}

fn increasing_and_unique(got: &[u32]) {
    assert!(
        got.windows(2).all(|w| w[0] < w[1]),
        "out of order or repeated: {got:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delay_jitter_and_loss_only_slow_things_down() {
    let _g = serial().await;
    let n = 400;
    for stack in [Stack::Plain, Stack::Integrity, Stack::Noise, Stack::Tls] {
        let o = push_through(stack, Faults::delay(10, 30).loss(0.05), 1, n).await;
        assert_eq!(
            o.got,
            (0..n).collect::<Vec<_>>(),
            "{stack:?}: in order, once"
        );
        assert!(o.proxy.lost > 0, "{stack:?}: no loss drawn: {:?}", o.proxy);
        assert_eq!(o.push.total_drops() + o.pull.total_drops(), 0, "{stack:?}");
        assert_eq!(o.pull.pipes_closed, 0, "{stack:?}: TCP hides loss");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicated_frames_per_stack() {
    let _g = serial().await;
    let n = 300;
    let dup = Faults::default().duplicate(0.05);

    let o = push_through(Stack::Plain, dup.clone(), 2, n).await;
    assert!(o.proxy.duplicated > 0);
    assert_eq!(
        o.got.len() as u64,
        n as u64 + o.proxy.duplicated,
        "plain SP delivers every copy"
    );
    let mut dedup = o.got.clone();
    dedup.dedup();
    assert_eq!(dedup, (0..n).collect::<Vec<_>>(), "copies come right after");

    let o = push_through(Stack::Integrity, dup.clone(), 2, n).await;
    each_once(&o.got, n);
    increasing_and_unique(&o.got);
    assert_eq!(
        o.integrity.unwrap().replayed(),
        o.proxy.duplicated,
        "every copy refused as a replay"
    );
    assert_eq!(
        o.pull.drops(spstack::DropReason::Rejected),
        o.proxy.duplicated
    );

    for stack in [Stack::Noise, Stack::Tls] {
        let o = push_through(stack, dup.clone(), 2, n).await;
        assert!(o.proxy.duplicated > 0, "{stack:?}");
        increasing_and_unique(&o.got);
        assert!(
            o.pull.pipes_closed + o.pull.total_rejects() >= 1,
            "{stack:?}: a replayed record closes the pipe: {}",
            o.pull
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reordered_frames_per_stack() {
    let _g = serial().await;
    let n = 300;
    let re = Faults::default().reorder(0.05);

    let o = push_through(Stack::Plain, re.clone(), 3, n).await;
    assert!(o.proxy.reordered > 0);
    each_once(&o.got, n);
    assert_eq!(
        inversions(&o.got),
        o.proxy.reordered,
        "one inversion per swap"
    );

    let o = push_through(Stack::Integrity, re.clone(), 3, n).await;
    each_once(&o.got, n);
    assert_eq!(inversions(&o.got), o.proxy.reordered);
    assert_eq!(
        o.integrity.unwrap().replayed(),
        0,
        "within the replay window"
    );

    let o = push_through(Stack::Noise, re, 3, n).await;
    assert!(o.proxy.reordered > 0);
    increasing_and_unique(&o.got);
    assert!(
        o.pull.pipes_closed + o.pull.total_rejects() >= 1,
        "a record out of order closes the pipe: {}",
        o.pull
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncation_and_resets_close_the_pipe_and_never_deliver_a_part() {
    let _g = serial().await;
    let n = 300;
    for (what, f) in [
        ("truncate", Faults::default().truncate(0.02)),
        ("reset", Faults::default().reset(0.02)),
    ] {
        for stack in [Stack::Plain, Stack::Noise, Stack::Tls] {
            let o = push_paced(stack, f.clone(), 4, n, Some(Duration::from_millis(3))).await;
            let cuts = o.proxy.truncated + o.proxy.resets;
            assert!(cuts >= 2, "{what} {stack:?}: {:?}", o.proxy);
            // `check` already refused any altered or partial message
            increasing_and_unique(&o.got);
            assert!(
                o.pull.pipes_closed + o.pull.total_rejects() >= cuts.min(1),
                "{what} {stack:?}: {}",
                o.pull
            );
            assert!(
                o.proxy.conns > cuts,
                "{what} {stack:?}: the PUSH redialed after each cut"
            );
            // what the cuts cost: the frames in flight then (TCP buffers and
            // the proxy), never more than sent
            let lost = n as u64 - o.got.len() as u64;
            assert!(
                o.got.len() as u64 + o.push.total_drops() <= n as u64,
                "{what} {stack:?}"
            );
            eprintln!(
                "figures: {what} {stack:?}: {cuts} cuts, {lost} of {n} lost in flight, {} counted",
                o.push.total_drops()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_seed_draws_the_same_fates() {
    let _g = serial().await;
    let f = Faults::delay(1, 5).loss(0.1).duplicate(0.1).reorder(0.1);
    let a = push_through(Stack::Plain, f.clone(), 42, 200).await;
    let b = push_through(Stack::Plain, f.clone(), 42, 200).await;
    let c = within(120, "third run", push_through(Stack::Plain, f, 43, 200)).await;
    assert!(a.fates.len() >= 200, "{} fates", a.fates.len());
    assert_eq!(a.fates, b.fates, "same seed, same fates");
    assert_eq!(a.got, b.got, "and the same delivery");
    assert_ne!(a.fates, c.fates, "another seed, other fates");
}

//! PUB → device → three SUBs on five hosts, every link through a fault
//! proxy with 50 ms of delay and 5 % loss each way (the device's uplink
//! wider than its links to the subscribers, so both PUBs overflow):
//!
//! ```text
//!  pub ──seg x── [proxy] dev ──seg y── [proxy] sub1
//!                                 ├──── [proxy] sub2
//!                                 └──── [proxy] sub3 (a slow reader)
//! ```
//!
//! PUB never waits, so what a lossy link cannot carry is dropped, by design,
//! where a queue is full: at the PUB (its pipe to the device), in the
//! device's SUB, at the device's PUB (per subscriber's pipe) or in the SUB
//! (drop-oldest for a slow reader). Expected: for every subscriber, what it
//! received plus every drop counted on its path equals what was published,
//! exactly (nothing lost without a count; the links never reset here, so
//! nothing dies in flight); what arrives is in order, once, intact; memory
//! stays bounded while far more is published than the links carry.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use spstack::{Socket, Stats, SubControl};

use crate::measure::{mib, rss, RssPeak};
use crate::net::{Net, Node};
use crate::proxy::{Faults, Proxy, Spec};
use crate::{eventually, opts, serial};

const PUB_PORT: u16 = 7300;
const DEV_PORT: u16 = 7301;

/// Message `seq` of `len` bytes: its number, then bytes that depend on it.
fn message(seq: u32, len: usize) -> Vec<u8> {
    let mut m = seq.to_be_bytes().to_vec();
    m.extend((4..len).map(|i| (i as u32 ^ seq.wrapping_mul(2654435761)) as u8));
    m
}

fn check(body: &[u8]) -> u32 {
    let seq = u32::from_be_bytes(body[..4].try_into().expect("4 bytes at least"));
    assert!(
        body == message(seq, body.len()).as_slice(),
        "message {seq} altered"
    );
    seq
}

/// A lossy link: 50 ms each way, 5 % of frames stalled one round trip
/// (TCP's fast retransmit; its RTO of 200 ms for tail losses is rarer),
/// at most `window` bytes in flight (what it carries per round trip).
fn lossy(seed: u64, window: usize) -> Spec {
    let mut f = Faults::delay(50, 0).loss(0.05);
    f.rto = Duration::from_millis(100);
    let mut s = Spec::sp(seed, f.clone(), f);
    s.window = window;
    s
}

#[derive(Default)]
struct Received {
    count: AtomicU64,
    last: Mutex<Option<u32>>,
}

struct Sub {
    _node: Node,
    sock: Socket,
    got: Arc<Received>,
    addr: IpAddr,
    _proxy: Proxy,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pub_device_subs_over_lossy_links_count_every_drop() {
    let _g = serial().await;
    let net = Net::new("pubsub");
    let (x, y) = (net.segment(), net.segment());
    let pub_h = net.host("pub", &[x]);
    let dev_h = net.host("dev", &[x, y]);
    let sub_h: Vec<_> = (1..=3)
        .map(|i| net.host(&format!("sub{i}"), &[y]))
        .collect();
    let baseline = rss();
    let peak = RssPeak::start();

    let pub_node = Node::start(&pub_h, "pub");
    let pub_url = format!("tcp://{}:{PUB_PORT}", pub_h.addr(x));
    let publisher = pub_node
        .run(async move {
            let p = spstack::pub0().options(opts()).build();
            p.listen(&pub_url).await.expect("listen");
            p
        })
        .await;

    let dev_node = Node::start(&dev_h, "dev");
    let (up, dev_url) = (
        SocketAddr::from((pub_h.addr(x), PUB_PORT)),
        format!("tcp://{}:{DEV_PORT}", dev_h.addr(y)),
    );
    let (dev_sub, dev_pub, _dev_proxy) = dev_node
        .run(async move {
            let proxy = Proxy::start("127.0.0.1:0".parse().unwrap(), up, lossy(1, 1 << 20))
                .await
                .expect("proxy");
            let (b, _) = spstack::raw_sub0();
            let s = b.options(opts()).build();
            s.dial_background(&proxy.url()).unwrap();
            let p = spstack::raw(spstack::Protocol::Pub0)
                .options(opts())
                .build();
            p.listen(&dev_url).await.expect("listen");
            let (s2, p2) = (s.clone(), p.clone());
            tokio::spawn(async move { spstack::device(&s2, &p2).await });
            (s, p, proxy)
        })
        .await;

    let mut subs = Vec::new();
    for (i, h) in sub_h.iter().enumerate() {
        let node = Node::start(h, &format!("sub{}", i + 1));
        let dev_at = SocketAddr::from((dev_h.addr(y), DEV_PORT));
        let got = Arc::new(Received::default());
        let g = got.clone();
        // sub3 reads slowly: its own queue drops the oldest, counted
        let slow = i == 2;
        let (sock, proxy) = node
            .run(async move {
                let proxy = Proxy::start(
                    "127.0.0.1:0".parse().unwrap(),
                    dev_at,
                    lossy(10 + i as u64, 64 << 10),
                )
                .await
                .expect("proxy");
                let s = spstack::sub0().options(opts()).build();
                s.control::<SubControl>().unwrap().subscribe(b"").unwrap();
                s.dial_background(&proxy.url()).unwrap();
                let s2 = s.clone();
                tokio::spawn(async move {
                    while let Ok(m) = s2.recv().await {
                        let seq = check(m.body());
                        {
                            let mut last = g.last.lock().unwrap();
                            assert!(
                                last.is_none_or(|l| seq > l),
                                "message {seq} after {last:?}: out of order or twice"
                            );
                            *last = Some(seq);
                        }
                        g.count.fetch_add(1, Ordering::Relaxed);
                        if slow {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                });
                (s, proxy)
            })
            .await;
        subs.push(Sub {
            _node: node,
            sock,
            got,
            addr: IpAddr::V4(h.addr(y)),
            _proxy: proxy,
        });
    }
    // PUB drops what it sends before a subscriber's pipe exists: start once
    // the whole tree is connected
    let (p, d) = (publisher.clone(), dev_pub.clone());
    eventually(
        30,
        "the tree connected",
        || (p.pipes().len(), d.pipes().len()),
        |(a, b)| *a == 1 && *b == 3,
    )
    .await;

    // paced (about what the links carry), then a burst far beyond it
    let p = publisher.clone();
    let sent = pub_node
        .run(async move {
            let mut seq = 0u32;
            for _ in 0..400 {
                p.send(message(seq, 300)).await.expect("publish");
                seq += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            for _ in 0..20_000 {
                p.send(message(seq, 4096)).await.expect("publish");
                seq += 1;
                if seq % 256 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            seq as u64
        })
        .await;

    // every subscriber: received + drops on its path == published
    let path_of = |s: &Sub| -> (u64, Stats) {
        let pipe = dev_pub
            .pipes()
            .into_iter()
            .find(|id| {
                dev_pub
                    .pipe_info(*id)
                    .and_then(|i| {
                        let a = i.peer_addr.trim_start_matches("tcp://");
                        a.parse::<SocketAddr>().ok()
                    })
                    .is_some_and(|a| a.ip() == s.addr)
            })
            .expect("the device's pipe to this subscriber");
        let per_pipe = dev_pub.pipe_stats(pipe).expect("pipe stats");
        let counted = publisher.stats().total_drops()
            + dev_sub.stats().total_drops()
            + per_pipe.total_drops()
            + s.sock.stats().total_drops();
        (s.got.count.load(Ordering::Relaxed) + counted, per_pipe)
    };
    let mut figures = Vec::new();
    for (i, s) in subs.iter().enumerate() {
        let (total, per_pipe) = eventually(
            120,
            &format!("sub{}: received + counted drops reach {sent}", i + 1),
            || path_of(s),
            |(t, _)| *t >= sent,
        )
        .await;
        assert_eq!(
            total,
            sent,
            "sub{}: more received and counted than published",
            i + 1
        );
        figures.push(format!(
            "sub{}: {} received, dropped at the device's pipe {} and in the SUB {}",
            i + 1,
            s.got.count.load(Ordering::Relaxed),
            per_pipe.total_drops(),
            s.sock.stats().total_drops()
        ));
    }
    let peak_growth = peak.peak().saturating_sub(baseline);
    assert!(
        peak_growth < 96 << 20,
        "memory grew by {:.0} MiB while {} MiB were published",
        mib(peak_growth),
        sent * 4 / 1024
    );
    let slow = subs[2].sock.stats();
    assert!(
        slow.drops(spstack::DropReason::QueueFull) > 0,
        "the slow reader's own queue dropped: {slow}"
    );
    assert!(
        publisher.stats().total_drops() + dev_pub.stats().total_drops() > 0,
        "the burst overran the lossy links somewhere before the SUBs"
    );
    eprintln!(
        "figures: pubsub, 5 % loss + 50 ms each way: {sent} published, dropped at the PUB {}, \
         in the device's SUB {}; {}; peak RSS growth {:.1} MiB",
        publisher.stats().total_drops(),
        dev_sub.stats().total_drops(),
        figures.join("; "),
        mib(peak_growth)
    );
    drop(subs);
}

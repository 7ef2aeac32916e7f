//! REQ → device → device → REP across four hosts, every hop Noise-encrypted
//! with its own keys, requests and replies signed end to end (integrity):
//!
//! ```text
//!  client ──seg a── dev1 ──seg b── dev2 ──seg c── server
//! ```
//!
//! Each host sees only its neighbours (a device is the only way through).
//! The client's REQ resends after 1 s. Expected: every request answered
//! exactly once to the application, and executed once by the server (the
//! integrity layer refuses resent copies as replays), through
//!
//! * a partition of the middle link (seg b) with requests outstanding: the
//!   originals wait in TCP and arrive when it heals, the resends queued
//!   behind them are refused as replays;
//! * device 2 dying (power loss) with requests inside and restarting: the
//!   requests die with it, the client's resend carries them through the new
//!   device 2. Device 1 keeps its dead connection until it writes to it
//!   (the new host answers RST): a heartbeat (sp-reliable) would find out
//!   before a request is lost to it.
//!
//! `a_reply_lost_in_a_killed_device_is_answered_by_the_resend`: the server
//! executed the request, the reply died in the device, and the resend is
//! answered from the server integrity layer's kept reply (integrity/2), the
//! request not run again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sp_crypto::integrity::{Integrity, IntegrityConfig, IntegrityStats};
use sp_crypto::keys::SigningKeypair;
use sp_crypto::noise::{self, NoiseConfig, StaticKeypair};
use spstack::{Protocol, Socket, SocketBuilder};
use tokio::sync::watch;

use crate::net::{Host, Net, Node, Seg};
use crate::{eventually, opts, serial, within};

const FRONT: u16 = 7201;

#[derive(Clone)]
struct Keys {
    client: StaticKeypair,
    dev1_front: StaticKeypair,
    dev1_back: StaticKeypair,
    dev2_front: StaticKeypair,
    dev2_back: StaticKeypair,
    server: StaticKeypair,
    client_signer: SigningKeypair,
    server_signer: SigningKeypair,
}

fn hop(b: SocketBuilder, me: &StaticKeypair, peer: &StaticKeypair) -> SocketBuilder {
    b.pipe_layer(noise::layer(
        NoiseConfig::new(me.clone()).allow(peer.public()),
    ))
}

/// What the server saw.
#[derive(Clone, Default)]
struct Served {
    /// Executions per request.
    runs: Arc<Mutex<HashMap<String, u32>>>,
}

struct Chain {
    net: Net,
    segs: [Seg; 3],
    hosts: [Host; 4],
    keys: Keys,
    client_node: Node,
    client: Socket,
    client_integrity: IntegrityStats,
    /// Kept running: the device and the server's program.
    _dev1: Node,
    dev2: Option<Node>,
    dev2_front: Option<Socket>,
    _server_node: Node,
    _server: Socket,
    server_integrity: IntegrityStats,
    served: Served,
    /// While true the server holds its replies.
    hold: watch::Sender<bool>,
}

/// A device on `node`: raw REP listening at `front`, raw REQ dialing `back`.
async fn device(
    node: &Node,
    front: String,
    back: String,
    keys: (StaticKeypair, StaticKeypair, StaticKeypair, StaticKeypair),
) -> (Socket, Socket) {
    node.run(async move {
        let (me_front, prev, me_back, next) = keys;
        let f = hop(spstack::raw(Protocol::Rep0), &me_front, &prev)
            .options(opts())
            .build();
        f.listen(&front).await.expect("device listens");
        let b = hop(spstack::raw(Protocol::Req0), &me_back, &next)
            .options(opts())
            .build();
        b.dial_background(&back).expect("device dials");
        let (f2, b2) = (f.clone(), b.clone());
        tokio::spawn(async move { spstack::device(&f2, &b2).await });
        (f, b)
    })
    .await
}

/// Device 2 on its host (again), with the same keys and addresses.
async fn start_dev2(c_net: &mut Chain) {
    let [_, _, d2, srv] = &c_net.hosts;
    let [_, b, c] = c_net.segs;
    let k = &c_net.keys;
    let node = Node::start(d2, "dev2");
    let (front, _) = device(
        &node,
        format!("tcp://{}:{FRONT}", d2.addr(b)),
        format!("tcp://{}:{FRONT}", srv.addr(c)),
        (
            k.dev2_front.clone(),
            k.dev1_back.clone(),
            k.dev2_back.clone(),
            k.server.clone(),
        ),
    )
    .await;
    c_net.dev2 = Some(node);
    c_net.dev2_front = Some(front);
}

async fn chain(tag: &str) -> Chain {
    let net = Net::new(tag);
    let (a, b, c) = (net.segment(), net.segment(), net.segment());
    let client_h = net.host("client", &[a]);
    let dev1_h = net.host("dev1", &[a, b]);
    let dev2_h = net.host("dev2", &[b, c]);
    let server_h = net.host("server", &[c]);
    let keys = Keys {
        client: StaticKeypair::generate(),
        dev1_front: StaticKeypair::generate(),
        dev1_back: StaticKeypair::generate(),
        dev2_front: StaticKeypair::generate(),
        dev2_back: StaticKeypair::generate(),
        server: StaticKeypair::generate(),
        client_signer: SigningKeypair::generate(),
        server_signer: SigningKeypair::generate(),
    };

    let server_node = Node::start(&server_h, "server");
    let served = Served::default();
    let (hold, hold_rx) = watch::channel(false);
    let (k, sv, url) = (
        keys.clone(),
        served.clone(),
        format!("tcp://{}:{FRONT}", server_h.addr(c)),
    );
    let (server, server_integrity) = server_node
        .run(async move {
            let integrity = Integrity::replier(
                IntegrityConfig::new(
                    k.server_signer.clone(),
                    [k.client_signer.verifying_key()],
                    "hosts-reqrep",
                )
                .expect("config"),
            );
            let stats = integrity.stats();
            let server = hop(spstack::rep0(), &k.server, &k.dev2_back)
                .options(opts())
                .message_layer(integrity)
                .build();
            server.listen(&url).await.expect("server listens");
            let s = server.clone();
            tokio::spawn(async move {
                let mut hold = hold_rx;
                while let Ok(m) = s.recv().await {
                    let body = String::from_utf8_lossy(m.body()).into_owned();
                    *sv.runs.lock().unwrap().entry(body.clone()).or_default() += 1;
                    // a server that is slow to answer (the hold), as long as asked
                    let _ = hold.wait_for(|h| !*h).await;
                    if s.send(format!("re: {body}")).await.is_err() {
                        break;
                    }
                }
            });
            (server, stats)
        })
        .await;

    let mut chain = Chain {
        net,
        segs: [a, b, c],
        hosts: [client_h.clone(), dev1_h.clone(), dev2_h.clone(), server_h],
        keys: keys.clone(),
        client_node: Node::start(&client_h, "client"),
        client: spstack::req0().build(),
        client_integrity: IntegrityStats::default(),
        _dev1: Node::start(&dev1_h, "dev1"),
        dev2: None,
        dev2_front: None,
        _server_node: server_node,
        _server: server,
        server_integrity,
        served,
        hold,
    };
    start_dev2(&mut chain).await;
    device(
        &chain._dev1,
        format!("tcp://{}:{FRONT}", dev1_h.addr(a)),
        format!("tcp://{}:{FRONT}", dev2_h.addr(b)),
        (
            keys.dev1_front.clone(),
            keys.client.clone(),
            keys.dev1_back.clone(),
            keys.dev2_front.clone(),
        ),
    )
    .await;
    let (k, url) = (keys, format!("tcp://{}:{FRONT}", dev1_h.addr(a)));
    (chain.client, chain.client_integrity) = chain
        .client_node
        .run(async move {
            let integrity = Integrity::requester(
                IntegrityConfig::new(
                    k.client_signer.clone(),
                    [k.server_signer.verifying_key()],
                    "hosts-reqrep",
                )
                .expect("config"),
            );
            let stats = integrity.stats();
            let client = hop(spstack::req0(), &k.client, &k.dev1_front)
                .options(opts().req_resend(Some(Duration::from_secs(1))))
                .message_layer(integrity)
                .build();
            client.dial_background(&url).expect("client dials");
            (client, stats)
        })
        .await;
    chain
}

impl Chain {
    /// Sends each of `names` on a context of its own, on the client; the
    /// handles resolve to the replies.
    fn ask(&self, names: &[String]) -> Vec<(String, tokio::task::JoinHandle<String>)> {
        names
            .iter()
            .map(|n| {
                let (c, n2) = (self.client.clone(), n.clone());
                let h = self.client_node.spawn(async move {
                    let mut ctx = c.context();
                    ctx.send(n2.clone()).await.expect("send");
                    let r = ctx.recv().await.expect("reply");
                    String::from_utf8_lossy(r.body()).into_owned()
                });
                (n.clone(), h)
            })
            .collect()
    }

    /// Every handle resolves to its own reply within `secs`.
    async fn answered(&self, asked: Vec<(String, tokio::task::JoinHandle<String>)>, secs: u64) {
        for (name, h) in asked {
            let r = within(secs, &format!("reply to {name}"), h).await.unwrap();
            assert_eq!(r, format!("re: {name}"), "the reply to {name}");
        }
    }

    /// The server ran each of `names` exactly once.
    fn ran_once(&self, names: &[String]) {
        let runs = self.served.runs.lock().unwrap();
        for n in names {
            assert_eq!(
                runs.get(n),
                Some(&1),
                "{n} executed {:?} times",
                runs.get(n)
            );
        }
    }
}

fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_answered_once_through_a_partition_and_a_device_restart() {
    let _g = serial().await;
    let mut c = chain("reqrep").await;
    let [_, b, c_seg] = c.segs;
    let [_, dev1_h, dev2_h, _] = c.hosts.clone();

    let warm = names("warm", 5);
    c.answered(c.ask(&warm), 30).await;
    c.ran_once(&warm);

    // 1. the middle link partitioned with 8 requests on their way
    let p = names("partition", 8);
    c.net.cut(&dev1_h, b);
    c.net.cut(&dev2_h, b);
    let asked = c.ask(&p);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        asked.iter().all(|(_, h)| !h.is_finished()),
        "answered across a partition"
    );
    // a resend of a request the server took already is a `duplicate`
    // (answered again from its kept reply, never run twice); `replayed`
    // is what no request of this run explains
    let refused_before = c.server_integrity.duplicate() + c.server_integrity.replayed();
    c.net.heal(&dev1_h, b);
    c.net.heal(&dev2_h, b);
    let t_heal = Instant::now();
    c.answered(asked, 60).await;
    let partition_recovery = t_heal.elapsed();
    c.ran_once(&p);
    // the client resent every second meanwhile; those copies arrived too
    let refused = c.server_integrity.duplicate() + c.server_integrity.replayed() - refused_before;
    assert!(
        refused >= 1,
        "the resends queued behind the originals reached the server and were refused"
    );

    // 2. device 2 dies with 8 requests inside: it loses power while the
    //    server's link is down, so nothing of them got past it
    let k = names("restart", 8);
    let seen_before = c.served.runs.lock().unwrap().len();
    let front = c.dev2_front.clone().expect("device 2 runs");
    let in_before = front.stats().msgs_in;
    c.net.cut(&dev2_h, c_seg);
    let asked = c.ask(&k);
    eventually(
        30,
        "the requests reached device 2",
        || front.stats().msgs_in,
        |n| *n >= in_before + k.len() as u64,
    )
    .await;
    c.net.power_off(&dev2_h);
    c.dev2.take().expect("device 2 runs").kill();
    tokio::time::sleep(Duration::from_secs(1)).await;
    // back with the same addresses (its links, cut one included, plugged in)
    c.net.power_on(&dev2_h);
    let t_restart = Instant::now();
    start_dev2(&mut c).await;
    c.answered(asked, 60).await;
    let restart_recovery = t_restart.elapsed();
    c.ran_once(&k);
    assert_eq!(
        c.served.runs.lock().unwrap().len(),
        seen_before + k.len(),
        "only these requests were new to the server"
    );
    assert_eq!(
        c.client_integrity.total_dropped(),
        0,
        "no reply failed verification at the client"
    );
    eprintln!(
        "figures: reqrep: partition healed → 8 answers in {partition_recovery:?} ({refused} \
         resent copies refused as replays); device 2 restarted → 8 answers in \
         {restart_recovery:?}; server executions {}",
        c.served.runs.lock().unwrap().values().sum::<u32>()
    );
}

/// The server executed the request, the reply died with device 2 (killed as
/// with SIGKILL), and the client's resend carries the same signed request:
/// the server's integrity layer knows it as answered and sends its kept
/// reply again, without running the request twice (integrity/2; before it,
/// the resend was refused as a replay and the request never answered).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_lost_in_a_killed_device_is_answered_by_the_resend() {
    let _g = serial().await;
    let mut c = chain("reqrep-lost").await;
    c.answered(c.ask(&names("warm", 2)), 30).await;
    c.hold.send_replace(true);
    let k = names("lost-reply", 4);
    let asked = c.ask(&k);
    let served = c.served.clone();
    eventually(
        30,
        "the server received the first request",
        || served.runs.lock().unwrap().len(),
        |n| *n >= 3,
    )
    .await;
    c.dev2.take().expect("device 2 runs").kill();
    // the replies go to a pipe that is gone
    c.hold.send_replace(false);
    start_dev2(&mut c).await;
    for (name, h) in asked {
        let r = tokio::time::timeout(Duration::from_secs(60), h).await;
        assert!(
            r.is_ok(),
            "{name}: no reply within 60 s; the server refused {} resent requests ({} as replays)",
            c.server_integrity.duplicate() + c.server_integrity.replayed(),
            c.server_integrity.replayed()
        );
        assert_eq!(r.unwrap().unwrap(), format!("re: {name}"));
    }
    c.ran_once(&k);
}

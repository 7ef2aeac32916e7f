//! `heartbeat/1` and `ack/1` (the `sp-reliable` pipe layers) across test
//! hosts, each beside the same topology without them so that the difference
//! shows:
//!
//! * `heartbeat_*`: a SUB (which never writes) and an idle REP, both dialers
//!   on host `edge`, their PUB and REQ on host `hub`. A silent partition,
//!   then a power loss of `hub`: with `heartbeat/1` (200 ms × 3) both pipes
//!   are closed, counted `Unresponsive`, redialed and carry traffic again;
//!   without it they stay listed, and after the power loss the edge never
//!   hears from the rebooted hub.
//! * `ack_push_*`: one PUSH, two PULLs on three hosts, 5,000 numbered
//!   messages; half-way one PULL's host loses power (no FIN), and the last
//!   quarter is sent after that. With `heartbeat/1` + `ack/1` every message
//!   reaches an application, once per receiver; what the vanished PULL's
//!   application took in its last acknowledgement delay is delivered by the
//!   other too (bounded). Without them what the dead connection held is
//!   lost, and no counter says so.
//! * `ack_through_*`: the same PUSH and PULLs with one link through the
//!   fault proxy, which truncates and resets connections: with the layers
//!   every message once per receiver; without, the cut ones are lost.
//! * `req_rep_*`: REQ → two devices on two hosts → REP, integrity end to
//!   end, no resend timer (`req_resend(None)`); one device's host loses
//!   power with requests inside. With `heartbeat/1` + `ack/1` every request
//!   is answered and none runs twice (a request the device had not
//!   acknowledged may reach the server twice, the handed-back copy and
//!   REQ's own resend: the server's integrity layer answers the second from
//!   its kept reply); without them the requests the dead device held are
//!   never answered.
//!
//! A power loss here stops the host's program first (its node's runtime is
//! blocked between two polls), then removes the host's links, then kills
//! the node: as with a real power cut, nothing the program would have done
//! after that instant reaches the network, while what its kernel had already
//! accepted from it still does (`lose_power`). Killing the node first would
//! send FINs; removing the links first would let the program run on (take
//! messages, write acknowledgements nobody receives) for as long as `ip`
//! takes.

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sp_crypto::integrity::{Integrity, IntegrityConfig, IntegrityStats};
use sp_crypto::keys::SigningKeypair;
use spstack::reliable::ack::{Ack, AckCounters, AckStats};
use spstack::reliable::heartbeat::{Heartbeat, HeartbeatCounters};
use spstack::{Protocol, RejectReason, Socket, SocketBuilder, Stats, SubControl};
use tokio::sync::watch;

use crate::net::{Host, Net, Node};
use crate::proxy::{Faults, Proxy, ProxyStats, Spec};
use crate::{eventually, opts, serial, within};

/// The heartbeat's interval and misses: a silent peer is given up after
/// 600–800 ms.
const INTERVAL: Duration = Duration::from_millis(200);
const MISSES: u32 = 3;
/// "Detected in time": ten intervals, generous on a loaded machine and
/// still far below the 15 minutes TCP takes (`tcp_retries2`).
const BOUND: Duration = Duration::from_millis(10 * 200);

fn beat() -> Heartbeat {
    Heartbeat::new(INTERVAL).misses(MISSES)
}

/// What each pipe of a socket carries below its protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layers {
    /// Nothing: what nng and nanomsg peers get.
    Plain,
    /// `heartbeat/1`.
    Heartbeat,
    /// `heartbeat/1`, then `ack/1` (which must be last).
    HeartbeatAck,
}

/// Counters of the reliable layers of one socket, when it has them.
#[derive(Clone, Default)]
struct Layered {
    beat: Option<Arc<HeartbeatCounters>>,
    ack: Option<Arc<AckCounters>>,
}

impl Layered {
    fn acks(&self) -> AckStats {
        self.ack.as_ref().map(|a| a.snapshot()).unwrap_or_default()
    }
}

impl Layers {
    fn on(self, b: SocketBuilder) -> (SocketBuilder, Layered) {
        let mut l = Layered::default();
        let b = match self {
            Layers::Plain => b,
            Layers::Heartbeat | Layers::HeartbeatAck => {
                let hb = beat();
                l.beat = Some(hb.stats());
                b.pipe_layer(hb.layer())
            }
        };
        let b = if self == Layers::HeartbeatAck {
            let a = Ack::new();
            l.ack = Some(a.stats());
            b.pipe_layer(a.layer())
        } else {
            b
        };
        (b, l)
    }
}

/// Polls every 10 ms until each socket of `socks` has counted its number
/// of pipes `Unresponsive`; the time since `t0` at which each did.
async fn unresponsive(
    t0: Instant,
    secs: u64,
    what: &str,
    socks: &[(&str, &Socket, u64)],
) -> Vec<Duration> {
    let deadline = Duration::from_secs(secs);
    let mut at: Vec<Option<Duration>> = vec![None; socks.len()];
    loop {
        for (i, (_, s, n)) in socks.iter().enumerate() {
            if at[i].is_none() && s.stats().rejects(RejectReason::Unresponsive) >= *n {
                at[i] = Some(t0.elapsed());
            }
        }
        if at.iter().all(Option::is_some) {
            return at.into_iter().flatten().collect();
        }
        for (i, (who, s, _)) in socks.iter().enumerate() {
            assert!(
                at[i].is_some() || t0.elapsed() < deadline,
                "{what}: the {who} closed no pipe as unresponsive within {secs} s: {}",
                s.stats()
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Sleeps until `d` has passed since `t0`.
async fn until_elapsed(t0: Instant, d: Duration) {
    if let Some(left) = d.checked_sub(t0.elapsed()) {
        tokio::time::sleep(left).await;
    }
}

/// A power cut of `host`, where `node` runs: the node's program stops where
/// it is (its runtime's only thread blocked between two polls, `dead` set),
/// then the host's links vanish (no FIN, no RST, nothing more leaves), then
/// the node goes. Returns the instant the program stopped: the last moment
/// it could have sent anything, from which its peers' heartbeats count.
///
/// Tasks woken after the links vanished run briefly before the node dies;
/// whatever they write goes nowhere, and a receiver must look at `dead`
/// before recording what it takes (the application died with the power).
async fn lose_power(net: &Net, host: &Host, node: Node, dead: Arc<AtomicBool>) -> Instant {
    let (stopped_tx, stopped_rx) = tokio::sync::oneshot::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    node.spawn(async move {
        dead.store(true, SeqCst);
        let _ = stopped_tx.send(Instant::now());
        // the node's runtime is current-thread: blocking here stops every
        // task of the node until the links are gone
        let _ = release_rx.recv();
    });
    let stopped = within(30, "the powered-off node stops", stopped_rx)
        .await
        .expect("the node's runtime runs the stopping task");
    net.power_off(host);
    drop(release_tx);
    node.kill();
    stopped
}

// ---------------------------------------------------------------- liveness

const PUB_PORT: u16 = 7400;
const REQ_PORT: u16 = 7410;

fn port(base: u16, l: Layers) -> u16 {
    base + l as u16
}

/// The hub's program: a PUB and a REQ listening, for each of `LIVENESS`.
struct HubSockets {
    pubs: Vec<Socket>,
    reqs: Vec<Socket>,
}

const LIVENESS: [Layers; 2] = [Layers::Plain, Layers::Heartbeat];

async fn start_hub(node: &Node, at: Ipv4Addr) -> HubSockets {
    node.run(async move {
        let mut hub = HubSockets {
            pubs: Vec::new(),
            reqs: Vec::new(),
        };
        for l in LIVENESS {
            let p = l.on(spstack::pub0().options(opts())).0.build();
            p.listen(&format!("tcp://{at}:{}", port(PUB_PORT, l)))
                .await
                .expect("PUB listens");
            // no resend timer: an answer comes over the pipe the request
            // took, or not at all
            let r = l
                .on(spstack::req0().options(opts().req_resend(None)))
                .0
                .build();
            r.listen(&format!("tcp://{at}:{}", port(REQ_PORT, l)))
                .await
                .expect("REQ listens");
            hub.pubs.push(p);
            hub.reqs.push(r);
        }
        hub
    })
    .await
}

/// The edge's program for one stack: a SUB dialing the hub's PUB, a REP
/// dialing the hub's REQ (workers dialing their broker), each counting what
/// it got.
struct EdgeSockets {
    sub: Socket,
    heard: Arc<AtomicU64>,
    rep: Socket,
    served: Arc<AtomicU64>,
}

async fn start_edge(node: &Node, hub: Ipv4Addr, l: Layers) -> EdgeSockets {
    node.run(async move {
        let sub = l.on(spstack::sub0().options(opts())).0.build();
        sub.control::<SubControl>()
            .expect("a SUB")
            .subscribe(b"")
            .expect("subscribe");
        sub.dial_background(&format!("tcp://{hub}:{}", port(PUB_PORT, l)))
            .expect("SUB dials");
        let rep = l.on(spstack::rep0().options(opts())).0.build();
        rep.dial_background(&format!("tcp://{hub}:{}", port(REQ_PORT, l)))
            .expect("REP dials");
        let (heard, served) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (s, h) = (sub.clone(), heard.clone());
        tokio::spawn(async move {
            while s.recv().await.is_ok() {
                h.fetch_add(1, SeqCst);
            }
        });
        let (r, n) = (rep.clone(), served.clone());
        tokio::spawn(async move {
            while let Ok(m) = r.recv().await {
                n.fetch_add(1, SeqCst);
                let reply = [b"re: ".as_slice(), m.body()].concat();
                if r.send(reply).await.is_err() {
                    break;
                }
            }
        });
        EdgeSockets {
            sub,
            heard,
            rep,
            served,
        }
    })
    .await
}

/// Publishes on `p` every 20 ms until `heard` grows (a PUB drops what it
/// sends with no pipe to a subscriber); how long that took.
async fn publish_until_heard(
    node: &Node,
    p: &Socket,
    heard: &Arc<AtomicU64>,
    secs: u64,
    what: &str,
) -> Duration {
    let (p, heard, what) = (p.clone(), heard.clone(), what.to_string());
    node.run(async move {
        let (t0, before) = (Instant::now(), heard.load(SeqCst));
        loop {
            p.send("tick").await.expect("publish");
            tokio::time::sleep(Duration::from_millis(20)).await;
            if heard.load(SeqCst) > before {
                return t0.elapsed();
            }
            assert!(
                t0.elapsed() < Duration::from_secs(secs),
                "{what}: nothing published reached the subscriber within {secs} s"
            );
        }
    })
    .await
}

/// Publishes on `p` every 20 ms for `d`.
async fn publish_for(node: &Node, p: &Socket, d: Duration) {
    let p = p.clone();
    node.run(async move {
        let t0 = Instant::now();
        while t0.elapsed() < d {
            p.send("tick").await.expect("publish");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

/// One request from `req` on a context of its own: the round trip, or
/// `None` if no answer came within `d`.
async fn ask(node: &Node, req: &Socket, body: &str, d: Duration) -> Option<Duration> {
    let (req, body) = (req.clone(), body.to_string());
    node.run(async move {
        let t0 = Instant::now();
        let mut ctx = req.context();
        let answered = tokio::time::timeout(d, async {
            ctx.send(body.clone()).await.expect("send a request");
            ctx.recv().await.expect("a reply")
        })
        .await;
        answered.ok().map(|reply| {
            assert_eq!(reply.body(), format!("re: {body}").as_bytes());
            t0.elapsed()
        })
    })
    .await
}

fn pipes_opened_closed(s: &Socket) -> (usize, u64, u64) {
    let st = s.stats();
    (s.pipes().len(), st.pipes_opened, st.pipes_closed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_closes_the_pipes_of_a_silent_partition_and_a_powered_off_host_and_the_dialers_redial(
) {
    let _g = serial().await;
    let net = Net::new("beat");
    let s = net.segment();
    let (hub_h, edge_h) = (net.host("hub", &[s]), net.host("edge", &[s]));
    let hub_at = hub_h.addr(s);
    let mut hub_node = Node::start(&hub_h, "hub");
    let mut hub = start_hub(&hub_node, hub_at).await;
    let edge_node = Node::start(&edge_h, "edge");
    let mut edge = Vec::new();
    for l in LIVENESS {
        edge.push(start_edge(&edge_node, hub_at, l).await);
    }
    let (plain, hb) = (0, 1);
    for (i, l) in LIVENESS.iter().enumerate() {
        let e = &edge[i];
        eventually(
            30,
            &format!("{l:?}: the edge dialed the hub"),
            || (e.sub.pipes().len(), e.rep.pipes().len()),
            |n| *n == (1, 1),
        )
        .await;
        publish_until_heard(&hub_node, &hub.pubs[i], &e.heard, 30, "before").await;
        let rt = ask(&hub_node, &hub.reqs[i], "before", Duration::from_secs(30)).await;
        assert!(rt.is_some(), "{l:?}: no answer before any fault");
    }

    // 1. a silent partition: the edge's port leaves the switch; neither
    //    side sends a FIN or sees a carrier change
    let t_cut = Instant::now();
    net.cut(&edge_h, s);
    let hb_e = &edge[hb];
    let cut = unresponsive(
        t_cut,
        30,
        "partition",
        &[
            ("SUB", &hb_e.sub, 1),
            ("REP", &hb_e.rep, 1),
            ("PUB", &hub.pubs[hb], 1),
            ("REQ", &hub.reqs[hb], 1),
        ],
    )
    .await;
    let [cut_sub, cut_rep, cut_pub, cut_req] = cut[..] else {
        unreachable!("one time per socket")
    };
    for (who, d) in [("SUB", cut_sub), ("REP", cut_rep)] {
        assert!(
            d < BOUND,
            "partition: the {who}'s pipe closed after {d:?}, not within {BOUND:?}"
        );
    }
    until_elapsed(t_cut, BOUND).await;
    // the heartbeat's pipes are gone (no redial gets through a partition);
    // the plain ones are all still there, on both sides
    assert!(hb_e.sub.pipes().is_empty() && hb_e.rep.pipes().is_empty());
    let pe = &edge[plain];
    for (who, sock) in [
        ("SUB", &pe.sub),
        ("REP", &pe.rep),
        ("PUB", &hub.pubs[plain]),
        ("REQ", &hub.reqs[plain]),
    ] {
        assert_eq!(
            pipes_opened_closed(sock),
            (1, 1, 0),
            "partition, plain {who}: its pipe is kept, {:?} after the cut",
            t_cut.elapsed()
        );
        assert_eq!(sock.stats().total_rejects(), 0, "plain {who}");
    }
    let t_heal = Instant::now();
    net.heal(&edge_h, s);
    let redial = eventually(
        30,
        "partition healed: the heartbeat's dialers redialed",
        || {
            (
                pipes_opened_closed(&hb_e.sub),
                pipes_opened_closed(&hb_e.rep),
            )
        },
        |(sub, rep)| sub.0 == 1 && sub.1 >= 2 && rep.0 == 1 && rep.1 >= 2,
    )
    .await;
    let healed_redial = t_heal.elapsed();
    publish_until_heard(&hub_node, &hub.pubs[hb], &hb_e.heard, 30, "healed").await;
    let healed_answer = ask(&hub_node, &hub.reqs[hb], "healed", Duration::from_secs(30)).await;
    assert!(
        healed_answer.is_some(),
        "heartbeat: no answer after the heal"
    );
    // TCP held the plain connections through a partition this short: they
    // carry traffic again, the same connections
    publish_until_heard(&hub_node, &hub.pubs[plain], &pe.heard, 30, "plain, healed").await;
    let rt = ask(
        &hub_node,
        &hub.reqs[plain],
        "healed",
        Duration::from_secs(30),
    )
    .await;
    assert!(rt.is_some(), "plain: no answer after the heal");
    assert_eq!(pipes_opened_closed(&pe.sub), (1, 1, 0));
    assert_eq!(pipes_opened_closed(&pe.rep), (1, 1, 0));

    // 2. the hub loses power: its program stops, its links vanish
    let before = [
        hb_e.sub.stats().rejects(RejectReason::Unresponsive),
        hb_e.rep.stats().rejects(RejectReason::Unresponsive),
    ];
    let opened = [hb_e.sub.stats().pipes_opened, hb_e.rep.stats().pipes_opened];
    let dead = Arc::new(AtomicBool::new(false));
    let t_off = lose_power(&net, &hub_h, hub_node, dead).await;
    let off = unresponsive(
        t_off,
        30,
        "power off",
        &[
            ("SUB", &hb_e.sub, before[0] + 1),
            ("REP", &hb_e.rep, before[1] + 1),
        ],
    )
    .await;
    let [off_sub, off_rep] = off[..] else {
        unreachable!("one time per socket")
    };
    for (who, d) in [("SUB", off_sub), ("REP", off_rep)] {
        assert!(
            d < BOUND,
            "power off: the {who}'s pipe closed after {d:?}, not within {BOUND:?}"
        );
    }
    until_elapsed(t_off, BOUND).await;
    for (who, sock) in [("SUB", &pe.sub), ("REP", &pe.rep)] {
        assert_eq!(
            pipes_opened_closed(sock),
            (1, 1, 0),
            "power off, plain {who}: the dead hub's pipe is kept, {:?} after",
            t_off.elapsed()
        );
    }
    // the hub comes back (same addresses, empty network stack), its
    // program with it
    net.power_on(&hub_h);
    let t_on = Instant::now();
    hub_node = Node::start(&hub_h, "hub-rebooted");
    hub = start_hub(&hub_node, hub_at).await;
    eventually(
        30,
        "rebooted hub: the heartbeat's dialers redialed",
        || {
            (
                pipes_opened_closed(&hb_e.sub),
                pipes_opened_closed(&hb_e.rep),
            )
        },
        |(sub, rep)| sub.0 == 1 && sub.1 > opened[0] && rep.0 == 1 && rep.1 > opened[1],
    )
    .await;
    let rebooted_redial = t_on.elapsed();
    publish_until_heard(&hub_node, &hub.pubs[hb], &hb_e.heard, 30, "rebooted").await;
    let rebooted_answer = ask(
        &hub_node,
        &hub.reqs[hb],
        "rebooted",
        Duration::from_secs(30),
    )
    .await;
    assert!(
        rebooted_answer.is_some(),
        "heartbeat: no answer after the reboot"
    );
    // the plain edge still holds the dead connection and never hears from
    // the rebooted hub: its SUB gets nothing, its REP no request
    let (heard, served) = (pe.heard.load(SeqCst), pe.served.load(SeqCst));
    publish_for(&hub_node, &hub.pubs[plain], BOUND).await;
    let unanswered = ask(&hub_node, &hub.reqs[plain], "lost", Duration::from_secs(1)).await;
    assert_eq!(
        unanswered, None,
        "plain: the rebooted hub's request answered"
    );
    assert_eq!(
        pe.heard.load(SeqCst),
        heard,
        "plain SUB heard the rebooted hub"
    );
    assert_eq!(pe.served.load(SeqCst), served);
    assert!(hub.pubs[plain].pipes().is_empty() && hub.reqs[plain].pipes().is_empty());
    for (who, sock) in [("SUB", &pe.sub), ("REP", &pe.rep)] {
        assert_eq!(
            pipes_opened_closed(sock),
            (1, 1, 0),
            "plain {who}: still on the dead connection {:?} after the power loss",
            t_off.elapsed()
        );
    }
    let pings = hb_e.sub.stats();
    eprintln!(
        "figures: heartbeat {INTERVAL:?} × {MISSES}: partition detected by the SUB in \
         {cut_sub:?}, the REP in {cut_rep:?} (hub side: PUB {cut_pub:?}, REQ {cut_req:?}); \
         redialed {healed_redial:?} after the heal ({redial:?}), first answer \
         {healed_answer:?}; power loss detected by the SUB in {off_sub:?}, the REP in \
         {off_rep:?}; redialed {rebooted_redial:?} after the reboot, first answer \
         {rebooted_answer:?}; plain SUB and REP still on their dead connection {:?} after \
         the power loss; edge SUB: {pings}",
        t_off.elapsed()
    );
}

// ---------------------------------------------------------------- delivery

const N: u32 = 5_000;
const PUSH_PORT: u16 = 7420;

fn numbered(i: u32) -> Vec<u8> {
    let mut v = i.to_be_bytes().to_vec();
    v.extend_from_slice(&[0x5a; 60]);
    v
}

fn id_of(body: &[u8]) -> u32 {
    let head: [u8; 4] = body
        .get(..4)
        .and_then(|h| h.try_into().ok())
        .unwrap_or_else(|| panic!("a message of {} bytes, not a numbered one", body.len()));
    u32::from_be_bytes(head)
}

/// What one PULL's application took, in order.
type Got = Arc<Mutex<Vec<u32>>>;

/// A PULL on `node` dialing `url`; its application records each message it
/// takes in `got`, until `dead` (its host lost power: what it takes after
/// that instant died with it).
async fn start_pull(
    node: &Node,
    url: String,
    l: Layers,
    got: Got,
    dead: Arc<AtomicBool>,
) -> Socket {
    node.run(async move {
        let pull = l.on(spstack::pull0().options(opts())).0.build();
        pull.dial_background(&url).expect("PULL dials");
        let p = pull.clone();
        tokio::spawn(async move {
            while let Ok(m) = p.recv().await {
                // no await between the check and the record: the power cut
                // cannot fall between them on a current-thread runtime
                if dead.load(SeqCst) {
                    break;
                }
                got.lock().unwrap().push(id_of(m.body()));
            }
        });
        pull
    })
    .await
}

/// Ids taken more than once by one receiver.
fn twice(got: &[u32]) -> Vec<u32> {
    let mut seen = HashSet::new();
    got.iter().copied().filter(|i| !seen.insert(*i)).collect()
}

/// What one run of [`push_to_two_pulls_one_loses_power`] ended with.
struct Delivery {
    /// Taken by the application on `p1` (the PULL that loses power, or the
    /// one behind the proxy; before its power cut).
    p1: Vec<u32>,
    /// Taken by the application on `p2`.
    p2: Vec<u32>,
    push: Stats,
    push_acks: AckStats,
    /// The stats of the PULL on `p2` (power loss) or `p1` (proxy).
    pull: Stats,
    /// From the power cut (or the last send) to the last message taken.
    settled: Duration,
}

impl Delivery {
    fn distinct(&self) -> HashSet<u32> {
        self.p1.iter().chain(&self.p2).copied().collect()
    }
}

/// One PUSH (host `src`, listening), two PULLs dialing it (hosts `p1`,
/// `p2`), `N` numbered messages paced at about 10 per ms. When `p1`'s
/// application has taken a fifth of them, its host loses power; the last
/// quarter is sent only after that, so that the PUSH still routes messages
/// to the vanished PULL. Waits until the live PULL took everything that can
/// still reach it: every message (with `ack/1`), or nothing for 1 s.
async fn push_to_two_pulls_one_loses_power(tag: &str, l: Layers) -> Delivery {
    let net = Net::new(tag);
    let s = net.segment();
    let (src_h, p1_h, p2_h) = (
        net.host("src", &[s]),
        net.host("p1", &[s]),
        net.host("p2", &[s]),
    );
    let url = format!("tcp://{}:{PUSH_PORT}", src_h.addr(s));
    let src = Node::start(&src_h, "src");
    let u = url.clone();
    let (push, push_layers) = src
        .run(async move {
            let (b, layered) = l.on(spstack::push0().options(opts()));
            let push = b.build();
            push.listen(&u).await.expect("PUSH listens");
            (push, layered)
        })
        .await;
    let (p1, p2) = (Node::start(&p1_h, "p1"), Node::start(&p2_h, "p2"));
    let (got1, got2): (Got, Got) = Default::default();
    let (dead1, alive2) = (Arc::new(AtomicBool::new(false)), Arc::default());
    start_pull(&p1, url.clone(), l, got1.clone(), dead1.clone()).await;
    let pull2 = start_pull(&p2, url, l, got2.clone(), alive2).await;
    eventually(
        30,
        &format!("{l:?}: both PULLs dialed"),
        || push.pipes().len(),
        |n| *n == 2,
    )
    .await;

    let (off_tx, mut off_rx) = watch::channel(false);
    let p = push.clone();
    let sender = src.spawn(async move {
        for i in 0..N {
            if i == N / 4 * 3 {
                within(60, "the power cut", off_rx.wait_for(|off| *off))
                    .await
                    .expect("the test holds the sender");
            }
            within(30, "a send", p.send(numbered(i)))
                .await
                .expect("PUSH sends");
            if i % 10 == 9 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    });
    let g1 = got1.clone();
    eventually(
        60,
        &format!("{l:?}: p1 took a fifth"),
        || g1.lock().unwrap().len(),
        |n| *n >= N as usize / 5,
    )
    .await;
    let t_off = lose_power(&net, &p1_h, p1, dead1).await;
    off_tx.send_replace(true);
    within(60, "every message sent", sender)
        .await
        .expect("the sender");

    // the live PULL takes what can still reach it
    let (mut last, mut since) = (got2.lock().unwrap().len(), Instant::now());
    let mut settled = t_off.elapsed();
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let n = got2.lock().unwrap().len();
        let all = got1.lock().unwrap().len() + n >= N as usize;
        if n != last {
            (last, since, settled) = (n, Instant::now(), t_off.elapsed());
        }
        if (all && since.elapsed() > Duration::from_millis(300))
            || since.elapsed() > Duration::from_secs(1)
        {
            break;
        }
        assert!(
            t_off.elapsed() < Duration::from_secs(60),
            "{l:?}: the live PULL still takes messages a minute after the power cut"
        );
    }
    let d = Delivery {
        p1: got1.lock().unwrap().clone(),
        p2: got2.lock().unwrap().clone(),
        push: push.stats(),
        push_acks: push_layers.acks(),
        pull: pull2.stats(),
        settled,
    };
    drop((src, p2));
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack_push_to_two_pulls_one_powered_off_delivers_every_message_once_per_receiver() {
    let _g = serial().await;
    let with = push_to_two_pulls_one_loses_power("ackon", Layers::HeartbeatAck).await;
    let without = push_to_two_pulls_one_loses_power("ackoff", Layers::Plain).await;

    // with heartbeat/1 + ack/1: every message reached an application, and
    // no application took one twice
    for (who, got) in [
        ("the powered-off PULL", &with.p1),
        ("the live PULL", &with.p2),
    ] {
        assert_eq!(twice(got), Vec::<u32>::new(), "ack: {who} took these twice");
    }
    let distinct = with.distinct();
    let missing: Vec<u32> = (0..N).filter(|i| !distinct.contains(i)).take(20).collect();
    assert!(
        missing.is_empty(),
        "ack: never delivered (first 20): {missing:?}"
    );
    // the dead pipe was noticed and what it held handed back
    assert!(
        with.push.rejects(RejectReason::Unresponsive) >= 1,
        "{}",
        with.push
    );
    assert!(with.push_acks.returned > 0, "{:?}", with.push_acks);
    assert_eq!(with.push.total_drops(), 0, "ack: {}", with.push);
    // taken by the vanished application and never acknowledged: delivered
    // by the live one too (at-least-once across sockets), a short tail
    let both: Vec<u32> = with
        .p1
        .iter()
        .filter(|i| with.p2.contains(i))
        .copied()
        .collect();
    let overlap = both.len();

    // without: what the dead connection held is gone, and the PUSH still
    // lists the dead pipe and counts nothing
    let distinct_plain = without.distinct().len();
    for (who, got) in [
        ("the powered-off PULL", &without.p1),
        ("the live PULL", &without.p2),
    ] {
        assert_eq!(
            twice(got),
            Vec::<u32>::new(),
            "plain: {who} took these twice"
        );
    }
    assert!(
        distinct_plain < N as usize,
        "plain: every message delivered although a PULL vanished with messages on its way"
    );
    assert_eq!(without.p1.len() + without.p2.len(), distinct_plain);
    assert_eq!(without.push.total_drops(), 0, "plain: {}", without.push);
    assert_eq!(without.push.total_rejects(), 0, "plain: {}", without.push);
    assert_eq!(
        without.push.pipes_closed, 0,
        "plain: the dead pipe closed: {}",
        without.push
    );
    assert_eq!(without.pull.total_drops(), 0, "plain: {}", without.pull);
    eprintln!(
        "figures: {N} messages, one of two PULLs powered off half-way. heartbeat/1 + ack/1: \
         {} delivered ({} by the vanished PULL before the cut, {overlap} of those again by the \
         live one), {} handed back, last delivery {:?} after the cut; live PULL {}. plain: {} \
         delivered, {} lost with no counter (PUSH: {})",
        distinct.len(),
        with.p1.len(),
        with.push_acks.returned,
        with.settled,
        with.pull,
        distinct_plain,
        N as usize - distinct_plain,
        without.push,
    );
    assert!(
        overlap <= 512,
        "ack: {overlap} messages delivered twice across the PULLs: more than the vanished \
         PULL can have taken unacknowledged"
    );
}

// ----------------------------------------------------------- REQ/REP

const FRONT_PORT: u16 = 7430;
const SERVER_PORT: u16 = 7431;

/// A device on `node`: a raw REP listening at `front`, a raw REQ dialing
/// `back`, both with `l`; returns the front.
async fn device(node: &Node, front: String, back: String, l: Layers) -> Socket {
    node.run(async move {
        let f = l.on(spstack::raw(Protocol::Rep0).options(opts())).0.build();
        f.listen(&front).await.expect("device listens");
        let b = l.on(spstack::raw(Protocol::Req0).options(opts())).0.build();
        b.dial_background(&back).expect("device dials");
        let (f2, b2) = (f.clone(), b.clone());
        tokio::spawn(async move { spstack::device(&f2, &b2).await });
        f
    })
    .await
}

/// What one run of [`req_rep_through_two_devices_one_loses_power`] ended with.
struct Served {
    /// Requests sent after the cut, and whether each was answered in time.
    asked: Vec<(String, bool)>,
    /// Executions per request at the server.
    runs: HashMap<String, u32>,
    /// Requests device 1's front took after its link to the server was cut.
    stuck: u64,
    client: Stats,
    client_acks: AckStats,
    server_integrity: IntegrityStats,
    client_integrity: IntegrityStats,
    /// From the power cut to the last answer.
    answered_in: Duration,
}

/// REQ (host `client`, no resend timer, integrity) dialing two devices
/// (hosts `dev1`, `dev2`), each dialing the REP (host `server`,
/// integrity), every socket with `l`:
///
/// ```text
///  client ──seg a── dev1, dev2 ──seg b── server
/// ```
///
/// Device 1's link to the server is cut, `K` requests are asked, and once
/// some are inside device 1 its host loses power. Waits `answer_for` after
/// the power cut for the answers.
async fn req_rep_through_two_devices_one_loses_power(
    tag: &str,
    l: Layers,
    answer_for: Duration,
) -> Served {
    const K: usize = 8;
    let net = Net::new(tag);
    let (a, b) = (net.segment(), net.segment());
    let client_h = net.host("client", &[a]);
    let dev_h = [net.host("dev1", &[a, b]), net.host("dev2", &[a, b])];
    let server_h = net.host("server", &[b]);
    let (client_signer, server_signer) = (SigningKeypair::generate(), SigningKeypair::generate());
    let config = |me: &SigningKeypair, peer: &SigningKeypair| {
        IntegrityConfig::new(me.clone(), [peer.verifying_key()], "hosts-reliable")
            .expect("an integrity config")
    };

    let server_node = Node::start(&server_h, "server");
    let runs: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    let (cfg, url, r) = (
        config(&server_signer, &client_signer),
        format!("tcp://{}:{SERVER_PORT}", server_h.addr(b)),
        runs.clone(),
    );
    let (_server, server_integrity) = server_node
        .run(async move {
            let integrity = Integrity::replier(cfg);
            let stats = integrity.stats();
            let server = l
                .on(spstack::rep0().options(opts()))
                .0
                .message_layer(integrity)
                .build();
            server.listen(&url).await.expect("server listens");
            let s = server.clone();
            tokio::spawn(async move {
                while let Ok(m) = s.recv().await {
                    let body = String::from_utf8_lossy(m.body()).into_owned();
                    *r.lock().unwrap().entry(body.clone()).or_default() += 1;
                    if s.send(format!("re: {body}")).await.is_err() {
                        break;
                    }
                }
            });
            (server, stats)
        })
        .await;
    let mut dev_nodes = Vec::new();
    let mut fronts = Vec::new();
    for (i, h) in dev_h.iter().enumerate() {
        let node = Node::start(h, &format!("dev{}", i + 1));
        fronts.push(
            device(
                &node,
                format!("tcp://{}:{FRONT_PORT}", h.addr(a)),
                format!("tcp://{}:{SERVER_PORT}", server_h.addr(b)),
                l,
            )
            .await,
        );
        dev_nodes.push(node);
    }
    let client_node = Node::start(&client_h, "client");
    let (cfg, urls) = (
        config(&client_signer, &server_signer),
        dev_h
            .iter()
            .map(|h| format!("tcp://{}:{FRONT_PORT}", h.addr(a)))
            .collect::<Vec<_>>(),
    );
    let (client, client_layers, client_integrity) = client_node
        .run(async move {
            let integrity = Integrity::requester(cfg);
            let stats = integrity.stats();
            // no resend timer: a request is asked once, and only a pipe
            // known dead sends it again
            let (b, layered) = l.on(spstack::req0().options(opts().req_resend(None)));
            let client = b.message_layer(integrity).build();
            for u in urls {
                client.dial_background(&u).expect("client dials");
            }
            (client, layered, stats)
        })
        .await;
    eventually(
        30,
        &format!("{l:?}: every hop connected"),
        || (client.pipes().len(), _server.pipes().len()),
        |n| *n == (2, 2),
    )
    .await;
    for i in 0..4 {
        let rt = ask(
            &client_node,
            &client,
            &format!("warm-{i}"),
            Duration::from_secs(30),
        )
        .await;
        assert!(rt.is_some(), "{l:?}: warm-{i} not answered");
    }

    // device 1 loses its way to the server; requests reach it and stay
    net.cut(&dev_h[0], b);
    let in_before = fronts[0].stats().msgs_in;
    let names: Vec<String> = (0..K).map(|i| format!("req-{i}")).collect();
    let asked: Vec<_> = names
        .iter()
        .map(|n| {
            let (c, n) = (client.clone(), n.clone());
            client_node.spawn(async move {
                let mut ctx = c.context();
                ctx.send(n.clone()).await.expect("send a request");
                let reply = ctx.recv().await.expect("a reply");
                assert_eq!(reply.body(), format!("re: {n}").as_bytes());
            })
        })
        .collect();
    let f1 = fronts[0].clone();
    eventually(
        30,
        &format!("{l:?}: requests reached device 1"),
        || f1.stats().msgs_in,
        |n| *n > in_before,
    )
    .await;
    let dead = Arc::new(AtomicBool::new(false));
    let dev1 = dev_nodes.remove(0);
    let t_off = lose_power(&net, &dev_h[0], dev1, dead).await;
    let stuck = f1.stats().msgs_in - in_before;
    let mut answered = Vec::new();
    let mut answered_in = Duration::ZERO;
    for (n, h) in names.into_iter().zip(asked) {
        let left = answer_for.saturating_sub(t_off.elapsed());
        let ok = match tokio::time::timeout(left, h).await {
            Ok(r) => {
                r.expect("the request's task");
                answered_in = answered_in.max(t_off.elapsed());
                true
            }
            Err(_) => false,
        };
        answered.push((n, ok));
    }
    let served = Served {
        asked: answered,
        runs: runs.lock().unwrap().clone(),
        stuck,
        client: client.stats(),
        client_acks: client_layers.acks(),
        server_integrity,
        client_integrity,
        answered_in,
    };
    drop((client_node, dev_nodes, server_node));
    served
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn req_rep_through_two_devices_one_powered_off_answers_every_request_once() {
    let _g = serial().await;
    let with = req_rep_through_two_devices_one_loses_power(
        "rron",
        Layers::HeartbeatAck,
        Duration::from_secs(30),
    )
    .await;
    let without = req_rep_through_two_devices_one_loses_power("rroff", Layers::Plain, BOUND).await;

    // with heartbeat/1 + ack/1: the client noticed the dead device and sent
    // what it held through the other, without a resend timer
    let unanswered: Vec<&String> = with
        .asked
        .iter()
        .filter(|(_, ok)| !ok)
        .map(|(n, _)| n)
        .collect();
    assert!(unanswered.is_empty(), "ack: never answered: {unanswered:?}");
    for (n, _) in &with.asked {
        assert_eq!(
            with.runs.get(n),
            Some(&1),
            "ack: {n} executed {:?} times",
            with.runs.get(n)
        );
    }
    assert!(with.stuck >= 1);
    assert!(
        with.client.rejects(RejectReason::Unresponsive) >= 1,
        "{}",
        with.client
    );
    assert_eq!(
        with.client_integrity.total_dropped(),
        0,
        "a reply failed verification"
    );
    assert_eq!(with.server_integrity.replayed(), 0, "a request replayed");

    // without: what the dead device held is never answered, and the client
    // still lists the dead pipe
    let lost = without.asked.iter().filter(|(_, ok)| !ok).count();
    assert!(without.stuck >= 1);
    assert!(
        lost as u64 >= without.stuck,
        "plain: {lost} unanswered, but device 1 took {} requests before it lost power",
        without.stuck
    );
    for (n, ok) in &without.asked {
        let runs = without.runs.get(n).copied().unwrap_or(0);
        assert_eq!(
            runs,
            u32::from(*ok),
            "plain: {n} answered {ok}, executed {runs} times"
        );
    }
    assert_eq!(without.client.pipes_closed, 0, "plain: {}", without.client);
    assert_eq!(
        without.client.total_rejects(),
        0,
        "plain: {}",
        without.client
    );
    eprintln!(
        "figures: REQ → 2 devices → REP, no resend timer, device 1 powered off with {} \
         requests inside: heartbeat/1 + ack/1: {} of {} answered, each executed once, the last \
         {:?} after the cut (server integrity: {} duplicates; client: {}, {:?}); plain: {lost} of {} never \
         answered within {BOUND:?} (device 1 took {})",
        with.stuck,
        with.asked.len(),
        with.asked.len(),
        with.answered_in,
        with.server_integrity.duplicate(),
        with.client,
        with.client_acks,
        without.asked.len(),
        without.stuck,
    );
}

// --------------------------------------------------- through the proxy

const PROXY_PUSH_PORT: u16 = 7440;

/// One PUSH (host `src`), two PULLs (hosts `p1`, `p2`), `p1`'s connection
/// through the fault proxy on its host, which truncates (then FIN) and
/// resets (RST both ways) messages on their way to it; `p1` redials each
/// time. `N` numbered messages, paced; the faults stop once all are sent,
/// then waits until the PULLs took every message (with `ack/1`) or nothing
/// for 1 s.
async fn push_to_two_pulls_one_through_a_faulty_proxy(
    tag: &str,
    l: Layers,
) -> (Delivery, ProxyStats) {
    let net = Net::new(tag);
    let s = net.segment();
    let (src_h, p1_h, p2_h) = (
        net.host("src", &[s]),
        net.host("p1", &[s]),
        net.host("p2", &[s]),
    );
    let push_at = SocketAddr::from((src_h.addr(s), PROXY_PUSH_PORT));
    let src = Node::start(&src_h, "src");
    let (push, push_layers) = src
        .run(async move {
            let (b, layered) = l.on(spstack::push0().options(opts()));
            let push = b.build();
            push.listen(&format!("tcp://{push_at}"))
                .await
                .expect("PUSH listens");
            (push, layered)
        })
        .await;
    let (p1, p2) = (Node::start(&p1_h, "p1"), Node::start(&p2_h, "p2"));
    // about one message in 250 on p1's link meets a fault, the same ones in
    // every run (seeded per connection and message)
    let faulty = Faults::default().truncate(0.002).reset(0.002);
    let proxy = p1
        .run(async move {
            Proxy::start(
                "127.0.0.1:0".parse().expect("an address"),
                push_at,
                Spec::sp(12, Faults::default(), faulty),
            )
            .await
            .expect("the proxy")
        })
        .await;
    let (got1, got2): (Got, Got) = Default::default();
    let pull1 = start_pull(&p1, proxy.url(), l, got1.clone(), Arc::default()).await;
    let pull2 = start_pull(
        &p2,
        format!("tcp://{push_at}"),
        l,
        got2.clone(),
        Arc::default(),
    )
    .await;
    eventually(
        30,
        &format!("{l:?}: both PULLs dialed"),
        || push.pipes().len(),
        |n| *n == 2,
    )
    .await;

    let p = push.clone();
    let sender = src.spawn(async move {
        for i in 0..N {
            within(30, "a send", p.send(numbered(i)))
                .await
                .expect("PUSH sends");
            if i % 10 == 9 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    });
    within(60, "every message sent", sender)
        .await
        .expect("the sender");
    let t_sent = Instant::now();
    proxy.set(Faults::default(), Faults::default());

    let (mut last, mut since, mut settled) = (0, Instant::now(), Duration::ZERO);
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let n = got1.lock().unwrap().len() + got2.lock().unwrap().len();
        if n != last {
            (last, since, settled) = (n, Instant::now(), t_sent.elapsed());
        }
        let all = {
            let (g1, g2) = (got1.lock().unwrap(), got2.lock().unwrap());
            g1.iter().chain(g2.iter()).collect::<HashSet<_>>().len() >= N as usize
        };
        if (all && since.elapsed() > Duration::from_millis(300))
            || since.elapsed() > Duration::from_secs(1)
        {
            break;
        }
        assert!(
            t_sent.elapsed() < Duration::from_secs(60),
            "{l:?}: the PULLs still take messages a minute after the last was sent"
        );
    }
    let d = Delivery {
        p1: got1.lock().unwrap().clone(),
        p2: got2.lock().unwrap().clone(),
        push: push.stats(),
        push_acks: push_layers.acks(),
        pull: pull1.stats(),
        settled,
    };
    let ps = proxy.stats();
    drop((proxy, pull2, src, p1, p2));
    (d, ps)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack_through_a_proxy_truncating_and_resetting_delivers_every_message_once_per_receiver() {
    let _g = serial().await;
    let (with, with_proxy) =
        push_to_two_pulls_one_through_a_faulty_proxy("prxon", Layers::HeartbeatAck).await;
    let (without, without_proxy) =
        push_to_two_pulls_one_through_a_faulty_proxy("prxoff", Layers::Plain).await;
    for (what, ps) in [("ack", &with_proxy), ("plain", &without_proxy)] {
        assert!(
            ps.truncated + ps.resets >= 1 && ps.conns >= 2,
            "{what}: the proxy broke no connection: {ps:?}"
        );
    }

    // with heartbeat/1 + ack/1: every message reached an application, and
    // no application took one twice, though p1 took messages from several
    // connections and the PUSH resent what each dying one held
    for (who, got) in [("p1 (through the proxy)", &with.p1), ("p2", &with.p2)] {
        assert_eq!(twice(got), Vec::<u32>::new(), "ack: {who} took these twice");
    }
    let distinct = with.distinct();
    let missing: Vec<u32> = (0..N).filter(|i| !distinct.contains(i)).take(20).collect();
    assert!(
        missing.is_empty(),
        "ack: never delivered (first 20): {missing:?}"
    );
    assert!(with.push_acks.returned > 0, "{:?}", with.push_acks);
    let overlap = with.p1.iter().filter(|i| with.p2.contains(i)).count();

    // without: each truncated or reset message (at least) is gone
    let distinct_plain = without.distinct().len();
    assert!(
        distinct_plain < N as usize,
        "plain: every message delivered through {without_proxy:?}"
    );
    for (who, got) in [("p1", &without.p1), ("p2", &without.p2)] {
        assert_eq!(
            twice(got),
            Vec::<u32>::new(),
            "plain: {who} took these twice"
        );
    }
    eprintln!(
        "figures: {N} messages, p1's link through a proxy truncating and resetting 0.2 % each. \
         heartbeat/1 + ack/1: {} delivered ({} by p1, {overlap} of those by p2 too), {} handed \
         back, proxy {with_proxy:?}, last delivery {:?} after the last send; p1 {}. plain: {} \
         delivered, {} lost (PUSH: {}), proxy {without_proxy:?}",
        distinct.len(),
        with.p1.len(),
        with.push_acks.returned,
        with.settled,
        with.pull,
        distinct_plain,
        N as usize - distinct_plain,
        without.push,
    );
}

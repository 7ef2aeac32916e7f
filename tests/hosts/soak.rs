//! The soak: several protocols at once on five hosts, under a rotation of
//! faults, for `SPSTACK_SOAK_SECS` seconds (120 in the suite;
//! `tests/hosts/soak.sh` runs 600 in release).
//!
//! ```text
//!  seg a: clients ─ dev ─ pub        seg b: dev ─ servers
//!  clients: 8 REQ ─[proxy]→ dev (device) → 2 REP on servers
//!           3 SUB ─[proxy]→ PUB on pub
//!           PUSH ─[proxy]→ PULL on dev
//!           4 RESPONDENT → SURVEYOR on dev
//! ```
//!
//! The proxies add delay, jitter and loss, and now and then duplicate,
//! reorder, truncate or reset a frame (no duplication or reordering for
//! PUB/SUB and PUSH/PULL, which have no ids to catch them: see `faults`).
//! Every few seconds one more fault: the device cut off from the servers,
//! a server killed and restarted, the clients' link down, a storm on the
//! proxied links (20 % loss, 200-300 ms), the publisher killed and
//! restarted, the servers' host powered off and on.
//!
//! Expected: every request answered with its own answer; subscribers and
//! the puller get intact messages, in order, never twice; every survey ends
//! at its deadline with only its own answers; every flow is alive after the
//! last fault; the peak RSS stays under a ceiling; descriptors come back.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use spstack::{Error, Protocol, Socket, SubControl, SurveyorControl};
use tokio::task::JoinHandle;

use crate::harness::echo_rep;
use crate::measure::{fds, mib, rss, RssPeak};
use crate::net::{Host, Net, Node, Seg};
use crate::proxy::{Faults, Proxy, Spec};
use crate::{eventually, opts, serial, within};

const DEV: u16 = 7600;
const SERVER: u16 = 7601;
const PUB: u16 = 7610;
const PULL: u16 = 7620;
const SURVEY: u16 = 7630;

fn soak_secs() -> u64 {
    std::env::var("SPSTACK_SOAK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(120)
}

/// Delay, jitter and loss always; `rare` of the frames duplicated,
/// reordered, truncated or reset.
fn weather(seed: u64, rare: f64, ids: bool) -> Spec {
    let mut f = Faults::delay(5, 20).loss(0.02).truncate(rare).reset(rare);
    if ids {
        f = f.duplicate(rare * 5.0).reorder(rare * 5.0);
    }
    Spec::sp(seed, f.clone(), f)
}

/// Message `seq` of publisher life `epoch`.
fn stamped(epoch: u32, seq: u32, len: usize) -> Vec<u8> {
    let mut m = epoch.to_be_bytes().to_vec();
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend((8..len).map(|i| (i as u32 ^ seq.wrapping_mul(2654435761) ^ epoch) as u8));
    m
}

/// (epoch, seq) after checking every byte.
fn unstamp(body: &[u8]) -> (u32, u32) {
    assert!(body.len() >= 8, "a {}-byte message", body.len());
    let e = u32::from_be_bytes(body[..4].try_into().unwrap());
    let s = u32::from_be_bytes(body[4..8].try_into().unwrap());
    assert!(
        body == stamped(e, s, body.len()).as_slice(),
        "({e}, {s}) altered"
    );
    (e, s)
}

/// Flows of the soak share these: a stop flag and their progress.
#[derive(Clone, Default)]
struct Flow {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
}

impl Flow {
    fn running(&self) -> bool {
        !self.stop.load(Ordering::Relaxed)
    }
    fn tick(&self) {
        self.done.fetch_add(1, Ordering::Relaxed);
    }
    fn count(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }
}

struct World {
    net: Net,
    a: Seg,
    b: Seg,
    servers_h: Host,
    pub_h: Host,
    servers: Vec<Node>,
    publisher: Option<(Node, JoinHandle<()>)>,
    pub_epoch: u32,
    pub_flow: Flow,
}

impl World {
    async fn start_server(&mut self, k: usize) {
        let node = Node::start(&self.servers_h, &format!("server{k}"));
        echo_rep(
            &node,
            format!(
                "tcp://{}:{}",
                self.servers_h.addr(self.b),
                SERVER + k as u16
            ),
        )
        .await;
        self.servers.insert(k, node);
    }

    async fn start_publisher(&mut self) {
        self.pub_epoch += 1;
        let (epoch, flow) = (self.pub_epoch, self.pub_flow.clone());
        let node = Node::start(&self.pub_h, &format!("pub{epoch}"));
        let url = format!("tcp://{}:{PUB}", self.pub_h.addr(self.a));
        let p = node
            .run(async move {
                let p = spstack::pub0().options(opts()).build();
                p.listen(&url).await.expect("pub listens");
                p
            })
            .await;
        let task = node.spawn(async move {
            let mut seq = 0;
            while flow.running() {
                p.send(stamped(epoch, seq, 64 + (seq as usize % 7) * 300))
                    .await
                    .expect("publish");
                seq += 1;
                flow.tick();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        self.publisher = Some((node, task));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak() {
    let _g = serial().await;
    crate::reconnect::raise_fd_limit(4096);
    let secs = soak_secs();
    let fds_start = fds();
    let net = Net::new("soak");
    let (a, b) = (net.segment(), net.segment());
    let clients_h = net.host("clients", &[a]);
    let dev_h = net.host("dev", &[a, b]);
    let servers_h = net.host("servers", &[b]);
    let pub_h = net.host("pub", &[a]);
    let mut w = World {
        net,
        a,
        b,
        servers_h: servers_h.clone(),
        pub_h,
        servers: Vec::new(),
        publisher: None,
        pub_epoch: 0,
        pub_flow: Flow::default(),
    };
    for k in 0..2 {
        w.start_server(k).await;
    }
    w.start_publisher().await;

    // the device, the PULL and the SURVEYOR live on dev
    let dev = Node::start(&dev_h, "device");
    let (front, back) = (
        format!("tcp://{}:{DEV}", dev_h.addr(a)),
        (0..2)
            .map(|k| format!("tcp://{}:{}", servers_h.addr(b), SERVER + k))
            .collect::<Vec<_>>(),
    );
    dev.run(async move {
        let f = spstack::raw(Protocol::Rep0).options(opts()).build();
        f.listen(&front).await.expect("device listens");
        let r = spstack::raw(Protocol::Req0).options(opts()).build();
        for u in &back {
            r.dial_background(u).expect("device dials");
        }
        tokio::spawn(async move { spstack::device(&f, &r).await });
    })
    .await;
    let pull_node = Node::start(&dev_h, "pull");
    let pull_flow = Flow::default();
    let (pf, pull_url) = (pull_flow.clone(), format!("tcp://{}:{PULL}", dev_h.addr(a)));
    let pull = pull_node
        .run(async move {
            let pull = spstack::pull0().options(opts()).build();
            pull.listen(&pull_url).await.expect("pull listens");
            pull
        })
        .await;
    let pull_task = pull_node.spawn(pulls(pull, pf));
    let surveyor_node = Node::start(&dev_h, "surveyor");
    let survey_flow = Flow::default();
    let (sf, survey_url) = (
        survey_flow.clone(),
        format!("tcp://{}:{SURVEY}", dev_h.addr(a)),
    );
    let surveyor = surveyor_node
        .run(async move {
            let s = spstack::surveyor0().options(opts()).build();
            s.control::<SurveyorControl>()
                .unwrap()
                .set_deadline(Duration::from_millis(300));
            s.listen(&survey_url).await.expect("surveyor listens");
            s
        })
        .await;
    let survey_task = surveyor_node.spawn(surveys(surveyor, sf));

    // the clients
    let cl = Node::start(&clients_h, "clients");
    let dev_addr = (dev_h.addr(a), DEV).into();
    let pub_addr = (w.pub_h.addr(a), PUB).into();
    let pull_addr = (dev_h.addr(a), PULL).into();
    let survey_at = format!("tcp://{}:{SURVEY}", dev_h.addr(a));
    let req_flows: Vec<Flow> = (0..8).map(|_| Flow::default()).collect();
    let sub_flows: Vec<Flow> = (0..3).map(|_| Flow::default()).collect();
    let push_flow = Flow::default();
    let (rf, sbf, pf2) = (req_flows.clone(), sub_flows.clone(), push_flow.clone());
    let (proxies, mut tasks) = cl
        .run(async move {
            let any = "127.0.0.1:0".parse().unwrap();
            let req_proxy = Proxy::start(any, dev_addr, weather(1, 0.001, true))
                .await
                .unwrap();
            let sub_proxy = Proxy::start(any, pub_addr, weather(2, 0.0005, false))
                .await
                .unwrap();
            let push_proxy = Proxy::start(any, pull_addr, weather(3, 0.001, false))
                .await
                .unwrap();
            let mut tasks: Vec<JoinHandle<()>> = Vec::new();
            for (i, f) in rf.into_iter().enumerate() {
                let req = spstack::req0()
                    .options(opts().req_resend(Some(Duration::from_secs(1))))
                    .build();
                req.dial_background(&req_proxy.url()).unwrap();
                tasks.push(tokio::spawn(async move {
                    let mut k = 0u64;
                    while f.running() {
                        let ask = format!("c{i} {k}");
                        req.send(ask.clone()).await.expect("send");
                        let m = within(60, &format!("answer to {ask}"), req.recv())
                            .await
                            .expect("answer");
                        assert_eq!(m.body(), format!("re: {ask}").as_bytes());
                        f.tick();
                        k += 1;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }));
            }
            for f in sbf {
                let sub = spstack::sub0().options(opts()).build();
                sub.control::<SubControl>().unwrap().subscribe(b"").unwrap();
                sub.dial_background(&sub_proxy.url()).unwrap();
                tasks.push(tokio::spawn(async move {
                    let mut last = (0u32, None::<u32>);
                    while f.running() {
                        let Ok(Ok(m)) =
                            tokio::time::timeout(Duration::from_millis(500), sub.recv()).await
                        else {
                            continue;
                        };
                        let (e, s) = unstamp(m.body());
                        assert!(
                            e > last.0 || (e == last.0 && last.1.is_none_or(|l| s > l)),
                            "({e}, {s}) after {last:?}: out of order or twice"
                        );
                        last = (e, Some(s));
                        f.tick();
                    }
                }));
            }
            let push = spstack::push0().options(opts()).build();
            push.dial_background(&push_proxy.url()).unwrap();
            tasks.push(tokio::spawn(async move {
                let mut seq = 0u32;
                while pf2.running() {
                    let m = stamped(0, seq, 100 + (seq as usize % 5) * 1000);
                    if tokio::time::timeout(Duration::from_millis(500), push.send(m))
                        .await
                        .is_ok()
                    {
                        seq += 1;
                        pf2.tick();
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }));
            ((req_proxy, sub_proxy, push_proxy), tasks)
        })
        .await;
    let mut respondents = Vec::new();
    for i in 0..4 {
        let u = survey_at.clone();
        respondents.push(
            cl.run(async move {
                let r = spstack::respondent0().options(opts()).build();
                r.dial_background(&u).unwrap();
                let r2 = r.clone();
                tokio::spawn(async move {
                    while let Ok(m) = r2.recv().await {
                        let mut answer = format!("r{i} ").into_bytes();
                        answer.extend_from_slice(m.body());
                        if r2.send(answer).await.is_err() {
                            break;
                        }
                    }
                });
                r
            })
            .await,
        );
    }

    // warmed up: every flow moving
    let all = |w: &World| {
        let mut v: Vec<u64> = req_flows.iter().map(Flow::count).collect();
        v.extend(sub_flows.iter().map(Flow::count));
        v.extend([
            push_flow.count(),
            pull_flow.count(),
            survey_flow.count(),
            w.pub_flow.count(),
        ]);
        v
    };
    eventually(
        60,
        "every flow moving",
        || all(&w),
        |v| v.iter().all(|n| *n > 0),
    )
    .await;
    let rss_warm = rss();
    let peak = RssPeak::start();
    let t_end = Instant::now() + Duration::from_secs(secs);

    let mut faults_done = Vec::new();
    let mut step = 0usize;
    // RSS once a minute: a leak is a slope, a warm-up a step
    let mut rss_by_minute = vec![mib(rss_warm)];
    let mut next_sample = Instant::now() + Duration::from_secs(60);
    while Instant::now() < t_end {
        if Instant::now() >= next_sample {
            rss_by_minute.push(mib(rss()));
            next_sample += Duration::from_secs(60);
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        let what = match step % 6 {
            0 => {
                w.net.cut(&dev_h, b);
                tokio::time::sleep(Duration::from_secs(2)).await;
                w.net.heal(&dev_h, b);
                "device cut off from the servers for 2 s"
            }
            1 => {
                let k = (step / 5) % 2;
                w.servers.remove(k).kill();
                tokio::time::sleep(Duration::from_secs(1)).await;
                w.start_server(k).await;
                "a server killed, restarted 1 s later"
            }
            2 => {
                w.net.link_down(&clients_h, a);
                tokio::time::sleep(Duration::from_millis(1500)).await;
                w.net.link_up(&clients_h, a);
                "the clients' link down for 1.5 s"
            }
            3 => {
                // bad weather on every proxied link for a while
                let storm = Faults::delay(200, 100).loss(0.2);
                for p in [&proxies.0, &proxies.1, &proxies.2] {
                    p.set(storm.clone(), storm.clone());
                }
                tokio::time::sleep(Duration::from_secs(3)).await;
                for (p, spec) in [
                    (&proxies.0, weather(1, 0.001, true)),
                    (&proxies.1, weather(2, 0.0005, false)),
                    (&proxies.2, weather(3, 0.001, false)),
                ] {
                    p.set(spec.up, spec.down);
                }
                "3 s of 20 % loss and 200-300 ms delay on the proxied links"
            }
            4 => {
                let (node, task) = w.publisher.take().expect("a publisher");
                task.abort();
                node.kill();
                tokio::time::sleep(Duration::from_millis(500)).await;
                w.start_publisher().await;
                "the publisher killed and restarted"
            }
            _ => {
                w.net.power_off(&servers_h);
                for n in w.servers.drain(..) {
                    n.kill();
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                w.net.power_on(&servers_h);
                for k in 0..2 {
                    w.start_server(k).await;
                }
                "the servers' host powered off for 1 s"
            }
        };
        faults_done.push(what);
        step += 1;
    }
    // after the last fault every flow moves again
    let before = all(&w);
    eventually(
        90,
        "every flow moving after the last fault",
        || all(&w),
        |v| v.iter().zip(&before).all(|(n, b)| n > b),
    )
    .await;
    let (rss_end, rss_peak) = (rss(), peak.peak());
    let ceiling = rss_warm + (128 << 20);
    assert!(
        rss_peak <= ceiling,
        "RSS peaked at {:.1} MiB, over the ceiling of {:.1} MiB (warm {:.1})",
        mib(rss_peak),
        mib(ceiling),
        mib(rss_warm)
    );
    assert!(
        rss_end <= rss_warm + (64 << 20),
        "RSS grew from {:.1} MiB to {:.1} MiB over the soak",
        mib(rss_warm),
        mib(rss_end)
    );

    // stop and collect: a panic in any flow fails here
    for f in req_flows.iter().chain(&sub_flows) {
        f.stop.store(true, Ordering::Relaxed);
    }
    for f in [&push_flow, &pull_flow, &survey_flow, &w.pub_flow] {
        f.stop.store(true, Ordering::Relaxed);
    }
    tasks.push(pull_task);
    tasks.push(survey_task);
    for t in tasks {
        match within(90, "a flow stops", t).await {
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            _ => {}
        }
    }
    let stats = (proxies.0.stats(), proxies.1.stats(), proxies.2.stats());
    let counts = all(&w);
    drop(proxies);
    drop(respondents);
    drop((cl, dev, pull_node, surveyor_node));
    drop(w);
    let fds_end = eventually(10, "descriptors released", fds, |n| *n <= fds_start + 8).await;
    eprintln!(
        "figures: soak {secs} s, {} faults ({:?} ...): requests answered {}, sub messages {}, \
         pushed {} pulled {}, surveys {}, published {}; RSS warm {:.1} MiB, peak {:.1}, end \
         {:.1}; RSS by minute {rss_by_minute:.1?}; fds {fds_start} -> {fds_end}; proxies req \
         {:?} sub {:?} push {:?}",
        faults_done.len(),
        &faults_done[..faults_done.len().min(5)],
        counts[..8].iter().sum::<u64>(),
        counts[8..11].iter().sum::<u64>(),
        counts[11],
        counts[12],
        counts[13],
        counts[14],
        mib(rss_warm),
        mib(rss_peak),
        mib(rss_end),
        stats.0,
        stats.1,
        stats.2
    );
}

/// PULL: intact, in order, never twice.
async fn pulls(pull: Socket, f: Flow) {
    let mut last = None::<u32>;
    while f.running() {
        let Ok(Ok(m)) = tokio::time::timeout(Duration::from_millis(500), pull.recv()).await else {
            continue;
        };
        let (_, s) = unstamp(m.body());
        assert!(
            last.is_none_or(|l| s > l),
            "pulled {s} after {last:?}: out of order or twice"
        );
        last = Some(s);
        f.tick();
    }
}

/// A survey every 400 ms; each ends at its deadline with its own answers.
async fn surveys(s: Socket, f: Flow) {
    let mut n = 0u64;
    while f.running() {
        let q = format!("q{n}");
        // the deadline runs from inside send: the clock starts before it
        let t0 = Instant::now();
        s.send(q.clone()).await.expect("survey");
        loop {
            match s.recv().await {
                Ok(m) => {
                    assert!(
                        m.body().ends_with(format!(" {q}").as_bytes()),
                        "survey {q} got {:?}",
                        String::from_utf8_lossy(m.body())
                    );
                }
                Err(Error::TimedOut(_)) => break,
                Err(e) => panic!("survey {q}: {e}"),
            }
        }
        let took = t0.elapsed();
        assert!(
            took >= Duration::from_millis(300),
            "survey {q} ended {took:?} after it was sent, before its deadline"
        );
        f.tick();
        n += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

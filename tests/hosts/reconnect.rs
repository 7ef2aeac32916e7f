//! nng's reconnect stress, across two hosts: 64 REQ clients, each dialing
//! all 8 REP services; services are killed (their node dropped: the kernel
//! closes every connection, as for SIGKILL) and restarted on the same
//! address, one after another, while the clients keep asking.
//!
//! Expected: after every restart all 64 clients reconnect to the service;
//! every client keeps getting its own answers; and nothing leaks: open file
//! descriptors, tasks on the clients' runtime and resident memory come back
//! to what they were before the storms (generous bounds), and to where they
//! started once everything is gone.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use spstack::Socket;

use crate::harness::echo_rep;
use crate::measure::{fds, mib, rss};
use crate::net::{Net, Node};
use crate::{eventually, opts, serial};

const CLIENTS: usize = 64;
const SERVICES: usize = 8;
const BASE_PORT: u16 = 7500;

/// Rounds of kill-and-restart (each kills one service): 16 in the suite,
/// `SPSTACK_RECONNECT_ROUNDS` to change.
fn rounds() -> usize {
    std::env::var("SPSTACK_RECONNECT_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16)
}

/// Lets this process hold the descriptors the test needs (1 100 or so,
/// over the 1 024 a login shell often allows): the soft limit up to the hard
/// one, as servers do.
pub fn raise_fd_limit(need: u64) {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a valid pointer to an rlimit for the call
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) }, 0);
    if l.rlim_cur >= need {
        return;
    }
    assert!(
        l.rlim_max >= need,
        "this test needs {need} open files and the hard limit is {}: raise it (ulimit -Hn)",
        l.rlim_max
    );
    l.rlim_cur = l.rlim_max.min(1 << 16);
    // SAFETY: as above
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &l) }, 0);
}

struct Client {
    done: Arc<AtomicU64>,
    sock: Socket,
}

fn all_pipes(clients: &[Client]) -> usize {
    clients.iter().map(|c| c.sock.pipes().len()).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_clients_survive_eight_services_restarting_and_nothing_leaks() {
    let _g = serial().await;
    raise_fd_limit(4096);
    let fds_start = fds();
    let rss_start = rss();
    let net = Net::new("reconnect");
    let s = net.segment();
    let svc_h = net.host("services", &[s]);
    let cli_h = net.host("clients", &[s]);
    let url = |k: usize| format!("tcp://{}:{}", svc_h.addr(s), BASE_PORT + k as u16);

    let mut services: Vec<(Node, Socket)> = Vec::new();
    for k in 0..SERVICES {
        let node = Node::start(&svc_h, &format!("svc{k}"));
        let rep = echo_rep(&node, url(k)).await;
        services.push((node, rep));
    }

    let cli = Node::start(&cli_h, "clients");
    let stop = Arc::new(AtomicBool::new(false));
    let urls: Vec<String> = (0..SERVICES).map(url).collect();
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        let (urls, stop, done) = (urls.clone(), stop.clone(), Arc::new(AtomicU64::new(0)));
        let d = done.clone();
        let sock = cli
            .run(async move {
                let req = spstack::req0()
                    .options(
                        opts()
                            .reconnect_max(Duration::from_secs(1))
                            .req_resend(Some(Duration::from_secs(2))),
                    )
                    .build();
                for u in &urls {
                    req.dial_background(u).expect("dial");
                }
                let r = req.clone();
                tokio::spawn(async move {
                    let mut k = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let ask = format!("c{i} {k}");
                        r.send(ask.clone()).await.expect("send");
                        let m = r.recv().await.expect("reply");
                        assert_eq!(m.body(), format!("re: {ask}").as_bytes(), "client {i}");
                        d.fetch_add(1, Ordering::Relaxed);
                        k += 1;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                });
                req
            })
            .await;
        clients.push(Client { done, sock });
    }
    let every = CLIENTS * SERVICES;
    eventually(
        60,
        "every client connected to every service",
        || all_pipes(&clients),
        |n| *n == every,
    )
    .await;
    eventually(
        60,
        "every client answered",
        || {
            clients
                .iter()
                .filter(|c| c.done.load(Ordering::Relaxed) == 0)
                .count()
        },
        |n| *n == 0,
    )
    .await;
    let (fds0, rss0, tasks0) = (fds(), rss(), cli.alive_tasks());

    let mut storms = Vec::new();
    for round in 0..rounds() {
        let k = round % SERVICES;
        let (node, _) = services.remove(k);
        node.kill();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let node = Node::start(&svc_h, &format!("svc{k}-{round}"));
        let t0 = Instant::now();
        let rep = echo_rep(&node, url(k)).await;
        let r = rep.clone();
        eventually(
            60,
            &format!("round {round}: all clients back on service {k}"),
            || r.pipes().len(),
            |n| *n == CLIENTS,
        )
        .await;
        storms.push(t0.elapsed());
        services.insert(k, (node, rep));
        eventually(
            60,
            "every client on every service",
            || all_pipes(&clients),
            |n| *n == every,
        )
        .await;
    }

    // everyone still gets answers after the last storm
    let before: Vec<u64> = clients
        .iter()
        .map(|c| c.done.load(Ordering::Relaxed))
        .collect();
    eventually(
        60,
        "every client answered after the storms",
        || {
            clients
                .iter()
                .zip(&before)
                .filter(|(c, b)| c.done.load(Ordering::Relaxed) <= **b)
                .count()
        },
        |stuck| *stuck == 0,
    )
    .await;
    let (fds1, rss1, tasks1) = (fds(), rss(), cli.alive_tasks());
    assert!(
        fds1 <= fds0 + 16,
        "file descriptors: {fds0} before the storms, {fds1} after"
    );
    assert!(
        tasks1 <= tasks0 + CLIENTS,
        "tasks on the clients' runtime: {tasks0} before the storms, {tasks1} after"
    );
    assert!(
        rss1 <= rss0 + (64 << 20),
        "RSS: {:.1} MiB before the storms, {:.1} MiB after",
        mib(rss0),
        mib(rss1)
    );

    stop.store(true, Ordering::Relaxed);
    let answered: u64 = clients.iter().map(|c| c.done.load(Ordering::Relaxed)).sum();
    drop(clients);
    drop(cli);
    drop(services);
    drop(net);
    let fds2 = eventually(10, "descriptors released", fds, |n| *n <= fds_start + 8).await;
    storms.sort();
    eprintln!(
        "figures: reconnect storm ({CLIENTS} clients x {SERVICES} services, {} restarts): all \
         clients back in median {:?}, max {:?}; {answered} requests answered; fds {fds0} -> \
         {fds1} (start {fds_start}, end {fds2}); client tasks {tasks0} -> {tasks1}; RSS {:.1} -> \
         {:.1} MiB (start {:.1})",
        storms.len(),
        storms[storms.len() / 2],
        storms[storms.len() - 1],
        mib(rss0),
        mib(rss1),
        mib(rss_start)
    );
}

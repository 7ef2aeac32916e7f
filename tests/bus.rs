//! BUS: one-hop flooding between cooked nodes, the raw BUS keeping the
//! arriving pipe so a single raw socket reflects between its peers without
//! echoing, and a two-socket device joining two buses.

use std::future::Future;
use std::time::{Duration, Instant};

use spstack::{Protocol, Socket};
use tokio::time::{sleep, timeout};

const WAIT: Duration = Duration::from_secs(5);
/// How long "nothing else arrives" is watched for.
const QUIET: Duration = Duration::from_millis(150);

async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    timeout(WAIT, f)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

async fn wait_pipes(s: &Socket, n: usize) {
    let t0 = Instant::now();
    while s.pipes().len() != n {
        assert!(
            t0.elapsed() < WAIT,
            "expected {n} pipes, have {}",
            s.pipes().len()
        );
        sleep(Duration::from_millis(5)).await;
    }
}

async fn listen(s: &Socket) -> String {
    s.listen("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .url()
        .to_string()
}

async fn recv_str(s: &Socket) -> String {
    let m = within("bus recv", s.recv()).await.unwrap();
    String::from_utf8(m.body().to_vec()).unwrap()
}

async fn assert_quiet(s: &Socket, who: &str) {
    if let Ok(r) = timeout(QUIET, s.recv()).await {
        panic!("{who} received more than expected: {r:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_meshed_nodes_each_reach_the_other_two() {
    let nodes: Vec<Socket> = (0..3)
        .map(|_| spstack::typed::bus0().build().into())
        .collect();
    let u0 = listen(&nodes[0]).await;
    let u1 = listen(&nodes[1]).await;
    within("dial", nodes[1].dial(&u0)).await.unwrap();
    within("dial", nodes[2].dial(&u0)).await.unwrap();
    within("dial", nodes[2].dial(&u1)).await.unwrap();
    for n in &nodes {
        wait_pipes(n, 2).await;
    }
    for (i, n) in nodes.iter().enumerate() {
        n.send(format!("from {i}").as_str()).await.unwrap();
    }
    for (i, n) in nodes.iter().enumerate() {
        let mut got = vec![recv_str(n).await, recv_str(n).await];
        got.sort();
        let want: Vec<String> = (0..3)
            .filter(|&j| j != i)
            .map(|j| format!("from {j}"))
            .collect();
        assert_eq!(got, want, "node {i}");
    }
    for (i, n) in nodes.iter().enumerate() {
        assert_quiet(n, &format!("node {i}")).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cooked_delivery_is_one_hop_and_a_resend_reaches_everyone() {
    // a line: a - b - c
    let (a, b, c) = (
        spstack::typed::bus0().build(),
        spstack::typed::bus0().build(),
        spstack::typed::bus0().build(),
    );
    let ub = listen(b.socket()).await;
    within("dial", a.dial(&ub)).await.unwrap();
    within("dial", c.dial(&ub)).await.unwrap();
    wait_pipes(b.socket(), 2).await;
    a.send("hello").await.unwrap();
    let m = within("b recv", b.recv()).await.unwrap();
    assert_eq!(m.body(), b"hello");
    assert!(m.pipe().is_some(), "a received message names its pipe");
    assert_quiet(c.socket(), "c (cooked BUS does not forward)").await;
    // a cooked send of a received message goes to every peer, its sender too
    b.send(m).await.unwrap();
    assert_eq!(recv_str(a.socket()).await, "hello");
    assert_eq!(recv_str(c.socket()).await, "hello");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_raw_bus_socket_reflects_between_three_peers() {
    let hub = spstack::raw(Protocol::Bus0).build();
    let url = listen(&hub).await;
    let peers: Vec<Socket> = (0..3)
        .map(|_| spstack::typed::bus0().build().into())
        .collect();
    for p in &peers {
        within("dial", p.dial(&url)).await.unwrap();
    }
    wait_pipes(&hub, 3).await;
    // the reflector: a plain recv -> send loop on the one raw socket; the
    // arriving pipe stays on the message, and the send skips it
    let h = hub.clone();
    let dev = tokio::spawn(async move {
        loop {
            let m = match h.recv().await {
                Ok(m) => m,
                Err(_) => return,
            };
            if h.send(m).await.is_err() {
                return;
            }
        }
    });
    for round in 0..3 {
        for (i, p) in peers.iter().enumerate() {
            p.send(format!("r{round} from {i}").as_str()).await.unwrap();
        }
        for (i, p) in peers.iter().enumerate() {
            let mut got = vec![recv_str(p).await, recv_str(p).await];
            got.sort();
            let want: Vec<String> = (0..3)
                .filter(|&j| j != i)
                .map(|j| format!("r{round} from {j}"))
                .collect();
            assert_eq!(got, want, "peer {i}");
        }
    }
    for (i, p) in peers.iter().enumerate() {
        assert_quiet(p, &format!("peer {i} (no echo of its own message)")).await;
    }
    assert_eq!(hub.stats().total_drops(), 0);
    dev.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spstack_reflect_is_that_loop() {
    let hub = spstack::raw(Protocol::Bus0).build();
    let url = listen(&hub).await;
    let peers: Vec<Socket> = (0..3)
        .map(|_| spstack::typed::bus0().build().into())
        .collect();
    for p in &peers {
        within("dial", p.dial(&url)).await.unwrap();
    }
    wait_pipes(&hub, 3).await;
    let h = hub.clone();
    let dev = tokio::spawn(async move { spstack::reflect(&h).await });
    peers[0].send("via reflect").await.unwrap();
    assert_eq!(recv_str(&peers[1]).await, "via reflect");
    assert_eq!(recv_str(&peers[2]).await, "via reflect");
    assert_quiet(&peers[0], "peer 0").await;
    hub.close();
    assert!(within("reflect ends on close", dev).await.unwrap().is_ok());
    // only a protocol that is its own peer can be reflected
    let req = spstack::raw(Protocol::Req0).build();
    assert!(
        within("reflect refuses REQ", spstack::reflect(&req))
            .await
            .is_err(),
        "REQ is not its own peer"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_joins_two_buses() {
    let left = spstack::raw(Protocol::Bus0).build();
    let right = spstack::raw(Protocol::Bus0).build();
    let ul = listen(&left).await;
    let ur = listen(&right).await;
    let l: Vec<Socket> = (0..2)
        .map(|_| spstack::typed::bus0().build().into())
        .collect();
    let r: Vec<Socket> = (0..2)
        .map(|_| spstack::typed::bus0().build().into())
        .collect();
    for s in &l {
        within("dial", s.dial(&ul)).await.unwrap();
    }
    for s in &r {
        within("dial", s.dial(&ur)).await.unwrap();
    }
    wait_pipes(&left, 2).await;
    wait_pipes(&right, 2).await;
    let (a, b) = (left.clone(), right.clone());
    let dev = tokio::spawn(async move { spstack::device(&a, &b).await });
    l[0].send("left to right").await.unwrap();
    assert_eq!(recv_str(&r[0]).await, "left to right");
    assert_eq!(recv_str(&r[1]).await, "left to right");
    r[1].send("right to left").await.unwrap();
    assert_eq!(recv_str(&l[0]).await, "right to left");
    assert_eq!(recv_str(&l[1]).await, "right to left");
    // a device is not a reflector: the sender's own side does not see it
    assert_quiet(&l[1], "l1").await;
    assert_quiet(&r[0], "r0").await;
    dev.abort();
}

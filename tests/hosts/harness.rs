//! The harness itself: hosts reach each other only over their segments,
//! partitions and link failures stop traffic and heal, a killed node says
//! goodbye (FIN) and a powered-off host does not, and namespaces never
//! outlive their test.

use std::time::{Duration, Instant};

use spstack::{PipeEvent, Socket};

use crate::net::{remove_stale, Net, Node, PREFIX};
use crate::{eventually, opts, serial, within};

fn our_namespaces(id_part: &str) -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.contains(id_part))
                .collect()
        })
        .unwrap_or_default()
}

/// A REP on `node` answering every request with "re: " + the request.
pub async fn echo_rep(node: &Node, url: String) -> Socket {
    node.run(async move {
        let rep = spstack::rep0().options(opts()).build();
        rep.listen(&url).await.expect("listen");
        let r = rep.clone();
        tokio::spawn(async move {
            while let Ok(m) = r.recv().await {
                let reply = [b"re: ".as_slice(), m.body()].concat();
                if r.send(reply).await.is_err() {
                    break;
                }
            }
        });
        rep
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_reach_each_other_only_over_their_segments() {
    let _g = serial().await;
    let net = Net::new("reach");
    let (s0, s1) = (net.segment(), net.segment());
    let a = net.host("a", &[s0]);
    let b = net.host("b", &[s0, s1]);
    let c = net.host("c", &[s1]);
    let (na, nb, nc) = (
        Node::start(&a, "a"),
        Node::start(&b, "b"),
        Node::start(&c, "c"),
    );
    let _rep_b = echo_rep(&nb, format!("tcp://{}:7000", b.addr(s0))).await;
    let _rep_c = echo_rep(&nc, format!("tcp://{}:7000", c.addr(s1))).await;

    // a and b share segment 0
    let b_url = format!("tcp://{}:7000", b.addr(s0));
    let reply = na
        .run(async move {
            let req = spstack::req0().options(opts()).build();
            req.dial(&b_url).await.expect("dial b");
            req.send("hi").await.unwrap();
            req.recv().await.unwrap()
        })
        .await;
    assert_eq!(reply.body(), b"re: hi");

    // c is on segment 1 only: a has no route to it
    let c_url = format!("tcp://{}:7000", c.addr(s1));
    let err = na
        .run(async move { spstack::req0().build().dial(&c_url).await.err() })
        .await;
    assert!(err.is_some(), "a reached c across b without a device");

    // the machine's own loopback is not a host's loopback
    let outside = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = outside.local_addr().unwrap().port();
    let refused = na
        .run(async move { tokio::net::TcpStream::connect(("127.0.0.1", port)).await })
        .await;
    assert!(
        refused.is_err(),
        "a node reached a listener outside its namespace"
    );
}

/// A request sent while the path is broken is not answered until it heals;
/// then TCP delivers it and the answer comes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_and_link_down_stop_traffic_until_healed() {
    let _g = serial().await;
    let net = Net::new("cut");
    let s = net.segment();
    let (a, b) = (net.host("a", &[s]), net.host("b", &[s]));
    let (na, nb) = (Node::start(&a, "a"), Node::start(&b, "b"));
    let _rep = echo_rep(&nb, format!("tcp://{}:7001", b.addr(s))).await;
    let url = format!("tcp://{}:7001", b.addr(s));
    let req = na
        .run(async move {
            let req = spstack::req0().options(opts().req_resend(None)).build();
            req.dial(&url).await.expect("dial");
            req
        })
        .await;
    for (what, broken) in [("partition", true), ("link down", false)] {
        if broken {
            net.cut(&a, s);
        } else {
            net.link_down(&a, s);
        }
        let r = req.clone();
        let asked = na.spawn(async move {
            r.send(what).await.unwrap();
            r.recv().await.unwrap()
        });
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(!asked.is_finished(), "{what}: answered while broken");
        if broken {
            net.heal(&a, s);
        } else {
            net.link_up(&a, s);
        }
        // TCP's retransmission backoff decides when: a generous bound
        let reply = within(30, what, asked).await.unwrap();
        assert_eq!(reply.body(), format!("re: {what}").as_bytes());
        assert_eq!(
            req.stats().pipes_closed,
            0,
            "{what}: the connection survived"
        );
    }
}

/// Killing a node closes its connections (the peer hears a FIN at once);
/// powering its host off does not (the peer keeps a dead connection until it
/// writes to it and the host's new stack answers RST).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_says_goodbye_a_powered_off_host_does_not() {
    let _g = serial().await;
    let net = Net::new("death");
    let s = net.segment();
    let (a, b) = (net.host("a", &[s]), net.host("b", &[s]));
    let na = Node::start(&a, "a");
    let url = format!("tcp://{}:7002", b.addr(s));
    let nb = Node::start(&b, "b");
    let _rep = echo_rep(&nb, url.clone()).await;
    let u = url.clone();
    let req = na
        .run(async move {
            let req = spstack::req0().options(opts().req_resend(None)).build();
            req.dial(&u).await.expect("dial");
            req
        })
        .await;
    let mut events = req.pipe_events();

    // kill: the peer learns at once
    let t0 = Instant::now();
    nb.kill();
    within(10, "pipe removed after the kill", async {
        while !matches!(events.recv().await, Ok(PipeEvent::RemovePost(..))) {}
    })
    .await;
    let killed_detect = t0.elapsed();

    // back up; then power loss: no FIN leaves the host
    let nb = Node::start(&b, "b2");
    let _rep = echo_rep(&nb, url.clone()).await;
    let r = req.clone();
    eventually(10, "redialed", || r.pipes().len(), |n| *n == 1).await;
    net.power_off(&b);
    drop(nb);
    net.power_on(&b);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        req.pipes().len(),
        1,
        "the dead host's connection is still open at the peer: nothing told it"
    );
    // a service on the rebooted host; the peer finds out when it writes
    let nb = Node::start(&b, "b3");
    let _rep = echo_rep(&nb, url.clone()).await;
    let t1 = Instant::now();
    let r = req.clone();
    let asked = na.spawn(async move {
        r.send("after reboot").await.unwrap();
        r.recv().await.unwrap()
    });
    within(10, "pipe removed on RST", async {
        while !matches!(events.recv().await, Ok(PipeEvent::RemovePost(..))) {}
    })
    .await;
    let rst_detect = t1.elapsed();
    let reply = within(20, "answer after the reboot", asked).await.unwrap();
    assert_eq!(reply.body(), b"re: after reboot");
    eprintln!(
        "figures: kill detected by the peer in {killed_detect:?} (FIN); power loss \
         undetected until the peer wrote, then in {rst_detect:?} (RST)"
    );
}

#[tokio::test]
async fn namespaces_go_with_their_test_even_on_panic() {
    let _g = serial().await;
    let id_part = format!("{PREFIX}{}-", std::process::id());
    let before = our_namespaces(&id_part).len();
    let r = std::panic::catch_unwind(|| {
        let net = Net::new("panics");
        let s = net.segment();
        let _h = net.host("h", &[s]);
        assert!(our_namespaces("-panics").len() >= 2);
        panic!("a test failing half way");
    });
    assert!(r.is_err());
    assert!(our_namespaces("-panics").is_empty(), "left behind");
    // other tests of this process may hold theirs: none of ours is new
    assert!(our_namespaces(&id_part).len() <= before);
}

#[tokio::test]
async fn leftovers_of_a_killed_run_are_removed() {
    let _g = serial().await;
    crate::net::preflight();
    // a pid that ran and is gone
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let stale = format!("{PREFIX}{dead}-0-killedrun-sw");
    let live = format!("{PREFIX}{}-999999-live-sw", std::process::id());
    for n in [&stale, &live] {
        let ok = std::process::Command::new("ip")
            .args(["netns", "add", n])
            .status()
            .unwrap()
            .success();
        assert!(ok, "ip netns add {n}");
    }
    assert!(remove_stale() >= 1);
    assert!(our_namespaces(&stale).is_empty(), "stale namespace kept");
    assert_eq!(
        our_namespaces(&live).len(),
        1,
        "a live run's namespace removed"
    );
    let _ = std::process::Command::new("ip")
        .args(["netns", "del", &live])
        .status();
}

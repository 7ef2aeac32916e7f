//! PAIR1: the hop count on the wire (nng's bytes), what a receiver accepts,
//! drops and closes on (raw-TCP evil peer), one peer only, polyamorous mode,
//! devices adding hops, the TTL stopping a forwarding loop, the reflector.

mod common;

use common::wire::*;
use std::time::{Duration, Instant};

use spstack::{DropReason, Message, Options, Protocol, RejectReason, Socket, Stats};
use tokio::io::AsyncWriteExt;
use tokio::time::sleep;

const PAIR1: u16 = 0x11;

async fn wait_stats(s: &Socket, what: &str, cond: impl Fn(&Stats) -> bool) -> Stats {
    let t0 = Instant::now();
    loop {
        let st = s.stats();
        if cond(&st) {
            return st;
        }
        assert!(t0.elapsed() < WAIT, "timed out waiting for {what}:\n{st}");
        sleep(Duration::from_millis(5)).await;
    }
}

async fn wait_pipes(s: &Socket, n: usize) {
    let t0 = Instant::now();
    while s.pipes().len() != n {
        assert!(t0.elapsed() < WAIT, "expected {n} pipes");
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

async fn evil_pair1(url: &str) -> tokio::net::TcpStream {
    evil(url, PAIR1, PAIR1).await
}

fn frame(hops: u32, body: &[u8]) -> Vec<u8> {
    let mut p = hops.to_be_bytes().to_vec();
    p.extend_from_slice(body);
    tcp_frame(&p)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wire_bytes_and_what_a_receiver_accepts() {
    let p = spstack::typed::pair1()
        .options(Options::default().ttl(8))
        .build();
    let url = listen(p.socket()).await;

    // short frames and hop counts above 255 close the pipe
    let bad: [Vec<u8>; 3] = [
        frame(0x100, b"x"),
        frame(u32::MAX, b"x"),
        vec![0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 1],
    ];
    for (i, f) in bad.iter().enumerate() {
        let mut s = evil_pair1(&url).await;
        s.write_all(f).await.unwrap();
        expect_closed(&mut s, &format!("frame {f:02x?}")).await;
        let k = i as u64 + 1;
        wait_stats(p.socket(), "pipe closed", |st| {
            st.rejects(RejectReason::ProtocolError) == k && st.pipes_closed == k
        })
        .await;
    }

    let mut s = evil_pair1(&url).await;
    wait_pipes(p.socket(), 1).await;
    // what we send: nng's bytes, the first hop carries 1
    p.send("hi").await.unwrap();
    assert_eq!(read_frame(&mut s).await, b"\x00\x00\x00\x01hi");
    // mangos sends 0, nng 1; anything up to the ttl is accepted
    for hops in [0u32, 1, 8] {
        s.write_all(&frame(hops, format!("h{hops}").as_bytes()))
            .await
            .unwrap();
        let m = within("recv", p.recv()).await.unwrap();
        assert_eq!(m.body(), format!("h{hops}").as_bytes());
        assert!(m.header().is_empty(), "cooked receive strips the hop count");
    }
    // above the ttl: dropped and counted, the pipe kept
    s.write_all(&frame(9, b"too far")).await.unwrap();
    s.write_all(&frame(255, b"way too far")).await.unwrap();
    wait_stats(p.socket(), "ttl drops", |st| {
        st.drops(DropReason::TtlExceeded) == 2
    })
    .await;
    s.write_all(&frame(2, b"after")).await.unwrap();
    assert_eq!(within("recv", p.recv()).await.unwrap().body(), b"after");
    // a reused received message goes out with a fresh count
    let m = within("recv", async {
        s.write_all(&frame(5, b"echo")).await.unwrap();
        p.recv().await
    })
    .await
    .unwrap();
    p.send(m).await.unwrap();
    assert_eq!(read_frame(&mut s).await, b"\x00\x00\x00\x01echo");
    assert_eq!(p.stats().pipes_closed, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mono_refuses_a_second_peer_and_roundtrips() {
    let a = spstack::typed::pair1().build();
    let url = listen(a.socket()).await;
    let b = spstack::typed::pair1().build();
    within("dial", b.dial(&url)).await.unwrap();
    wait_pipes(a.socket(), 1).await;
    let mut second = evil_pair1(&url).await;
    expect_closed(&mut second, "second peer").await;
    wait_stats(a.socket(), "pipe limit", |st| {
        st.rejects(RejectReason::PipeLimit) == 1
    })
    .await;
    for i in 0..10 {
        b.send(format!("m{i}").as_str()).await.unwrap();
        let m = within("a recv", a.recv()).await.unwrap();
        assert_eq!(m.body(), format!("m{i}").as_bytes());
        a.send(m).await.unwrap();
        let back = within("b recv", b.recv()).await.unwrap();
        assert_eq!(back.body(), format!("m{i}").as_bytes());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_before_a_peer_waits_and_carries_one_hop() {
    let a = spstack::typed::pair1().build();
    let url = listen(a.socket()).await;
    let a2 = a.clone();
    // no peer yet: the send waits (and must not count a hop per retry)
    let sender = tokio::spawn(async move { a2.send("early").await });
    sleep(Duration::from_millis(50)).await;
    let mut s = evil_pair1(&url).await;
    within("send", sender).await.unwrap().unwrap();
    assert_eq!(read_frame(&mut s).await, b"\x00\x00\x00\x01early");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polyamorous_replies_go_to_their_peer() {
    let hub = spstack::typed::pair1_poly().build();
    let url = listen(hub.socket()).await;
    let mut peers = Vec::new();
    for _ in 0..3 {
        let p = spstack::typed::pair1().build();
        within("dial", p.dial(&url)).await.unwrap();
        peers.push(p);
    }
    wait_pipes(hub.socket(), 3).await;
    for round in 0..3 {
        for (i, p) in peers.iter().enumerate() {
            p.send(format!("from {i} round {round}").as_str())
                .await
                .unwrap();
        }
        for _ in 0..3 {
            let m = within("hub recv", hub.recv()).await.unwrap();
            assert!(m.pipe().is_some(), "a received message names its pipe");
            let mut reply = Message::from(m.body());
            reply.set_pipe(m.pipe());
            hub.send(reply).await.unwrap();
        }
        for (i, p) in peers.iter().enumerate() {
            let m = within("peer recv", p.recv()).await.unwrap();
            assert_eq!(
                m.body(),
                format!("from {i} round {round}").as_bytes(),
                "a reply went to the wrong peer"
            );
        }
    }
    // with no pipe set, messages go round-robin: one to each peer
    for i in 0..3 {
        hub.send(format!("rr {i}").as_str()).await.unwrap();
    }
    let mut got = Vec::new();
    for p in &peers {
        got.push(within("rr recv", p.recv()).await.unwrap().body().to_vec());
    }
    got.sort();
    assert_eq!(got, [b"rr 0".to_vec(), b"rr 1".to_vec(), b"rr 2".to_vec()]);
    // a reply to a peer that left is dropped and counted, not misdelivered
    let gone = {
        peers[0].send("bye").await.unwrap();
        within("bye", hub.recv()).await.unwrap()
    };
    peers.remove(0).close();
    wait_pipes(hub.socket(), 2).await;
    hub.send(gone).await.unwrap();
    wait_stats(hub.socket(), "unknown pipe", |st| {
        st.drops(DropReason::UnknownPipe) == 1
    })
    .await;
    assert_eq!(hub.stats().pipes_closed, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_adds_a_hop_and_the_ttl_stops_it() {
    // evil end <-> [raw pair1 | raw pair1] <-> cooked pair1
    let ttl = 3;
    let opts = Options::default().ttl(ttl);
    let front = spstack::raw(Protocol::Pair1).options(opts.clone()).build();
    let back = spstack::raw(Protocol::Pair1).options(opts.clone()).build();
    let front_url = listen(&front).await;
    let back_url = listen(&back).await;
    let far = spstack::typed::pair1().options(opts).build();
    within("far dial", far.dial(&back_url)).await.unwrap();
    let (f, b) = (front.clone(), back.clone());
    let dev = tokio::spawn(async move { spstack::device(&f, &b).await });
    let mut s = evil_pair1(&front_url).await;
    wait_pipes(&front, 1).await;
    wait_pipes(&back, 1).await;
    // the device adds one hop each way
    far.send("to evil").await.unwrap();
    assert_eq!(read_frame(&mut s).await, b"\x00\x00\x00\x02to evil");
    s.write_all(&frame(1, b"to far")).await.unwrap();
    assert_eq!(
        within("far recv", far.recv()).await.unwrap().body(),
        b"to far"
    );
    // ttl 3: 2 + the device's hop = 3 passes, 3 + 1 is dropped at `far`
    s.write_all(&frame(2, b"just")).await.unwrap();
    assert_eq!(
        within("far recv", far.recv()).await.unwrap().body(),
        b"just"
    );
    s.write_all(&frame(3, b"too far")).await.unwrap();
    wait_stats(far.socket(), "ttl drop at the far end", |st| {
        st.drops(DropReason::TtlExceeded) == 1
    })
    .await;
    // 4 > ttl: the device itself drops it
    s.write_all(&frame(4, b"way too far")).await.unwrap();
    wait_stats(&front, "ttl drop at the device", |st| {
        st.drops(DropReason::TtlExceeded) == 1
    })
    .await;
    dev.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_poly_reflector_answers_each_peer() {
    let r = spstack::pair1_poly_raw().build();
    let url = listen(&r).await;
    let r2 = r.clone();
    let dev = tokio::spawn(async move { spstack::reflect(&r2).await });
    let mut evils = Vec::new();
    for _ in 0..2 {
        evils.push(evil_pair1(&url).await);
    }
    wait_pipes(&r, 2).await;
    for (i, s) in evils.iter_mut().enumerate() {
        s.write_all(&frame(1, format!("e{i}").as_bytes()))
            .await
            .unwrap();
    }
    for (i, s) in evils.iter_mut().enumerate() {
        // back to its sender only, one hop more
        let mut want = 2u32.to_be_bytes().to_vec();
        want.extend_from_slice(format!("e{i}").as_bytes());
        assert_eq!(read_frame(s).await, want);
    }
    dev.abort();
    // reflect refuses a protocol that is not its own peer
    let req = spstack::raw(Protocol::Req0).build();
    assert!(within("reflect req", spstack::reflect(&req)).await.is_err());
}

//! `heartbeat/1`: a peer that stops reading and sending without closing is
//! noticed, counted, and redialed; a live one, idle or slow, is kept.

mod common;

use std::time::{Duration, Instant};

use common::{layered_peer, read_frame, until, within, Proxy};
use sp_reliable::heartbeat::{self, Heartbeat};
use spstack::{Error, Options, RejectReason};
use tokio::io::AsyncWriteExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_peer_is_noticed_counted_and_the_dialer_reconnects() {
    let interval = Duration::from_millis(200);
    let pull_beat = Heartbeat::new(interval);
    let push_beat = Heartbeat::new(interval);
    let (pull_seen, push_seen) = (pull_beat.stats(), push_beat.stats());
    let pull = spstack::pull0().pipe_layer(pull_beat.layer()).build();
    let ep = pull.listen("tcp://127.0.0.1:0").await.expect("listen");
    // the link between them will freeze: nothing forwarded, nothing closed,
    // as a partition or a peer that lost power looks from each side
    let proxy = Proxy::start(ep.url()).await;
    let push = spstack::push0()
        .pipe_layer(push_beat.layer())
        .options(Options::default().reconnect_min(Duration::from_millis(20)))
        .build();
    push.dial(&proxy.url).await.expect("dial");
    push.send("before").await.expect("send");
    assert_eq!(
        within("recv", pull.recv()).await.expect("recv").body(),
        b"before"
    );

    proxy.freeze_all();
    let frozen_at = Instant::now();
    until("the pusher gives up on its peer", || {
        push.stats().rejects(RejectReason::Unresponsive) == 1
    })
    .await;
    let noticed = frozen_at.elapsed();
    until("the puller gives up on its peer", || {
        pull.stats().rejects(RejectReason::Unresponsive) == 1
    })
    .await;
    assert!(
        noticed < interval * 10,
        "noticed after {noticed:?}, interval {interval:?}"
    );
    assert!(push_seen.snapshot().timeouts >= 1 && pull_seen.snapshot().timeouts >= 1);
    // no other verdict: silence is not a protocol error
    assert_eq!(push.stats().rejects(RejectReason::ProtocolError), 0);

    // the dialer redials, through the proxy, to the listener that is alive
    until("a second pipe", || {
        push.stats().pipes_opened == 2 && push.pipes().len() == 1
    })
    .await;
    push.send("after").await.expect("send");
    assert_eq!(
        within("recv", pull.recv()).await.expect("recv").body(),
        b"after"
    );
    println!("frozen peer noticed after {noticed:?} (interval {interval:?}, 3 misses)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_peer_and_a_peer_that_stopped_reading_are_kept() {
    let interval = Duration::from_millis(50);
    let beat = Heartbeat::new(interval);
    let seen = beat.stats();
    let pull = spstack::pull0()
        .pipe_layer(beat.layer())
        .options(Options::default().recv_queue(4))
        .build();
    let ep = pull.listen("tcp://127.0.0.1:0").await.expect("listen");
    let push = spstack::push0()
        .pipe_layer(heartbeat::layer(interval))
        .options(Options::default().send_queue(4))
        .build();
    push.dial(ep.url()).await.expect("dial");

    // idle for many timeouts: the pings keep it
    tokio::time::sleep(interval * 3 * 8).await;
    assert!(seen.snapshot().pings_received > 0, "{:?}", seen.snapshot());
    assert!(seen.snapshot().pings_sent > 0, "{:?}", seen.snapshot());

    // the puller's application stops taking messages: its queue fills, its
    // reader stops, the kernel buffers fill, the pusher's sends wait
    let mut sent = 0u32;
    loop {
        let m = push.new_message(64 << 10);
        match tokio::time::timeout(Duration::from_millis(300), push.send(m)).await {
            Ok(r) => r.expect("send"),
            Err(_) => break,
        }
        sent += 1;
        assert!(sent < 10_000, "never blocked");
    }
    // stuck for many timeouts, neither side blames the other
    tokio::time::sleep(interval * 3 * 8).await;
    for (who, s) in [("push", &push), ("pull", &pull)] {
        let st = s.stats();
        assert_eq!(st.rejects(RejectReason::Unresponsive), 0, "{who}: {st}");
        assert_eq!(st.pipes_closed, 0, "{who}: {st}");
    }
    // and everything arrives once the application reads again
    for _ in 0..sent {
        within("recv", pull.recv()).await.expect("recv");
    }
    assert_eq!(push.stats().total_drops(), 0);
}

/// Where the plain-peer tests meet: every transport whose announcement
/// exchange serves plain peers.
fn addrs(tag: &str) -> [String; 3] {
    [
        "tcp://127.0.0.1:0".to_string(),
        format!("ipc:///tmp/sp-hb-plain-{}-{tag}.ipc", std::process::id()),
        format!("inproc://sp-hb-plain-{tag}"),
    ]
}

/// The only pipe of `s` and the pipe layers it runs with.
fn pipe_layers(s: &spstack::Socket) -> Vec<String> {
    let ids = s.pipes();
    assert_eq!(ids.len(), 1, "one pipe");
    s.pipe_info(ids[0]).expect("info").local.layers.clone()
}

#[tokio::test]
async fn a_plain_dialer_is_served_plain_by_a_heartbeat_listener() {
    for addr in addrs("served") {
        let pull = spstack::pull0()
            .pipe_layer(heartbeat::layer(Duration::from_millis(100)))
            .build();
        let ep = pull.listen(&addr).await.expect("listen");
        let plain = spstack::push0().build();
        plain
            .dial(ep.url())
            .await
            .expect("the plain dialer is served");
        for i in 0..10u8 {
            plain.send(vec![i; 3]).await.expect("send");
        }
        for i in 0..10u8 {
            let m = within("recv", pull.recv()).await.expect("recv");
            assert_eq!(m.body(), &[i; 3][..], "{addr}");
        }
        // no heartbeat on that pipe, said so; nothing refused on either side
        assert_eq!(pipe_layers(&pull), Vec::<String>::new(), "{addr}");
        assert_eq!(pull.stats().total_rejects(), 0, "{addr}");
        assert_eq!(plain.stats().total_rejects(), 0, "{addr}");
        // a heartbeat dialer still gets the heartbeat from the same listener
        let beat = spstack::push0()
            .pipe_layer(heartbeat::layer(Duration::from_millis(100)))
            .build();
        drop(plain);
        until("the plain pipe is gone", || pull.pipes().is_empty()).await;
        beat.dial(ep.url()).await.expect("the layered dialer");
        beat.send("layered").await.expect("send");
        assert_eq!(
            within("recv", pull.recv()).await.expect("recv").body(),
            b"layered"
        );
        assert_eq!(
            pipe_layers(&pull),
            vec![heartbeat::NAME.to_string()],
            "{addr}"
        );
    }
}

#[tokio::test]
async fn a_heartbeat_dialer_redials_a_plain_listener_plain_counted() {
    for addr in addrs("redial") {
        let plain = spstack::pull0().build();
        let ep = plain.listen(&addr).await.expect("listen");
        let push = spstack::push0()
            .pipe_layer(heartbeat::layer(Duration::from_millis(100)))
            .options(Options::default().reconnect_min(Duration::from_millis(10)))
            .build();
        let mut events = push.pipe_events();
        push.dial(ep.url()).await.expect("redialed plain");
        for i in 0..10u8 {
            push.send(vec![i; 5]).await.expect("send");
        }
        for i in 0..10u8 {
            let m = within("recv", plain.recv()).await.expect("recv");
            assert_eq!(m.body(), &[i; 5][..], "{addr}");
        }
        assert_eq!(pipe_layers(&push), Vec::<String>::new(), "{addr}");
        // the layered attempt: counted and announced on our side, refused
        // (as nng would) on the plain one
        assert_eq!(push.stats().rejects(RejectReason::PlainPeer), 1, "{addr}");
        let refusal = loop {
            match events.try_recv().expect("a refusal event") {
                spstack::PipeEvent::Refused(r) => break r,
                _ => continue,
            }
        };
        assert_eq!(refusal.reason, RejectReason::PlainPeer);
        assert!(refusal.error.contains(heartbeat::NAME), "{}", refusal.error);
        until("the plain listener refused the layered header", || {
            plain.stats().rejects(RejectReason::LayerMismatch) == 1
        })
        .await;
        // the dialer remembers: a redial after the pipe dies goes plain at once
        let before = push.stats().pipes_opened;
        let ids = plain.pipes();
        assert_eq!(ids.len(), 1);
        plain.raw().close_pipe(ids[0]);
        until("redialed", || push.stats().pipes_opened > before).await;
        push.send("again").await.expect("send");
        assert_eq!(
            within("recv", plain.recv()).await.expect("recv").body(),
            b"again"
        );
        assert_eq!(push.stats().rejects(RejectReason::PlainPeer), 1, "{addr}");
    }
}

#[tokio::test]
async fn a_required_heartbeat_refuses_a_plain_peer_naming_the_layer() {
    let plain = spstack::pull0().build();
    let ep = plain.listen("tcp://127.0.0.1:0").await.expect("listen");
    let push = spstack::push0()
        .pipe_layer(Heartbeat::new(Duration::from_secs(1)).required().layer())
        .build();
    let e = push.dial(ep.url()).await.expect_err("mismatch");
    assert!(
        matches!(&e, Error::Mismatch { index: Some(0), ours: Some(o), theirs: None } if o == heartbeat::NAME),
        "{e:?}"
    );
    assert_eq!(push.stats().rejects(RejectReason::PlainPeer), 0);
    until("the listener counts it", || {
        plain.stats().rejects(RejectReason::LayerMismatch) == 1
    })
    .await;
    // and as a listener: a plain dialer is refused
    let pull = spstack::pull0()
        .pipe_layer(Heartbeat::new(Duration::from_secs(1)).required().layer())
        .build();
    let ep = pull.listen("tcp://127.0.0.1:0").await.expect("listen");
    let plain = spstack::push0().build();
    assert!(plain.dial(ep.url()).await.is_err());
    until("the heartbeat listener refuses it", || {
        pull.stats().rejects(RejectReason::LayerMismatch) == 1
    })
    .await;
}

#[tokio::test]
async fn a_stack_with_a_layer_that_is_not_optional_never_runs_plain() {
    // heartbeat/1 would go, ack/1 must not: a plain peer is refused both ways
    let stack = |b: spstack::SocketBuilder| {
        b.pipe_layer(heartbeat::layer(Duration::from_secs(1)))
            .pipe_layer(sp_reliable::ack::layer())
    };
    let plain = spstack::pull0().build();
    let ep = plain.listen("tcp://127.0.0.1:0").await.expect("listen");
    let push = stack(spstack::push0()).build();
    let e = push.dial(ep.url()).await.expect_err("no downgrade");
    assert!(
        matches!(&e, Error::Mismatch { index: Some(0), .. }),
        "{e:?}"
    );
    assert_eq!(push.stats().rejects(RejectReason::PlainPeer), 0);
    let pull = stack(spstack::pull0()).build();
    let ep = pull.listen("tcp://127.0.0.1:0").await.expect("listen");
    let plain = spstack::push0().build();
    assert!(plain.dial(ep.url()).await.is_err(), "no downgrade");
    until("refused", || {
        pull.stats().rejects(RejectReason::LayerMismatch) == 1
    })
    .await;
    assert!(pull.pipes().is_empty());
}

/// A hand-written peer that speaks the announcement and then `hello`.
async fn peer_with_hello(url: &str, hello: &[u8]) -> tokio::net::TcpStream {
    let mut s = layered_peer(url, 0x50, &[heartbeat::NAME]).await;
    let theirs = read_frame(&mut s).await;
    assert_eq!(&theirs[..3], b"HB\x01");
    s.write_all(&common::frame(hello)).await.expect("hello");
    s
}

#[tokio::test]
async fn hostile_hellos_and_frames_close_the_pipe_counted() {
    let pull = spstack::pull0()
        .pipe_layer(heartbeat::layer(Duration::from_secs(1)))
        .build();
    let ep = pull.listen("tcp://127.0.0.1:0").await.expect("listen");
    let bad_hellos: [&[u8]; 4] = [
        b"HB\x01\0\0\0",         // short
        b"HB\x02\0\0\0\x10",     // another version
        b"HB\x01\0\0\0\0",       // a zero interval
        b"XX\x01\0\0\0\x10\x00", // not a hello
    ];
    for (i, h) in bad_hellos.iter().enumerate() {
        let _s = peer_with_hello(ep.url(), h).await;
        until("refused", || {
            pull.stats().rejects(RejectReason::LayerFailed) == i as u64 + 1
        })
        .await;
    }
    // a good hello, then a frame of no known type: the pipe closes
    let mut s = peer_with_hello(ep.url(), b"HB\x01\0\0\x03\xe8").await;
    until("joined", || pull.pipes().len() == 1).await;
    s.write_all(&common::frame(b"\x07junk"))
        .await
        .expect("write");
    until("closed as a protocol error", || {
        pull.stats().rejects(RejectReason::ProtocolError) == 1 && pull.pipes().is_empty()
    })
    .await;
    // an empty frame too
    let mut s = peer_with_hello(ep.url(), b"HB\x01\0\0\x03\xe8").await;
    until("joined", || pull.pipes().len() == 1).await;
    s.write_all(&common::frame(b"")).await.expect("write");
    until("closed as a protocol error", || {
        pull.stats().rejects(RejectReason::ProtocolError) == 2 && pull.pipes().is_empty()
    })
    .await;
    // and a data frame gets through, its type byte off
    let mut s = peer_with_hello(ep.url(), b"HB\x01\0\0\x03\xe8").await;
    s.write_all(&common::frame(b"\x00hello"))
        .await
        .expect("write");
    assert_eq!(
        within("recv", pull.recv()).await.expect("recv").body(),
        b"hello"
    );
}

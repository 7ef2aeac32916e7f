//! `ack/1`: what a dying pipe held reaches the application through another
//! pipe, once; the window holds senders back; hostile peers are closed.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{layered_peer, read_frame, until, within, Proxy};
use sp_reliable::ack::{self, Ack, AckCounters};
use sp_reliable::heartbeat::Heartbeat;
use spstack::{Error, Message, Options, RejectReason, Socket};
use tokio::io::AsyncWriteExt;

fn numbered(i: u32) -> Vec<u8> {
    i.to_be_bytes().to_vec()
}

fn id_of(m: &Message) -> u32 {
    u32::from_be_bytes(m.body()[..4].try_into().expect("4 bytes"))
}

/// Takes `n` messages, then (unless `quiet` is zero) checks that nothing
/// more comes within `quiet`.
async fn take_exactly(s: &Socket, n: usize, quiet: Duration) -> Vec<u32> {
    let mut ids = Vec::new();
    for _ in 0..n {
        ids.push(id_of(&within("recv", s.recv()).await.expect("recv")));
    }
    if quiet.is_zero() {
        return ids;
    }
    if let Ok(extra) = tokio::time::timeout(quiet, s.recv()).await {
        panic!("one more arrived: {extra:?}");
    }
    ids
}

fn unique(ids: &[u32]) -> HashSet<u32> {
    let set: HashSet<u32> = ids.iter().copied().collect();
    assert_eq!(set.len(), ids.len(), "a message was delivered twice");
    set
}

fn with_ack(b: spstack::SocketBuilder) -> (spstack::SocketBuilder, std::sync::Arc<AckCounters>) {
    let a = Ack::new();
    let stats = a.stats();
    (b.pipe_layer(a.layer()), stats)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_of_a_message_still_queued_waits_and_is_dropped_when_the_first_is_taken() {
    let (pull, pulled) = with_ack(spstack::pull0());
    let pull = pull.build();
    let ep = pull.listen("tcp://127.0.0.1:0").await.expect("listen");
    let (push, pushed) = with_ack(spstack::push0());
    let push = push.build();
    // two pipes to the same socket
    push.dial(ep.url()).await.expect("dial");
    let first = push.pipes()[0];
    push.dial(ep.url()).await.expect("dial");
    until("two pipes each side", || {
        push.pipes().len() == 2 && pull.pipes().len() == 2
    })
    .await;
    for i in 0..100 {
        push.send(numbered(i)).await.expect("send");
    }
    until("all in the puller's queue", || pull.stats().msgs_in == 100).await;
    // the first pipe dies before the application took anything: its 50
    // come again on the other pipe while the first copies are still queued
    push.raw().close_pipe(first);
    until("handed back and resent", || pushed.snapshot().resent == 50).await;
    assert_eq!(pushed.snapshot().returned, 50);
    let ids = take_exactly(&pull, 100, Duration::from_millis(300)).await;
    assert_eq!(unique(&ids), (0..100).collect());
    until("every copy dropped", || pulled.snapshot().duplicates == 50).await;
    until("nothing left unacknowledged", || {
        pushed.snapshot().in_flight() == 0
    })
    .await;
    let (p, q) = (pushed.snapshot(), pulled.snapshot());
    assert_eq!((p.sent, q.received), (100, 100), "{p:?} {q:?}");
    // the sender's counters add up: written, handed back, written again
    let st = push.stats();
    assert_eq!(st.returned, 50, "{st}");
    assert_eq!(st.msgs_out - st.returned + st.total_drops(), 100, "{st}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_of_a_message_already_taken_is_dropped_and_acknowledged() {
    let (pull, pulled) = with_ack(spstack::pull0());
    let pull = pull.build();
    let ep = pull.listen("tcp://127.0.0.1:0").await.expect("listen");
    let proxy = Proxy::start(ep.url()).await;
    let (push, pushed) = with_ack(spstack::push0());
    let push = push.build();
    push.dial(&proxy.url).await.expect("dial");
    push.dial(ep.url()).await.expect("dial");
    until("two pipes each side", || {
        push.pipes().len() == 2 && pull.pipes().len() == 2
    })
    .await;
    // acknowledgements on the proxied pipe never arrive
    for c in proxy.conns() {
        c.freeze_down
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }
    for i in 0..100 {
        push.send(numbered(i)).await.expect("send");
    }
    let mut ids = take_exactly(&pull, 100, Duration::from_millis(50)).await;
    assert_eq!(unique(&ids).len(), 100);
    until("the direct pipe's acknowledgements", || {
        pushed.snapshot().acked == 50
    })
    .await;
    // the proxied pipe dies with its acknowledgements: the pusher sends its
    // 50 again, and the puller, which has them all, drops every copy
    proxy.cut_all();
    until("handed back and resent", || pushed.snapshot().resent == 50).await;
    until("every copy dropped", || pulled.snapshot().duplicates == 50).await;
    ids.extend(take_exactly(&pull, 0, Duration::from_millis(300)).await);
    assert_eq!(unique(&ids), (0..100).collect());
    until("the copies acknowledged", || {
        pushed.snapshot().in_flight() == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_copy_that_comes_after_its_resend_is_dropped() {
    let (pull, pulled) = with_ack(spstack::pull0());
    let pull = pull.build();
    let ep = pull.listen("tcp://127.0.0.1:0").await.expect("listen");
    let proxy = Proxy::start(ep.url()).await;
    let (push, pushed) = with_ack(spstack::push0());
    let push = push.build();
    push.dial(&proxy.url).await.expect("dial");
    let held = push.pipes()[0];
    push.dial(ep.url()).await.expect("dial");
    until("two pipes each side", || {
        push.pipes().len() == 2 && pull.pipes().len() == 2
    })
    .await;
    // a partition: what goes into the proxied pipe stays in the network
    for c in proxy.conns() {
        c.freeze_up.store(true, std::sync::atomic::Ordering::SeqCst);
    }
    for i in 0..100 {
        push.send(numbered(i)).await.expect("send");
    }
    // the pusher gives that pipe up and sends its 50 on the other
    until("half written into the partition", || {
        push.pipe_stats(held).is_some_and(|st| st.msgs_out == 50)
    })
    .await;
    push.raw().close_pipe(held);
    until("resent", || pushed.snapshot().resent == 50).await;
    let mut ids = take_exactly(&pull, 100, Duration::from_millis(100)).await;
    // the partition heals: the first copies arrive after their resends
    for c in proxy.conns() {
        c.freeze_up
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }
    until("the late copies dropped", || {
        pulled.snapshot().duplicates == 50
    })
    .await;
    ids.extend(take_exactly(&pull, 0, Duration::from_millis(300)).await);
    assert_eq!(unique(&ids), (0..100).collect());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_pipe_reset_and_redialed_loses_nothing_and_doubles_nothing() {
    let (pull, pulled) = with_ack(spstack::pull0());
    let pull = pull.build();
    let ep = pull.listen("tcp://127.0.0.1:0").await.expect("listen");
    let proxy = Proxy::start(ep.url()).await;
    let (push, pushed) = with_ack(spstack::push0());
    let push = push
        .options(Options::default().reconnect_min(Duration::from_millis(20)))
        .build();
    push.dial(&proxy.url).await.expect("dial");
    until("joined", || pull.pipes().len() == 1).await;
    // the acknowledgements will be lost with the connection
    for c in proxy.conns() {
        c.freeze_down
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }
    for i in 0..100 {
        push.send(numbered(i)).await.expect("send");
    }
    until("all in the puller's queue", || pull.stats().msgs_in == 100).await;
    let mut ids = take_exactly(&pull, 40, Duration::ZERO).await;
    // the only pipe is reset: the pusher keeps what was never acknowledged
    // (all 100) until it has redialed, then sends it again; the puller has
    // taken 40 (copies dropped at once) and still holds 60 (copies wait)
    proxy.cut_all();
    until("redialed", || {
        push.stats().pipes_opened == 2 && push.pipes().len() == 1
    })
    .await;
    until("resent", || pushed.snapshot().resent == 100).await;
    ids.extend(take_exactly(&pull, 60, Duration::from_millis(300)).await);
    assert_eq!(unique(&ids), (0..100).collect());
    until("every copy dropped", || pulled.snapshot().duplicates == 100).await;
    let st = push.stats();
    assert_eq!(st.returned, 100, "{st}");
    assert_eq!(st.total_drops(), 0, "{st}");
    assert_eq!(st.msgs_out - st.returned, 100, "{st}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_window_holds_the_sender_back_and_nothing_is_lost() {
    let (pull, _) = with_ack(spstack::pull0().options(Options::default().recv_queue(2)));
    let pull = pull.build();
    let ep = pull.listen("tcp://127.0.0.1:0").await.expect("listen");
    let a = Ack::new().window(8);
    let pushed = a.stats();
    let push = spstack::push0()
        .pipe_layer(a.layer())
        .options(Options::default().send_queue(4).write_batch(1))
        .build();
    push.dial(ep.url()).await.expect("dial");
    // the application does not read: sends stop once the window, the
    // pipe's queue and the writer's hand are full
    let mut sent = 0u32;
    loop {
        match tokio::time::timeout(Duration::from_millis(300), push.send(numbered(sent))).await {
            Ok(r) => r.expect("send"),
            Err(_) => break,
        }
        sent += 1;
        assert!(sent < 1000, "the window never held the sender back");
    }
    let p = pushed.snapshot();
    assert!(p.in_flight() <= 8, "{p:?}");
    assert!(p.window_waits >= 1, "{p:?}");
    assert!(sent <= 8 + 4 + 2, "{sent} accepted");
    let ids = take_exactly(&pull, sent as usize, Duration::from_millis(300)).await;
    assert_eq!(unique(&ids), (0..sent).collect());
    assert_eq!(push.stats().total_drops(), 0);
}

fn raw_request(id: u32, body: &[u8]) -> Message {
    let mut m = Message::from(body);
    m.set_header(&(id | 0x8000_0000).to_be_bytes());
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raw_req_resends_a_request_its_server_never_took_at_once() {
    let (a, _) = with_ack(spstack::rep0());
    let (b, _) = with_ack(spstack::rep0());
    let (a, b) = (a.build(), b.build());
    let ea = a.listen("tcp://127.0.0.1:0").await.expect("listen");
    let eb = b.listen("tcp://127.0.0.1:0").await.expect("listen");
    // a device's REQ side: nothing above it would ever resend
    let (req, reqs) = with_ack(spstack::raw(spstack::Protocol::Req0));
    let req = req.build();
    req.dial(ea.url()).await.expect("dial");
    req.raw().send(raw_request(7, b"work")).await.expect("send");
    until("at the first server", || a.stats().msgs_in == 1).await;
    req.dial(eb.url()).await.expect("dial");
    // the first server goes away without its application taking it
    a.close();
    let got = within("the second server", b.recv()).await.expect("recv");
    assert_eq!(got.body(), b"work");
    b.send("done").await.expect("reply");
    let reply = within("reply", req.raw().recv()).await.expect("recv");
    assert_eq!(reply.body(), b"done");
    assert_eq!(reply.header(), &(7u32 | 0x8000_0000).to_be_bytes());
    assert_eq!(reqs.snapshot().returned, 1);
    assert_eq!(req.stats().total_drops(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cooked_req_with_heartbeat_and_ack_needs_no_resend_timer() {
    let interval = Duration::from_millis(100);
    let stack = |b: spstack::SocketBuilder| {
        b.pipe_layer(Heartbeat::new(interval).layer())
            .pipe_layer(Ack::new().layer())
    };
    let (a, b) = (
        stack(spstack::rep0()).build(),
        stack(spstack::rep0()).build(),
    );
    let ea = a.listen("tcp://127.0.0.1:0").await.expect("listen");
    let eb = b.listen("tcp://127.0.0.1:0").await.expect("listen");
    let proxy = Proxy::start(ea.url()).await;
    let req = stack(spstack::req0())
        .options(
            Options::default()
                .req_resend(None)
                .reconnect_min(Duration::from_secs(60)),
        )
        .build();
    req.dial(&proxy.url).await.expect("dial");
    req.send("work").await.expect("send");
    until("at the first server", || a.stats().msgs_in == 1).await;
    // the first server freezes (its application never answers either)
    proxy.freeze_all();
    req.dial(eb.url()).await.expect("dial");
    let server = {
        let b = b.clone();
        tokio::spawn(async move {
            let m = b.recv().await.expect("recv");
            assert_eq!(m.body(), b"work");
            b.send("done").await.expect("reply");
        })
    };
    // no resend timer: the heartbeat notices the frozen server, and the
    // request goes to the other one
    let reply = within("reply", req.recv()).await.expect("recv");
    assert_eq!(reply.body(), b"done");
    within("server", server).await.expect("server");
    assert_eq!(req.stats().rejects(RejectReason::Unresponsive), 1);
}

#[tokio::test]
async fn a_plain_peer_and_an_ack_layer_below_another_are_refused() {
    let plain = spstack::pull0().build();
    let ep = plain.listen("tcp://127.0.0.1:0").await.expect("listen");
    let push = spstack::push0().pipe_layer(ack::layer()).build();
    let e = push.dial(ep.url()).await.expect_err("mismatch");
    assert!(
        matches!(&e, Error::Mismatch { index: Some(0), ours: Some(o), theirs: None } if o == ack::NAME),
        "{e:?}"
    );

    let stack = |b: spstack::SocketBuilder| {
        b.pipe_layer(ack::layer())
            .pipe_layer(Heartbeat::new(Duration::from_secs(1)).layer())
    };
    let pull = stack(spstack::pull0()).build();
    let ep = pull.listen("tcp://127.0.0.1:0").await.expect("listen");
    let push = stack(spstack::push0()).build();
    let e = push.dial(ep.url()).await.expect_err("misplaced");
    assert!(
        matches!(&e, Error::Layer { layer, reason } if layer == ack::NAME && reason.contains("last pipe layer")),
        "{e:?}"
    );
    assert_eq!(push.stats().rejects(RejectReason::LayerFailed), 1);
}

/// A hand-written PUSH peer with `ack/1`: it says `hello`, then writes `frames`.
async fn hostile_push(url: &str, hello: &[u8], frames: &[Vec<u8>]) -> tokio::net::TcpStream {
    let mut s = layered_peer(url, 0x50, &[ack::NAME]).await;
    let theirs = read_frame(&mut s).await;
    assert_eq!(&theirs[..3], b"AK\x01");
    let mut out = common::frame(hello);
    for f in frames {
        out.extend_from_slice(&common::frame(f));
    }
    s.write_all(&out).await.expect("write");
    s
}

fn hello(window: u32) -> Vec<u8> {
    let mut h = b"AK\x01".to_vec();
    h.extend_from_slice(&0x1234_5678_9abc_def0u64.to_be_bytes());
    h.extend_from_slice(&window.to_be_bytes());
    h
}

fn data(seq: u64, body: &[u8]) -> Vec<u8> {
    let mut f = vec![0];
    f.extend_from_slice(&seq.to_be_bytes());
    f.extend_from_slice(body);
    f
}

#[tokio::test]
async fn hostile_hellos_and_frames_close_the_pipe_counted() {
    let pull = spstack::pull0().pipe_layer(ack::layer()).build();
    let ep = pull.listen("tcp://127.0.0.1:0").await.expect("listen");
    let url = ep.url();
    // hellos: short, a window of 0, one too large, another version
    let mut other = hello(4);
    other[2] = 9;
    for (i, h) in [hello(4)[..10].to_vec(), hello(0), hello(u32::MAX), other]
        .iter()
        .enumerate()
    {
        let _s = hostile_push(url, h, &[]).await;
        until("refused", || {
            pull.stats().rejects(RejectReason::LayerFailed) == i as u64 + 1
        })
        .await;
    }
    // frames after a good hello: each closes its pipe as a protocol error
    let cases: [Vec<Vec<u8>>; 5] = [
        // past the announced window of 2 (nothing is taken: nothing acked)
        vec![data(1, b"a"), data(2, b"b"), data(3, b"c")],
        // an acknowledgement of messages never sent
        vec![vec![1, 0, 0, 0, 0, 0, 0, 0, 5]],
        // an acknowledgement of the wrong size
        vec![vec![1, 0, 0]],
        // shorter than a data header
        vec![vec![0, 1, 2]],
        // an unknown type
        vec![vec![9; 12]],
    ];
    for (i, frames) in cases.iter().enumerate() {
        let _s = hostile_push(url, &hello(2), frames).await;
        until("closed as a protocol error", || {
            pull.stats().rejects(RejectReason::ProtocolError) == i as u64 + 1
        })
        .await;
    }
    until("all gone", || pull.pipes().is_empty()).await;
    // the two messages within the window were delivered, once
    let got: Vec<_> = vec![
        within("recv", pull.recv()).await.expect("recv"),
        within("recv", pull.recv()).await.expect("recv"),
    ];
    assert_eq!(got[0].body(), b"a");
    assert_eq!(got[1].body(), b"b");
    // a number this sender's message was taken under, again: a copy, dropped
    let _s = hostile_push(url, &hello(4), &[data(1, b"again"), data(9, b"new")]).await;
    assert_eq!(
        within("recv", pull.recv()).await.expect("recv").body(),
        b"new"
    );
}

#[tokio::test]
async fn a_small_duplicate_window_counts_what_it_forgets() {
    let a = Ack::new().dedup_window(8);
    let pulled = a.stats();
    let pull = spstack::pull0().pipe_layer(a.layer()).build();
    let ep = pull.listen("tcp://127.0.0.1:0").await.expect("listen");
    let push = spstack::push0().pipe_layer(ack::layer()).build();
    push.dial(ep.url()).await.expect("dial");
    for i in 0..40 {
        push.send(numbered(i)).await.expect("send");
    }
    let ids = take_exactly(&pull, 40, Duration::from_millis(100)).await;
    assert_eq!(unique(&ids).len(), 40);
    let q = pulled.snapshot();
    // between half and all of the window is remembered
    assert!((32..=36).contains(&q.forgotten), "{q:?}");
}

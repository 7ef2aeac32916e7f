//! Limits on what peers can hold open: established pipes per listener
//! (`Options::max_pipes_per_listener`) and pipes that receive nothing
//! (`Options::idle_timeout`).
//!
//! The idle tests run on tokio's paused clock over inproc: time moves only
//! when every task waits, so "a message every 500 ms for 10 s against a 1 s
//! timeout" holds however loaded the machine is.

mod common;

use std::time::Duration;

use common::wire::*;
use spstack::{Options, PipeEvent, RejectReason, Socket, Stats};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::sleep;

const REQ0: u16 = 0x30;
const REP0: u16 = 0x31;

/// Waits (at most 5 s of the runtime's clock) until `cond` holds.
async fn wait_for(s: &Socket, what: &str, cond: impl Fn(&Stats, usize) -> bool) -> Stats {
    for _ in 0..500 {
        let st = s.stats();
        if cond(&st, s.pipes().len()) {
            return st;
        }
        sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}:\n{}", s.stats());
}

/// Connects to a `tcp://` URL and reads the socket's SP header, which it
/// sends first: the listener accepted the connection and its handshake runs.
async fn connect_and_hear(url: &str, theirs: u16) -> TcpStream {
    let mut s = within(
        "connect",
        TcpStream::connect(url.strip_prefix("tcp://").unwrap()),
    )
    .await
    .unwrap();
    let mut h = [0u8; 8];
    within("the listener's header", s.read_exact(&mut h))
        .await
        .unwrap();
    assert_eq!(h, sp_header(theirs));
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_holds_at_most_its_pipes() {
    let rep = spstack::rep0()
        .options(Options::default().max_pipes_per_listener(2))
        .build();
    let mut events = rep.pipe_events();
    let url = rep
        .listen("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .url()
        .to_string();

    // a handshake that starts while there is room ...
    let mut late = connect_and_hear(&url, REP0).await;
    // ... while two pipes fill the listener
    let mut held = Vec::new();
    for _ in 0..2 {
        let s = evil(&url, REQ0, REP0).await;
        held.push(s);
    }
    wait_for(&rep, "two pipes", |_, n| n == 2).await;

    // full: a newcomer is refused before its handshake (no SP header back)
    let mut s = within(
        "connect",
        TcpStream::connect(url.strip_prefix("tcp://").unwrap()),
    )
    .await
    .unwrap();
    let _ = s.write_all(&sp_header(REQ0)).await;
    let mut b = [0u8; 8];
    let got = within("refused", s.read(&mut b)).await;
    assert!(
        matches!(got, Ok(0) | Err(_)),
        "a full listener answered the handshake: {got:?}"
    );
    wait_for(&rep, "one refusal", |st, _| {
        st.rejects(RejectReason::ListenerFull) == 1
    })
    .await;

    // the handshake begun earlier finishes now, and is refused after it
    late.write_all(&sp_header(REQ0)).await.unwrap();
    expect_closed(&mut late, "handshake finished on a full listener").await;
    let st = wait_for(&rep, "two refusals", |st, _| {
        st.rejects(RejectReason::ListenerFull) == 2
    })
    .await;
    assert_eq!(st.pipes_opened, 2);
    assert_eq!(rep.pipes().len(), 2);

    // each refusal is a pipe event with its reason
    let mut refused = 0;
    while let Ok(ev) = events.try_recv() {
        if let PipeEvent::Refused(r) = ev {
            assert_eq!(r.reason, RejectReason::ListenerFull, "{r:?}");
            assert!(r.error.contains("max_pipes_per_listener"), "{}", r.error);
            refused += 1;
        }
    }
    assert_eq!(refused, 2);

    // a pipe that goes gives its place back
    drop(held.pop());
    wait_for(&rep, "a pipe gone", |_, n| n == 1).await;
    let mut s = evil(&url, REQ0, REP0).await;
    wait_for(&rep, "the place taken again", |_, n| n == 2).await;
    // and the pipes held are served
    s.write_all(&tcp_frame(&[0x80, 0, 0, 1, b'h', b'i']))
        .await
        .unwrap();
    let m = within("request", rep.recv()).await.unwrap();
    assert_eq!(m.body(), b"hi");
    rep.send(m.body()).await.unwrap();
    assert_eq!(read_frame(&mut s).await, [0x80, 0, 0, 1, b'h', b'i']);
    assert_eq!(rep.stats().rejects(RejectReason::ListenerFull), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dialed_pipes_do_not_count_against_a_listener() {
    // a BUS that listens (full at one pipe) and dials out too
    let a = spstack::bus0()
        .options(Options::default().max_pipes_per_listener(1))
        .build();
    let url = a
        .listen("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .url()
        .to_string();
    let b = spstack::bus0().build();
    let burl = b
        .listen("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .url()
        .to_string();
    within("dial out", a.dial(&burl)).await.unwrap();
    let c = spstack::bus0().build();
    within("dial in", c.dial(&url)).await.unwrap();
    wait_for(&a, "one pipe each way", |_, n| n == 2).await;
    assert_eq!(a.stats().rejects(RejectReason::ListenerFull), 0);
}

/// A PULL listening on `inproc://name` with `idle` and a PUSH dialed to it.
async fn pull_push(name: &str, pull_opts: Options) -> (Socket, Socket) {
    let pull = spstack::pull0().options(pull_opts).build();
    let url = format!("inproc://{name}");
    pull.listen(&url).await.unwrap();
    let push = spstack::push0()
        .options(Options::default().reconnect_min(Duration::from_secs(3600)))
        .build();
    within("dial", push.dial(&url)).await.unwrap();
    wait_for(&pull, "the pipe", |_, n| n == 1).await;
    (pull, push)
}

#[tokio::test(start_paused = true)]
async fn an_idle_pipe_is_closed_and_counted() {
    let (pull, _push) = pull_push(
        "limits-idle",
        Options::default().idle_timeout(Some(Duration::from_secs(1))),
    )
    .await;
    let st = wait_for(&pull, "the idle pipe closed", |st, n| {
        n == 0 && st.pipes_closed == 1
    })
    .await;
    assert_eq!(st.rejects(RejectReason::IdleTimeout), 1);
}

#[tokio::test(start_paused = true)]
async fn a_pipe_that_keeps_receiving_stays_open() {
    let (pull, push) = pull_push(
        "limits-busy",
        Options::default().idle_timeout(Some(Duration::from_secs(1))),
    )
    .await;
    // ten seconds of a message every half second, read as they come
    for i in 0..20u8 {
        push.send(vec![i]).await.unwrap();
        assert_eq!(within("recv", pull.recv()).await.unwrap().body(), [i]);
        sleep(Duration::from_millis(500)).await;
    }
    let st = pull.stats();
    assert_eq!(st.rejects(RejectReason::IdleTimeout), 0, "{st}");
    assert_eq!((st.pipes_opened, pull.pipes().len()), (1, 1));
    // then it falls quiet
    let st = wait_for(&pull, "the pipe quiet", |_, n| n == 0).await;
    assert_eq!(st.rejects(RejectReason::IdleTimeout), 1);
}

#[tokio::test(start_paused = true)]
async fn a_pipe_held_back_by_a_full_receive_queue_is_not_idle() {
    // the application reads nothing for ten seconds while the pipe's reader
    // holds messages it has no room for: that wait is the socket's, so the
    // pipe's timeout starts only when the reader waits for its peer again
    let (pull, push) = pull_push(
        "limits-held",
        Options::default()
            .idle_timeout(Some(Duration::from_secs(1)))
            .recv_queue(1),
    )
    .await;
    for i in 0..3u8 {
        push.send(vec![i]).await.unwrap();
    }
    sleep(Duration::from_secs(10)).await;
    for i in 0..3u8 {
        assert_eq!(within("recv", pull.recv()).await.unwrap().body(), [i]);
    }
    // the reader has room again and waits for its peer (no time passes)
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    let st = pull.stats();
    assert_eq!(st.rejects(RejectReason::IdleTimeout), 0, "{st}");
    assert_eq!(pull.pipes().len(), 1);
    // a full timeout later, it is idle
    let st = wait_for(&pull, "the pipe quiet", |_, n| n == 0).await;
    assert_eq!(st.rejects(RejectReason::IdleTimeout), 1);
}

#[tokio::test(start_paused = true)]
async fn without_an_idle_timeout_a_quiet_pipe_stays() {
    let (pull, _push) = pull_push("limits-quiet", Options::default()).await;
    assert_eq!(Options::default().idle_timeout, None, "off by default");
    sleep(Duration::from_secs(3600)).await;
    assert_eq!(pull.pipes().len(), 1);
    assert_eq!(pull.stats().pipes_closed, 0);
}

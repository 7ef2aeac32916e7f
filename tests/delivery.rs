//! Nothing a user sent is lost without a count: every message `send`
//! accepts ends written to a transport, moved to another pipe, or counted
//! under a named reason — including what `close` discards, what a failed
//! write held, and what the linger deadline cuts off.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::wire::{sp_header, within};
use spstack::{DropReason, Options, PipeEvent, Socket, Stats};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const N: u32 = 10_000;
const LONG: Duration = Duration::from_secs(30);

async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    tokio::time::timeout(LONG, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

fn numbered(i: u32) -> Vec<u8> {
    let mut v = i.to_be_bytes().to_vec();
    v.extend_from_slice(&[0x5a; 60]);
    v
}

fn id_of(body: &[u8]) -> u32 {
    u32::from_be_bytes([body[0], body[1], body[2], body[3]])
}

/// Receives until the socket closes, recording ids; `slow` sleeps between
/// receives (a reader that cannot keep up).
fn reader(s: Socket, got: Arc<Mutex<Vec<u32>>>, slow: Option<Duration>) {
    tokio::spawn(async move {
        while let Ok(m) = s.recv().await {
            got.lock().unwrap().push(id_of(m.body()));
            if let Some(d) = slow {
                tokio::time::sleep(d).await;
            }
        }
    });
}

/// One PUSH, two PULLs over tcp, 10,000 numbered messages, one PULL closed
/// half-way: each message is received once, or counted as a drop on one
/// side, never both, never neither.
async fn one_pull_closed_half_way(slow: Option<Duration>) {
    let (a, b) = (
        spstack::typed::pull0().build(),
        spstack::typed::pull0().build(),
    );
    let ea = a.listen("tcp://127.0.0.1:0").await.unwrap();
    let eb = b.listen("tcp://127.0.0.1:0").await.unwrap();
    let push = spstack::typed::push0().build();
    within("dial a", push.dial(ea.url())).await.unwrap();
    within("dial b", push.dial(eb.url())).await.unwrap();
    until("two pipes", || push.pipes().len() == 2).await;
    let (got_a, got_b) = (Arc::default(), Arc::default());
    reader(a.clone().into(), Arc::clone(&got_a), slow);
    reader(b.clone().into(), Arc::clone(&got_b), None);

    let closer = {
        let (a, got_a) = (a.clone(), Arc::clone(&got_a));
        tokio::spawn(async move {
            until("a's half", || got_a.lock().unwrap().len() >= 1000).await;
            a.shutdown().await
        })
    };
    for i in 0..N {
        tokio::time::timeout(LONG, push.send(numbered(i)))
            .await
            .expect("send in time")
            .expect("send");
    }
    let a_final: Stats = within("a closes", closer).await.unwrap();
    let counted = || {
        let (ga, gb) = (got_a.lock().unwrap().len(), got_b.lock().unwrap().len());
        let drops = push.stats().total_drops() + a_final.total_drops() + b.stats().total_drops();
        (ga as u64, gb as u64, drops)
    };
    until("every message received or counted", || {
        let (ga, gb, d) = counted();
        ga + gb + d >= N as u64
    })
    .await;
    // a moment for anything counted twice to show
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (ga, gb, drops) = counted();
    let mut ids: Vec<u32> = got_a.lock().unwrap().clone();
    ids.extend(got_b.lock().unwrap().iter());
    let unique: HashSet<u32> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "a message was delivered twice");
    assert_eq!(
        ga + gb + drops,
        N as u64,
        "received by a {ga}, by b {gb}, counted {drops}: push {} / a {a_final} / b {}",
        push.stats(),
        b.stats()
    );
    // what a discarded is counted under the reason a user looks for
    assert_eq!(
        a_final.total_drops(),
        a_final.drops(DropReason::Closed),
        "{a_final}"
    );
    // and a's counters agree with what it was sent: in = delivered + dropped
    assert_eq!(a_final.msgs_in, ga + a_final.total_drops(), "{a_final}");
    push.close();
    b.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_to_two_pulls_one_closed_half_way_counts_every_message() {
    one_pull_closed_half_way(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_to_two_pulls_one_slow_reader_closed_half_way_counts_every_message() {
    one_pull_closed_half_way(Some(Duration::from_micros(200))).await;
}

#[tokio::test]
async fn close_counts_what_the_receive_queue_held() {
    let pull = spstack::typed::pull0().build();
    pull.listen("inproc://delivery-close-queue").await.unwrap();
    let push = spstack::typed::push0().build();
    push.dial("inproc://delivery-close-queue").await.unwrap();
    for i in 0..50 {
        push.send(numbered(i)).await.unwrap();
    }
    until("all queued at the pull", || pull.stats().msgs_in == 50).await;
    let first = pull.recv().await.unwrap();
    assert_eq!(id_of(first.body()), 0);
    let st = within("shutdown", pull.shutdown()).await;
    assert_eq!(st.drops(DropReason::Closed), 49, "{st}");
}

#[tokio::test]
async fn pub_with_no_subscriber_counts_what_went_nowhere() {
    let p = spstack::typed::pub0().build();
    for _ in 0..3 {
        p.send("news").await.unwrap();
    }
    let st = p.stats();
    assert_eq!(st.drops(DropReason::NoPeer), 3, "{st}");
    assert_eq!(st.msgs_out + st.total_drops(), 3);
}

/// A raw SP/TCP PULL peer that reads `first` frames, then stops reading;
/// `rst` closes with a reset (SO_LINGER 0) after `after` once it stopped.
async fn stalling_pull(first: usize, after: Duration) -> (String, tokio::task::JoinHandle<usize>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("tcp://{}", l.local_addr().unwrap());
    let h = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        s.write_all(&sp_header(0x51)).await.unwrap();
        let mut h = [0u8; 8];
        s.read_exact(&mut h).await.unwrap();
        let mut read = 0;
        let mut len = [0u8; 8];
        while read < first {
            s.read_exact(&mut len).await.unwrap();
            let mut f = vec![0u8; u64::from_be_bytes(len) as usize];
            s.read_exact(&mut f).await.unwrap();
            read += 1;
        }
        tokio::time::sleep(after).await;
        // a reset: what the kernel buffered towards us is discarded (with a
        // zero linger the drop does not block)
        #[allow(deprecated)]
        s.set_linger(Some(Duration::ZERO)).unwrap();
        drop(s);
        read
    });
    (url, h)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_write_counts_what_it_held() {
    let (url, peer) = stalling_pull(10, Duration::from_millis(500)).await;
    let push = spstack::typed::push0()
        .options(
            Options::default()
                .send_queue(256)
                .send_queue_bytes(64 << 20)
                .write_batch(64),
        )
        .build();
    within("dial", push.dial(&url)).await.unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let sender = {
        let (push, accepted) = (push.clone(), accepted.clone());
        tokio::spawn(async move {
            for _ in 0..200 {
                let m = push.new_message(64 << 10);
                match tokio::time::timeout(Duration::from_secs(2), push.send(m)).await {
                    Ok(Ok(())) => accepted.fetch_add(1, Ordering::SeqCst),
                    // no pipe left to wait for: stop
                    _ => break,
                };
            }
        })
    };
    let read = within("peer", peer).await.unwrap();
    let _ = tokio::time::timeout(LONG, sender).await;
    until("the pipe is gone", || push.pipes().is_empty()).await;
    // give the writer time to settle its batch
    until("everything accounted", || {
        let st = push.stats();
        st.msgs_out + st.total_drops() == accepted.load(Ordering::SeqCst) as u64
    })
    .await;
    let st = push.stats();
    assert!(st.msgs_out >= read as u64, "{st}");
    assert!(
        st.drops(DropReason::PipeClosed) > 0,
        "messages stuck behind a full kernel buffer were not counted: {st}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linger_writes_what_is_queued_then_counts_the_rest() {
    // a cooperative peer: shutdown returns once all is written
    let pull = spstack::typed::pull0().build();
    let ep = pull.listen("tcp://127.0.0.1:0").await.unwrap();
    let push = spstack::typed::push0()
        .options(
            Options::default()
                .send_queue(1024)
                .send_queue_bytes(64 << 20),
        )
        .build();
    within("dial", push.dial(ep.url())).await.unwrap();
    for i in 0..500 {
        push.send(numbered(i)).await.unwrap();
    }
    let st = within("shutdown", push.shutdown()).await;
    assert_eq!(st.msgs_out, 500, "{st}");
    assert_eq!(st.total_drops(), 0, "{st}");
    let mut n = 0;
    while let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(2), pull.recv()).await {
        n += 1;
        if n == 500 {
            break;
        }
    }
    assert_eq!(n, 500, "written before the close means received");

    // a peer that never reads: the linger ends it, and what did not fit in
    // the kernel's buffers is counted
    let (url, _peer) = stalling_pull(0, Duration::from_secs(20)).await;
    let push = spstack::typed::push0()
        .options(
            Options::default()
                .send_queue(1024)
                .send_queue_bytes(256 << 20)
                .linger(Duration::from_millis(300)),
        )
        .build();
    within("dial", push.dial(&url)).await.unwrap();
    for _ in 0..256 {
        push.send(push.new_message(64 << 10)).await.unwrap();
    }
    let t0 = std::time::Instant::now();
    let st = within("shutdown", push.shutdown()).await;
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "the linger bounds close"
    );
    assert_eq!(st.msgs_out + st.total_drops(), 256, "{st}");
    assert!(st.drops(DropReason::Closed) > 0, "{st}");
}

#[tokio::test]
async fn send_after_close_is_refused_not_lost() {
    let push = spstack::typed::push0().build();
    push.close();
    assert!(matches!(push.send("x").await, Err(spstack::Error::Closed)));
    assert_eq!(push.stats().total_drops(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pair_peers_racing_for_its_place_get_one_pipe() {
    // a slow hook widens the window between "is there room" and "insert":
    // the check and the insert must be one step
    let a = spstack::typed::pair0().build();
    a.on_pipe_event(|ev| {
        if let PipeEvent::AddPre(..) = ev {
            std::thread::sleep(Duration::from_millis(100));
        }
        true
    });
    let live = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    {
        let (live, most) = (live.clone(), most.clone());
        a.on_pipe_event(move |ev| {
            match ev {
                PipeEvent::AddPost(..) => {
                    let n = live.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(n, Ordering::SeqCst);
                }
                PipeEvent::RemovePost(..) => {
                    live.fetch_sub(1, Ordering::SeqCst);
                }
                _ => {}
            }
            true
        });
    }
    let ep = a.listen("tcp://127.0.0.1:0").await.unwrap();
    let mut dialers = Vec::new();
    for _ in 0..4 {
        let b = spstack::typed::pair0().build();
        let url = ep.url().to_string();
        dialers.push(tokio::spawn(async move {
            let _ = b.dial(&url).await;
            b
        }));
    }
    let mut keep = Vec::new();
    for d in dialers {
        keep.push(within("dial", d).await.unwrap());
    }
    until("one pipe", || a.pipes().len() == 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        most.load(Ordering::SeqCst),
        1,
        "two pipes were attached at once"
    );
    assert!(a.stats().rejects(spstack::RejectReason::PipeLimit) >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipe_stats_while_pipes_come_and_go_does_not_deadlock() {
    // pipe_stats once took the table's read lock twice in one expression: a
    // writer (a pipe joining or leaving) waiting between the two blocked both
    let pull = spstack::typed::pull0().build();
    let ep = pull.listen("tcp://127.0.0.1:0").await.unwrap();
    let steady = spstack::typed::push0().build();
    steady.dial(ep.url()).await.unwrap();
    until("a pipe", || !pull.pipes().is_empty()).await;
    let id = pull.pipes()[0];
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hammer = {
        let (pull, stop) = (pull.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let _ = pull.pipe_stats(id);
                n += 1;
            }
            n
        })
    };
    let churn = async {
        for _ in 0..100 {
            let p = spstack::typed::push0().build();
            p.dial(ep.url()).await.unwrap();
            p.close();
        }
    };
    tokio::time::timeout(LONG, churn)
        .await
        .expect("pipes kept coming and going while stats were read");
    stop.store(true, Ordering::Relaxed);
    assert!(hammer.join().unwrap() > 0);
}

#[tokio::test]
async fn a_raw_pair1_send_that_waits_for_a_peer_counts_one_hop() {
    // the raw side counts the hop as the message is queued, once, however
    // long it waited for a pipe
    let raw = spstack::raw(spstack::Protocol::Pair1)
        .options(Options::default())
        .build();
    let mut m = spstack::Message::from(&b"hop"[..]);
    m.set_header(&3u32.to_be_bytes());
    let send = {
        let raw = raw.clone();
        tokio::spawn(async move { raw.raw().send(m).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("tcp://{}", l.local_addr().unwrap());
    let dial = raw.dial_background(&url).unwrap();
    let (mut s, _) = within("accept", l.accept()).await.unwrap();
    s.write_all(&sp_header(0x11)).await.unwrap();
    let mut h = [0u8; 8];
    s.read_exact(&mut h).await.unwrap();
    within("send", send).await.unwrap().unwrap();
    let frame = common::wire::read_frame(&mut s).await;
    assert_eq!(&frame[..4], &4u32.to_be_bytes(), "hop count 3 + 1");
    assert_eq!(&frame[4..], b"hop");
    dial.close();
}

/// A receiver takes what is queued in batches and hands it out one by one:
/// what it holds when the socket closes is counted as discarded (`Closed`)
/// exactly once, and a context dropped with some in hand gives them back, in
/// order, to the socket's other receivers.
#[tokio::test]
async fn messages_taken_in_a_batch_are_delivered_or_counted() {
    let pull = spstack::pull0().build();
    let ep = pull.listen("tcp://127.0.0.1:0").await.unwrap();
    let push = spstack::push0().build();
    within("dial", push.dial(ep.url())).await.unwrap();
    for i in 0..10 {
        push.send(numbered(i)).await.unwrap();
    }
    until("all ten in", || pull.stats().msgs_in == 10).await;
    // a context takes the whole batch for its first message, then goes
    let ctx = pull.context();
    assert_eq!(id_of(ctx.recv().await.unwrap().body()), 0);
    drop(ctx);
    // the rest come back, in order
    for i in 1..4 {
        assert_eq!(id_of(pull.recv().await.unwrap().body()), i);
    }
    // six are in the default context's hand now: closing counts them
    pull.close();
    assert!(pull.recv().await.is_err(), "closed");
    let s = pull.stats();
    assert_eq!(s.drops(DropReason::Closed), 6, "{s}");
    assert_eq!(s.total_drops(), 6, "{s}");
}

/// A socket whose runtime is gone (a killed worker, a node of the hosts
/// harness) keeps no connection open: its peer hears the FIN, as from a
/// killed process, even though the socket handle itself lives on (the
/// write half a sender may write through lives in the socket's pipe table).
#[test]
fn a_peer_whose_runtime_is_gone_is_heard_closing() {
    let rt_b = tokio::runtime::Runtime::new().unwrap();
    let (push, url) = rt_b.block_on(async {
        let push = spstack::push0().build();
        let ep = push.listen("tcp://127.0.0.1:0").await.unwrap();
        let url = ep.url().to_string();
        (push, url)
    });
    let rt_a = tokio::runtime::Runtime::new().unwrap();
    rt_a.block_on(async {
        let pull = spstack::pull0().build();
        pull.dial(&url).await.unwrap();
        let mut events = pull.pipe_events();
        rt_b.shutdown_background();
        let removed = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if let Ok(spstack::PipeEvent::RemovePost(..)) = events.recv().await {
                    break;
                }
            }
        })
        .await;
        assert!(
            removed.is_ok(),
            "the pipe to a peer whose runtime is gone stayed: {}",
            pull.stats()
        );
        assert!(pull.pipes().is_empty());
    });
    drop(push);
}

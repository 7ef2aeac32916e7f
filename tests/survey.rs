//! SURVEYOR/RESPONDENT: several respondents and a deadline, the timeout
//! error, late responses counted, contexts on both sides, a device between
//! them, and raw-TCP evil peers on both sides.

mod common;

use common::wire::*;
use std::time::{Duration, Instant};

use spstack::{
    DropReason, Error, Message, Options, Protocol, RejectReason, Socket, Stats, SurveyorControl,
};
use tokio::io::AsyncWriteExt;
use tokio::time::sleep;

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
    while s.pipes().len() < n {
        assert!(t0.elapsed() < WAIT, "expected {n} pipes");
        sleep(Duration::from_millis(5)).await;
    }
}

fn set_deadline(s: &Socket, d: Duration) {
    s.control::<SurveyorControl>()
        .expect("a surveyor has a SurveyorControl")
        .set_deadline(d);
}

/// A surveyor listening on tcp with `n` respondents dialed in.
async fn survey_net(n: usize) -> (Socket, Vec<Socket>, String) {
    let surveyor = spstack::surveyor0().build();
    let url = surveyor
        .listen("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .url()
        .to_string();
    let mut rs = Vec::new();
    for _ in 0..n {
        let r = spstack::respondent0().build();
        within("respondent dial", r.dial(&url)).await.unwrap();
        rs.push(r);
    }
    wait_pipes(&surveyor, n).await;
    (surveyor, rs, url)
}

/// Each respondent answers one survey with `"<name>:<survey>"`.
fn answer_once(rs: &[Socket]) -> Vec<tokio::task::JoinHandle<()>> {
    rs.iter()
        .enumerate()
        .map(|(i, r)| {
            let r = r.clone();
            tokio::spawn(async move {
                let q = within("survey", r.recv()).await.unwrap();
                let mut a = format!("r{i}:").into_bytes();
                a.extend_from_slice(q.body());
                within("respond", r.send(a)).await.unwrap();
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_respondents_answer_then_the_deadline_times_out() {
    let (surveyor, rs, _) = survey_net(3).await;
    let ctl = surveyor.control::<SurveyorControl>().unwrap();
    assert_eq!(
        ctl.deadline(),
        Duration::from_secs(1),
        "default survey time"
    );
    ctl.set_deadline(Duration::from_millis(300));
    for round in 0..2 {
        let tasks = answer_once(&rs);
        let t0 = Instant::now();
        surveyor.send(format!("q{round}").as_str()).await.unwrap();
        let mut got = Vec::new();
        let err = loop {
            match within("survey recv", surveyor.recv()).await {
                Ok(m) => got.push(String::from_utf8(m.body().to_vec()).unwrap()),
                Err(e) => break e,
            }
        };
        let took = t0.elapsed();
        assert!(
            matches!(err, Error::TimedOut(d) if d == Duration::from_millis(300)),
            "{err}"
        );
        assert!(took >= Duration::from_millis(290), "ended early: {took:?}");
        assert!(took < Duration::from_secs(2), "ended late: {took:?}");
        got.sort();
        assert_eq!(
            got,
            (0..3).map(|i| format!("r{i}:q{round}")).collect::<Vec<_>>()
        );
        for t in tasks {
            t.await.unwrap();
        }
        // the survey is over: recv says so at once instead of waiting
        assert!(matches!(
            within("recv after the end", surveyor.recv()).await,
            Err(Error::State(_))
        ));
    }
    assert_eq!(surveyor.stats().drops(DropReason::Late), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recv_without_a_survey_is_a_state_error() {
    let s = spstack::surveyor0().build();
    assert!(matches!(
        within("recv", s.recv()).await,
        Err(Error::State(_))
    ));
    // a respondent cannot answer what it never received
    let r = spstack::respondent0().build();
    assert!(matches!(
        within("send", r.send("x")).await,
        Err(Error::State(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_responses_are_dropped_and_counted() {
    let (surveyor, rs, _) = survey_net(1).await;
    set_deadline(&surveyor, Duration::from_millis(100));
    surveyor.send("slow?").await.unwrap();
    let q = within("survey", rs[0].recv()).await.unwrap();
    assert!(matches!(
        within("deadline", surveyor.recv()).await,
        Err(Error::TimedOut(_))
    ));
    rs[0].send(q.body()).await.unwrap();
    // the late response is only seen by a receive: start another survey and
    // let its recv file the straggler as late
    surveyor.send("next").await.unwrap();
    let q2 = within("survey 2", rs[0].recv()).await.unwrap();
    rs[0].send(q2.body()).await.unwrap();
    let m = within("response 2", surveyor.recv()).await.unwrap();
    assert_eq!(m.body(), b"next", "the straggler was not delivered");
    wait_stats(&surveyor, "one late response", |st| {
        st.drops(DropReason::Late) == 1
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_survey_ends_the_previous_one() {
    let (surveyor, rs, _) = survey_net(1).await;
    surveyor.send("first").await.unwrap();
    let q1 = within("first", rs[0].recv()).await.unwrap();
    let r2 = rs[0].context();
    surveyor.send("second").await.unwrap();
    let mut r2 = r2;
    let q2 = within("second", r2.recv()).await.unwrap();
    rs[0].send(q1.body()).await.unwrap();
    r2.send(q2.body()).await.unwrap();
    let m = within("response", surveyor.recv()).await.unwrap();
    assert_eq!(m.body(), b"second");
    wait_stats(&surveyor, "the first survey's answer is late", |st| {
        st.drops(DropReason::Late) == 1
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contexts_run_independent_surveys_with_their_own_deadlines() {
    let (surveyor, rs, _) = survey_net(2).await;
    // respondents: answer every survey, with the survey's own text
    for r in &rs {
        for _ in 0..2 {
            let mut c = r.context();
            tokio::spawn(async move {
                while let Ok(q) = c.recv().await {
                    if c.send(q.body()).await.is_err() {
                        return;
                    }
                }
            });
        }
    }
    let mut a = surveyor.context();
    let mut b = surveyor.context();
    a.control::<SurveyorControl>()
        .unwrap()
        .set_deadline(Duration::from_millis(150));
    b.control::<SurveyorControl>()
        .unwrap()
        .set_deadline(Duration::from_millis(400));
    a.send("A").await.unwrap();
    b.send("B").await.unwrap();
    let collect = |mut c: spstack::SocketContext, want: &'static [u8]| async move {
        let t0 = Instant::now();
        let mut n = 0;
        loop {
            match within("context recv", c.recv()).await {
                Ok(m) => {
                    assert_eq!(m.body(), want, "a response crossed contexts");
                    n += 1;
                }
                Err(Error::TimedOut(_)) => return (n, t0.elapsed()),
                Err(e) => panic!("{e}"),
            }
        }
    };
    let (ra, rb) = tokio::join!(collect(a, b"A"), collect(b, b"B"));
    assert_eq!(ra.0, 2);
    assert_eq!(rb.0, 2);
    assert!(ra.1 < Duration::from_millis(390), "A used B's deadline");
    assert!(rb.1 >= Duration::from_millis(250), "B used A's deadline");
    assert_eq!(surveyor.stats().total_drops(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn respondent_contexts_answer_out_of_order() {
    let (surveyor, rs, _) = survey_net(1).await;
    let mut s1 = surveyor.context();
    let mut s2 = surveyor.context();
    let mut c1 = rs[0].context();
    let mut c2 = rs[0].context();
    s1.send("one").await.unwrap();
    let q1 = within("q1", c1.recv()).await.unwrap();
    s2.send("two").await.unwrap();
    let q2 = within("q2", c2.recv()).await.unwrap();
    c2.send(q2.body()).await.unwrap();
    c1.send(q1.body()).await.unwrap();
    assert_eq!(within("r1", s1.recv()).await.unwrap().body(), b"one");
    assert_eq!(within("r2", s2.recv()).await.unwrap().body(), b"two");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn surveys_cross_a_device() {
    // respondents <- [raw surveyor | raw respondent] <- surveyor
    let front = spstack::raw(Protocol::Respondent0).build();
    let back = spstack::raw(Protocol::Surveyor0).build();
    let front_url = front
        .listen("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .url()
        .to_string();
    let back_url = back
        .listen("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .url()
        .to_string();
    let rs: Vec<Socket> = (0..3).map(|_| spstack::respondent0().build()).collect();
    for r in &rs {
        within("respondent dial", r.dial(&back_url)).await.unwrap();
    }
    wait_pipes(&back, 3).await;
    let (f, b) = (front.clone(), back.clone());
    let dev = tokio::spawn(async move { spstack::device(&f, &b).await });
    let surveyor = spstack::surveyor0().build();
    within("surveyor dial", surveyor.dial(&front_url))
        .await
        .unwrap();
    wait_pipes(&front, 1).await;
    set_deadline(&surveyor, Duration::from_millis(400));
    let tasks = answer_once(&rs);
    surveyor.send("via device").await.unwrap();
    let mut got = Vec::new();
    while let Ok(m) = within("recv", surveyor.recv()).await {
        got.push(String::from_utf8(m.body().to_vec()).unwrap());
    }
    got.sort();
    assert_eq!(got, ["r0:via device", "r1:via device", "r2:via device"]);
    for t in tasks {
        t.await.unwrap();
    }
    dev.abort();
}

// ---------------------------------------------------------------------------
// evil peers over raw TCP
// ---------------------------------------------------------------------------

const SURVEYOR0: u16 = 0x62;
const RESPONDENT0: u16 = 0x63;

fn words(hops: &[u32], id: u32, body: &[u8]) -> Vec<u8> {
    let mut v: Vec<u8> = hops.iter().flat_map(|w| w.to_be_bytes()).collect();
    v.extend_from_slice(&(id | 0x8000_0000).to_be_bytes());
    v.extend_from_slice(body);
    v
}

/// The surveyor still runs a full survey with a good respondent.
async fn surveyor_serves(surveyor: &Socket, url: &str) {
    let r = spstack::respondent0().build();
    within("good dial", r.dial(url)).await.unwrap();
    let n = surveyor.pipes().len();
    wait_pipes(surveyor, n.max(1)).await;
    set_deadline(surveyor, Duration::from_millis(300));
    let t = answer_once(std::slice::from_ref(&r));
    surveyor.send("still there?").await.unwrap();
    let m = within("good response", surveyor.recv()).await.unwrap();
    assert_eq!(m.body(), b"r0:still there?");
    t.into_iter().next().unwrap().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evil_respondent_bad_backtraces() {
    let surveyor = spstack::surveyor0()
        .options(Options::default().ttl(8))
        .build();
    let url = surveyor
        .listen("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .url()
        .to_string();
    // no terminating word, or shorter than a survey id: the pipe is closed
    let cases: [&[u8]; 3] = [b"", b"\x00\x00\x00\x01\x00\x00\x00\x02", b"\x80\x00"];
    for (i, c) in cases.iter().enumerate() {
        let mut s = evil(&url, RESPONDENT0, SURVEYOR0).await;
        wait_pipes(&surveyor, 1).await;
        // a survey is running and being received, so responses are parsed
        set_deadline(&surveyor, Duration::from_millis(200));
        surveyor.send("q").await.unwrap();
        let _ = read_frame(&mut s).await;
        s.write_all(&tcp_frame(c)).await.unwrap();
        expect_closed(&mut s, &format!("response {c:02x?}")).await;
        let k = i as u64 + 1;
        wait_stats(&surveyor, "protocol error", |st| {
            st.rejects(RejectReason::ProtocolError) == k && st.pipes_closed == k
        })
        .await;
        assert!(matches!(
            within("recv", surveyor.recv()).await,
            Err(Error::TimedOut(_))
        ));
    }
    // too many hops: dropped, the pipe kept; a good response on it then passes
    let mut s = evil(&url, RESPONDENT0, SURVEYOR0).await;
    wait_pipes(&surveyor, 1).await;
    set_deadline(&surveyor, Duration::from_millis(500));
    surveyor.send("q").await.unwrap();
    let q = read_frame(&mut s).await;
    assert_eq!(q.len(), 5, "survey id + body");
    assert_eq!(q[0] & 0x80, 0x80, "survey ids have the top bit set");
    let id = u32::from_be_bytes(q[..4].try_into().unwrap()) & 0x7fff_ffff;
    let too_deep: Vec<u32> = (1..=9).collect(); // 9 + id = 10 words > ttl + 1
    s.write_all(&tcp_frame(&words(&too_deep, id, b"deep")))
        .await
        .unwrap();
    s.write_all(&tcp_frame(&words(&[], id, b"fine")))
        .await
        .unwrap();
    let m = within("good response", surveyor.recv()).await.unwrap();
    assert_eq!(m.body(), b"fine");
    let st = surveyor.stats();
    assert_eq!(st.drops(DropReason::TtlExceeded), 1);
    assert_eq!(st.pipes_closed, 3, "the too-deep response closed no pipe");
    drop(s);
    wait_stats(&surveyor, "evil pipe gone", |st| st.pipes_closed == 4).await;
    assert!(matches!(
        within("end", surveyor.recv()).await,
        Err(Error::TimedOut(_))
    ));
    surveyor_serves(&surveyor, &url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evil_surveyor_bad_backtraces() {
    let respondent = spstack::respondent0()
        .options(Options::default().ttl(8))
        .build();
    let url = respondent
        .listen("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .url()
        .to_string();
    let cases: [&[u8]; 3] = [b"", b"\x00\x00\x00\x01", b"hello"];
    for (i, c) in cases.iter().enumerate() {
        let mut s = evil(&url, SURVEYOR0, RESPONDENT0).await;
        s.write_all(&tcp_frame(c)).await.unwrap();
        expect_closed(&mut s, &format!("survey {c:02x?}")).await;
        let k = i as u64 + 1;
        wait_stats(&respondent, "protocol error", |st| {
            st.rejects(RejectReason::ProtocolError) == k
                && st.drops(DropReason::Malformed) == k
                && st.pipes_closed == k
        })
        .await;
    }
    let mut s = evil(&url, SURVEYOR0, RESPONDENT0).await;
    let eight: Vec<u32> = (1..=8).collect(); // 8 + id = 9 words > ttl 8
    s.write_all(&tcp_frame(&words(&eight, 7, b"far")))
        .await
        .unwrap();
    wait_stats(&respondent, "ttl drop", |st| {
        st.drops(DropReason::TtlExceeded) == 1
    })
    .await;
    // 7 hops + id = 8 words: delivered, and the response carries the stack back
    let seven: Vec<u32> = (1..=7).collect();
    s.write_all(&tcp_frame(&words(&seven, 8, b"near")))
        .await
        .unwrap();
    let m = within("survey", respondent.recv()).await.unwrap();
    assert_eq!(m.body(), b"near");
    respondent.send("here").await.unwrap();
    assert_eq!(read_frame(&mut s).await, words(&seven, 8, b"here"));
    assert_eq!(respondent.stats().pipes_closed, 3);

    // the respondent still answers a real surveyor
    let surveyor = spstack::surveyor0().build();
    within("dial", surveyor.dial(&url)).await.unwrap();
    wait_pipes(&respondent, 2).await;
    set_deadline(&surveyor, Duration::from_millis(500));
    surveyor.send("real").await.unwrap();
    let q = within("real survey", respondent.recv()).await.unwrap();
    assert_eq!(q.body(), b"real");
    respondent
        .send(Message::from(&b"answer"[..]))
        .await
        .unwrap();
    assert_eq!(
        within("answer", surveyor.recv()).await.unwrap().body(),
        b"answer"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_large_responses_stays_within_the_receive_byte_budget() {
    // The responses waiting for a survey are bounded in bytes by the
    // socket's receive budget, not only in count: a respondent answering
    // one survey 64 times with 32 KiB could make the surveyor hold 2 MiB
    // for a 256 KiB budget.
    const BUDGET: usize = 256 << 10;
    const SIZE: usize = 32 << 10;
    const FLOOD: usize = 64;
    let surveyor = spstack::surveyor0()
        .options(Options::default().recv_queue_bytes(BUDGET))
        .build();
    let url = surveyor
        .listen("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .url()
        .to_string();
    let mut s = evil(&url, RESPONDENT0, SURVEYOR0).await;
    wait_pipes(&surveyor, 1).await;
    // A's survey is never read while the flood arrives; B's receive files
    // every response under its survey, and B's own answer comes last on the
    // same connection, so once B has it the flood has been filed or dropped
    // (and A's full survey took no room from B's)
    let mut a = surveyor.context();
    let mut b = surveyor.context();
    for c in [&a, &b] {
        c.control::<SurveyorControl>()
            .unwrap()
            .set_deadline(Duration::from_secs(30));
    }
    a.send("A").await.unwrap();
    let qa = read_frame(&mut s).await;
    b.send("B").await.unwrap();
    let qb = read_frame(&mut s).await;
    let id = |q: &[u8]| u32::from_be_bytes(q[..4].try_into().unwrap()) & 0x7fff_ffff;
    let (ida, idb) = (id(&qa), id(&qb));
    let writer = tokio::spawn(async move {
        let big = vec![7u8; SIZE];
        for _ in 0..FLOOD {
            s.write_all(&tcp_frame(&words(&[], ida, &big)))
                .await
                .unwrap();
        }
        s.write_all(&tcp_frame(&words(&[], idb, b"B")))
            .await
            .unwrap();
        s
    });
    let m = within("B's answer after the flood", b.recv())
        .await
        .unwrap();
    assert_eq!(m.body(), b"B");
    let _s = within("flood written", writer).await.unwrap();
    let st = surveyor.stats();
    let dropped = st.drops(DropReason::QueueFull) as usize;
    let held = FLOOD - dropped;
    assert!(
        held * SIZE <= BUDGET,
        "the surveyor holds {held} responses of {SIZE} bytes for a {BUDGET}-byte budget\n{st}"
    );
    assert!(held >= 1, "the budget admits responses at all");
    // what is held is what A then reads, each at once; the one left unread
    // when A goes is counted too
    for _ in 1..held {
        let m = within("a held response", a.recv()).await.unwrap();
        assert_eq!(m.body().len(), SIZE);
    }
    drop(a);
    wait_stats(&surveyor, "the unread response counted", |st| {
        st.drops(DropReason::Late) == 1
    })
    .await;
}

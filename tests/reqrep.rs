//! REQ/REP through the public API: request ids on the wire, resend on the
//! timer and on pipe loss, contexts on both sides, late replies, sizes.

use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use spstack::{DropReason, Error, Message, Options, Protocol, Socket};

/// Every wait in these tests is bounded by this.
const LIMIT: Duration = Duration::from_secs(5);

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

fn unique(tag: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "spstack-reqrep-{}-{}-{}",
        std::process::id(),
        tag,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn word(b: &[u8], i: usize) -> u32 {
    u32::from_be_bytes(b[4 * i..4 * i + 4].try_into().unwrap())
}

/// A raw REP listening on tcp and a cooked REQ dialed to it.
async fn req_to_raw_rep(req_opts: Options) -> (Socket, Socket) {
    let rep = spstack::raw(Protocol::Rep0).build();
    let ep = rep.listen("tcp://127.0.0.1:0").await.unwrap();
    let req = spstack::req0().options(req_opts).build();
    within("dial", req.dial(ep.url())).await.unwrap();
    (req, rep)
}

#[tokio::test]
async fn request_id_has_top_bit_set_on_the_wire() {
    let (req, rep) = req_to_raw_rep(Options::default()).await;
    let mut ids = Vec::new();
    for i in 0..3u8 {
        req.send(vec![i]).await.unwrap();
        let m = within("raw rep recv", rep.recv()).await.unwrap();
        // raw REP: [its own pipe id (top bit clear)] [request id (top bit set)]
        let h = m.header();
        assert_eq!(h.len(), 8, "header {h:02x?}");
        let pipe = word(h, 0);
        let id = word(h, 1);
        assert_eq!(
            pipe & 0x8000_0000,
            0,
            "pipe id {pipe:#x} must have top bit clear"
        );
        assert_ne!(pipe, 0);
        assert_eq!(Some(pipe), m.pipe());
        assert!(req.pipes().len() == 1);
        assert_ne!(
            id & 0x8000_0000,
            0,
            "request id {id:#x} must have top bit set"
        );
        assert_eq!(m.body(), &[i]);
        ids.push(id);
        // answer, with the backtrace as received
        let mut reply = Message::from(&b"ok"[..]);
        reply.set_header(h);
        rep.send(reply).await.unwrap();
        let r = within("req recv", req.recv()).await.unwrap();
        assert_eq!(r.body(), b"ok");
        assert!(r.header().is_empty(), "cooked REQ strips the id");
    }
    let distinct: HashSet<_> = ids.iter().collect();
    assert_eq!(distinct.len(), ids.len(), "ids must differ: {ids:x?}");
}

#[tokio::test]
async fn req_resends_on_its_timer() {
    let resend = Duration::from_millis(200);
    let (req, rep) = req_to_raw_rep(Options::default().req_resend(Some(resend))).await;
    let client = {
        let req = req.clone();
        tokio::spawn(async move {
            req.send("again?").await?;
            req.recv().await
        })
    };
    let first = within("first copy", rep.recv()).await.unwrap();
    let t0 = Instant::now();
    // ignore it; the REQ must send the same request again
    let second = within("resent copy", rep.recv()).await.unwrap();
    let gap = t0.elapsed();
    assert_eq!(
        first.header(),
        second.header(),
        "same pipe and same request id"
    );
    assert_eq!(first.body(), second.body());
    assert!(
        gap >= Duration::from_millis(120),
        "resent after {gap:?}, before the 200 ms timer"
    );
    let mut reply = Message::from("answered");
    reply.set_header(second.header());
    rep.send(reply).await.unwrap();
    let r = within("reply", client).await.unwrap().unwrap();
    assert_eq!(r.body(), b"answered");
    assert_eq!(rep.stats().msgs_in, 2);
}

#[tokio::test]
async fn req_resends_at_once_when_its_pipe_dies() {
    // resend timer far out of reach: only the pipe loss can trigger a resend
    let opts = Options::default()
        .req_resend(Some(Duration::from_secs(60)))
        .reconnect_min(Duration::from_millis(50));
    let rep_a = spstack::rep0().build();
    let rep_b = spstack::rep0().build();
    let ea = rep_a.listen("tcp://127.0.0.1:0").await.unwrap();
    let eb = rep_b.listen("tcp://127.0.0.1:0").await.unwrap();
    let req = spstack::req0().options(opts).build();
    within("dial a", req.dial(ea.url())).await.unwrap();
    within("dial b", req.dial(eb.url())).await.unwrap();
    assert_eq!(req.pipes().len(), 2);

    let t0 = Instant::now();
    let client = {
        let req = req.clone();
        tokio::spawn(async move {
            req.send("who answers?").await?;
            req.recv().await
        })
    };
    let (got, other) = within("first delivery", async {
        tokio::select! {
            m = rep_a.recv() => (m, (rep_a.clone(), rep_b.clone())),
            m = rep_b.recv() => (m, (rep_b.clone(), rep_a.clone())),
        }
    })
    .await;
    assert_eq!(got.unwrap().body(), b"who answers?");
    let (dead, alive) = other;
    dead.close(); // no reply; its pipe dies
    let m = within("resent request", alive.recv()).await.unwrap();
    assert_eq!(m.body(), b"who answers?");
    alive.send("from the survivor").await.unwrap();
    let r = within("reply", client).await.unwrap().unwrap();
    assert_eq!(r.body(), b"from the survivor");
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "took {:?}: the resend waited for the timer",
        t0.elapsed()
    );
}

fn answer_for(req: &[u8]) -> Vec<u8> {
    let mut v: Vec<u8> = req.iter().rev().copied().collect();
    v.extend_from_slice(b"|done");
    v
}

#[tokio::test]
async fn hundred_contexts_each_get_their_own_answer() {
    let rep = spstack::rep0().build();
    let ep = rep.listen("tcp://127.0.0.1:0").await.unwrap();
    let handler = tower::service_fn(|m: Message| async move {
        // a pseudo-random 0-20 ms delay derived from the request
        let seed = m.body().iter().fold(0x9e37_79b9u32, |h, b| {
            (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
        });
        tokio::time::sleep(Duration::from_millis(u64::from(seed % 21))).await;
        Ok::<_, std::convert::Infallible>(Message::from(answer_for(m.body())))
    });
    let server = tokio::spawn(spstack::rep::serve(rep.clone(), handler, 16));

    let req = spstack::req0().build();
    within("dial", req.dial(ep.url())).await.unwrap();
    let t0 = Instant::now();
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let mut ctx = req.context();
            tokio::spawn(async move {
                let body = format!("request-{i:03}");
                ctx.send(body.as_str()).await?;
                let r = ctx.recv().await?;
                Ok::<_, Error>((body, r))
            })
        })
        .collect();
    let results = within("100 contexts", futures::future::join_all(tasks)).await;
    for r in results {
        let (body, reply) = r.unwrap().unwrap();
        assert_eq!(reply.body(), answer_for(body.as_bytes()), "for {body}");
    }
    // 100 requests * ~10 ms / 16 workers ~ 65 ms; serial would be ~1 s
    assert!(t0.elapsed() < Duration::from_secs(3));
    assert_eq!(rep.stats().msgs_in, 100, "no resend, no duplicate");
    rep.close();
    within("serve ends on close", server).await.unwrap();
}

#[tokio::test]
async fn many_requests_in_flight_on_one_rep_via_contexts() {
    const N: usize = 10;
    let rep = spstack::rep0().build();
    let ep = rep.listen("tcp://127.0.0.1:0").await.unwrap();
    let req = spstack::req0().build();
    within("dial", req.dial(ep.url())).await.unwrap();

    let clients: Vec<_> = (0..N)
        .map(|i| {
            let mut ctx = req.context();
            tokio::spawn(async move {
                ctx.send(format!("q{i}").as_str()).await?;
                let r = ctx.recv().await?;
                Ok::<_, Error>((i, r))
            })
        })
        .collect();
    // take all N requests, each on its own REP context, before answering any
    let mut rep_ctxs = Vec::new();
    for _ in 0..N {
        let mut c = rep.context();
        let m = within("rep ctx recv", c.recv()).await.unwrap();
        rep_ctxs.push((c, m));
    }
    // answer in reverse order
    while let Some((mut c, m)) = rep_ctxs.pop() {
        let mut a = b"a-".to_vec();
        a.extend_from_slice(m.body());
        c.send(a).await.unwrap();
    }
    for r in within("clients", futures::future::join_all(clients)).await {
        let (i, reply) = r.unwrap().unwrap();
        assert_eq!(reply.body(), format!("a-q{i}").as_bytes());
    }
}

#[tokio::test]
async fn late_reply_is_dropped_and_counted() {
    let (req, rep) = req_to_raw_rep(Options::default()).await;
    let mut ctx = req.context();
    ctx.send("first").await.unwrap();
    let first = within("first", rep.recv()).await.unwrap();
    // a new request on the same context cancels the first
    ctx.send("second").await.unwrap();
    let second = within("second", rep.recv()).await.unwrap();
    assert_ne!(first.header(), second.header(), "a new request id");

    let mut late = Message::from("reply to first");
    late.set_header(first.header());
    rep.send(late).await.unwrap();
    let mut fresh = Message::from("reply to second");
    fresh.set_header(second.header());
    rep.send(fresh).await.unwrap();

    let r = within("reply", ctx.recv()).await.unwrap();
    assert_eq!(r.body(), b"reply to second");
    assert_eq!(req.stats().drops(DropReason::Late), 1, "{}", req.stats());
}

#[tokio::test]
async fn recv_on_req_context_without_request_is_an_error() {
    let req = spstack::req0().build();
    let mut ctx = req.context();
    let r = within("recv with nothing sent", ctx.recv()).await;
    assert!(matches!(r, Err(Error::State(_))), "got {r:?}");
    // the socket's own default context too
    let r = within("socket recv with nothing sent", req.recv()).await;
    assert!(matches!(r, Err(Error::State(_))), "got {r:?}");
}

async fn sizes_round_trip(url: &str) {
    let opts = Options::default().recv_max_size(2 << 20);
    let rep = spstack::rep0().options(opts.clone()).build();
    let ep = rep.listen(url).await.unwrap();
    let echo = tower::service_fn(|m: Message| async move { Ok::<_, Error>(m) });
    tokio::spawn(spstack::rep::serve(rep.clone(), echo, 2));
    let req = spstack::req0().options(opts).build();
    within("dial", req.dial(ep.url())).await.unwrap();
    for size in [0usize, 1, 64 << 10, 1 << 20] {
        let body: Vec<u8> = (0..size).map(|i| (i * 31 + size) as u8).collect();
        req.send(body.clone()).await.unwrap();
        let r = within("echo", req.recv()).await.unwrap();
        assert_eq!(r.body().len(), size, "size over {url}");
        assert!(
            r.body() == &body[..],
            "payload of {size} bytes over {url} differs"
        );
    }
    rep.close();
}

#[tokio::test]
async fn payload_sizes_round_trip_over_tcp() {
    sizes_round_trip("tcp://127.0.0.1:0").await;
}

#[tokio::test]
async fn payload_sizes_round_trip_over_ipc() {
    let path = std::env::temp_dir().join(format!("{}.ipc", unique("sizes")));
    sizes_round_trip(&format!("ipc://{}", path.display())).await;
}

/// A request or reply written by the sender itself (write-through, on an
/// idle pipe) that the transport cannot take at once is finished by the
/// pipe's writer: 8 MiB bodies both ways, each intact, every one counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_messages_written_through_arrive_whole() {
    const SIZE: usize = 8 << 20;
    let opts = Options::default().recv_max_size(SIZE + 1024);
    let rep = spstack::rep0().options(opts.clone()).build();
    let ep = rep.listen("tcp://127.0.0.1:0").await.unwrap();
    let req = spstack::req0().options(opts).build();
    within("dial", req.dial(ep.url())).await.unwrap();
    let server = {
        let rep = rep.clone();
        tokio::spawn(async move {
            for _ in 0..6 {
                let m = rep.recv().await.unwrap();
                let mut r = Message::from(m.body().to_vec());
                r.body_mut().reverse();
                rep.send(r).await.unwrap();
            }
        })
    };
    for i in 0..6u8 {
        let body: Vec<u8> = (0..SIZE).map(|k| (k as u8).wrapping_add(i)).collect();
        req.send(body.clone()).await.unwrap();
        let got = within("reply", req.recv()).await.unwrap();
        let mut want = body;
        want.reverse();
        assert!(got.body() == &want[..], "reply {i} intact");
    }
    within("server", server).await.unwrap();
    let (q, p) = (req.stats(), rep.stats());
    assert_eq!((q.total_drops(), p.total_drops()), (0, 0), "{q}\n{p}");
    assert_eq!((q.msgs_in, p.msgs_in), (6, 6));
}

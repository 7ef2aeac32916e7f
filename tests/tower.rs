//! tower middleware around a REQ socket (`spstack::Req`), and `rep::serve`
//! driving a REP socket with a tower service.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use spstack::{Error, Message, Options, Rep, Req};
use tower::{BoxError, Service, ServiceBuilder, ServiceExt};

const LIMIT: Duration = Duration::from_secs(5);

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// A REQ dialed to a REP that receives requests but never answers.
async fn req_to_silent_rep() -> (Req, Rep) {
    let rep = spstack::typed::rep0().build();
    let ep = rep.listen("tcp://127.0.0.1:0").await.unwrap();
    let req = spstack::typed::req0().build();
    within("dial", req.dial(ep.url())).await.unwrap();
    (req, rep)
}

#[tokio::test]
async fn timeout_middleware_fires_when_rep_never_answers() {
    let (req, rep) = req_to_silent_rep().await;
    let svc = ServiceBuilder::new()
        .timeout(Duration::from_millis(200))
        .service(req);
    let t0 = Instant::now();
    let r = within("timeout", svc.oneshot(Message::from("hello?"))).await;
    let e = r.expect_err("the REP never answers");
    assert!(
        e.is::<tower::timeout::error::Elapsed>(),
        "expected Elapsed, got {e:?}"
    );
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(190) && took < Duration::from_secs(2),
        "{took:?}"
    );
    // the request did go out; only the reply never came
    let seen = within("rep saw it", rep.recv()).await.unwrap();
    assert_eq!(seen.body(), b"hello?");
}

#[tokio::test]
async fn load_shed_rejects_at_once_while_no_pipe_can_take_a_request() {
    let req = spstack::typed::req0().build();
    let mut svc = ServiceBuilder::new().load_shed().service(req.clone());
    // no REP anywhere: poll_ready says not ready, so the call is shed now
    // instead of waiting inside the socket for a pipe
    let t0 = Instant::now();
    let r = within(
        "shed call",
        svc.ready().await.unwrap().call(Message::from("anyone?")),
    )
    .await;
    let e = r.expect_err("no pipe: the call must be shed");
    assert!(
        e.is::<tower::load_shed::error::Overloaded>(),
        "expected Overloaded, got {e:?}"
    );
    assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
    assert_eq!(req.stats().msgs_out, 0, "a shed request never goes out");

    // a pipe appears: the same service becomes ready and the call goes through
    let rep = spstack::typed::rep0().build();
    let ep = rep.listen("tcp://127.0.0.1:0").await.unwrap();
    let mut plain = req.clone();
    let ready = tokio::spawn(async move {
        within("ready once a pipe joins", plain.ready())
            .await
            .map(|_| ())
    });
    within("dial", req.dial(ep.url())).await.unwrap();
    within("ready task", ready).await.unwrap().unwrap();
    let call = tokio::spawn(
        within("load-shed call", svc.ready())
            .await
            .unwrap()
            .call(Message::from("now?")),
    );
    let m = within("rep recv", rep.recv()).await.unwrap();
    assert_eq!(m.body(), b"now?");
    rep.send("yes").await.unwrap();
    assert_eq!(within("reply", call).await.unwrap().unwrap().body(), b"yes");
}

#[tokio::test]
async fn buffer_holds_calls_until_a_pipe_appears() {
    let req = spstack::typed::req0().build();
    let svc = ServiceBuilder::new().buffer(8).service(req.clone());
    let calls: Vec<_> = (0..3)
        .map(|i| tokio::spawn(svc.clone().oneshot(Message::from(format!("b{i}")))))
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(req.stats().msgs_out, 0, "nothing can go out without a pipe");
    let rep = spstack::typed::rep0().build();
    let ep = rep.listen("tcp://127.0.0.1:0").await.unwrap();
    within("dial", req.dial(ep.url())).await.unwrap();
    let echo = tower::service_fn(|m: Message| async move { Ok::<_, Error>(m) });
    tokio::spawn(spstack::rep::serve(rep, echo, 4));
    for (i, c) in calls.into_iter().enumerate() {
        let r = within("buffered call", c).await.unwrap().unwrap();
        assert_eq!(r.body(), format!("b{i}").as_bytes());
    }
}

#[tokio::test]
async fn concurrency_limit_with_load_shed_reports_overload() {
    let (req, rep) = req_to_silent_rep().await;
    let svc = ServiceBuilder::new()
        .load_shed()
        .concurrency_limit(2)
        .service(req);
    // two calls in flight hold the two permits
    let mut s1 = svc.clone();
    let f1 = s1.ready().await.unwrap().call(Message::from("one"));
    let mut s2 = svc.clone();
    let f2 = s2.ready().await.unwrap().call(Message::from("two"));
    // a third is shed at once
    let mut s3 = svc.clone();
    let r3 = within("third call", async {
        s3.ready().await.unwrap().call(Message::from("three")).await
    })
    .await;
    let e = r3.expect_err("a third call must be shed");
    assert!(
        e.is::<tower::load_shed::error::Overloaded>(),
        "expected Overloaded, got {e:?}"
    );
    // the two admitted calls really are out on the wire
    let f1 = tokio::spawn(f1);
    let f2 = tokio::spawn(f2);
    let mut got = Vec::new();
    for _ in 0..2 {
        let c = rep.context();
        let m = within("rep recv", c.recv()).await.unwrap();
        got.push(String::from_utf8(m.body().to_vec()).unwrap());
        c.send(format!("re:{}", got.last().unwrap()).as_str())
            .await
            .unwrap();
    }
    got.sort();
    assert_eq!(got, ["one", "two"]);
    let r1 = within("f1", f1).await.unwrap().unwrap();
    let r2 = within("f2", f2).await.unwrap().unwrap();
    assert_eq!(r1.body(), b"re:one");
    assert_eq!(r2.body(), b"re:two");
    // permits are back: a new call is admitted
    let mut s4 = svc.clone();
    let f4 = tokio::spawn(s4.ready().await.unwrap().call(Message::from("four")));
    let m = within("rep recv four", rep.recv()).await.unwrap();
    assert_eq!(m.body(), b"four");
    rep.send("re:four").await.unwrap();
    assert_eq!(within("f4", f4).await.unwrap().unwrap().body(), b"re:four");
}

/// Retries a failed call up to `left` more times.
#[derive(Clone)]
struct RetryFailures {
    left: usize,
}

impl<E> tower::retry::Policy<Message, Message, E> for RetryFailures {
    type Future = std::future::Ready<()>;
    fn retry(
        &mut self,
        _req: &mut Message,
        result: &mut Result<Message, E>,
    ) -> Option<Self::Future> {
        if result.is_err() && self.left > 0 {
            self.left -= 1;
            Some(std::future::ready(()))
        } else {
            None
        }
    }
    fn clone_request(&mut self, req: &Message) -> Option<Message> {
        Some(req.clone())
    }
}

#[tokio::test]
async fn retry_recovers_from_a_first_timeout() {
    // a raw REP that ignores the first request it sees and answers the rest
    let rep = spstack::raw(spstack::Protocol::Rep0).build();
    let ep = rep.listen("tcp://127.0.0.1:0").await.unwrap();
    let seen = Arc::new(AtomicUsize::new(0));
    {
        let (rep, seen) = (rep.clone(), seen.clone());
        tokio::spawn(async move {
            while let Ok(m) = rep.recv().await {
                if seen.fetch_add(1, Ordering::SeqCst) == 0 {
                    continue;
                }
                let mut reply = Message::from("second time lucky");
                reply.set_header(m.header());
                let _ = rep.send(reply).await;
            }
        });
    }
    let req = spstack::typed::req0().build();
    within("dial", req.dial(ep.url())).await.unwrap();
    let svc = ServiceBuilder::new()
        .retry(RetryFailures { left: 2 })
        .timeout(Duration::from_millis(200))
        .service(req);
    let r: Result<Message, BoxError> =
        within("retried call", svc.oneshot(Message::from("try"))).await;
    assert_eq!(r.unwrap().body(), b"second time lucky");
    assert_eq!(seen.load(Ordering::SeqCst), 2, "one timeout, one retry");
}

#[tokio::test]
async fn serve_answers_concurrently() {
    let rep = spstack::typed::rep0().build();
    let ep = rep.listen("tcp://127.0.0.1:0").await.unwrap();
    let in_flight = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let handler = {
        let (in_flight, peak) = (in_flight.clone(), peak.clone());
        tower::service_fn(move |m: Message| {
            let (in_flight, peak) = (in_flight.clone(), peak.clone());
            async move {
                let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(200)).await;
                in_flight.fetch_sub(1, Ordering::SeqCst);
                let mut v = m.body().to_vec();
                v.extend_from_slice(b"!");
                Ok::<_, Error>(Message::from(v))
            }
        })
    };
    tokio::spawn(spstack::rep::serve(rep.clone(), handler, 20));
    let req = spstack::typed::req0().build();
    within("dial", req.dial(ep.url())).await.unwrap();

    let t0 = Instant::now();
    let calls = (0..20).map(|i| {
        let svc = req.clone();
        async move {
            let r = svc
                .oneshot(Message::from(format!("job{i}").as_str()))
                .await?;
            Ok::<_, Error>((i, r))
        }
    });
    let results = within("20 calls", futures::future::join_all(calls)).await;
    let took = t0.elapsed();
    for r in results {
        let (i, m) = r.unwrap();
        assert_eq!(m.body(), format!("job{i}!").as_bytes());
    }
    // serially this is 20 x 200 ms = 4 s
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert!(
        peak.load(Ordering::SeqCst) >= 10,
        "at most {} handlers ran at once",
        peak.load(Ordering::SeqCst)
    );
}

#[tokio::test]
async fn serve_sends_no_reply_when_the_handler_fails_and_req_resends() {
    let rep = spstack::typed::rep0().build();
    let ep = rep.listen("tcp://127.0.0.1:0").await.unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let handler = {
        let calls = calls.clone();
        tower::service_fn(move |m: Message| {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 0 {
                    Err("first attempt fails".to_string())
                } else {
                    Ok(m)
                }
            }
        })
    };
    tokio::spawn(spstack::rep::serve(rep.clone(), handler, 2));
    let req = spstack::typed::req0()
        .options(Options::default().req_resend(Some(Duration::from_millis(150))))
        .build();
    within("dial", req.dial(ep.url())).await.unwrap();
    let r = within("call", req.clone().oneshot(Message::from("again"))).await;
    assert_eq!(r.unwrap().body(), b"again");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn serve_on_error_answers_a_failed_request_at_once() {
    let rep = spstack::typed::rep0().build();
    let ep = rep.listen("tcp://127.0.0.1:0").await.unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let handler = {
        let calls = calls.clone();
        tower::service_fn(move |m: Message| {
            calls.fetch_add(1, Ordering::SeqCst);
            async move {
                if m.body() == b"bad" {
                    Err("cannot do that".to_string())
                } else {
                    Ok(m)
                }
            }
        })
    };
    tokio::spawn(
        spstack::rep::Serve::new(handler)
            .concurrency(2)
            .on_error(|e| Some(Message::from(format!("error: {e}"))))
            .run(rep),
    );
    // the resend is far away: only the mapped reply can arrive in time
    let req = spstack::typed::req0()
        .options(Options::default().req_resend(Some(Duration::from_secs(60))))
        .build();
    within("dial", req.dial(ep.url())).await.unwrap();
    let t0 = Instant::now();
    let r = within("failing call", req.request("bad")).await.unwrap();
    assert_eq!(r.body(), b"error: cannot do that");
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    let ok = within("good call", req.request("good")).await.unwrap();
    assert_eq!(ok.body(), b"good");
    assert_eq!(calls.load(Ordering::SeqCst), 2, "each ran once");
}

#[tokio::test]
async fn serve_on_error_returning_none_sends_nothing() {
    let rep = spstack::typed::rep0().build();
    let ep = rep.listen("tcp://127.0.0.1:0").await.unwrap();
    let handler = tower::service_fn(|_: Message| async { Err::<Message, _>("no") });
    tokio::spawn(
        spstack::rep::Serve::new(handler)
            .on_error(|_| None)
            .run(rep),
    );
    let req = spstack::typed::req0().build();
    within("dial", req.dial(ep.url())).await.unwrap();
    let r = tokio::time::timeout(Duration::from_millis(300), req.request("x")).await;
    assert!(r.is_err(), "no reply expected, got {r:?}");
}

#[tokio::test]
async fn context_service_runs_calls_in_order() {
    let rep = spstack::typed::rep0().build();
    let ep = rep.listen("tcp://127.0.0.1:0").await.unwrap();
    let echo = tower::service_fn(|m: Message| async move { Ok::<_, Error>(m) });
    tokio::spawn(spstack::rep::serve(rep.clone(), echo, 4));
    let req = spstack::typed::req0().build();
    within("dial", req.dial(ep.url())).await.unwrap();
    let svc = req.context().into_service();
    let calls = (0..5).map(|i| svc.clone().oneshot(Message::from(format!("{i}").as_str())));
    let results = within("context calls", futures::future::join_all(calls)).await;
    for (i, r) in results.into_iter().enumerate() {
        assert_eq!(r.unwrap().body(), format!("{i}").as_bytes());
    }
}

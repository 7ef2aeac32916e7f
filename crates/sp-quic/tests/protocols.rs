//! Every protocol over `quic://`, end to end on real UDP sockets.
//!
//! Proves: REQ/REP carries 0 B .. 1 MiB byte-exact and the verified server
//! certificate is the dialer's `peer_identity` (and the client's, with
//! client certificates, the listener's); PUB/SUB filters by topic;
//! PUSH/PULL balances over two pulls; SURVEYOR/RESPONDENT collects every
//! respondent's answer; BUS floods among three nodes; PAIR v0 and v1 talk
//! both ways; IPv6 (`quic://[::1]:port`) works as IPv4 does.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use spstack::{SubControl, SurveyorControl};

const SIZES: &[usize] = &[0, 1, 100, 65_536, 1 << 20];

#[tokio::test]
async fn req_rep_byte_exact_with_server_identity() {
    let pki = pki("ca-reqrep");
    let t = quic(both(&pki));
    let rep = over(spstack::rep0(), &t);
    let url = listen(&rep, "127.0.0.1").await;
    assert!(url.starts_with("quic://127.0.0.1:"), "{url}");
    let req = over(spstack::req0(), &t);
    dial(&req, &url).await;

    for (i, &size) in SIZES.iter().enumerate() {
        let body = payload(size, i);
        req.send(body.clone()).await.expect("send request");
        let got = within("request", rep.recv()).await.expect("request");
        assert_eq!(got.body(), &body[..], "request of {size} bytes intact");
        rep.send(payload(size, i + 1)).await.expect("send reply");
        let back = within("reply", req.recv()).await.expect("reply");
        assert_eq!(
            back.body(),
            &payload(size, i + 1)[..],
            "reply of {size} bytes intact"
        );
    }

    let pipe = req.pipes()[0];
    let info = req.pipe_info(pipe).expect("pipe info");
    assert_eq!(info.transport, "quic");
    assert_eq!(
        info.peer_identity.as_deref(),
        Some(pki.server.der.as_ref()),
        "the verified server certificate is the peer identity"
    );
    assert!(
        info.peer_addr.starts_with("quic://127.0.0.1:"),
        "{}",
        info.peer_addr
    );
    // no client certificate asked for: nothing verified on the listener
    let server_side = rep.pipe_info(rep.pipes()[0]).expect("listener pipe");
    assert_eq!(server_side.peer_identity, None);
}

#[tokio::test]
async fn client_certificate_is_the_listeners_peer_identity() {
    let pki = pki("ca-client");
    let listener = quic(both(&pki).require_client_cert(pki.roots()));
    let dialer = quic(both(&pki).client_identity(pki.client.identity()));
    let rep = over(spstack::rep0(), &listener);
    let url = listen(&rep, "127.0.0.1").await;
    let req = over(spstack::req0(), &dialer);
    dial(&req, &url).await;
    req.send("who").await.expect("send");
    within("request", rep.recv()).await.expect("request");
    let info = rep.pipe_info(rep.pipes()[0]).expect("pipe info");
    assert_eq!(info.peer_identity.as_deref(), Some(pki.client.der.as_ref()));
}

#[tokio::test]
async fn ipv6_req_rep() {
    let pki = pki("ca-v6");
    let t = quic(both(&pki));
    let rep = over(spstack::rep0(), &t);
    let url = listen(&rep, "[::1]").await;
    assert!(url.starts_with("quic://[::1]:"), "bound IPv6 URL: {url}");
    let req = over(spstack::req0(), &t);
    dial(&req, &url).await;
    req.send(payload(70_000, 3)).await.expect("send");
    let got = within("request", rep.recv()).await.expect("request");
    assert_eq!(got.body(), &payload(70_000, 3)[..]);
    rep.send("over v6").await.expect("reply");
    assert_eq!(
        within("reply", req.recv()).await.expect("reply").body(),
        b"over v6"
    );
    let info = req.pipe_info(req.pipes()[0]).expect("info");
    assert!(
        info.peer_addr.starts_with("quic://[::1]:"),
        "{}",
        info.peer_addr
    );
}

#[tokio::test]
async fn pub_sub_filters_topics() {
    let pki = pki("ca-pubsub");
    let t = quic(both(&pki));
    let publisher = over(spstack::pub0(), &t);
    let url = listen(&publisher, "127.0.0.1").await;
    let sub = over(spstack::sub0(), &t);
    sub.control::<SubControl>()
        .expect("sub control")
        .subscribe(b"weather/")
        .expect("subscribe");
    dial(&sub, &url).await;
    until("the publisher sees its subscriber", || {
        !publisher.pipes().is_empty()
    })
    .await;
    for i in 0..5u8 {
        publisher.send(format!("sports/{i}")).await.expect("send");
        publisher.send(format!("weather/{i}")).await.expect("send");
    }
    for i in 0..5u8 {
        let m = within("publication", sub.recv()).await.expect("recv");
        assert_eq!(
            m.body(),
            format!("weather/{i}").as_bytes(),
            "only the topic, in order"
        );
    }
}

#[tokio::test]
async fn push_pull_balances_over_two_pulls() {
    let pki = pki("ca-pipeline");
    let t = quic(both(&pki));
    let push = over(spstack::push0(), &t);
    let url = listen(&push, "127.0.0.1").await;
    let pulls = [over(spstack::pull0(), &t), over(spstack::pull0(), &t)];
    for p in &pulls {
        dial(p, &url).await;
    }
    until("both pulls attached", || push.pipes().len() == 2).await;
    for i in 0..20u32 {
        push.send(i.to_be_bytes().to_vec()).await.expect("push");
    }
    let mut seen = BTreeSet::new();
    let mut per_pull = [0; 2];
    // 20 messages in all, each pull gets its share
    while seen.len() < 20 {
        let (i, m) = within("a pushed message", async {
            tokio::select! {
                m = pulls[0].recv() => (0, m),
                m = pulls[1].recv() => (1, m),
            }
        })
        .await;
        let m = m.expect("pull");
        per_pull[i] += 1;
        assert!(seen.insert(m.body().to_vec()), "no duplicate");
    }
    assert!(
        per_pull[0] > 0 && per_pull[1] > 0,
        "both pulls served: {per_pull:?}"
    );
}

#[tokio::test]
async fn surveyor_collects_every_respondent() {
    let pki = pki("ca-survey");
    let t = quic(both(&pki));
    let surveyor = over(spstack::surveyor0(), &t);
    surveyor
        .control::<SurveyorControl>()
        .expect("surveyor control")
        .set_deadline(Duration::from_secs(5));
    let url = listen(&surveyor, "127.0.0.1").await;
    let respondents: Vec<_> = (0..3).map(|_| over(spstack::respondent0(), &t)).collect();
    for (i, r) in respondents.iter().enumerate() {
        dial(r, &url).await;
        let r = r.clone();
        tokio::spawn(async move {
            while let Ok(q) = r.recv().await {
                let answer = [q.body(), format!(" from {i}").as_bytes()].concat();
                if r.send(answer).await.is_err() {
                    break;
                }
            }
        });
    }
    until("three respondents attached", || surveyor.pipes().len() == 3).await;
    surveyor.send("census").await.expect("survey");
    let mut answers = BTreeSet::new();
    for _ in 0..3 {
        let a = within("an answer", surveyor.recv()).await.expect("answer");
        answers.insert(String::from_utf8(a.body().to_vec()).expect("text"));
    }
    let want: BTreeSet<String> = (0..3).map(|i| format!("census from {i}")).collect();
    assert_eq!(answers, want);
}

#[tokio::test]
async fn bus_floods_among_three() {
    let pki = pki("ca-bus");
    let t = quic(both(&pki));
    let hub = over(spstack::bus0(), &t);
    let url = listen(&hub, "127.0.0.1").await;
    let a = over(spstack::bus0(), &t);
    let b = over(spstack::bus0(), &t);
    dial(&a, &url).await;
    dial(&b, &url).await;
    until("both attached", || hub.pipes().len() == 2).await;
    hub.send("from hub").await.expect("send");
    assert_eq!(within("a", a.recv()).await.expect("a").body(), b"from hub");
    assert_eq!(within("b", b.recv()).await.expect("b").body(), b"from hub");
    a.send("from a").await.expect("send");
    assert_eq!(
        within("hub", hub.recv()).await.expect("hub").body(),
        b"from a"
    );
}

#[tokio::test]
async fn pair_v0_and_v1_both_ways() {
    let pki = pki("ca-pair");
    let t = quic(both(&pki));
    for (left, right) in [
        (spstack::pair0(), spstack::pair0()),
        (spstack::pair1(), spstack::pair1()),
    ] {
        let l = over(left, &t);
        let url = listen(&l, "127.0.0.1").await;
        let r = over(right, &t);
        dial(&r, &url).await;
        until("pair attached", || !l.pipes().is_empty()).await;
        r.send("ping").await.expect("send");
        assert_eq!(
            within("ping", l.recv()).await.expect("recv").body(),
            b"ping"
        );
        l.send(payload(200_000, 9)).await.expect("send");
        let back = within("pong", r.recv()).await.expect("recv");
        assert_eq!(back.body(), &payload(200_000, 9)[..]);
    }
}

/// `heartbeat/1` is optional over quic too on the listening side: a plain
/// dialer is served plain by a listener with it (the listener reads the
/// dialer's header first) and the pipe runs without pipe layers. (A quic
/// dialer with it stays strict: a plain listener's SP_MISMATCH close
/// overtakes its plain header, so the dialer never learns it is plain.)
#[tokio::test]
async fn a_heartbeat_listener_serves_a_plain_dialer_plain() {
    use spstack::reliable::heartbeat;
    let pki = pki("ca-heartbeat-plain");
    let t = quic(both(&pki));
    let pull = over(
        spstack::pull0().pipe_layer(heartbeat::layer(Duration::from_millis(200))),
        &t,
    );
    let push = over(spstack::push0(), &t);
    let url = listen(&pull, "127.0.0.1").await;
    dial(&push, &url).await;
    push.send("plain").await.expect("send");
    assert_eq!(
        within("recv", pull.recv()).await.expect("recv").body(),
        b"plain"
    );
    let info = pull.pipe_info(pull.pipes()[0]).expect("pipe info");
    assert!(info.local.layers.is_empty(), "{:?}", info.local);
    assert_eq!(pull.stats().total_rejects(), 0);
}

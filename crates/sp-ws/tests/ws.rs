//! ws:// between spstack sockets: round trips, subprotocols, path sharing,
//! size limits, text frames, keepalive.

mod common;

use std::time::Duration;

use common::{authority, closed_by_server, raw_client, sock, sock_with, upgrade_status, within};
use futures::{SinkExt, StreamExt};
use sp_core::{Error, ProtocolId};
use sp_ws::WsConfig;
use tokio_tungstenite::tungstenite::Message as WsMessage;

fn status_of(e: tokio_tungstenite::tungstenite::Error) -> u16 {
    match e {
        tokio_tungstenite::tungstenite::Error::Http(r) => r.status().as_u16(),
        e => panic!("expected an HTTP refusal, got {e}"),
    }
}

#[tokio::test]
async fn req_rep_round_trip_and_pipe_info() {
    let rep = sock("rep");
    let ep = rep.listen("ws://127.0.0.1:0/sp").await.expect("listen");
    assert!(ep.url().starts_with("ws://127.0.0.1:") && ep.url().ends_with("/sp"));
    let req = sock("req");
    within("dial", req.dial(ep.url())).await.expect("dial");
    for i in 0..20u32 {
        let body = vec![i as u8; 1 + i as usize * 3000];
        req.send(body.clone()).await.expect("send");
        let got = within("rep recv", rep.recv()).await.expect("recv");
        assert_eq!(got.body(), &body[..]);
        let mut reply = b"re:".to_vec();
        reply.extend_from_slice(got.body());
        rep.send(reply.clone()).await.expect("reply");
        assert_eq!(
            within("req recv", req.recv()).await.expect("recv").body(),
            &reply[..]
        );
    }
    let pipe = req.pipes()[0];
    let info = req.pipe_info(pipe).expect("info");
    assert_eq!(info.transport, "ws");
    assert_eq!(info.peer.protocol, ProtocolId::REP0);
}

#[tokio::test]
async fn push_pull_and_pub_sub() {
    let pull = sock("pull");
    let ep = pull.listen("ws://127.0.0.1:0/").await.expect("listen");
    let push = sock("push");
    within("dial", push.dial(ep.url())).await.expect("dial");
    for i in 0..100u32 {
        push.send(i.to_be_bytes().to_vec()).await.expect("send");
    }
    for i in 0..100u32 {
        let m = within("pull", pull.recv()).await.expect("recv");
        assert_eq!(m.body(), i.to_be_bytes());
    }

    let publ = sock("pub");
    let ep = publ.listen("ws://127.0.0.1:0/news").await.expect("listen");
    let sub = sock("sub");
    sub.control::<sp_protocols::SubControl>()
        .expect("sub control")
        .subscribe(b"a")
        .expect("subscribe");
    within("dial", sub.dial(ep.url())).await.expect("dial");
    // PUB drops until the pipe is attached on its side: publish until one lands
    let got = within("sub", async {
        loop {
            publ.send(&b"b-skip"[..]).await.expect("pub");
            publ.send(&b"a-news"[..]).await.expect("pub");
            if let Ok(Ok(m)) = tokio::time::timeout(Duration::from_millis(100), sub.recv()).await {
                return m;
            }
        }
    })
    .await;
    assert_eq!(got.body(), b"a-news");
}

#[tokio::test]
async fn wrong_and_missing_subprotocol_get_400() {
    let rep = sock("rep");
    let ep = rep.listen("ws://127.0.0.1:0/sp").await.expect("listen");
    let e = raw_client(ep.url(), Some("req.sp.nanomsg.org"))
        .await
        .expect_err("wrong");
    assert_eq!(status_of(e), 400);
    let e = raw_client(ep.url(), None).await.expect_err("missing");
    assert_eq!(status_of(e), 400);
    let ok = raw_client(ep.url(), Some("chat, rep.sp.nanomsg.org")).await;
    assert!(ok.is_ok(), "the right token among others is accepted");
    assert!(
        rep.stats().total_rejects() >= 2,
        "refusals are counted: {:?}",
        rep.stats()
    );

    // an spstack dialer of the wrong protocol gets a typed error
    let push = sock("push");
    let e = within("dial", push.dial(ep.url()))
        .await
        .expect_err("mismatch");
    // the listener names its own stack in its refusal: the dialer says what
    // differs, as over tcp (a PUSH needs a PULL, the listener is a REP)
    assert!(
        matches!(&e, Error::Mismatch { index: None, ours: Some(o), theirs: Some(t) } if o.starts_with("pull") && t.starts_with("rep")),
        "{e:?}"
    );
    assert!(e.to_string().contains("peer speaks rep"), "{e}");
}

#[tokio::test]
async fn ws_listener_refuses_a_page_of_another_origin() {
    let rep = sock("rep");
    let ep = rep.listen("ws://127.0.0.1:0/sp").await.expect("listen");
    let open = sock_with(
        "rep",
        &WsConfig::default().allow_origin("https://app.example"),
        |b| b,
    );
    let open_ep = open.listen("ws://127.0.0.1:0/sp").await.expect("listen");
    const REP: &str = "rep.sp.nanomsg.org";
    let url = ep.url();
    let own = format!("http://{}", authority(url));
    assert_eq!(
        upgrade_status(url, REP, Some("http://evil.example")).await,
        403
    );
    assert_eq!(
        upgrade_status(url, REP, Some(&own)).await,
        101,
        "same origin {own} {url}"
    );
    let open_url = open_ep.url();
    assert_eq!(
        upgrade_status(open_url, REP, Some("https://app.example")).await,
        101
    );
    assert_eq!(
        upgrade_status(open_url, REP, Some("http://evil.example")).await,
        403
    );
    assert!(rep.stats().total_rejects() >= 1, "{:?}", rep.stats());
}

#[tokio::test]
async fn listeners_share_a_port_by_path() {
    let a = sock("rep");
    let ep_a = a.listen("ws://127.0.0.1:0/a").await.expect("listen a");
    let port = ep_a
        .url()
        .trim_start_matches("ws://127.0.0.1:")
        .trim_end_matches("/a")
        .to_string();
    let b = sock("pull");
    let ep_b = b
        .listen(&format!("ws://127.0.0.1:{port}/b"))
        .await
        .expect("listen b");
    assert_eq!(ep_b.url(), format!("ws://127.0.0.1:{port}/b"));
    // the same path twice is refused with a clear error
    let dup = sock("rep")
        .listen(&format!("ws://127.0.0.1:{port}/a"))
        .await;
    assert!(dup
        .expect_err("dup")
        .to_string()
        .contains("already serves this path"));

    let req = sock("req");
    within("dial a", req.dial(ep_a.url()))
        .await
        .expect("dial a");
    let push = sock("push");
    within("dial b", push.dial(ep_b.url()))
        .await
        .expect("dial b");
    req.send(&b"to a"[..]).await.expect("send");
    push.send(&b"to b"[..]).await.expect("send");
    assert_eq!(within("a", a.recv()).await.expect("a").body(), b"to a");
    assert_eq!(within("b", b.recv()).await.expect("b").body(), b"to b");

    let e = raw_client(
        &format!("ws://127.0.0.1:{port}/nope"),
        Some("rep.sp.nanomsg.org"),
    )
    .await
    .expect_err("unknown path");
    assert_eq!(status_of(e), 404);
}

#[tokio::test]
async fn text_frame_is_refused_with_1003() {
    let rep = sock("rep");
    let ep = rep.listen("ws://127.0.0.1:0/sp").await.expect("listen");
    let mut ws = raw_client(ep.url(), Some("rep.sp.nanomsg.org"))
        .await
        .expect("connect");
    ws.send(WsMessage::text("hello")).await.expect("send text");
    let code = within("close", async {
        while let Some(m) = ws.next().await {
            if let Ok(WsMessage::Close(Some(f))) = m {
                return Some(u16::from(f.code));
            }
            if m.is_err() {
                break;
            }
        }
        None
    })
    .await;
    assert_eq!(code, Some(1003));
    // nothing was delivered
    let r = tokio::time::timeout(Duration::from_millis(200), rep.recv()).await;
    assert!(r.is_err(), "a text frame must not reach the socket");
}

#[tokio::test]
async fn oversize_message_closes_with_1009() {
    let rep = sock_with("rep", &WsConfig::default(), |b| {
        b.options(common::opts().recv_max_size(1000))
    });
    let ep = rep.listen("ws://127.0.0.1:0/sp").await.expect("listen");
    let mut ws = raw_client(ep.url(), Some("rep.sp.nanomsg.org"))
        .await
        .expect("connect");
    let mut big = vec![0u8; 5000];
    big[0] = 0x80;
    ws.send(WsMessage::binary(big)).await.expect("send");
    let closed = closed_by_server(&mut ws).await;
    assert_eq!(closed, Some(1009));
}

#[tokio::test]
async fn dead_peer_is_dropped_by_keepalive() {
    let cfg = WsConfig::default()
        .ping_interval(Some(Duration::from_millis(100)))
        .ping_timeout(Duration::from_millis(300));
    let rep = sock_with("rep", &cfg, |b| b);
    let ep = rep.listen("ws://127.0.0.1:0/sp").await.expect("listen");
    // a peer that completes the handshake and then never reads: it never
    // answers a ping
    let ws = raw_client(ep.url(), Some("rep.sp.nanomsg.org"))
        .await
        .expect("connect");
    within("pipe up", async {
        while rep.pipes().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    within("pipe dropped", async {
        while !rep.pipes().is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    drop(ws);
    // counted as a silent peer, as the heartbeat/1 pipe layer counts one
    let st = rep.stats();
    assert_eq!(st.rejects(sp_core::RejectReason::Unresponsive), 1, "{st}");
    assert_eq!(st.rejects(sp_core::RejectReason::ProtocolError), 0, "{st}");

    // a live spstack peer answers pings and stays
    let req = sock_with("req", &cfg, |b| b);
    within("dial", req.dial(ep.url())).await.expect("dial");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    req.send(&b"still here"[..]).await.expect("send");
    assert_eq!(
        within("recv", rep.recv()).await.expect("recv").body(),
        b"still here"
    );
}

#[tokio::test]
async fn layered_stacks_use_their_own_token() {
    // a dialer with a pipe layer offers `<proto>.<layers>.spstack`, which
    // a plain listener refuses with 400 (as nng would)
    let rep = sock("rep");
    let ep = rep.listen("ws://127.0.0.1:0/sp").await.expect("listen");
    let tok = sp_ws::subprotocol(ProtocolId::REP0, &["noise/1".to_string()]);
    let e = raw_client(ep.url(), Some(&tok)).await.expect_err("layered");
    assert_eq!(status_of(e), 400);
}

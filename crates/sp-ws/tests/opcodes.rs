//! The opcode layer end to end: text, binary and close over ws:// and
//! tcp://, with REQ/REP and PAIR; invalid frames dropped and counted; a
//! close from one peer of many ends nothing for the others.

mod common;

use common::{sock_with, within};
use sp_ws::{Frame, Opcodes, WsConfig};

/// A listen address: ws:// takes a path, tcp:// does not.
fn url(scheme: &str, path: &str) -> String {
    match scheme {
        "ws" => format!("ws://127.0.0.1:0{path}"),
        s => format!("{s}://127.0.0.1:0"),
    }
}

fn with_opcodes(kind: &str, layer: &Opcodes) -> sp_core::Socket {
    let l = layer.clone();
    sock_with(kind, &WsConfig::default(), move |b| b.message_layer(l))
}

async fn req_rep(scheme: &str) {
    let (lr, lq) = (Opcodes::new(), Opcodes::new());
    let rep = with_opcodes("rep", &lr);
    let ep = rep.listen(&url(scheme, "/op")).await.expect("listen");
    let req = with_opcodes("req", &lq);
    within("dial", req.dial(ep.url())).await.expect("dial");

    req.send(sp_ws::text("héllo")).await.expect("send text");
    let m = within("recv", rep.recv()).await.expect("recv");
    assert_eq!(
        Frame::parse(&m).expect("frame"),
        Frame::Text("héllo"),
        "{scheme}"
    );
    assert_eq!(m.body(), "héllo".as_bytes(), "the body is the payload");
    rep.send(sp_ws::binary(&[0, 159, 146, 150]))
        .await
        .expect("reply");
    let m = within("recv", req.recv()).await.expect("recv");
    assert_eq!(
        Frame::parse(&m).expect("frame"),
        Frame::Binary(&[0, 159, 146, 150])
    );

    // an unmarked message goes as binary
    req.send(&b"plain"[..]).await.expect("send");
    let m = within("recv", rep.recv()).await.expect("recv");
    assert_eq!(Frame::parse(&m).expect("frame"), Frame::Binary(b"plain"));
    rep.send(sp_ws::close(4000, "bye").expect("close"))
        .await
        .expect("close");
    let m = within("recv", req.recv()).await.expect("recv");
    assert_eq!(
        Frame::parse(&m).expect("frame"),
        Frame::Close {
            code: 4000,
            reason: "bye"
        }
    );
    // a close is a message: the stream goes on
    req.send(sp_ws::text("again"))
        .await
        .expect("send after close");
    let m = within("recv after close", rep.recv()).await.expect("recv");
    assert_eq!(Frame::parse(&m).expect("frame"), Frame::Text("again"));
    rep.send(sp_ws::text("here")).await.expect("reply");
    let m = within("reply after close", req.recv())
        .await
        .expect("the stream did not end at the close");
    assert_eq!(Frame::parse(&m).expect("frame"), Frame::Text("here"));
    assert_eq!(lr.stats().dropped() + lq.stats().dropped(), 0);
}

#[tokio::test]
async fn req_rep_over_ws_and_tcp() {
    req_rep("ws").await;
    req_rep("tcp").await;
}

#[tokio::test]
async fn pair_over_ws_and_tcp_and_invalid_text_is_dropped() {
    for scheme in ["ws", "tcp"] {
        let layer = Opcodes::new();
        let a = with_opcodes("pair", &layer);
        let ep = a.listen(&url(scheme, "/pair")).await.expect("listen");
        // a peer without the layer writes the mark by hand: invalid UTF-8
        let b = sock_with("pair", &WsConfig::default(), |b| b);
        within("dial", b.dial(ep.url())).await.expect("dial");
        b.send(&[0x01, 0xff, 0xfe][..]).await.expect("send");
        b.send(&[0x07, b'x'][..]).await.expect("send");
        b.send(&[0x01, b'o', b'k'][..]).await.expect("send");
        let m = within("recv", a.recv()).await.expect("recv");
        assert_eq!(
            Frame::parse(&m).expect("frame"),
            Frame::Text("ok"),
            "{scheme}"
        );
        assert_eq!(
            layer.stats().dropped(),
            2,
            "{scheme}: bad UTF-8 and bad opcode counted"
        );
        assert_eq!(
            a.stats().drops(sp_core::DropReason::Rejected),
            2,
            "{scheme}: the socket counts the layer's drops"
        );
        // and what the layer sends carries the mark on the wire
        a.send(sp_ws::text("hi")).await.expect("send");
        assert_eq!(
            within("recv", b.recv()).await.expect("recv").body(),
            b"\x01hi"
        );
    }
}

#[tokio::test]
async fn invalid_text_is_refused_on_send() {
    let a = with_opcodes("pair", &Opcodes::new());
    let ep = a.listen("ws://127.0.0.1:0/p").await.expect("listen");
    // a send waits for a peer before the layer sees the message
    let b = sock_with("pair", &WsConfig::default(), |b| b);
    within("dial", b.dial(ep.url())).await.expect("dial");
    let mut m = sp_core::Message::from(&[0xc3, 0x28][..]);
    m.set_header(&[0x01]);
    let e = within("send", a.send(m)).await.expect_err("invalid UTF-8");
    assert!(e.to_string().contains("UTF-8"), "{e}");
}

async fn one_close_among_many(scheme: &str) {
    // a REP serving two clients: one sends a close, the other goes on
    let rep = with_opcodes("rep", &Opcodes::new());
    let ep = rep.listen(&url(scheme, "/many")).await.expect("listen");
    let (a, b) = (
        with_opcodes("req", &Opcodes::new()),
        with_opcodes("req", &Opcodes::new()),
    );
    within("dial a", a.dial(ep.url())).await.expect("dial");
    within("dial b", b.dial(ep.url())).await.expect("dial");

    a.send(sp_ws::close(1001, "going away").expect("close"))
        .await
        .expect("send close");
    let m = within("the close", rep.recv()).await.expect("recv");
    assert_eq!(
        Frame::parse(&m).expect("frame"),
        Frame::Close {
            code: 1001,
            reason: "going away"
        },
        "{scheme}"
    );
    let closer = m.pipe().expect("the close says which pipe it came from");

    for i in 0..3 {
        let q = format!("still there? {i}");
        b.send(sp_ws::text(&q)).await.expect("send");
        let m = within("b's request after a's close", rep.recv())
            .await
            .unwrap_or_else(|e| panic!("{scheme}: the REP stopped serving after a close: {e}"));
        assert_eq!(Frame::parse(&m).expect("frame"), Frame::Text(&q));
        assert_ne!(m.pipe(), Some(closer));
        rep.send(sp_ws::text("yes")).await.expect("reply");
        let r = within("reply", b.recv()).await.expect("recv");
        assert_eq!(Frame::parse(&r).expect("frame"), Frame::Text("yes"));
    }
}

#[tokio::test]
async fn a_close_from_one_peer_leaves_the_others_served() {
    one_close_among_many("ws").await;
    one_close_among_many("tcp").await;
}

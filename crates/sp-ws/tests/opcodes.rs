//! The opcode layer end to end: text, binary and close over ws:// and
//! tcp://, with REQ/REP and PAIR; invalid frames dropped and counted.

mod common;

use common::{sock_with, within};
use sp_core::Error;
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
    // after a close the context's stream has ended
    let after = within("recv after close", async { Ok::<_, ()>(req.recv().await) }).await;
    assert!(
        matches!(after, Ok(Err(Error::Closed))),
        "{scheme}: {after:?}"
    );
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

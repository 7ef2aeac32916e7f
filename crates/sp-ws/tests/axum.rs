//! The axum endpoint: an spstack REP mounted at `/sp` next to an ordinary
//! route, reached by an spstack REQ over ws://; a wrong subprotocol is 400.

mod common;

use axum::routing::get;
use axum::Router;
use common::{sock, within};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::header::SEC_WEBSOCKET_PROTOCOL;

#[tokio::test]
async fn axum_route_serves_sp_and_refuses_the_wrong_protocol() {
    let rep = sock("rep");
    let app = Router::new()
        .route("/", get(|| async { "plain page" }))
        .route("/sp", sp_ws::axum::endpoint(&rep));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let req = sock("req");
    within("dial", req.dial(&format!("ws://{addr}/sp")))
        .await
        .expect("dial");
    req.send(&b"ping"[..]).await.expect("send");
    let m = within("recv", rep.recv()).await.expect("recv");
    assert_eq!(m.body(), b"ping");
    rep.send(&b"pong"[..]).await.expect("reply");
    assert_eq!(
        within("recv", req.recv()).await.expect("recv").body(),
        b"pong"
    );
    let info = rep.pipe_info(rep.pipes()[0]).expect("info");
    assert_eq!(info.transport, "ws+axum");

    let mut bad = format!("ws://{addr}/sp")
        .into_client_request()
        .expect("req");
    bad.headers_mut().insert(
        SEC_WEBSOCKET_PROTOCOL,
        "req.sp.nanomsg.org".parse().expect("hdr"),
    );
    match tokio_tungstenite::connect_async(bad).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 400),
        other => panic!("expected HTTP 400, got {:?}", other.map(|_| ())),
    }
    // the ordinary route still answers next to it
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("get");
    let mut body = String::new();
    within("page", s.read_to_string(&mut body))
        .await
        .expect("read");
    assert!(body.contains("plain page"), "{body}");
    server.abort();
}

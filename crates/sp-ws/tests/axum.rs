//! The axum endpoint: an spstack REP mounted at `/sp` next to an ordinary
//! route, reached by an spstack REQ over ws://; a wrong subprotocol is 400.

mod common;

use axum::routing::get;
use axum::Router;
use common::{sock, upgrade_request, upgrade_status, within};
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

#[tokio::test]
async fn axum_endpoint_refuses_a_page_of_another_origin() {
    let rep = sock("rep");
    let open = sock("rep");
    let app = Router::new()
        .route("/sp", sp_ws::axum::endpoint(&rep))
        .route(
            "/open",
            sp_ws::axum::endpoint_with(
                &open,
                sp_ws::WsConfig::default().allow_origin("https://app.example"),
            ),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let url = format!("ws://{addr}/sp");
    let connect = |u: String, o: Option<String>| async move {
        upgrade_status(&u, "rep.sp.nanomsg.org", o.as_deref()).await
    };
    assert_eq!(
        connect(url.clone(), Some("http://evil.example".into())).await,
        403,
        "a cross-origin page is refused"
    );
    assert_eq!(
        connect(url.clone(), Some(format!("http://{addr}"))).await,
        101,
        "its own origin's pages are served"
    );
    assert_eq!(
        connect(url.clone(), None).await,
        101,
        "programs send no Origin"
    );
    let open_url = format!("ws://{addr}/open");
    assert_eq!(
        connect(open_url.clone(), Some("https://app.example".into())).await,
        101,
        "an allowed origin is served"
    );
    assert_eq!(
        connect(open_url, Some("http://evil.example".into())).await,
        403
    );
    server.abort();
}

#[tokio::test]
async fn axum_peer_addr_is_the_tcp_peer_not_the_host_header() {
    let rep = sock("rep");
    let app = Router::new().route("/sp", sp_ws::axum::endpoint(&rep));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
    });
    // a client that claims another host in its Host header
    let mut r = upgrade_request(&format!("ws://{addr}/sp"), Some("rep.sp.nanomsg.org"), None);
    r.headers_mut()
        .insert("host", "spoofed.example:1".parse().expect("host"));
    let (client, _) = within("upgrade", tokio_tungstenite::connect_async(r))
        .await
        .expect("upgraded");
    let local = match client.get_ref() {
        tokio_tungstenite::MaybeTlsStream::Plain(s) => s.local_addr().expect("local"),
        _ => unreachable!("plain ws"),
    };
    let pipe = within("pipe", async {
        loop {
            if let Some(p) = rep.pipes().first() {
                break *p;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await;
    let info = rep.pipe_info(pipe).expect("info");
    assert_eq!(info.peer_addr, local.to_string());
    server.abort();
}

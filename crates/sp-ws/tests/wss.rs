//! wss://: the same WebSocket framing over `Tls<Tcp>`, with a certificate
//! made by rcgen at run time.

mod common;

use std::sync::Arc;

use common::within;
use sp_core::{ProtocolId, SocketBuilder};
use sp_protocols::{raw, Rep0, Req0};
use sp_transports::tls::{Identity, Roots, Tls, TlsConfig};
use sp_transports::Tcp;
use sp_ws::Ws;

#[tokio::test]
async fn req_rep_over_wss() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("cert");
    let cert_pem = cert.cert.pem();
    let key_pem = cert.key_pair.serialize_pem();
    let server = TlsConfig::new().server_identity(
        Identity::from_pem(cert_pem.as_bytes(), key_pem.as_bytes()).expect("identity"),
    );
    let client = TlsConfig::new().roots(Roots::from_pem(cert_pem.as_bytes()).expect("roots"));

    let rep = SocketBuilder::new(raw::Rep0Raw)
        .cooked(Rep0)
        .transport(Arc::new(Ws::secure(Tls::new(Tcp, server))))
        .build();
    let ep = rep
        .listen("wss://127.0.0.1:0/secure")
        .await
        .expect("listen");
    assert!(ep.url().starts_with("wss://127.0.0.1:"), "{}", ep.url());
    let port = ep
        .url()
        .trim_start_matches("wss://127.0.0.1:")
        .trim_end_matches("/secure");
    let req = SocketBuilder::new(raw::Req0Raw)
        .cooked(Req0)
        .transport(Arc::new(Ws::secure(Tls::new(Tcp, client))))
        .build();
    within("dial", req.dial(&format!("wss://localhost:{port}/secure")))
        .await
        .expect("dial");
    req.send(&b"over tls"[..]).await.expect("send");
    assert_eq!(
        within("recv", rep.recv()).await.expect("recv").body(),
        b"over tls"
    );
    rep.send(&b"back"[..]).await.expect("reply");
    assert_eq!(
        within("recv", req.recv()).await.expect("recv").body(),
        b"back"
    );
    let info = req.pipe_info(req.pipes()[0]).expect("info");
    assert_eq!(info.transport, "wss");
    assert_eq!(info.peer.protocol, ProtocolId::REP0);

    // a plain ws:// client cannot talk to the wss:// port
    let plain = SocketBuilder::new(raw::Req0Raw)
        .cooked(Req0)
        .transport(Arc::new(Ws::new(Tcp)))
        .options(sp_core::Options::default().handshake_timeout(std::time::Duration::from_secs(2)))
        .build();
    let e = within(
        "plain dial",
        plain.dial(&format!("ws://127.0.0.1:{port}/secure")),
    )
    .await;
    assert!(
        e.is_err(),
        "a plain WebSocket must not reach a TLS endpoint"
    );
}

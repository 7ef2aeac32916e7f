//! What `quic://` refuses, and that the refusal says why.
//!
//! Proves: an untrusted server certificate, a certificate for another name
//! and a missing or foreign client certificate never open a pipe and each
//! gives an error naming the fix; a wrong ALPN is refused during the
//! handshake, both ways, with an error naming `sp/1`; a frame length above
//! `recv_max_size` closes the connection with SP_TOO_LARGE as soon as its
//! 8-byte prefix arrives (a 1 TiB announcement with no body: nothing was
//! allocated for it); a peer speaking the wrong SP protocol gets
//! SP_MISMATCH, one sending non-SP bytes SP_PROTOCOL_ERROR, one that never
//! opens its stream SP_HANDSHAKE_TIMEOUT; a peer can open no second stream,
//! no unidirectional stream and send no datagram; a TLS 1.2-only config is
//! refused up front.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use futures::FutureExt;
use sp_quic::quinn::{self, crypto::rustls::QuicClientConfig, ConnectionError, VarInt};
use sp_quic::{codes, Quic, QuicConfig};
use sp_transports::tls::{TlsConfig, TlsVersion};
use spstack::{Options, RejectReason};

/// A bare quinn client trusting `pki`'s CA that offers `alpn`.
fn raw_client(pki: &Pki, alpn: &[u8]) -> (quinn::Endpoint, quinn::ClientConfig) {
    let mut tls = (*pki.client_cfg().client_config().expect("client config")).clone();
    tls.alpn_protocols = vec![alpn.to_vec()];
    let crypto = QuicClientConfig::try_from(Arc::new(tls)).expect("quic crypto");
    let ep = quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("endpoint");
    (ep, quinn::ClientConfig::new(Arc::new(crypto)))
}

/// A bare QUIC connection to `url` offering ALPN `sp/1`.
async fn raw_connect(pki: &Pki, url: &str) -> (quinn::Endpoint, quinn::Connection) {
    let (ep, cfg) = raw_client(pki, sp_quic::ALPN);
    let addr = url.trim_start_matches("quic://").parse().expect("addr");
    let conn = within(
        "raw handshake",
        ep.connect_with(cfg, addr, "localhost").expect("connect"),
    )
    .await
    .expect("handshake");
    (ep, conn)
}

/// The SP code the peer closed with.
async fn closed_with(conn: &quinn::Connection) -> (u64, String) {
    match within("the listener closes", conn.closed()).await {
        ConnectionError::ApplicationClosed(a) => (
            a.error_code.into_inner(),
            String::from_utf8_lossy(&a.reason).into_owned(),
        ),
        other => panic!("expected an application close, got {other}"),
    }
}

const REQ_HEADER: [u8; 8] = [0, b'S', b'P', 0, 0, 0x30, 0, 0];

fn rep_listener(pki: &Pki, o: Options) -> (Arc<Quic>, spstack::Socket) {
    let t = quic(both(pki));
    let s = spstack::rep0().transport(t.clone()).options(o).build();
    (t, s)
}

#[tokio::test]
async fn untrusted_server_certificate_is_refused_and_says_so() {
    let pki = pki("ca-untrusted");
    let other = common::pki("ca-untrusted-other");
    let server = over(spstack::rep0(), &quic(both(&other)));
    let url = listen(&server, "127.0.0.1").await;
    let client = over(spstack::req0(), &quic(both(&pki)));
    let e = dial_err(&client, &url).await.to_string();
    assert!(
        e.contains("not issued by a trusted CA") && e.contains("TlsConfig::roots"),
        "error names the fix: {e}"
    );
    until("the listener counts the refusal", || {
        server.stats().rejects(RejectReason::LayerFailed) > 0
    })
    .await;
    assert!(server.pipes().is_empty() && client.pipes().is_empty());
}

#[tokio::test]
async fn certificate_for_another_name_is_refused() {
    let pki = pki_for("ca-name", &["broker.test"]);
    let server = over(spstack::rep0(), &quic(both(&pki)));
    let url = listen(&server, "127.0.0.1").await;
    // dialing by IP: the certificate names only broker.test
    let tls = TlsConfig::new().roots(pki.roots());
    let client = over(spstack::req0(), &quic(tls.clone()));
    let e = dial_err(&client, &url).await.to_string();
    assert!(
        e.contains("not valid for the name") && e.contains("server_name"),
        "error names the fix: {e}"
    );
    // and the override makes it work
    let fixed = over(spstack::req0(), &quic(tls.server_name("broker.test")));
    dial(&fixed, &url).await;
}

#[tokio::test]
async fn missing_or_foreign_client_certificate_is_refused() {
    let pki = pki("ca-mtls");
    let other = pki_for("ca-mtls-other", &["localhost"]);
    let server = over(
        spstack::rep0(),
        &quic(both(&pki).require_client_cert(pki.roots())),
    );
    let url = listen(&server, "127.0.0.1").await;

    let bare = over(spstack::req0(), &quic(both(&pki)));
    let e = dial_err(&bare, &url).await.to_string();
    assert!(
        e.contains("client certificate"),
        "says a client certificate is needed: {e}"
    );

    let foreign = over(
        spstack::req0(),
        &quic(both(&pki).client_identity(other.client.identity())),
    );
    let e = dial_err(&foreign, &url).await.to_string();
    assert!(
        e.contains("trust"),
        "says our certificate is not trusted: {e}"
    );
    until("both refusals counted", || {
        server.stats().rejects(RejectReason::LayerFailed) >= 2
    })
    .await;
    assert!(server.pipes().is_empty());
}

#[tokio::test]
async fn wrong_alpn_is_refused_by_our_listener() {
    let pki = pki("ca-alpn-l");
    let (t, server) = rep_listener(&pki, opts());
    let url = listen(&server, "127.0.0.1").await;
    let (ep, cfg) = raw_client(&pki, b"h3");
    let addr = url.trim_start_matches("quic://").parse().expect("addr");
    let e = within(
        "refused handshake",
        ep.connect_with(cfg, addr, "localhost").expect("connect"),
    )
    .await
    .expect_err("an h3 client is refused");
    match &e {
        ConnectionError::ConnectionClosed(c) => {
            // TLS alert no_application_protocol (120) as a QUIC crypto error
            assert_eq!(u64::from(c.error_code), 0x100 + 120, "{c}");
        }
        other => panic!("expected a crypto close, got {other}"),
    }
    let text = codes::connection_error(&e, true).to_string();
    assert!(text.contains("sp/1"), "the error names our ALPN: {text}");
    until("the listener counts the refused handshake", || {
        t.stats().handshake_failed > 0
    })
    .await;
    assert!(server.pipes().is_empty());
}

#[tokio::test]
async fn wrong_alpn_is_refused_by_our_dialer() {
    let pki = pki("ca-alpn-d");
    // a QUIC service that speaks h3 only
    let mut tls = (*pki.server_cfg().server_config().expect("server config")).clone();
    tls.alpn_protocols = vec![b"h3".to_vec()];
    let crypto =
        quinn::crypto::rustls::QuicServerConfig::try_from(Arc::new(tls)).expect("quic crypto");
    let server = quinn::Endpoint::server(
        quinn::ServerConfig::with_crypto(Arc::new(crypto)),
        "127.0.0.1:0".parse().expect("addr"),
    )
    .expect("server");
    let port = server.local_addr().expect("addr").port();
    let serving = tokio::spawn({
        let server = server.clone();
        async move {
            // the handshake fails; nothing to serve
            if let Some(i) = server.accept().await {
                let _ = i.await;
            }
        }
    });
    let client = over(spstack::req0(), &quic(both(&pki)));
    let e = dial_err(&client, &format!("quic://127.0.0.1:{port}"))
        .await
        .to_string();
    assert!(
        e.contains("no application protocol") && e.contains("sp/1"),
        "error says the peer does not speak sp/1: {e}"
    );
    serving.abort();
}

#[tokio::test]
async fn oversize_length_is_refused_at_its_prefix() {
    let pki = pki("ca-oversize");
    let (t, server) = rep_listener(&pki, opts().recv_max_size(1 << 20));
    let url = listen(&server, "127.0.0.1").await;
    let (_ep, conn) = raw_connect(&pki, &url).await;
    let (mut send, mut recv) = conn.open_bi().await.expect("stream");
    send.write_all(&REQ_HEADER).await.expect("header");
    let mut theirs = [0u8; 8];
    within("the REP header", recv.read_exact(&mut theirs))
        .await
        .expect("REP header");
    assert_eq!(theirs, [0, b'S', b'P', 0, 0, 0x31, 0, 0]);
    // announce 1 TiB and send none of it: only a check of the prefix
    // itself, before any allocation, can refuse this
    send.write_all(&(1u64 << 40).to_be_bytes())
        .await
        .expect("length");
    let (code, reason) = closed_with(&conn).await;
    assert_eq!(
        code,
        u64::from(codes::TOO_LARGE),
        "closed with SP_TOO_LARGE: {reason}"
    );
    assert!(
        reason.contains("1099511627776"),
        "reason names the size: {reason}"
    );
    until("counted", || t.stats().closed_too_large == 1).await;
    until("the socket counts a dead pipe", || {
        server.stats().pipes_closed == 1
    })
    .await;
}

#[tokio::test]
async fn oversize_message_from_our_dialer_closes_its_pipe_with_sp_too_large() {
    let pki = pki("ca-oversize-2");
    let (t, server) = rep_listener(&pki, opts().recv_max_size(64 << 10));
    let url = listen(&server, "127.0.0.1").await;
    let client = over(spstack::req0(), &quic(both(&pki)));
    dial(&client, &url).await;
    let mut events = client.pipe_events();
    client.send(vec![7u8; 100_000]).await.expect("send");
    until("the listener refused the message", || {
        t.stats().closed_too_large >= 1
    })
    .await;
    // the dialer's pipe ends (and redials)
    within("the dialer's pipe leaves", async {
        loop {
            if let Ok(spstack::PipeEvent::RemovePost(..)) = events.recv().await {
                break;
            }
        }
    })
    .await;
}

#[tokio::test]
async fn wrong_protocol_and_garbage_get_their_codes() {
    let pki = pki("ca-codes");
    let (t, server) = rep_listener(&pki, opts());
    let url = listen(&server, "127.0.0.1").await;

    // a PUB announcing itself to a REP
    let (_ep, conn) = raw_connect(&pki, &url).await;
    let (mut send, _recv) = conn.open_bi().await.expect("stream");
    send.write_all(&[0, b'S', b'P', 0, 0, 0x20, 0, 0])
        .await
        .expect("header");
    let (code, reason) = closed_with(&conn).await;
    assert_eq!(code, u64::from(codes::MISMATCH), "SP_MISMATCH: {reason}");

    // not SP at all
    let (_ep2, conn) = raw_connect(&pki, &url).await;
    let (mut send, _recv) = conn.open_bi().await.expect("stream");
    send.write_all(b"GET / HTTP/1.1\r\n\r\n")
        .await
        .expect("bytes");
    let (code, reason) = closed_with(&conn).await;
    assert_eq!(
        code,
        u64::from(codes::PROTOCOL_ERROR),
        "SP_PROTOCOL_ERROR: {reason}"
    );

    until("both counted", || {
        let s = t.stats();
        s.closed_mismatch == 1 && s.closed_protocol_error == 1
    })
    .await;
    assert!(server.pipes().is_empty());
}

#[tokio::test]
async fn a_peer_that_never_opens_its_stream_gets_handshake_timeout() {
    let pki = pki("ca-idle");
    let (t, server) = rep_listener(&pki, opts().handshake_timeout(Duration::from_millis(300)));
    let url = listen(&server, "127.0.0.1").await;
    let (_ep, conn) = raw_connect(&pki, &url).await;
    let (code, _) = closed_with(&conn).await;
    assert_eq!(code, u64::from(codes::HANDSHAKE_TIMEOUT));
    assert_eq!(t.stats().abandoned, 1);
    until("the socket counts the timeout", || {
        server.stats().rejects(RejectReason::HandshakeTimeout) == 1
    })
    .await;
}

#[tokio::test]
async fn no_second_stream_no_uni_stream_no_datagram() {
    let pki = pki("ca-streams");
    let (_t, server) = rep_listener(&pki, opts());
    let url = listen(&server, "127.0.0.1").await;
    let (_ep, conn) = raw_connect(&pki, &url).await;
    // the limits are the listener's transport parameters, known once the
    // handshake is done: no waiting involved
    let (mut send, _recv) = conn
        .open_bi()
        .now_or_never()
        .expect("the one stream")
        .expect("open");
    assert!(
        conn.open_bi().now_or_never().is_none(),
        "a second stream is not allowed"
    );
    assert!(
        conn.open_uni().now_or_never().is_none(),
        "no unidirectional stream"
    );
    assert_eq!(conn.max_datagram_size(), None, "no datagrams");
    // the one stream still works as the pipe
    send.write_all(&REQ_HEADER).await.expect("header");
    until("the pipe opens", || server.pipes().len() == 1).await;
    conn.close(VarInt::from_u32(0), b"");
}

#[tokio::test]
async fn tls12_only_config_is_refused_up_front() {
    let pki = pki("ca-tls12");
    let t = Arc::new(Quic::new(QuicConfig::new(
        both(&pki).versions(TlsVersion::Tls12, TlsVersion::Tls12),
    )));
    let s = spstack::rep0().transport(t).build();
    let e = s
        .listen("quic://127.0.0.1:0")
        .await
        .expect_err("QUIC needs TLS 1.3")
        .to_string();
    assert!(e.contains("TLS 1.3"), "{e}");
}

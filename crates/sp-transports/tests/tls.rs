//! `tls+tcp://` end to end: real sockets, certificates made at test time.
//!
//! Proves: REQ/REP and PUSH/PULL carry 0 B .. 1 MiB byte-exact through TLS;
//! the verified peer certificate reaches `Socket::pipe_info`; a listener
//! that requires client certificates refuses dialers without one or with one
//! from another CA (and counts the refusal); a server certificate that does
//! not name the host, or comes from an untrusted CA, is refused with an
//! error that says what to set; TLS 1.2-only and 1.3-only both work and a
//! version mismatch is refused.

mod tls_common;

use std::time::Duration;

use sp_core::{Error, Socket};
use sp_transports::tls::{Identity, Roots, TlsConfig, TlsVersion};
use tls_common::*;
use tokio::time::{sleep, timeout};

const SIZES: &[usize] = &[0, 1, 100, 65_536, 1 << 20];

async fn listen(s: &Socket, host: &str) -> u16 {
    let ep = timeout(WAIT, s.listen(&format!("tls+tcp://{host}:0")))
        .await
        .expect("listen in time")
        .expect("listen");
    port_of(ep.url())
}

async fn dial_err(s: &Socket, url: &str) -> Error {
    match timeout(WAIT, s.dial(url)).await.expect("dial ends in time") {
        Ok(_) => panic!("dial to {url} should have been refused"),
        Err(e) => e,
    }
}

/// Waits until `s` has counted at least one refused pipe.
async fn wait_rejected(s: &Socket) {
    timeout(WAIT, async {
        while s.stats().total_rejects() == 0 {
            sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the listener counts the refused pipe");
}

#[tokio::test]
async fn req_rep_byte_exact_and_server_identity() {
    let pki = pki("ca-a");
    let server = rep(pki.server_cfg());
    let port = listen(&server, "127.0.0.1").await;
    let client = req(pki.client_cfg());
    // dialing by name: the server certificate names `localhost`
    timeout(WAIT, client.dial(&format!("tls+tcp://localhost:{port}")))
        .await
        .expect("dial in time")
        .expect("dial");

    for (i, &size) in SIZES.iter().enumerate() {
        let request = payload(size, i);
        let reply = payload(size, i + 1000);
        let (got_req, got_rep) = timeout(WAIT, async {
            let srv = async {
                let m = server.recv().await?;
                server.send(reply.clone()).await?;
                Ok::<_, Error>(m)
            };
            let cli = async {
                client.send(request.clone()).await?;
                client.recv().await
            };
            tokio::try_join!(srv, cli)
        })
        .await
        .expect("round trip in time")
        .expect("round trip");
        assert_eq!(got_req.body(), &request[..], "request of {size} bytes");
        assert_eq!(got_rep.body(), &reply[..], "reply of {size} bytes");
    }

    let pipes = client.pipes();
    assert_eq!(pipes.len(), 1);
    let info = client.pipe_info(pipes[0]).expect("pipe info");
    assert_eq!(info.transport, "tls+tcp");
    assert_eq!(
        info.peer_identity.as_deref(),
        Some(pki.server.der.as_ref()),
        "the dialer reports the verified server certificate"
    );
    // no client certificate was asked for: the listener verified nobody
    let spipes = server.pipes();
    assert_eq!(spipes.len(), 1);
    let sinfo = server.pipe_info(spipes[0]).expect("pipe info");
    assert_eq!(sinfo.transport, "tls+tcp");
    assert_eq!(sinfo.peer_identity, None);
}

#[tokio::test]
async fn push_pull_byte_exact_by_ip() {
    let pki = pki("ca-b");
    let puller = pull(pki.server_cfg());
    let port = listen(&puller, "127.0.0.1").await;
    let pusher = push(pki.client_cfg());
    // dialing by IP: the certificate's IP SAN is checked
    timeout(WAIT, pusher.dial(&format!("tls+tcp://127.0.0.1:{port}")))
        .await
        .expect("dial in time")
        .expect("dial");
    timeout(WAIT, async {
        for (i, &size) in SIZES.iter().enumerate() {
            pusher.send(payload(size, i)).await?;
        }
        for (i, &size) in SIZES.iter().enumerate() {
            let m = puller.recv().await?;
            assert_eq!(
                m.body(),
                &payload(size, i)[..],
                "message {i} of {size} bytes"
            );
        }
        Ok::<_, Error>(())
    })
    .await
    .expect("in time")
    .expect("push/pull");
}

#[tokio::test]
async fn client_certificate_is_the_peer_identity() {
    let pki = pki("ca-c");
    let server = rep(pki.server_cfg().require_client_cert(pki.roots()));
    let port = listen(&server, "127.0.0.1").await;
    let client = req(pki.client_cfg().client_identity(pki.client.identity()));
    timeout(WAIT, client.dial(&format!("tls+tcp://localhost:{port}")))
        .await
        .expect("dial in time")
        .expect("dial with a client certificate");
    timeout(WAIT, async {
        client.send(b"who am i".to_vec()).await?;
        let m = server.recv().await?;
        assert_eq!(m.body(), b"who am i");
        server.send(b"client".to_vec()).await?;
        client.recv().await
    })
    .await
    .expect("in time")
    .expect("round trip");
    let pipes = server.pipes();
    assert_eq!(pipes.len(), 1);
    let info = server.pipe_info(pipes[0]).expect("pipe info");
    assert_eq!(
        info.peer_identity.as_deref(),
        Some(pki.client.der.as_ref()),
        "the listener reports the verified client certificate"
    );
    assert_eq!(server.stats().total_rejects(), 0);
}

#[tokio::test]
async fn missing_client_certificate_never_opens_a_pipe() {
    let pki = pki("ca-d");
    let server = rep(pki.server_cfg().require_client_cert(pki.roots()));
    let port = listen(&server, "127.0.0.1").await;
    let client = req(pki.client_cfg());
    let e = dial_err(&client, &format!("tls+tcp://localhost:{port}")).await;
    wait_rejected(&server).await;
    assert!(server.pipes().is_empty(), "no pipe on the listener");
    assert!(client.pipes().is_empty(), "no pipe on the dialer");
    // TLS 1.3 finishes the client's side before the server checks; the
    // refusal then arrives as an alert on the first read
    let text = e.to_string();
    assert!(
        text.contains("CertificateRequired") || text.contains("client certificate"),
        "error says a client certificate is needed: {text}"
    );
}

#[tokio::test]
async fn client_certificate_from_another_ca_is_refused() {
    let pki = pki("ca-e");
    let other = pki_for("ca-e-other", &["localhost"]);
    let server = rep(pki.server_cfg().require_client_cert(pki.roots()));
    let port = listen(&server, "127.0.0.1").await;
    let client = req(pki.client_cfg().client_identity(other.client.identity()));
    let e = dial_err(&client, &format!("tls+tcp://localhost:{port}")).await;
    wait_rejected(&server).await;
    assert!(server.pipes().is_empty());
    let text = e.to_string();
    assert!(
        text.contains("UnknownCA") || text.contains("trust"),
        "error says the certificate is not trusted: {text}"
    );
}

#[tokio::test]
async fn server_certificate_from_another_ca_is_refused() {
    let pki = pki("ca-f");
    let other = tls_common::pki("ca-f-other");
    let server = rep(other.server_cfg());
    let port = listen(&server, "127.0.0.1").await;
    let client = req(pki.client_cfg());
    let e = dial_err(&client, &format!("tls+tcp://localhost:{port}")).await;
    let text = e.to_string();
    assert!(
        text.contains("not issued by a trusted CA") && text.contains("TlsConfig::roots"),
        "error names the fix: {text}"
    );
    wait_rejected(&server).await;
    assert!(server.pipes().is_empty());
}

#[tokio::test]
async fn wrong_server_name_is_refused_and_server_name_overrides() {
    let pki = pki_for("ca-g", &["broker.test"]);
    let server = rep(pki.server_cfg());
    let port = listen(&server, "127.0.0.1").await;

    // the URL's host is checked by default, and 127.0.0.1 is not in the cert
    let client = req(pki.client_cfg());
    let e = dial_err(&client, &format!("tls+tcp://127.0.0.1:{port}")).await;
    let text = e.to_string();
    assert!(
        text.contains("not valid for name 127.0.0.1") && text.contains("TlsConfig::server_name"),
        "error names the fix: {text}"
    );
    // a wrong override is refused too
    let client = req(pki.client_cfg().server_name("other.test"));
    let e = dial_err(&client, &format!("tls+tcp://127.0.0.1:{port}")).await;
    assert!(
        e.to_string().contains("not valid for name other.test"),
        "{e}"
    );

    // the right override works
    let client = req(pki.client_cfg().server_name("broker.test"));
    timeout(WAIT, client.dial(&format!("tls+tcp://127.0.0.1:{port}")))
        .await
        .expect("dial in time")
        .expect("dial with server_name");
    let r = timeout(WAIT, async {
        client.send(b"ping".to_vec()).await?;
        let m = server.recv().await?;
        server.send(m).await?;
        client.recv().await
    })
    .await
    .expect("in time")
    .expect("round trip");
    assert_eq!(r.body(), b"ping");
}

#[tokio::test]
async fn tls12_only_and_tls13_only_both_work_and_mismatch_is_refused() {
    let pki = pki("ca-h");
    for v in [TlsVersion::Tls12, TlsVersion::Tls13] {
        let server = rep(pki.server_cfg().versions(v, v));
        let port = listen(&server, "127.0.0.1").await;
        let client = req(pki.client_cfg().versions(v, v));
        timeout(WAIT, client.dial(&format!("tls+tcp://localhost:{port}")))
            .await
            .expect("dial in time")
            .unwrap_or_else(|e| panic!("{v:?}-only dial: {e}"));
        let big = payload(1 << 20, 7);
        let r = timeout(WAIT, async {
            client.send(big.clone()).await?;
            let m = server.recv().await?;
            server.send(m).await?;
            client.recv().await
        })
        .await
        .expect("in time")
        .expect("round trip");
        assert_eq!(r.body(), &big[..], "{v:?}-only round trip");
    }
    // 1.3-only server, 1.2-only client: no version in common
    let server = rep(pki
        .server_cfg()
        .versions(TlsVersion::Tls13, TlsVersion::Tls13));
    let port = listen(&server, "127.0.0.1").await;
    let client = req(pki
        .client_cfg()
        .versions(TlsVersion::Tls12, TlsVersion::Tls12));
    let e = dial_err(&client, &format!("tls+tcp://localhost:{port}")).await;
    assert!(
        e.to_string().contains("TlsConfig::versions"),
        "error names the fix: {e}"
    );
    wait_rejected(&server).await;
}

#[tokio::test]
async fn pem_files_load_and_bad_config_fails_early() {
    let pki = pki("ca-i");
    let dir = TempDir::new("pem");
    let files = pki.write(&dir.0);
    // cert and key in one file, as nng's cert_key_file accepts
    let id = Identity::from_pem_files(&files.server_both, &files.server_both).expect("pem");
    assert_eq!(id.end_entity(), Some(pki.server.der.as_ref()));
    let server = rep(TlsConfig::new().server_identity(id));
    let port = listen(&server, "127.0.0.1").await;
    let roots = Roots::from_pem_file(&files.ca).expect("ca pem");
    let client = req(TlsConfig::new().roots(roots));
    timeout(WAIT, client.dial(&format!("tls+tcp://localhost:{port}")))
        .await
        .expect("dial in time")
        .expect("dial with PEM-loaded config");

    // a listener without a certificate fails at listen, naming the setter
    let e = rep(TlsConfig::new())
        .listen("tls+tcp://127.0.0.1:0")
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("TlsConfig::server_identity"), "{e}");
    // a dialer without roots fails before connecting, naming the setter
    let e = dial_err(
        &req(TlsConfig::new()),
        &format!("tls+tcp://localhost:{port}"),
    )
    .await;
    assert!(e.to_string().contains("TlsConfig::roots"), "{e}");
    // unreadable and malformed files say which file
    let e = Roots::from_pem_file(dir.0.join("missing.pem"))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("missing.pem"), "{e}");
    let e = Identity::from_pem_files(&files.server_cert, &files.server_cert)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("private key"), "{e}");
}

#[tokio::test]
async fn insecure_dialer_skips_verification_and_reports_no_identity() {
    let pki = pki("ca-j");
    let server = rep(pki.server_cfg());
    let port = listen(&server, "127.0.0.1").await;
    // trusts nothing, checks nothing, but still encrypts
    let client = req(TlsConfig::new().danger_accept_invalid_certs());
    timeout(WAIT, client.dial(&format!("tls+tcp://127.0.0.1:{port}")))
        .await
        .expect("dial in time")
        .expect("insecure dial");
    let r = timeout(WAIT, async {
        client.send(b"x".to_vec()).await?;
        let m = server.recv().await?;
        server.send(m).await?;
        client.recv().await
    })
    .await
    .expect("in time")
    .expect("round trip");
    assert_eq!(r.body(), b"x");
    let p = client.pipes();
    let info = client.pipe_info(p[0]).expect("info");
    assert_eq!(
        info.peer_identity, None,
        "nothing verified, nothing reported"
    );
}

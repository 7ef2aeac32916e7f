//! Hostile TLS clients against a real `tls+tcp` listener.
//!
//! For each attack: the connection is closed in bounded time, the refusal is
//! counted, the error (where observable) says what went wrong, the listener
//! still serves a well-behaved TLS peer afterwards, and nothing in the
//! library panics (a panic hook records every panic raised outside this
//! file). Memory is bounded in the half-open flood.

mod tls_common;

use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use rustls_pki_types::ServerName;
use sp_core::transport::StreamTransport;
use sp_core::{Error, Options, RejectReason, Socket};
use sp_transports::tls::Tls;
use sp_transports::Tcp;
use tls_common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{sleep, timeout};

static LIB_PANICS: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn init() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let default_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let file = info.location().map(|l| l.file()).unwrap_or("<unknown>");
            if !file.ends_with("tls_evil.rs") && !file.contains("tls_common") {
                LIB_PANICS
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(info.to_string());
            }
            default_hook(info);
        }));
    });
}

fn assert_no_library_panic() {
    let p = LIB_PANICS.lock().unwrap_or_else(|e| e.into_inner());
    assert!(p.is_empty(), "the library panicked: {p:#?}");
}

/// A real ClientHello: a rustls client talks to a plain TCP listener that
/// records the first TLS record and hangs up.
async fn capture_client_hello(pki: &Pki) -> Vec<u8> {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    let cfg = pki.client_cfg().client_config().expect("client config");
    let client = tokio::spawn(async move {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let name = ServerName::try_from("localhost").expect("name");
        // fails once the listener hangs up: only its first flight matters
        let _ = tokio_rustls::TlsConnector::from(cfg)
            .connect(name, tcp)
            .await;
    });
    let (mut s, _) = l.accept().await.expect("accept");
    let mut rec = vec![0u8; 5];
    timeout(WAIT, s.read_exact(&mut rec))
        .await
        .expect("hello in time")
        .expect("record header");
    assert_eq!(rec[0], 0x16, "a handshake record");
    let len = u16::from_be_bytes([rec[3], rec[4]]) as usize;
    let mut body = vec![0u8; len];
    timeout(WAIT, s.read_exact(&mut body))
        .await
        .expect("hello in time")
        .expect("record body");
    assert_eq!(body[0], 0x01, "a ClientHello");
    drop(s);
    let _ = timeout(WAIT, client).await;
    rec.extend_from_slice(&body);
    rec
}

/// The same handshake bytes, one byte per TLS record.
fn one_byte_records(record: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for &b in &record[5..] {
        out.extend_from_slice(&[0x16, record[1], record[2], 0x00, 0x01, b]);
    }
    out
}

/// Reads until EOF or a reset; panics if the peer keeps the connection
/// open longer than `limit`. Returns what was read.
async fn read_until_closed(s: &mut TcpStream, limit: Duration) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    timeout(limit, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("the listener closes the connection in bounded time");
    got
}

async fn wait_rejects(s: &Socket, what: &str, cond: impl Fn(&sp_core::Stats) -> bool) {
    let r = timeout(WAIT, async {
        loop {
            let st = s.stats();
            if cond(&st) {
                return;
            }
            sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(
        r.is_ok(),
        "timed out waiting for {what}; counters:\n{}",
        s.stats()
    );
}

/// A real TLS peer still gets through: dial, round trip, close.
async fn real_peer_round_trip(pki: &Pki, port: u16, server: &Socket) {
    let client = req(pki.client_cfg());
    timeout(WAIT, client.dial(&format!("tls+tcp://localhost:{port}")))
        .await
        .expect("real dial in time")
        .expect("real dial");
    let r = timeout(WAIT, async {
        client.send(b"still serving?".to_vec()).await?;
        let m = server.recv().await?;
        server.send(m).await?;
        client.recv().await
    })
    .await
    .expect("round trip in time")
    .expect("round trip");
    assert_eq!(r.body(), b"still serving?");
    client.close();
}

async fn listening(pki: &Pki, o: Options) -> (Socket, u16) {
    let server = rep_with(pki.server_cfg(), o);
    let ep = server
        .listen("tls+tcp://127.0.0.1:0")
        .await
        .expect("listen");
    let port = port_of(ep.url());
    (server, port)
}

#[tokio::test]
async fn client_hello_in_one_byte_records() {
    init();
    let pki = pki("evil-frag");
    let hello = capture_client_hello(&pki).await;
    let frag = one_byte_records(&hello);
    assert!(frag.len() > 5 * hello.len(), "really fragmented");

    // at the stream level: the handshake reassembles the hello and answers
    let tls = Tls::new(Tcp, pki.server_cfg());
    let l = tls.bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr();
    let mut c = TcpStream::connect(&addr).await.expect("connect");
    let upgrade = timeout(WAIT, l.accept())
        .await
        .expect("accept")
        .expect("accept");
    let server = tokio::spawn(timeout(WAIT, upgrade));
    c.write_all(&frag).await.expect("send fragments");
    let mut first = [0u8; 1];
    timeout(WAIT, c.read_exact(&mut first))
        .await
        .expect("answer in time")
        .expect("answer");
    assert_eq!(
        first[0], 0x16,
        "a ServerHello: the fragments were reassembled"
    );
    // we cannot finish (the hello's key share is not ours): hang up
    drop(c);
    let res = server.await.expect("server task");
    match res {
        Ok(Err(Error::Layer { layer, reason })) => {
            assert_eq!(layer, "tls");
            assert!(!reason.is_empty());
        }
        Ok(Err(e)) => panic!("unexpected error kind: {e}"),
        Ok(Ok(_)) => panic!("a handshake without the client's secrets cannot succeed"),
        Err(_) => panic!("server handshake did not end after the client hung up"),
    }

    // at the socket level: the pipe is refused and a real peer still served
    let (server, port) = listening(&pki, opts()).await;
    let mut c = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    c.write_all(&frag).await.expect("send fragments");
    let mut first = [0u8; 1];
    timeout(WAIT, c.read_exact(&mut first))
        .await
        .expect("answer in time")
        .expect("answer");
    assert_eq!(first[0], 0x16);
    drop(c);
    wait_rejects(&server, "the refused pipe", |s| s.total_rejects() >= 1).await;
    real_peer_round_trip(&pki, port, &server).await;
    assert_no_library_panic();
}

#[tokio::test]
async fn close_notify_in_mid_handshake() {
    init();
    let pki = pki("evil-close");
    let hello = capture_client_hello(&pki).await;
    // a long deadline, so a quick close proves the alert was acted on
    let (server, port) = listening(&pki, opts().handshake_timeout(Duration::from_secs(60))).await;
    let mut c = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    c.write_all(&hello).await.expect("hello");
    let mut first = [0u8; 1];
    timeout(WAIT, c.read_exact(&mut first))
        .await
        .expect("answer in time")
        .expect("answer");
    assert_eq!(first[0], 0x16, "ServerHello");
    // alert record: warning(1) close_notify(0), in the clear
    c.write_all(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x01, 0x00])
        .await
        .expect("alert");
    read_until_closed(&mut c, WAIT).await;
    wait_rejects(&server, "the refused pipe", |s| s.total_rejects() >= 1).await;
    assert_eq!(server.stats().rejects(RejectReason::HandshakeTimeout), 0);
    assert!(server.pipes().is_empty());
    real_peer_round_trip(&pki, port, &server).await;
    assert_no_library_panic();
}

#[tokio::test]
async fn garbage_instead_of_tls() {
    init();
    let pki = pki("evil-garbage");
    // the stream level says what happened
    let tls = Tls::new(Tcp, pki.server_cfg());
    let l = tls.bind("127.0.0.1:0").await.expect("bind");
    let mut c = TcpStream::connect(l.local_addr()).await.expect("connect");
    let upgrade = timeout(WAIT, l.accept())
        .await
        .expect("accept")
        .expect("accept");
    // an SP/TCP header, as a plain tcp:// peer would send
    c.write_all(&[0x00, b'S', b'P', 0x00, 0x00, 0x30, 0x00, 0x00])
        .await
        .expect("garbage");
    let e = timeout(WAIT, upgrade)
        .await
        .expect("refused in time")
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("does not speak TLS"), "clear error: {e}");

    // the socket level closes, counts, keeps serving
    let (server, port) = listening(&pki, opts().handshake_timeout(Duration::from_secs(60))).await;
    let mut c = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("garbage");
    read_until_closed(&mut c, WAIT).await;
    let mut c = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let noise: Vec<u8> = (0..4096u32).map(|i| (i * 7919 % 251) as u8).collect();
    let _ = c.write_all(&noise).await;
    read_until_closed(&mut c, WAIT).await;
    wait_rejects(&server, "two refused pipes", |s| s.total_rejects() >= 2).await;
    assert_eq!(server.stats().rejects(RejectReason::HandshakeTimeout), 0);
    real_peer_round_trip(&pki, port, &server).await;
    assert_no_library_panic();
}

#[tokio::test]
async fn silent_client_is_cut_at_the_handshake_deadline() {
    init();
    let pki = pki("evil-silent");
    let (server, port) =
        listening(&pki, opts().handshake_timeout(Duration::from_millis(500))).await;
    let mut silent = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    // meanwhile a real peer is served: the silent one blocks nothing
    real_peer_round_trip(&pki, port, &server).await;
    read_until_closed(&mut silent, WAIT).await;
    wait_rejects(&server, "a handshake timeout", |s| {
        s.rejects(RejectReason::HandshakeTimeout) >= 1
    })
    .await;
    real_peer_round_trip(&pki, port, &server).await;
    assert_no_library_panic();
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_slow_handshakes_do_not_stop_a_real_peer() {
    init();
    let pki = pki("evil-flood");
    let hello = capture_client_hello(&pki).await;
    let (server, port) = listening(
        &pki,
        opts()
            .handshake_timeout(Duration::from_secs(60))
            .max_half_open(64),
    )
    .await;
    let rss0 = rss_bytes();
    let mut slow = Vec::with_capacity(1000);
    for _ in 0..1000 {
        let mut c = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        // a record header and half a ClientHello, then nothing
        let _ = c.write_all(&hello[..hello.len() / 2]).await;
        slow.push(c);
    }
    // the real peer needs one of the 64 slots; newer handshakes evict older
    real_peer_round_trip(&pki, port, &server).await;
    wait_rejects(&server, "evictions", |s| {
        s.rejects(RejectReason::Evicted) >= 900
    })
    .await;
    let grew = rss_bytes().saturating_sub(rss0);
    assert!(
        grew < 256 << 20,
        "1000 half-open handshakes cost {grew} bytes of RSS"
    );
    drop(slow);
    real_peer_round_trip(&pki, port, &server).await;
    assert_no_library_panic();
}

//! Hostile WebSocket peers: each case is bounded in time and memory, ends
//! with a clear refusal, and leaves the listener serving honest peers.

mod common;

use std::time::{Duration, Instant};

use common::{
    authority, closed_by_server, opts, raw_client, raw_upgrade, sock, sock_with, within, Client,
};
use sp_ws::WsConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::MaybeTlsStream;

async fn client(url: &str) -> Client {
    within("connect", raw_client(url, Some("rep.sp.nanomsg.org")))
        .await
        .expect("handshake")
}

/// Writes raw bytes under the WebSocket (frames tungstenite would not send).
async fn raw_write(ws: &mut Client, bytes: &[u8]) -> std::io::Result<()> {
    match ws.get_mut() {
        MaybeTlsStream::Plain(s) => s.write_all(bytes).await,
        _ => unreachable!("plain ws:// in these tests"),
    }
}

/// A client frame header (FIN/opcode byte, masked, length) with a zero mask.
fn frame(first: u8, len: u64) -> Vec<u8> {
    let mut h = vec![first];
    if len < 126 {
        h.push(0x80 | len as u8);
    } else if len <= 0xffff {
        h.push(0x80 | 126);
        h.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        h.push(0x80 | 127);
        h.extend_from_slice(&len.to_be_bytes());
    }
    h.extend_from_slice(&[0, 0, 0, 0]); // mask of zeros: payload as is
    h
}

/// After an attack the listener still serves an honest REQ.
async fn still_serves(rep: &sp_core::Socket, url: &str) {
    let req = sock("req");
    within("honest dial", req.dial(url)).await.expect("dial");
    req.send(&b"honest"[..]).await.expect("send");
    let m = within("honest recv", rep.recv()).await.expect("recv");
    assert_eq!(m.body(), b"honest");
}

#[tokio::test]
async fn trickled_64k_handshake_is_cut_short() {
    let cfg = WsConfig::default().route_timeout(Duration::from_secs(5));
    let rep = sock_with("rep", &cfg, |b| b);
    let ep = rep.listen("ws://127.0.0.1:0/sp").await.expect("listen");
    let addr = authority(ep.url());
    let s = TcpStream::connect(&addr).await.expect("connect");
    s.set_nodelay(true).expect("nodelay");
    let (mut r, mut w) = s.into_split();
    let start = Instant::now();
    let written = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = written.clone();
    let writer = tokio::spawn(async move {
        let _ = w
            .write_all(b"GET /sp HTTP/1.1\r\nHost: x\r\nX-Long: ")
            .await;
        for _ in 0..(64 << 10) {
            if w.write_all(b"a").await.is_err() {
                return;
            }
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            // one byte per segment, as an attacker trickling would
            tokio::task::yield_now().await;
        }
    });
    let mut answer = Vec::new();
    let _ = within("server ends the request", async {
        let mut buf = [0u8; 256];
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => return Ok::<_, ()>(()),
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    let at = written.load(std::sync::atomic::Ordering::Relaxed);
    writer.abort();
    assert!(
        at < 64 << 10,
        "the server read the whole 64 KiB header ({at} bytes) before refusing"
    );
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.starts_with("HTTP/1.1 431") || start.elapsed() >= Duration::from_secs(4),
        "neither refused with 431 nor cut at the deadline: {text:?}"
    );
    still_serves(&rep, ep.url()).await;
}

#[tokio::test]
async fn one_gib_frame_header_is_refused_before_allocation() {
    let rep = sock("rep");
    let ep = rep.listen("ws://127.0.0.1:0/sp").await.expect("listen");
    let mut ws = client(ep.url()).await;
    raw_write(&mut ws, &frame(0x82, 1 << 30))
        .await
        .expect("header");
    raw_write(&mut ws, &[0u8; 1024])
        .await
        .expect("some payload");
    let code = closed_by_server(&mut ws).await;
    assert_eq!(
        code,
        Some(1009),
        "a 1 GiB frame closes with 'message too big'"
    );
    assert!(tokio::time::timeout(Duration::from_millis(100), rep.recv())
        .await
        .is_err());
    still_serves(&rep, ep.url()).await;
}

#[tokio::test]
async fn a_million_empty_continuation_frames_hit_the_budget() {
    let rep = sock_with("rep", &WsConfig::default(), |b| {
        b.options(opts().recv_max_size(64 << 10))
    });
    let ep = rep.listen("ws://127.0.0.1:0/sp").await.expect("listen");
    let (mut r, mut w) = raw_upgrade(ep.url(), "rep.sp.nanomsg.org")
        .await
        .into_split();
    let frames = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = frames.clone();
    let start = Instant::now();
    let writer = tokio::spawn(async move {
        // binary, not final, empty; then continuation frames, not final, empty
        let mut burst = frame(0x02, 0);
        let cont = frame(0x00, 0);
        for _ in 0..100 {
            for _ in 0..10_000 {
                burst.extend_from_slice(&cont);
            }
            if w.write_all(&burst).await.is_err() {
                return;
            }
            counter.fetch_add(10_000, std::sync::atomic::Ordering::Relaxed);
            burst.clear();
        }
    });
    // the server's first bytes: an unmasked close frame with its code
    let mut close = [0u8; 4];
    within("close frame", r.read_exact(&mut close))
        .await
        .expect("close frame");
    let at = frames.load(std::sync::atomic::Ordering::Relaxed);
    writer.abort();
    assert_eq!(close[0], 0x88, "expected a close frame, got {close:02x?}");
    assert_eq!(u16::from_be_bytes([close[2], close[3]]), 1009);
    assert!(at < 1_000_000, "the whole flood was read before the close");
    eprintln!(
        "empty-frame flood cut after {at} frames written, {:?}",
        start.elapsed()
    );
    assert!(tokio::time::timeout(Duration::from_millis(100), rep.recv())
        .await
        .is_err());
    still_serves(&rep, ep.url()).await;
}

#[tokio::test]
async fn text_with_invalid_utf8_closes_the_pipe() {
    let rep = sock("rep");
    let ep = rep.listen("ws://127.0.0.1:0/sp").await.expect("listen");
    let mut ws = client(ep.url()).await;
    let mut f = frame(0x81, 6);
    f.extend_from_slice(&[0x80, 0, 0, 1, 0xff, 0xfe]);
    raw_write(&mut ws, &f).await.expect("frame");
    let code = closed_by_server(&mut ws).await;
    // tungstenite checks UTF-8 first (1007); had it passed, 1003 for text
    assert!(
        matches!(code, Some(1007) | Some(1003)),
        "close code {code:?}"
    );
    assert!(tokio::time::timeout(Duration::from_millis(100), rep.recv())
        .await
        .is_err());
    still_serves(&rep, ep.url()).await;
}

#[tokio::test]
async fn unmasked_client_frame_is_a_protocol_error() {
    let rep = sock("rep");
    let ep = rep.listen("ws://127.0.0.1:0/sp").await.expect("listen");
    let mut ws = client(ep.url()).await;
    raw_write(&mut ws, &[0x82, 0x05, 0x80, 0, 0, 1, 0x61])
        .await
        .expect("frame");
    let code = closed_by_server(&mut ws).await;
    assert_eq!(code, Some(1002));
    assert!(tokio::time::timeout(Duration::from_millis(100), rep.recv())
        .await
        .is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_idle_connections_do_not_lock_clients_out() {
    // The port read at most 128 request heads and refused every connection
    // beyond: 128 idle connections (re-opened at ~13/s as the route
    // deadline closed them) locked every client out.
    let rep = sock("rep");
    let ep = rep.listen("ws://127.0.0.1:0/sp").await.expect("listen");
    let addr = authority(ep.url());
    let mut idle = Vec::with_capacity(1000);
    for i in 0..1000 {
        let s = within("idle connect", TcpStream::connect(&addr))
            .await
            .unwrap_or_else(|e| panic!("idle connection {i}: {e}"));
        idle.push(s);
    }
    for round in 0..5 {
        let req = sock("req");
        within("honest dial", req.dial(ep.url()))
            .await
            .unwrap_or_else(|e| panic!("round {round}: an honest client was refused: {e}"));
        req.send(&b"honest"[..]).await.expect("send");
        let m = within("honest recv", rep.recv()).await.expect("recv");
        assert_eq!(m.body(), b"honest");
        // more idle connections arrive between honest ones
        for _ in 0..50 {
            if let Ok(s) = TcpStream::connect(&addr).await {
                idle.push(s);
            }
        }
    }
    drop(idle);
}

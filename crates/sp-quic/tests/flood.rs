//! A listener under a flood keeps serving a legitimate client.
//!
//! Proves: while another source (127.0.0.2) sends thousands of garbage
//! datagrams (random bytes, some shaped like QUIC Initial packets) and
//! opens many real QUIC connections that never start their SP handshake,
//! a client from 127.0.0.1 dials once and completes every round trip: the
//! half-open cap evicts the flood's own handshakes (counted, and closed
//! with SP_HANDSHAKE_TIMEOUT), never the client's. With Retry forced, every
//! client proves its address first and is still served.
//!
//! The fault-proxy variant (loss, reordering, a NAT rebinding under load)
//! needs the test-hosts harness, which does not exist yet.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use sp_quic::quinn::{self, crypto::rustls::QuicClientConfig};
use sp_quic::{Quic, QuicConfig};
use spstack::RejectReason;

const FLOOD_SOURCE: &str = "127.0.0.2";
const STALLED: usize = 40;
const GARBAGE: usize = 3_000;
const HALF_OPEN: usize = 8;

/// Datagrams no QUIC stack can decrypt: random, and every third one with
/// a long-header Initial first byte, a version and connection IDs.
async fn garbage(target: std::net::SocketAddr) -> usize {
    let s = tokio::net::UdpSocket::bind((FLOOD_SOURCE, 0))
        .await
        .expect("flood socket");
    let mut rng = fastrand_like(7);
    let mut sent = 0;
    for i in 0..GARBAGE {
        let mut d = vec![0u8; 1200];
        for b in d.iter_mut() {
            *b = rng();
        }
        if i % 3 == 0 {
            d[0] = 0xc0; // long header, Initial
            d[1..5].copy_from_slice(&1u32.to_be_bytes()); // QUIC v1
            d[5] = 8; // DCID length
        }
        if s.send_to(&d, target).await.is_ok() {
            sent += 1;
        }
        if i % 200 == 0 {
            tokio::task::yield_now().await;
        }
    }
    sent
}

/// A small xorshift: no extra dependency for noise.
fn fastrand_like(seed: u64) -> impl FnMut() -> u8 {
    let mut x = seed | 1;
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x as u8
    }
}

/// Real QUIC connections from the flood source that complete QUIC's
/// handshake and then never open the pipe's stream: each holds a
/// half-open slot until evicted.
async fn stalled(pki: &Pki, target: std::net::SocketAddr) -> Vec<quinn::Connection> {
    let mut tls = (*pki.client_cfg().client_config().expect("config")).clone();
    tls.alpn_protocols = vec![sp_quic::ALPN.to_vec()];
    let cfg = quinn::ClientConfig::new(Arc::new(
        QuicClientConfig::try_from(Arc::new(tls)).expect("crypto"),
    ));
    let ep = quinn::Endpoint::client(format!("{FLOOD_SOURCE}:0").parse().expect("addr"))
        .expect("flood endpoint");
    let mut held = Vec::new();
    for _ in 0..STALLED {
        let Ok(connecting) = ep.connect_with(cfg.clone(), target, "localhost") else {
            continue;
        };
        // an evicted one may fail: that is the listener defending itself
        if let Ok(Ok(c)) = tokio::time::timeout(Duration::from_secs(5), connecting).await {
            held.push(c);
        }
    }
    held
}

#[tokio::test]
async fn flood_of_garbage_and_stalled_handshakes_keeps_serving() {
    let pki = Arc::new(pki("ca-flood"));
    let listener = quic(both(&pki));
    let rep = spstack::rep0()
        .transport(listener.clone())
        .options(
            opts()
                .max_half_open(HALF_OPEN)
                // the deadline must not be what saves the client
                .handshake_timeout(Duration::from_secs(60)),
        )
        .build();
    let url = listen(&rep, "127.0.0.1").await;
    let target: std::net::SocketAddr = url.trim_start_matches("quic://").parse().expect("addr");
    let serve = {
        let rep = rep.clone();
        tokio::spawn(async move {
            while let Ok(m) = rep.recv().await {
                if rep.send(m.body().to_vec()).await.is_err() {
                    break;
                }
            }
        })
    };

    // the flood fills the half-open cap before the client arrives, and
    // goes on while it works
    let first = stalled(&pki, target).await;
    assert!(
        first.len() > HALF_OPEN,
        "the flood got connections: {}",
        first.len()
    );
    let flood = {
        let pki2 = pki.clone();
        tokio::spawn(async move {
            let sent = garbage(target).await;
            let more = stalled(&pki2, target).await;
            (sent, more)
        })
    };

    let client = over(spstack::req0(), &quic(both(&pki)));
    dial(&client, &url).await;
    for i in 0..20 {
        client.send(payload(100, i)).await.expect("send");
        let back = within("echo under flood", client.recv())
            .await
            .expect("echo");
        assert_eq!(back.body(), &payload(100, i)[..]);
    }
    let (sent, more) = within("the flood ends", flood).await.expect("flood task");
    assert_eq!(sent, GARBAGE, "every garbage datagram went out");

    // the client dialed once and was never evicted
    assert_eq!(client.stats().pipes_opened, 1);
    assert_eq!(client.stats().pipes_closed, 0);
    let evicted = rep.stats().rejects(RejectReason::Evicted);
    assert!(
        evicted as usize >= first.len() - HALF_OPEN,
        "the flood's handshakes were evicted and counted: {evicted}"
    );
    // at most HALF_OPEN of the first wave can still hold a slot; the peers
    // of the others learn why they were dropped
    let abandoned_code = |c: &quinn::Connection| {
        matches!(c.close_reason(), Some(quinn::ConnectionError::ApplicationClosed(a))
            if a.error_code == quinn::VarInt::from_u32(sp_quic::codes::HANDSHAKE_TIMEOUT))
    };
    until("the evicted were closed with SP_HANDSHAKE_TIMEOUT", || {
        first.iter().filter(|c| abandoned_code(c)).count() >= first.len() - HALF_OPEN
    })
    .await;
    assert!(listener.stats().abandoned >= (first.len() - HALF_OPEN) as u64);
    // the client is served after the flood too
    client.send("after").await.expect("send");
    assert_eq!(
        within("echo", client.recv()).await.expect("echo").body(),
        b"after"
    );
    drop((first, more));
    serve.abort();
}

#[tokio::test]
async fn forced_retry_still_serves() {
    let pki = pki("ca-retry");
    let listener = Arc::new(Quic::new(QuicConfig::new(both(&pki)).retry_above(0)));
    let rep = spstack::rep0()
        .transport(listener.clone())
        .options(opts())
        .build();
    let url = listen(&rep, "127.0.0.1").await;
    let client = over(spstack::req0(), &quic(both(&pki)));
    dial(&client, &url).await;
    client.send("through retry").await.expect("send");
    let m = within("request", rep.recv()).await.expect("request");
    assert_eq!(m.body(), b"through retry");
    assert_eq!(
        listener.stats().retries,
        1,
        "one Retry, then the validated client"
    );
}

//! Connection migration: a dialer whose UDP socket moves to a new port
//! mid-stream keeps its pipe.
//!
//! Proves: after `quinn::Endpoint::rebind` (the old socket is closed, so
//! every later packet comes from the new port) request/reply round trips,
//! small and larger than one packet, go on over the same pipe on both sides:
//! no pipe closed, none reopened, no redial.

mod common;

use std::sync::Arc;

use common::*;
use sp_quic::{quinn, Quic, QuicConfig};

#[tokio::test]
async fn rebinding_the_dialers_socket_keeps_the_pipe() {
    let pki = pki("ca-migrate");
    let rep = over(spstack::rep0(), &quic(both(&pki)));
    let url = listen(&rep, "127.0.0.1").await;

    let ep = quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("endpoint");
    let dialer = Arc::new(Quic::new(
        QuicConfig::new(both(&pki)).client_endpoint(ep.clone()),
    ));
    let req = over(spstack::req0(), &dialer);
    dial(&req, &url).await;

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
    let round_trip = |i: usize, size: usize| {
        let req = req.clone();
        async move {
            let body = payload(size, i);
            req.send(body.clone()).await.expect("send");
            let back = within("echo", req.recv()).await.expect("echo");
            assert_eq!(back.body(), &body[..], "round trip {i} of {size} bytes");
        }
    };
    round_trip(0, 10).await;
    let pipe = req.pipes()[0];
    let before = ep.local_addr().expect("addr");

    let moved = std::net::UdpSocket::bind("127.0.0.1:0").expect("new socket");
    ep.rebind(moved).expect("rebind");
    let after = ep.local_addr().expect("addr");
    assert_ne!(before.port(), after.port(), "the socket moved");

    for (i, size) in [10, 5_000, 300_000, 10].into_iter().enumerate() {
        round_trip(i + 1, size).await;
    }
    assert_eq!(req.pipes(), vec![pipe], "the same pipe on the dialer");
    let (d, l) = (req.stats(), rep.stats());
    assert_eq!(
        (d.pipes_opened, d.pipes_closed),
        (1, 0),
        "dialer: no redial"
    );
    assert_eq!(
        (l.pipes_opened, l.pipes_closed),
        (1, 0),
        "listener: one pipe throughout"
    );
    serve.abort();
}

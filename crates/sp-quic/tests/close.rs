//! Ending a pipe loses nothing in flight (`docs/quic-mapping.md` §6).
//!
//! Proves: a PUSH whose last packets are lost on the way (a relay drops
//! everything it sends for a while) and that shuts down with a 1 ms linger
//! meanwhile still gets every message it counted as sent to the PULL,
//! whole and in order, once the path works again: its connection keeps
//! retransmitting and closes (SP_NO_ERROR) only after its last bytes are
//! acknowledged. Closing at once, as a dropped QUIC connection does, would
//! lose what was in flight after the socket counted it as sent (with that
//! change this test fails).

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::*;
use tokio::net::UdpSocket;

/// A UDP relay between one client and `server` that drops the client's
/// datagrams while `blocked` is set.
async fn relay(server: std::net::SocketAddr, blocked: Arc<AtomicBool>) -> std::net::SocketAddr {
    let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("front"));
    let back = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("back"));
    let addr = front.local_addr().expect("addr");
    let client = Arc::new(std::sync::Mutex::new(None));
    {
        let (front, back, client) = (front.clone(), back.clone(), client.clone());
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65_536];
            while let Ok((n, from)) = front.recv_from(&mut buf).await {
                *client.lock().expect("lock") = Some(from);
                if !blocked.load(Ordering::Relaxed) {
                    let _ = back.send_to(&buf[..n], server).await;
                }
            }
        });
    }
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        while let Ok((n, _)) = back.recv_from(&mut buf).await {
            let to = *client.lock().expect("lock");
            if let Some(to) = to {
                let _ = front.send_to(&buf[..n], to).await;
            }
        }
    });
    addr
}

const N: usize = 60;
const SIZE: usize = 100 << 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_after_a_burst_delivers_everything() {
    let pki = pki("ca-close");
    let t_pull = quic(both(&pki));
    let pull = over(spstack::pull0(), &t_pull);
    let url = listen(&pull, "127.0.0.1").await;
    let blocked = Arc::new(AtomicBool::new(false));
    let server: std::net::SocketAddr = url.trim_start_matches("quic://").parse().expect("addr");
    let via = relay(server, blocked.clone()).await;
    let t_push = quic(both(&pki));
    // the socket does not wait for the peer: only the transport's own end
    // of the connection can keep what it holds from being lost
    let push = spstack::push0()
        .transport(t_push.clone())
        .options(opts().linger(std::time::Duration::from_millis(1)))
        .build();
    dial(&push, &format!("quic://{via}")).await;

    let received = Arc::new(std::sync::Mutex::new(Vec::new()));
    let receiver = {
        let (pull, received) = (pull.clone(), received.clone());
        tokio::spawn(async move {
            while let Ok(m) = pull.recv().await {
                let mut r = received.lock().expect("lock");
                r.push((m.body()[..8].to_vec(), m.body().len()));
                if r.len() == N {
                    break;
                }
            }
        })
    };
    for i in 0..N {
        if i == N / 2 {
            // the path goes dark for the second half of the burst
            blocked.store(true, Ordering::Relaxed);
        }
        let mut body = payload(SIZE, i);
        body[..8].copy_from_slice(&(i as u64).to_be_bytes());
        within("a send", push.send(body)).await.expect("send");
    }
    let stats = within("shutdown", push.shutdown()).await;
    // the socket is done with the pipe; the path comes back
    blocked.store(false, Ordering::Relaxed);
    drop(push);
    let sent = stats.msgs_out as usize;
    assert_eq!(
        sent as u64 + stats.total_drops(),
        N as u64,
        "every message written or counted dropped"
    );
    assert!(
        sent > N / 2,
        "some of the burst went into the dark path: {sent} of {N} counted as sent"
    );

    // what the pusher counted as written arrives, in order, whole
    until("every message counted as sent arrives", || {
        received.lock().expect("lock").len() >= sent
    })
    .await;
    let got = received.lock().expect("lock").clone();
    for (i, (id, len)) in got.iter().enumerate() {
        assert_eq!(&id[..], &(i as u64).to_be_bytes(), "message {i} in order");
        assert_eq!(*len, SIZE);
    }
    receiver.abort();
    // whichever side saw the other's end first closed with SP_NO_ERROR
    until("the connection closed normally", || {
        t_push.stats().closed_normally + t_pull.stats().closed_normally >= 1
    })
    .await;
    assert_eq!(
        t_push.stats().linger_expired,
        0,
        "the last bytes were acknowledged"
    );
}

//! `quic://` across two hosts through a UDP fault proxy (issue 14: "loss
//! and delay through a UDP fault proxy"). The TCP proxy of `proxy.rs` works
//! on frames because TCP hides packet faults; QUIC sees every datagram, so
//! this proxy faults datagrams: each is lost, delayed (with jitter, which
//! reorders them) or duplicated on its own, seeded, per direction.
//!
//! * `quic_over_a_lossy_reordering_link_delivers_every_message_once`: 5 %
//!   loss, 50 ms ± 20 ms delay and 2 % duplication both ways; PUSH/PULL
//!   delivers 600 numbered messages in order, exactly once, on one pipe;
//!   REQ/REP answers 20 requests, each once. The proxy's counters prove the
//!   faults happened (QUIC's retransmission and duplicate detection did the
//!   rest).
//! * `quic_rides_out_a_short_blackout_and_gives_up_a_long_one`: a 2 s
//!   blackout (shorter than the idle timeout) keeps the pipe — the same
//!   pipe carries what was sent during it; a blackout longer than the idle
//!   timeout closes the pipe on both sides and the dialer gets a new one
//!   once the link is back.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use spstack::{Socket, SocketBuilder};
use tokio::net::UdpSocket;

use crate::net::{Net, Node};
use crate::{eventually, opts, serial, within};

const PORT: u16 = 7500;

/// What the proxy does to each datagram of one direction.
#[derive(Clone, Copy, Debug)]
struct UdpFaults {
    loss: f64,
    delay: Duration,
    jitter: Duration,
    duplicate: f64,
}

impl UdpFaults {
    const NONE: UdpFaults = UdpFaults {
        loss: 0.0,
        delay: Duration::ZERO,
        jitter: Duration::ZERO,
        duplicate: 0.0,
    };
}

/// What the proxy did, both directions together.
#[derive(Debug, Default)]
struct UdpProxyStats {
    forwarded: AtomicU64,
    lost: AtomicU64,
    duplicated: AtomicU64,
    blacked_out: AtomicU64,
}

/// A UDP relay for one client: datagrams from the client (the first
/// address that writes to `addr`, then the latest) go to `upstream`, the
/// answers back to it.
struct UdpProxy {
    addr: SocketAddr,
    stats: Arc<UdpProxyStats>,
    /// While set, every datagram either way is dropped (a cut link).
    blackout: Arc<AtomicBool>,
}

impl UdpProxy {
    /// Starts on the calling runtime (a node's: it runs on that host).
    async fn start(upstream: SocketAddr, faults: UdpFaults, seed: u64) -> UdpProxy {
        let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("front"));
        let back = Arc::new(UdpSocket::bind("0.0.0.0:0").await.expect("back"));
        back.connect(upstream).await.expect("connect upstream");
        let stats = Arc::new(UdpProxyStats::default());
        let blackout = Arc::new(AtomicBool::new(false));
        let client: Arc<std::sync::Mutex<Option<SocketAddr>>> = Default::default();
        let addr = front.local_addr().unwrap();

        // client -> server
        {
            let (front, back, stats, blackout, client) = (
                front.clone(),
                back.clone(),
                stats.clone(),
                blackout.clone(),
                client.clone(),
            );
            tokio::spawn(async move {
                let mut rng = fastrand::Rng::with_seed(seed);
                let mut buf = vec![0u8; 65_536];
                while let Ok((n, from)) = front.recv_from(&mut buf).await {
                    *client.lock().unwrap() = Some(from);
                    let d = buf[..n].to_vec();
                    let back = back.clone();
                    relay(d, faults, &mut rng, &stats, &blackout, move |d| {
                        let back = back.clone();
                        async move {
                            let _ = back.send(&d).await;
                        }
                    });
                }
            });
        }
        // server -> client
        {
            let (stats, blackout) = (stats.clone(), blackout.clone());
            tokio::spawn(async move {
                let mut rng = fastrand::Rng::with_seed(seed ^ 0x5eed);
                let mut buf = vec![0u8; 65_536];
                while let Ok(n) = back.recv(&mut buf).await {
                    let Some(to) = *client.lock().unwrap() else {
                        continue;
                    };
                    let d = buf[..n].to_vec();
                    let front = front.clone();
                    relay(d, faults, &mut rng, &stats, &blackout, move |d| {
                        let front = front.clone();
                        async move {
                            let _ = front.send_to(&d, to).await;
                        }
                    });
                }
            });
        }
        UdpProxy {
            addr,
            stats,
            blackout,
        }
    }

    fn url(&self) -> String {
        format!("quic://{}", self.addr)
    }
}

/// One datagram through the faults: dropped, or sent (once or twice) after
/// its own delay, so that jitter reorders.
fn relay<F, Fut>(
    d: Vec<u8>,
    f: UdpFaults,
    rng: &mut fastrand::Rng,
    stats: &Arc<UdpProxyStats>,
    blackout: &AtomicBool,
    send: F,
) where
    F: Fn(Vec<u8>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    if blackout.load(SeqCst) {
        stats.blacked_out.fetch_add(1, SeqCst);
        return;
    }
    if rng.f64() < f.loss {
        stats.lost.fetch_add(1, SeqCst);
        return;
    }
    let copies = if rng.f64() < f.duplicate {
        stats.duplicated.fetch_add(1, SeqCst);
        2
    } else {
        1
    };
    let wait = f.delay + f.jitter.mul_f64(rng.f64());
    stats.forwarded.fetch_add(1, SeqCst);
    tokio::spawn(async move {
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        for _ in 0..copies {
            send(d.clone()).await;
        }
    });
}

/// A self-signed certificate for "localhost", trusted by both sides.
fn tls() -> sp_transports::TlsConfig {
    use sp_transports::tls::{Identity, Roots, TlsConfig};
    let c = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
    let der = rustls_pki_types::CertificateDer::from(c.cert.der().to_vec());
    let key = rustls_pki_types::PrivatePkcs8KeyDer::from(c.key_pair.serialize_der());
    TlsConfig::new()
        .server_identity(Identity::from_der(vec![der.clone()], key.into()))
        .roots(Roots::from_der(vec![der]))
        .server_name("localhost")
}

fn over_quic(b: SocketBuilder, tls: &sp_transports::TlsConfig, idle: Duration) -> Socket {
    let q = sp_quic::Quic::new(
        sp_quic::QuicConfig::new(tls.clone())
            .idle_timeout(idle)
            .keep_alive(Some(idle / 4)),
    );
    b.options(opts()).transport(Arc::new(q)).build()
}

fn numbered(i: u32) -> Vec<u8> {
    let mut v = i.to_be_bytes().to_vec();
    v.resize(1000, (i % 251) as u8);
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_over_a_lossy_reordering_link_delivers_every_message_once() {
    let _g = serial().await;
    let net = Net::new("quic");
    let s = net.segment();
    let (sh, ch) = (net.host("server", &[s]), net.host("client", &[s]));
    let (server, client) = (Node::start(&sh, "server"), Node::start(&ch, "client"));
    let tls = tls();
    let at = SocketAddr::from((sh.addr(s), PORT));
    let at_rep = SocketAddr::from((sh.addr(s), PORT + 1));
    let idle = Duration::from_secs(30);

    let t = tls.clone();
    let (pull, rep) = server
        .run(async move {
            let pull = over_quic(spstack::pull0(), &t, idle);
            pull.listen(&format!("quic://{at}")).await.expect("listen");
            let rep = over_quic(spstack::rep0(), &t, idle);
            rep.listen(&format!("quic://{at_rep}"))
                .await
                .expect("listen");
            let r = rep.clone();
            tokio::spawn(async move {
                while let Ok(m) = r.recv().await {
                    let mut answer = b"re: ".to_vec();
                    answer.extend_from_slice(m.body());
                    if r.send(answer).await.is_err() {
                        break;
                    }
                }
            });
            (pull, rep)
        })
        .await;

    let faults = UdpFaults {
        loss: 0.05,
        delay: Duration::from_millis(50),
        jitter: Duration::from_millis(20),
        duplicate: 0.02,
    };
    const N: u32 = 600;
    let t = tls.clone();
    let (proxies, push, req) = client
        .run(async move {
            let p1 = UdpProxy::start(at, faults, 1).await;
            let p2 = UdpProxy::start(at_rep, faults, 2).await;
            let push = over_quic(spstack::push0(), &t, idle);
            within(30, "dial through the proxy", push.dial(&p1.url()))
                .await
                .expect("dial");
            let req = over_quic(spstack::req0(), &t, idle);
            within(30, "dial through the proxy", req.dial(&p2.url()))
                .await
                .expect("dial");
            (vec![p1, p2], push, req)
        })
        .await;

    let p = push.clone();
    let sender = client.spawn(async move {
        for i in 0..N {
            p.send(numbered(i)).await.expect("send");
        }
    });
    let pl = pull.clone();
    let got = server
        .run(async move {
            let mut got = Vec::with_capacity(N as usize);
            for _ in 0..N {
                let m = within(60, "the next message", pl.recv())
                    .await
                    .expect("recv");
                got.push(m.body().to_vec());
            }
            got
        })
        .await;
    within(60, "the sender", sender).await.expect("sender");
    for (i, body) in got.iter().enumerate() {
        assert_eq!(body, &numbered(i as u32), "message {i} in order, intact");
    }
    // nothing more than the N: no duplicate reached the application
    let pl = pull.clone();
    let extra = server
        .run(async move {
            tokio::time::timeout(Duration::from_millis(500), pl.recv())
                .await
                .ok()
        })
        .await;
    assert!(extra.is_none(), "a message beyond the {N}: {extra:?}");
    assert_eq!(pull.stats().pipes_opened, 1, "one pipe all along");
    assert_eq!(push.stats().total_drops(), 0, "{}", push.stats());

    let r = req.clone();
    client
        .run(async move {
            for i in 0..20u32 {
                let q = format!("q{i}");
                r.send(q.clone()).await.expect("request");
                let a = within(30, "a reply", r.recv()).await.expect("reply");
                assert_eq!(a.body(), format!("re: {q}").as_bytes());
            }
        })
        .await;
    assert_eq!(
        rep.stats().msgs_in,
        20,
        "each request reached the server once"
    );

    let lost: u64 = proxies.iter().map(|p| p.stats.lost.load(SeqCst)).sum();
    let dup: u64 = proxies
        .iter()
        .map(|p| p.stats.duplicated.load(SeqCst))
        .sum();
    let fwd: u64 = proxies.iter().map(|p| p.stats.forwarded.load(SeqCst)).sum();
    eprintln!("udp proxy: {fwd} forwarded, {lost} lost, {dup} duplicated");
    assert!(lost >= 10, "the link lost datagrams ({lost} of {fwd})");
    assert!(dup >= 3, "the link duplicated datagrams ({dup} of {fwd})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_rides_out_a_short_blackout_and_gives_up_a_long_one() {
    let _g = serial().await;
    let net = Net::new("quicbo");
    let s = net.segment();
    let (sh, ch) = (net.host("server", &[s]), net.host("client", &[s]));
    let (server, client) = (Node::start(&sh, "server"), Node::start(&ch, "client"));
    let tls = tls();
    let at = SocketAddr::from((sh.addr(s), PORT));
    // short enough that the long blackout outlasts it, long enough that the
    // short one (and a loaded machine) does not
    let idle = Duration::from_secs(4);

    let t = tls.clone();
    let pull = server
        .run(async move {
            let pull = over_quic(spstack::pull0(), &t, idle);
            pull.listen(&format!("quic://{at}")).await.expect("listen");
            pull
        })
        .await;
    let t = tls.clone();
    let (proxy, push) = client
        .run(async move {
            let p = UdpProxy::start(at, UdpFaults::NONE, 3).await;
            let push = over_quic(spstack::push0(), &t, idle);
            within(30, "dial", push.dial(&p.url())).await.expect("dial");
            (p, push)
        })
        .await;
    let first_pipe = {
        let pl = pull.clone();
        eventually(10, "one pipe", move || pl.pipes(), |p| p.len() == 1).await[0]
    };

    let send = |what: &'static str| {
        let p = push.clone();
        client.run(async move {
            within(30, "send", p.send(what)).await.expect("send");
        })
    };
    let recv = || {
        let pl = pull.clone();
        server.run(async move { within(30, "recv", pl.recv()).await.expect("recv") })
    };

    // a short blackout: sent during it, delivered after it, same pipe
    send("before").await;
    assert_eq!(recv().await.body(), b"before");
    proxy.blackout.store(true, SeqCst);
    send("during").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    proxy.blackout.store(false, SeqCst);
    let m = recv().await;
    assert_eq!(m.body(), b"during");
    assert_eq!(m.pipe(), Some(first_pipe), "the same pipe carried it");
    assert_eq!(pull.stats().pipes_closed, 0, "{}", pull.stats());
    assert!(proxy.stats.blacked_out.load(SeqCst) > 0);

    // a long blackout: both sides give the pipe up; the dialer redials
    // once the link is back, and the new pipe carries traffic
    proxy.blackout.store(true, SeqCst);
    let pl = pull.clone();
    eventually(
        idle.as_secs() * 4,
        "the listener closes the silent pipe",
        move || pl.stats().pipes_closed,
        |n| *n >= 1,
    )
    .await;
    let ps = push.clone();
    eventually(
        idle.as_secs() * 4,
        "the dialer closes the silent pipe",
        move || ps.stats().pipes_closed,
        |n| *n >= 1,
    )
    .await;
    proxy.blackout.store(false, SeqCst);
    send("after").await;
    let m = recv().await;
    assert_eq!(m.body(), b"after");
    assert_ne!(m.pipe(), Some(first_pipe), "a new pipe after the redial");
}

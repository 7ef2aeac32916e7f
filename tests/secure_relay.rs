//! The seed's scenario, end to end: REQ client → device → device → REP
//! server, every hop Noise-encrypted with its own keys, requests and replies
//! signed end to end with Ed25519.
//!
//! ```text
//! client ─hop1─ [dev1 front | dev1 back] ─hop2─ [dev2 front | dev2 back] ─hop3─ server
//! ```
//!
//! A recording proxy sits on every hop so the test can look at (and attack)
//! the ciphertext. Device 2 is a hand-written forwarder that can flip a byte
//! or inject messages: a compromised relay.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sp_crypto::integrity::{Integrity, IntegrityConfig, IntegrityStats};
use sp_crypto::keys::SigningKeypair;
use sp_crypto::noise::{self, NoiseConfig, StaticKeypair};
use spstack::wiretap::{share_run, Dir, Rewrite, Wiretap as Proxy};
use spstack::{Message, Options, PipeEvent, Protocol, RejectReason, Socket, SocketBuilder};

/// The audience both ends sign for.
const SERVICE: &str = "payments";

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .unwrap_or_else(|_| panic!("{what}: no result within 10 s"))
}

/// A hop layer for `me` admitting only `peer`.
fn hop(b: SocketBuilder, me: &StaticKeypair, peer: &StaticKeypair) -> SocketBuilder {
    b.pipe_layer(noise::layer(
        NoiseConfig::new(me.clone()).allow(peer.public()),
    ))
}

struct Keys {
    client: StaticKeypair,
    dev1_front: StaticKeypair,
    dev1_back: StaticKeypair,
    dev2_front: StaticKeypair,
    dev2_back: StaticKeypair,
    server: StaticKeypair,
    client_signer: SigningKeypair,
    server_signer: SigningKeypair,
}

impl Keys {
    fn new() -> Keys {
        Keys {
            client: StaticKeypair::generate(),
            dev1_front: StaticKeypair::generate(),
            dev1_back: StaticKeypair::generate(),
            dev2_front: StaticKeypair::generate(),
            dev2_back: StaticKeypair::generate(),
            server: StaticKeypair::generate(),
            client_signer: SigningKeypair::generate(),
            server_signer: SigningKeypair::generate(),
        }
    }
}

struct Chain {
    keys: Keys,
    client: Socket,
    client_stats: IntegrityStats,
    server: Socket,
    server_stats: IntegrityStats,
    dev1_front: Socket,
    dev2_front: Socket,
    dev2_back: Socket,
    /// hop1 (client→dev1), hop2 (dev1→dev2), hop3 (dev2→server)
    proxies: [Proxy; 3],
    /// Device 2 flips the last body byte of each request while set.
    tamper: Arc<AtomicBool>,
}

/// Builds the chain; `rewrite_hop1` lets the proxy on hop 1 alter announcements.
async fn chain(rewrite_hop1: Option<Rewrite>) -> Chain {
    chain_with(rewrite_hop1, Options::default()).await
}

/// The chain with `client_opts` on the client's REQ.
async fn chain_with(rewrite_hop1: Option<Rewrite>, client_opts: Options) -> Chain {
    let keys = Keys::new();
    // the server: REP, trusts only the client's signing key, admits only dev2's back
    let server_integrity = Integrity::replier(
        IntegrityConfig::new(
            keys.server_signer.clone(),
            [keys.client_signer.verifying_key()],
            SERVICE,
        )
        .unwrap(),
    );
    let server_stats = server_integrity.stats();
    let server = hop(spstack::rep0(), &keys.server, &keys.dev2_back)
        .message_layer(server_integrity)
        .build();
    let s_ep = server.listen("tcp://127.0.0.1:0").await.unwrap();
    let p3 = Proxy::start(s_ep.url(), None).await.unwrap();

    // device 2: raw REP front (admits dev1's back), raw REQ back (talks to the server)
    let dev2_front = hop(
        spstack::raw(Protocol::Rep0),
        &keys.dev2_front,
        &keys.dev1_back,
    )
    .build();
    let d2_ep = dev2_front.listen("tcp://127.0.0.1:0").await.unwrap();
    let dev2_back = hop(spstack::raw(Protocol::Req0), &keys.dev2_back, &keys.server).build();
    dev2_back.dial(&p3.url).await.unwrap();
    let p2 = Proxy::start(d2_ep.url(), None).await.unwrap();
    let tamper = Arc::new(AtomicBool::new(false));
    tokio::spawn(compromised_forwarder(
        dev2_front.clone(),
        dev2_back.clone(),
        tamper.clone(),
    ));

    // device 1: the library's device
    let dev1_front = hop(spstack::raw(Protocol::Rep0), &keys.dev1_front, &keys.client).build();
    let d1_ep = dev1_front.listen("tcp://127.0.0.1:0").await.unwrap();
    let dev1_back = hop(
        spstack::raw(Protocol::Req0),
        &keys.dev1_back,
        &keys.dev2_front,
    )
    .build();
    dev1_back.dial(&p2.url).await.unwrap();
    let p1 = Proxy::start(d1_ep.url(), rewrite_hop1).await.unwrap();
    {
        let (f, b) = (dev1_front.clone(), dev1_back.clone());
        tokio::spawn(async move { spstack::device(&f, &b).await });
    }

    // the client: REQ, trusts only the server's signing key
    // it sends its requests to that server only
    let client_integrity = Integrity::requester(
        IntegrityConfig::new(
            keys.client_signer.clone(),
            [keys.server_signer.verifying_key()],
            SERVICE,
        )
        .unwrap()
        .answered_by([keys.server_signer.verifying_key()]),
    );
    let client_stats = client_integrity.stats();
    let client = hop(spstack::req0(), &keys.client, &keys.dev1_front)
        .options(client_opts)
        .message_layer(client_integrity)
        .build();
    client.dial_background(&p1.url).unwrap();

    Chain {
        keys,
        client,
        client_stats,
        server,
        server_stats,
        dev1_front,
        dev2_front,
        dev2_back,
        proxies: [p1, p2, p3],
        tamper,
    }
}

/// Device 2's forwarding loops, with a switch to flip a body byte.
async fn compromised_forwarder(front: Socket, back: Socket, tamper: Arc<AtomicBool>) {
    let (f, b) = (front.clone(), back.clone());
    let up = async move {
        while let Ok(m) = f.recv().await {
            // a device that rewrites what it forwards (the body is what the
            // integrity layer signed; the header is this hop's backtrace)
            let mut m = {
                let mut copy = Message::from(m.body());
                copy.set_header(m.header());
                copy
            };
            if tamper.load(Ordering::Relaxed) {
                if let Some(last) = m.body_mut().last_mut() {
                    *last ^= 1;
                }
            }
            if b.send(m).await.is_err() {
                break;
            }
        }
    };
    let down = async move {
        while let Ok(mut m) = back.recv().await {
            m.set_pipe(None);
            if front.send(m).await.is_err() {
                break;
            }
        }
    };
    tokio::join!(up, down);
}

/// Serves requests: replies "re: <request>".
fn serve(server: &Socket) {
    let s = server.clone();
    tokio::spawn(async move {
        while let Ok(m) = s.recv().await {
            let reply = [b"re: ".as_slice(), m.body()].concat();
            if s.send(reply).await.is_err() {
                break;
            }
        }
    });
}

async fn ask(c: &Chain, what: &str) -> String {
    c.client.send(what).await.unwrap();
    let r = within("reply", c.client.recv()).await.unwrap();
    String::from_utf8(r.body().to_vec()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_arrive_verified_and_hops_share_no_ciphertext() {
    let c = chain(None).await;
    serve(&c.server);
    for i in 0..5 {
        let q = format!(
            "request {i}: the same words travel every hop, padded to be long enough to compare"
        );
        assert_eq!(ask(&c, &q).await, format!("re: {q}"));
    }
    assert_eq!(c.server_stats.verified(), 5);
    assert_eq!(c.client_stats.verified(), 5);
    assert_eq!(c.server_stats.total_dropped(), 0);

    // every pipe knows its peer's verified static key
    let key_of = |s: &Socket| {
        let p = s.pipes()[0];
        s.pipe_info(p).unwrap().peer_identity.clone().unwrap()
    };
    assert_eq!(key_of(&c.dev1_front), c.keys.client.public().to_vec());
    assert_eq!(key_of(&c.dev2_front), c.keys.dev1_back.public().to_vec());
    assert_eq!(key_of(&c.server), c.keys.dev2_back.public().to_vec());

    // the same request on hop 1, 2 and 3: the data frames (after the
    // handshake) have no 16-byte run in common
    let data = |p: &Proxy| {
        let f = p.frames_of(0, Dir::Up);
        assert!(
            f.len() >= 2 + 5,
            "handshake plus 5 requests, got {}",
            f.len()
        );
        f[f.len() - 5..].to_vec()
    };
    let (h1, h2, h3) = (
        data(&c.proxies[0]),
        data(&c.proxies[1]),
        data(&c.proxies[2]),
    );
    for i in 0..5 {
        assert!(h1[i].len() > 64, "frame {i} too short to compare");
        assert!(!share_run(&h1[i], &h2[i], 16), "hop 1 and 2 correlate");
        assert!(!share_run(&h2[i], &h3[i], 16), "hop 2 and 3 correlate");
        assert!(!share_run(&h1[i], &h3[i], 16), "hop 1 and 3 correlate");
        // and the plaintext is nowhere on the wire
        assert!(!share_run(&h1[i], b"the same words travel every hop", 16));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_flipping_one_body_byte_gets_the_message_dropped_and_counted() {
    let c = chain(None).await;
    serve(&c.server);
    assert_eq!(ask(&c, "before").await, "re: before");
    c.tamper.store(true, Ordering::Relaxed);
    c.client.send("tampered on the way").await.unwrap();
    // the server drops it: no reply comes back
    assert!(
        tokio::time::timeout(Duration::from_millis(800), c.client.recv())
            .await
            .is_err(),
        "a tampered request was answered"
    );
    assert_eq!(c.server_stats.bad_signature(), 1);
    assert_eq!(c.server_stats.verified(), 1);
    c.tamper.store(false, Ordering::Relaxed);
    // a fresh request on a fresh context goes through
    let mut ctx = c.client.context();
    ctx.send("after").await.unwrap();
    let r = within("reply after tampering", ctx.recv()).await.unwrap();
    assert_eq!(r.body(), b"re: after");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_cannot_sign() {
    let c = chain(None).await;
    serve(&c.server);
    assert_eq!(ask(&c, "hello").await, "re: hello");
    // device 2 makes up a request: unsigned, then signed with its own key
    let forger = Integrity::requester(
        IntegrityConfig::new(
            SigningKeypair::generate(),
            Vec::<ed25519_dalek::VerifyingKey>::new(),
            SERVICE,
        )
        .unwrap(),
    )
    .on_protocol(spstack::ProtocolId::REQ0);
    let forged = forger.sign_message(b"pay the device").unwrap();
    for body in [b"unsigned order".to_vec(), forged.to_vec()] {
        let mut m = Message::from(body);
        m.push_header_u32(0x8000_0001);
        c.dev2_back.send(m).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(c.server_stats.unsigned(), 1);
    assert_eq!(c.server_stats.unknown_signer(), 1);
    assert_eq!(c.server_stats.verified(), 1, "only the client's request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_hop_frame_closes_that_pipe_and_the_chain_recovers() {
    // a request device 1 forwards before it notices that hop 2 closed is
    // written into the closing connection and lost there, as on any SP
    // stack: the client's resend is what recovers it, so it resends soon
    let c = chain_with(
        None,
        Options::default().req_resend(Some(Duration::from_secs(1))),
    )
    .await;
    serve(&c.server);
    let mut events = c.dev2_front.pipe_events();
    assert_eq!(ask(&c, "one").await, "re: one");
    let captured = c.proxies[1].frames_of(0, Dir::Up).last().cloned().unwrap();
    c.proxies[1].inject_up(&captured).await.unwrap();
    // device 2's pipe from device 1 closes
    within("pipe removed", async {
        loop {
            if let Ok(PipeEvent::RemovePost(..)) = events.recv().await {
                break;
            }
        }
    })
    .await;
    assert_eq!(c.server_stats.verified(), 1, "the replay delivered nothing");
    // device 1 redials through the proxy and the chain works again
    let mut ctx = c.client.context();
    ctx.send("two").await.unwrap();
    let r = within("reply after the replay", ctx.recv()).await.unwrap();
    assert_eq!(r.body(), b"re: two");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_with_an_unlisted_key_never_gets_a_message_in() {
    let c = chain(None).await;
    serve(&c.server);
    assert_eq!(ask(&c, "listed").await, "re: listed");
    // an intruder that knows device 1's public key but is not on its list
    let intruder = hop(
        spstack::req0(),
        &StaticKeypair::generate(),
        &c.keys.dev1_front,
    )
    .build();
    intruder.dial_background(&c.proxies[0].url).unwrap();
    let _ = intruder.send("let me in").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(c.dev1_front.stats().rejects(RejectReason::LayerFailed) >= 1);
    assert_eq!(c.dev1_front.pipes().len(), 1, "only the client's pipe");
    // the listed client keeps working meanwhile
    let mut ctx = c.client.context();
    ctx.send("still here").await.unwrap();
    let r = within("listed peer", ctx.recv()).await.unwrap();
    assert_eq!(r.body(), b"re: still here");
    assert_eq!(c.server_stats.verified(), 2);
}

/// Flips one byte of the dialer's announcement on hop 1.
fn flip_up(at: fn(&[u8]) -> usize) -> Rewrite {
    Arc::new(move |dir: Dir, ann: &mut Vec<u8>| {
        if dir == Dir::Up {
            let i = at(ann);
            ann[i] ^= 0x01;
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_protocol_id_or_layer_list_fails_the_handshake() {
    // byte 5: the low byte of the protocol id; the last byte: in the layer list
    for (what, at) in [
        ("protocol id", (|_: &[u8]| 5) as fn(&[u8]) -> usize),
        ("layer list", |a: &[u8]| a.len() - 1),
    ] {
        let c = chain(Some(flip_up(at))).await;
        serve(&c.server);
        // with no pipe a REQ send waits for one: it must still be waiting
        let attempt = async {
            c.client.send("must not pass").await?;
            c.client.recv().await
        };
        assert!(
            tokio::time::timeout(Duration::from_millis(800), attempt)
                .await
                .is_err(),
            "{what}: a request passed a tampered handshake"
        );
        let s = c.dev1_front.stats();
        let refused = s.rejects(RejectReason::ProtocolMismatch)
            + s.rejects(RejectReason::LayerMismatch)
            + s.rejects(RejectReason::LayerFailed);
        assert!(refused >= 1, "{what}: device 1 refused nothing");
        assert!(c.dev1_front.pipes().is_empty(), "{what}: a pipe opened");
        assert_eq!(c.server_stats.verified(), 0);
    }
}

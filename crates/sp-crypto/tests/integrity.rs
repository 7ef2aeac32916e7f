//! The integrity layer end to end over TCP: REQ/REP and PUSH/PULL with the
//! layer on both ends, devices in between (one that forwards, and hostile
//! ones that alter, re-sign, replay and swap), and every refusal counted
//! while the stream goes on.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sp_core::{Error, Message, ProtocolId, Socket, SocketBuilder};
use sp_crypto::integrity::{
    Integrity, IntegrityConfig, IntegrityCounts, IntegrityStats, RecordFields, RecordKind,
    SignedTrailer, Signer, TRAILER_LEN,
};
use sp_crypto::keys::{SigningKeypair, TrustedSigners};
use sp_protocols::{raw, Plain, Rep0, Req0};

const LIMIT: Duration = Duration::from_secs(10);
const AUDIENCE: &str = "billing";

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

fn transports(mut b: SocketBuilder) -> SocketBuilder {
    for t in sp_transports::defaults() {
        b = b.transport(t);
    }
    b
}

fn req() -> SocketBuilder {
    transports(SocketBuilder::new(raw::Req0Raw)).cooked(Req0)
}
fn rep() -> SocketBuilder {
    transports(SocketBuilder::new(raw::Rep0Raw)).cooked(Rep0)
}
fn push() -> SocketBuilder {
    transports(SocketBuilder::new(raw::Push0Raw)).cooked(Plain::PUSH0)
}
fn pull() -> SocketBuilder {
    transports(SocketBuilder::new(raw::Pull0Raw)).cooked(Plain::PULL0)
}

/// Two parties that trust each other (and nobody else).
struct Keys {
    client: SigningKeypair,
    server: SigningKeypair,
}

impl Keys {
    fn new() -> Keys {
        Keys {
            client: SigningKeypair::generate(),
            server: SigningKeypair::generate(),
        }
    }
    fn trusted(&self) -> TrustedSigners {
        TrustedSigners::from_keys([self.client.verifying_key(), self.server.verifying_key()])
            .unwrap()
    }
    fn cfg(&self, me: &SigningKeypair) -> IntegrityConfig {
        IntegrityConfig::new(me.clone(), self.trusted(), AUDIENCE).unwrap()
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A msg_id per seq, never all zeros (a request's must be set).
fn msg_id_of(seq: u64) -> [u8; 16] {
    let mut id = [0x5a; 16];
    id[8..].copy_from_slice(&seq.to_be_bytes());
    id
}

/// One-way fields as a PUSH signs them for a PULL.
fn fields(seq: u64, timestamp_ms: u64) -> RecordFields {
    RecordFields {
        kind: RecordKind::OneWay,
        protocol: ProtocolId::PUSH0,
        peer_protocol: ProtocolId::PULL0,
        to: None,
        msg_id: msg_id_of(seq),
        epoch: 0xfeed,
        seq,
        timestamp_ms,
        valid_for_ms: 0,
        in_reply_to: None,
    }
}

/// A verifying PULL listening on tcp, and its counters.
async fn verifying_pull(keys: &Keys) -> (Socket, IntegrityStats, String) {
    let layer = Integrity::new(keys.cfg(&keys.server));
    let stats = layer.stats();
    let s = pull().message_layer(layer).build();
    let ep = s.listen("tcp://127.0.0.1:0").await.unwrap();
    (s, stats, ep.url().to_string())
}

/// A PUSH with no layer: sends whatever bytes the test forges.
async fn plain_push(url: &str) -> Socket {
    let s = push().build();
    within("plain push dials", s.dial(url)).await.unwrap();
    s
}

/// A signing PUSH.
async fn signing_push(keys: &Keys, url: &str) -> (Socket, IntegrityStats) {
    let layer = Integrity::new(keys.cfg(&keys.client));
    let stats = layer.stats();
    let s = push().message_layer(layer).build();
    within("signing push dials", s.dial(url)).await.unwrap();
    (s, stats)
}

async fn recv_body(s: &Socket) -> Vec<u8> {
    within("recv", s.recv()).await.unwrap().body().to_vec()
}

/// A middle hop between two raw sockets: what `front` receives goes to
/// `back` after `edit(index, body)` (which returns the bodies to send in
/// its place: none, one, or several).
fn forward(
    front: Socket,
    back: Socket,
    edit: impl Fn(usize, Vec<u8>) -> Vec<Vec<u8>> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut i = 0;
        while let Ok(m) = front.raw().recv().await {
            for body in edit(i, m.body().to_vec()) {
                let mut out = Message::from(body);
                out.push_header(m.header());
                if back.raw().send(out).await.is_err() {
                    return;
                }
            }
            i += 1;
        }
    })
}

/// signing PUSH → raw PULL | edit | raw PUSH → verifying PULL, all over tcp.
struct Chain {
    sender: Socket,
    sender_stats: IntegrityStats,
    receiver: Socket,
    receiver_stats: IntegrityStats,
    _hop: tokio::task::JoinHandle<()>,
}

/// A raw middle hop: `front` listens (its URL is returned), `back` dials
/// `upstream`. The caller decides what passes between them.
async fn raw_hop(
    front: impl sp_core::Routing,
    back: impl sp_core::Routing,
    upstream: &str,
) -> (Socket, Socket, String) {
    let front = transports(SocketBuilder::new(front)).build();
    let back = transports(SocketBuilder::new(back)).build();
    let front_url = front
        .listen("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .url()
        .to_string();
    within("the hop dials upstream", back.dial(upstream))
        .await
        .unwrap();
    (front, back, front_url)
}

async fn chain(
    keys: &Keys,
    edit: impl Fn(usize, Vec<u8>) -> Vec<Vec<u8>> + Send + 'static,
) -> Chain {
    let (receiver, receiver_stats, url) = verifying_pull(keys).await;
    let (front, back, front_url) = raw_hop(raw::Pull0Raw, raw::Push0Raw, &url).await;
    let hop = forward(front, back, edit);
    let (sender, sender_stats) = signing_push(keys, &front_url).await;
    Chain {
        sender,
        sender_stats,
        receiver,
        receiver_stats,
        _hop: hop,
    }
}

#[tokio::test]
async fn push_pull_over_tcp_verifies_and_strips_the_trailer() {
    let keys = Keys::new();
    let (pull, pull_stats, url) = verifying_pull(&keys).await;
    let (push, push_stats) = signing_push(&keys, &url).await;
    for i in 0..20 {
        let body = format!("job {i}");
        // new_message reserves the layer's declared tailroom
        let mut m = push.new_message(body.len());
        m.body_mut().copy_from_slice(body.as_bytes());
        within("send", push.send(m)).await.unwrap();
        assert_eq!(recv_body(&pull).await, body.as_bytes());
    }
    assert_eq!(push_stats.signed(), 20);
    let s = pull_stats.snapshot();
    assert_eq!(
        s,
        IntegrityCounts {
            verified: 20,
            ..IntegrityCounts::default()
        },
        "nothing dropped, everything verified"
    );
    assert!(push.overhead().trailer >= TRAILER_LEN);
    assert_eq!(push.new_message(3).tailroom(), push.overhead().trailer);
}

#[tokio::test]
async fn describe_decodes_the_integrity_trailer() {
    let keys = Keys::new();
    let (pull, _, _url) = verifying_pull(&keys).await;
    let signer = Signer::new(keys.client.clone(), AUDIENCE).unwrap();
    let body = signer.sign_with(&fields(77, now_ms()), b"payload");
    let mut frame = (body.len() as u64).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    let d = pull.describe("tcp", &frame).unwrap();
    assert_eq!(d.error, None, "{d}");
    assert_eq!(d.field("seq").unwrap().bytes, 77u64.to_be_bytes());
    assert_eq!(
        d.field("signer_key_id").unwrap().bytes,
        keys.client.key_id().as_bytes()
    );
    assert_eq!(d.field("signature").unwrap().bytes.len(), 64);
    // the trailer is the end of the frame; the payload follows the length prefix
    assert_eq!(
        d.field("version").unwrap().offset,
        frame.len() - TRAILER_LEN
    );
    assert_eq!(d.body, b"payload");
}

fn echo_server(rep: Socket) {
    let svc = tower::service_fn(|m: Message| async move {
        let mut v = b"echo:".to_vec();
        v.extend_from_slice(m.body());
        Ok::<_, Error>(Message::from(v))
    });
    tokio::spawn(sp_protocols::rep::serve(rep, svc, 4));
}

async fn signed_server(keys: &Keys) -> (Socket, IntegrityStats, String) {
    let layer = Integrity::replier(keys.cfg(&keys.server));
    let stats = layer.stats();
    let s = rep().message_layer(layer).build();
    let url = s
        .listen("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .url()
        .to_string();
    echo_server(s.clone());
    (s, stats, url)
}

async fn signed_client(keys: &Keys, url: &str) -> (Socket, IntegrityStats) {
    let layer = Integrity::requester(keys.cfg(&keys.client));
    let stats = layer.stats();
    let s = req().message_layer(layer).build();
    within("client dials", s.dial(url)).await.unwrap();
    (s, stats)
}

#[tokio::test]
async fn req_rep_over_tcp_replies_arrive_and_verify_on_many_contexts() {
    let keys = Keys::new();
    let (_rep, rep_stats, url) = signed_server(&keys).await;
    let (req, req_stats) = signed_client(&keys, &url).await;
    // contexts share one sequence and one replay window: run them at once
    let mut tasks = Vec::new();
    for c in 0..8 {
        let ctx = req.context();
        tasks.push(tokio::spawn(async move {
            for i in 0..5 {
                let q = format!("c{c} q{i}");
                ctx.send(q.as_str()).await.unwrap();
                let r = ctx.recv().await.unwrap();
                assert_eq!(r.body(), format!("echo:{q}").as_bytes());
            }
        }));
    }
    for t in tasks {
        within("context round trips", t).await.unwrap();
    }
    assert_eq!(req_stats.signed(), 40);
    assert_eq!(rep_stats.verified(), 40);
    assert_eq!(rep_stats.signed(), 40);
    assert_eq!(req_stats.verified(), 40);
    assert_eq!(req_stats.total_dropped() + rep_stats.total_dropped(), 0);
}

#[tokio::test]
async fn a_raw_device_passes_signatures_through() {
    let keys = Keys::new();
    let (_rep, rep_stats, url) = signed_server(&keys).await;
    let (front, back, front_url) = raw_hop(raw::Rep0Raw, raw::Req0Raw, &url).await;
    let (f, b) = (front.clone(), back.clone());
    tokio::spawn(async move { sp_core::device(&f, &b).await });
    let (req, req_stats) = signed_client(&keys, &front_url).await;
    for i in 0..10 {
        let q = format!("through the device {i}");
        within("send", req.send(q.as_str())).await.unwrap();
        let r = within("reply", req.recv()).await.unwrap();
        assert_eq!(r.body(), format!("echo:{q}").as_bytes());
    }
    // the device added and removed its routing words; nothing it touched was signed
    assert_eq!(rep_stats.verified(), 10);
    assert_eq!(req_stats.verified(), 10);
    assert_eq!(rep_stats.total_dropped() + req_stats.total_dropped(), 0);
}

#[tokio::test]
async fn a_flipped_body_byte_is_dropped_and_the_next_message_delivered() {
    let keys = Keys::new();
    let c = chain(&keys, |i, mut body| {
        if i == 0 {
            let last = body.len() - 1;
            body[last] ^= 0x20;
        }
        vec![body]
    })
    .await;
    within("send", c.sender.send("transfer 100")).await.unwrap();
    within("send", c.sender.send("transfer 200")).await.unwrap();
    // messages on one pipe keep their order: the first one was refused
    assert_eq!(recv_body(&c.receiver).await, b"transfer 200");
    let s = c.receiver_stats.snapshot();
    assert_eq!(s.bad_signature, 1, "{s:?}");
    assert_eq!(s.verified, 1);
    assert_eq!(s.total_dropped(), 1);
    assert_eq!(c.sender_stats.signed(), 2);
    // and where the application looks first: the socket's own counters
    let st = c.receiver.stats();
    assert_eq!(st.drops(sp_core::DropReason::Rejected), 1, "{st}");
}

#[tokio::test]
async fn a_device_that_signs_with_its_own_key_is_an_unknown_signer() {
    let keys = Keys::new();
    let device_key = SigningKeypair::generate();
    let device = Signer::new(device_key, AUDIENCE).unwrap();
    let c = chain(&keys, move |i, body| {
        if i == 0 {
            // strip the sender's signature, re-sign the payload as itself
            let payload = &body[..body.len() - TRAILER_LEN];
            return vec![device.sign_with(&fields(1, now_ms()), payload)];
        }
        vec![body]
    })
    .await;
    within("send", c.sender.send("first")).await.unwrap();
    within("send", c.sender.send("second")).await.unwrap();
    assert_eq!(recv_body(&c.receiver).await, b"second");
    let s = c.receiver_stats.snapshot();
    assert_eq!(
        (s.unknown_signer, s.verified, s.total_dropped()),
        (1, 1, 1),
        "{s:?}"
    );
}

#[tokio::test]
async fn an_exact_replay_of_a_captured_message_is_dropped() {
    let keys = Keys::new();
    let c = chain(&keys, |i, body| {
        if i == 0 {
            // deliver it, then replay the captured bytes twice
            return vec![body.clone(), body.clone(), body];
        }
        vec![body]
    })
    .await;
    within("send", c.sender.send("pay once")).await.unwrap();
    within("send", c.sender.send("next")).await.unwrap();
    assert_eq!(recv_body(&c.receiver).await, b"pay once");
    assert_eq!(recv_body(&c.receiver).await, b"next");
    let s = c.receiver_stats.snapshot();
    assert_eq!(
        (s.replayed, s.verified, s.total_dropped()),
        (2, 2, 2),
        "{s:?}"
    );
}

#[tokio::test]
async fn unsigned_and_malformed_messages_are_dropped() {
    let keys = Keys::new();
    let (pull, stats, url) = verifying_pull(&keys).await;
    let p = plain_push(&url).await;
    let good = Signer::new(keys.client.clone(), AUDIENCE)
        .unwrap()
        .sign_with(&fields(1, now_ms()), b"good");
    within("send", p.send("hello, no signature")).await.unwrap();
    within("send", p.send(vec![0u8; TRAILER_LEN + 10]))
        .await
        .unwrap(); // version 0
    within("send", p.send(Vec::new())).await.unwrap();
    within("send", p.send(&good[..TRAILER_LEN - 1]))
        .await
        .unwrap(); // too short
                   // last byte cut: the trailer would start at b'd', not version 1
    within("send", p.send(&good[..good.len() - 1]))
        .await
        .unwrap();
    // the old layout (the block in front of the payload) is not accepted
    let zeros = [0u8; 200];
    let mut old = Signer::new(keys.client.clone(), AUDIENCE)
        .unwrap()
        .sign_with(&fields(2, now_ms()), &zeros);
    old.rotate_right(TRAILER_LEN);
    within("send", p.send(old)).await.unwrap();
    within("send", p.send(good.clone())).await.unwrap();
    assert_eq!(recv_body(&pull).await, b"good");
    let s = stats.snapshot();
    assert_eq!(
        (s.unsigned, s.verified, s.total_dropped()),
        (6, 1, 6),
        "{s:?}"
    );
}

#[tokio::test]
async fn stale_and_future_timestamps_are_dropped() {
    let keys = Keys::new();
    let (pull, stats, url) = verifying_pull(&keys).await;
    let p = plain_push(&url).await;
    let signer = Signer::new(keys.client.clone(), AUDIENCE).unwrap();
    let now = now_ms();
    within(
        "send",
        p.send(signer.sign_with(&fields(1, now - 60_000), b"old")),
    )
    .await
    .unwrap();
    within(
        "send",
        p.send(signer.sign_with(&fields(2, now + 60_000), b"future")),
    )
    .await
    .unwrap();
    within("send", p.send(signer.sign_with(&fields(3, now), b"fresh")))
        .await
        .unwrap();
    assert_eq!(recv_body(&pull).await, b"fresh");
    let s = stats.snapshot();
    assert_eq!((s.stale, s.verified, s.total_dropped()), (2, 1, 2), "{s:?}");
}

#[tokio::test]
async fn a_message_for_another_audience_does_not_verify() {
    let keys = Keys::new();
    let (pull, stats, url) = verifying_pull(&keys).await;
    let p = plain_push(&url).await;
    let other = Signer::new(keys.client.clone(), "shipping").unwrap();
    let ours = Signer::new(keys.client.clone(), AUDIENCE).unwrap();
    within("send", p.send(other.sign_with(&fields(1, now_ms()), b"x")))
        .await
        .unwrap();
    within("send", p.send(ours.sign_with(&fields(2, now_ms()), b"y")))
        .await
        .unwrap();
    assert_eq!(recv_body(&pull).await, b"y");
    assert_eq!(stats.bad_signature(), 1);
}

#[tokio::test]
async fn an_old_reply_replayed_to_a_new_request_is_unbound() {
    let keys = Keys::new();
    let (_rep, rep_stats, url) = signed_server(&keys).await;
    // a hand-written REQ/REP device that keeps the first reply and, for the
    // second request, sends it back instead of the real one (the SP header
    // it routes by is the new request's; the signed body is the old reply's)
    let (front, back, front_url) = raw_hop(raw::Rep0Raw, raw::Req0Raw, &url).await;
    let (f, b) = (front.clone(), back.clone());
    tokio::spawn(async move {
        while let Ok(mut m) = f.raw().recv().await {
            m.set_pipe(None);
            if b.raw().send(m).await.is_err() {
                return;
            }
        }
    });
    let (f, b) = (front.clone(), back.clone());
    tokio::spawn(async move {
        let mut first: Option<Vec<u8>> = None;
        let mut n = 0;
        while let Ok(m) = b.raw().recv().await {
            let body = match (&first, n) {
                (None, _) => {
                    first = Some(m.body().to_vec());
                    m.body().to_vec()
                }
                (Some(old), 1) => old.clone(),
                _ => m.body().to_vec(),
            };
            n += 1;
            let mut out = Message::from(body);
            out.push_header(m.header());
            if f.raw().send(out).await.is_err() {
                return;
            }
        }
    });
    let (req, req_stats) = signed_client(&keys, &front_url).await;
    within("send 1", req.send("first")).await.unwrap();
    assert_eq!(
        within("reply 1", req.recv()).await.unwrap().body(),
        b"echo:first"
    );
    within("send 2", req.send("second")).await.unwrap();
    let r2 = within("reply 2", req.recv()).await;
    match r2 {
        Err(Error::Layer { layer, reason }) => {
            assert_eq!(layer, "integrity/2");
            assert!(reason.contains("unbound_reply"), "{reason}");
        }
        other => panic!("the old reply must not be delivered: {other:?}"),
    }
    // the context goes on: the next request gets its own reply
    within("send 3", req.send("third")).await.unwrap();
    assert_eq!(
        within("reply 3", req.recv()).await.unwrap().body(),
        b"echo:third"
    );
    let s = req_stats.snapshot();
    assert_eq!(
        (s.unbound_reply, s.verified, s.total_dropped()),
        (1, 2, 1),
        "{s:?}"
    );
    assert_eq!(rep_stats.verified(), 3);
}

#[tokio::test]
async fn a_reply_from_an_untrusted_server_is_refused() {
    let keys = Keys::new();
    // the server signs with a key the client does not trust
    let rogue = SigningKeypair::generate();
    let trusted_by_rogue = TrustedSigners::from_keys([keys.client.verifying_key()]).unwrap();
    let layer =
        Integrity::replier(IntegrityConfig::new(rogue, trusted_by_rogue, AUDIENCE).unwrap());
    let s = rep().message_layer(layer).build();
    let url = s
        .listen("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .url()
        .to_string();
    echo_server(s.clone());
    let (req, req_stats) = signed_client(&keys, &url).await;
    within("send", req.send("hi")).await.unwrap();
    let r = within("reply", req.recv()).await;
    assert!(matches!(r, Err(Error::Layer { .. })), "{r:?}");
    assert_eq!(req_stats.unknown_signer(), 1);
    assert_eq!(req_stats.verified(), 0);
}

#[tokio::test]
async fn sign_message_makes_a_message_a_receiver_accepts_once() {
    let keys = Keys::new();
    let (pull, stats, url) = verifying_pull(&keys).await;
    let p = plain_push(&url).await;
    let tool = Integrity::new(keys.cfg(&keys.client)).on_protocol(ProtocolId::PUSH0);
    let signed = tool.sign_message(b"from a tool").unwrap();
    assert_eq!(signed.body().len(), 11 + TRAILER_LEN);
    assert!(signed.body().starts_with(b"from a tool"));
    within("send", p.send(signed.to_vec())).await.unwrap();
    within("send", p.send(signed.to_vec())).await.unwrap();
    let next = tool.sign_message(b"next").unwrap();
    within("send", p.send(next.to_vec())).await.unwrap();
    assert_eq!(recv_body(&pull).await, b"from a tool");
    assert_eq!(recv_body(&pull).await, b"next");
    let s = stats.snapshot();
    assert_eq!((s.verified, s.replayed), (2, 1), "{s:?}");
    assert_eq!(tool.stats().signed(), 2);
}

#[tokio::test]
async fn an_empty_trust_list_trusts_nobody() {
    let a = SigningKeypair::generate();
    let nobody = Integrity::new(IntegrityConfig::new(a.clone(), Vec::new(), AUDIENCE).unwrap());
    let nobody_stats = nobody.stats();
    let n = pull().message_layer(nobody).build();
    let n_url = n
        .listen("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .url()
        .to_string();
    // a message the signer itself would accept: refused, it trusts nobody
    let p = plain_push(&n_url).await;
    let tool =
        Integrity::new(IntegrityConfig::new(a.clone(), [a.verifying_key()], AUDIENCE).unwrap())
            .on_protocol(ProtocolId::PUSH0);
    within("send", p.send(tool.sign_message(b"x").unwrap().to_vec()))
        .await
        .unwrap();
    within("send", p.send(tool.sign_message(b"y").unwrap().to_vec()))
        .await
        .unwrap();
    within("refused", async {
        while nobody_stats.unknown_signer() < 2 {
            // recv runs the verification; nothing is ever delivered
            let r = tokio::time::timeout(Duration::from_millis(50), n.recv()).await;
            assert!(r.is_err(), "a message was delivered: {r:?}");
        }
    })
    .await;
    assert_eq!(nobody_stats.verified(), 0);
}

// ---------------------------------------------------------------------------
// role, protocol and resend (issue 10)
// ---------------------------------------------------------------------------

/// Waits (bounded) until `cond` holds.
async fn until(what: &str, cond: impl Fn() -> bool) {
    within(what, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

/// A REP that counts how often its handler runs (each run is an execution
/// of the request: a payment made twice is the bug).
async fn counting_server(keys: &Keys) -> (Socket, IntegrityStats, String, Arc<AtomicUsize>) {
    let layer = Integrity::replier(keys.cfg(&keys.server));
    let stats = layer.stats();
    let s = rep().message_layer(layer).build();
    let url = s
        .listen("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .url()
        .to_string();
    let runs = Arc::new(AtomicUsize::new(0));
    let n = runs.clone();
    let svc = tower::service_fn(move |m: Message| {
        n.fetch_add(1, Ordering::SeqCst);
        async move {
            let mut v = b"echo:".to_vec();
            v.extend_from_slice(m.body());
            Ok::<_, Error>(Message::from(v))
        }
    });
    tokio::spawn(sp_protocols::rep::serve(s.clone(), svc, 4));
    (s, stats, url, runs)
}

type Bodies = tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>;

/// client → [raw REP | raw REQ] → `upstream`: a device that forwards both
/// ways, drops the messages `drop_up` / `drop_down` say to (by index), and
/// hands the test every body it sees. Returns the front URL, the back
/// socket (to inject with), the replies and the requests.
async fn lossy_device(
    upstream: &str,
    drop_up: impl Fn(usize) -> bool + Send + 'static,
    drop_down: impl Fn(usize) -> bool + Send + 'static,
) -> (String, Socket, Bodies, Bodies) {
    let (front, back, front_url) = raw_hop(raw::Rep0Raw, raw::Req0Raw, upstream).await;
    let (f, b) = (front.clone(), back.clone());
    let (req_tx, req_rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut i = 0;
        while let Ok(mut m) = f.raw().recv().await {
            let lost = drop_up(i);
            i += 1;
            let _ = req_tx.send(m.body().to_vec());
            if lost {
                continue;
            }
            m.set_pipe(None);
            if b.raw().send(m).await.is_err() {
                return;
            }
        }
    });
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let (f, b) = (front.clone(), back.clone());
    tokio::spawn(async move {
        let mut i = 0;
        while let Ok(mut m) = b.raw().recv().await {
            let lost = drop_down(i);
            i += 1;
            let _ = tx.send(m.body().to_vec());
            if lost {
                continue;
            }
            m.set_pipe(None);
            if f.raw().send(m).await.is_err() {
                return;
            }
        }
    });
    (front_url, back, rx, req_rx)
}

/// `body` as a request on a raw REQ socket (a fresh request id).
fn as_request(body: Vec<u8>, id: u32) -> Message {
    let mut m = Message::from(body);
    m.push_header_u32(0x8000_0000 | id);
    m
}

#[tokio::test]
async fn a_reflected_reply_is_not_served_as_a_request() {
    let keys = Keys::new();
    // both ends trust both keys (one trust directory for the deployment)
    let (_rep, rep_stats, url, runs) = counting_server(&keys).await;
    let (front_url, back, mut replies, _) = lossy_device(&url, |_| false, |_| false).await;
    let (req, _) = signed_client(&keys, &front_url).await;
    within("send", req.send("pay 10 to bob")).await.unwrap();
    let r = within("reply", req.recv()).await.unwrap();
    assert_eq!(r.body(), b"echo:pay 10 to bob");
    // the device sends the signed reply back to the server as a request
    let reply = within("captured reply", replies.recv()).await.unwrap();
    within("reflect", back.raw().send(as_request(reply, 7)))
        .await
        .unwrap();
    until("the server has looked at the reflected reply", || {
        rep_stats.verified() + rep_stats.total_dropped() >= 2
    })
    .await;
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "the reflected reply was executed"
    );
    let s = rep_stats.snapshot();
    assert_eq!(
        (s.verified, s.misdirected, s.total_dropped()),
        (1, 1, 1),
        "{s:?}"
    );
}

#[tokio::test]
async fn a_signed_push_message_is_refused_by_a_rep() {
    let keys = Keys::new();
    let (_rep, rep_stats, url, runs) = counting_server(&keys).await;
    // the client's key signs a PUSH message for some PULL; a raw PULL
    // captures it as it would arrive there
    let capture = pull().build();
    let cap_url = capture
        .listen("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .url()
        .to_string();
    let (push, _) = signing_push(&keys, &cap_url).await;
    within("push", push.send("pay 10 to bob")).await.unwrap();
    let signed = within("captured", capture.raw().recv()).await.unwrap();
    // ... and replays it to the REP as a request
    let attacker = transports(SocketBuilder::new(raw::Req0Raw)).build();
    within("dial", attacker.dial(&url)).await.unwrap();
    within(
        "inject",
        attacker.raw().send(as_request(signed.body().to_vec(), 1)),
    )
    .await
    .unwrap();
    until("the server has looked at it", || {
        rep_stats.verified() + rep_stats.total_dropped() >= 1
    })
    .await;
    assert_eq!(
        runs.load(Ordering::SeqCst),
        0,
        "a PUSH message was executed as a request"
    );
    let s = rep_stats.snapshot();
    assert_eq!((s.misdirected, s.total_dropped()), (1, 1), "{s:?}");
}

/// A REP signing with `me`, trusting `trusted`, counting its runs.
async fn server_as(
    me: &SigningKeypair,
    trusted: &[&SigningKeypair],
) -> (IntegrityStats, String, Arc<AtomicUsize>) {
    let cfg = IntegrityConfig::new(
        me.clone(),
        trusted.iter().map(|k| k.verifying_key()),
        AUDIENCE,
    )
    .unwrap();
    let layer = Integrity::replier(cfg);
    let stats = layer.stats();
    let s = rep().message_layer(layer).build();
    let url = s
        .listen("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .url()
        .to_string();
    let runs = Arc::new(AtomicUsize::new(0));
    let n = runs.clone();
    let svc = tower::service_fn(move |m: Message| {
        n.fetch_add(1, Ordering::SeqCst);
        async move { Ok::<_, Error>(Message::from([b"echo:", m.body()].concat())) }
    });
    tokio::spawn(sp_protocols::rep::serve(s, svc, 2));
    (stats, url, runs)
}

#[tokio::test]
async fn a_reply_answered_by_a_server_other_than_the_bound_one_is_refused() {
    let client = SigningKeypair::generate();
    let (a, b) = (SigningKeypair::generate(), SigningKeypair::generate());
    // one trust list for the deployment: the client trusts both servers,
    // but its requests are for server A only
    let requester = |url: String| {
        let cfg = IntegrityConfig::new(
            client.clone(),
            [a.verifying_key(), b.verifying_key()],
            AUDIENCE,
        )
        .unwrap()
        .answered_by([a.verifying_key()]);
        let layer = Integrity::requester(cfg);
        let stats = layer.stats();
        let s = req().message_layer(layer).build();
        async move {
            within("dial", s.dial(&url)).await.unwrap();
            (s, stats)
        }
    };

    // 1. the request reaches server B (a device sent it there): an honest B
    // refuses it, it is addressed to A
    let (b_stats, b_url, b_runs) = server_as(&b, &[&client]).await;
    let (to_b, _) = requester(b_url).await;
    within("send", to_b.send("pay 10 to bob")).await.unwrap();
    until("B refused it", || b_stats.total_dropped() >= 1).await;
    assert_eq!(b_runs.load(Ordering::SeqCst), 0, "B executed A's request");
    assert_eq!(b_stats.misdirected(), 1);

    // 2. the request reaches A, and a device (or B, compromised) answers it
    // first with a reply signed by B's key, bound to the right request
    let (_a_stats, a_url, a_runs) = server_as(&a, &[&client]).await;
    let (front, back, front_url) = raw_hop(raw::Rep0Raw, raw::Req0Raw, &a_url).await;
    let (f, bk) = (front.clone(), back.clone());
    let forger = Signer::new(b.clone(), AUDIENCE).unwrap();
    let client_id = client.key_id().to_bytes();
    tokio::spawn(async move {
        while let Ok(m) = f.raw().recv().await {
            let Ok(t) = SignedTrailer::parse(m.body()) else {
                continue;
            };
            let fields = RecordFields {
                kind: RecordKind::Reply,
                protocol: ProtocolId::REP0,
                peer_protocol: ProtocolId::REQ0,
                to: Some(client_id),
                in_reply_to: Some(t.fields.msg_id),
                seq: t.fields.seq,
                timestamp_ms: now_ms(),
                valid_for_ms: 0,
                ..t.fields
            };
            let mut forged = Message::from(forger.sign_with(&fields, b"echo:paid"));
            forged.push_header(m.header());
            let _ = f.raw().send(forged).await;
            let mut m = m;
            m.set_pipe(None);
            let _ = bk.raw().send(m).await;
        }
    });
    let (f, bk) = (front.clone(), back.clone());
    tokio::spawn(async move {
        while let Ok(mut m) = bk.raw().recv().await {
            m.set_pipe(None);
            if f.raw().send(m).await.is_err() {
                return;
            }
        }
    });
    let (to_a, a_client_stats) = requester(front_url).await;
    within("send", to_a.send("pay 10 to bob")).await.unwrap();
    match within("reply", to_a.recv()).await {
        Err(Error::Layer { reason, .. }) => assert!(reason.contains("unbound_reply"), "{reason}"),
        other => panic!("B's reply must not be delivered: {other:?}"),
    }
    assert_eq!(a_client_stats.unbound_reply(), 1);
    assert_eq!(a_client_stats.verified(), 0);
    // A did run it (its own reply came second, after REQ had ended the
    // request on the forged one): the client was never told B's answer
    until("A ran it", || a_runs.load(Ordering::SeqCst) == 1).await;
}
#[tokio::test]
async fn a_resent_request_verifies_and_is_answered_once() {
    let keys = Keys::new();
    let (_rep, rep_stats, url, runs) = counting_server(&keys).await;
    // the first request and the first reply are lost on the way
    let (front_url, _back, _replies, _) = lossy_device(&url, |i| i == 0, |i| i == 0).await;
    let layer = Integrity::requester(keys.cfg(&keys.client));
    let req_stats = layer.stats();
    let req = req()
        .with_options(|o| o.req_resend(Some(Duration::from_millis(200))))
        .message_layer(layer)
        .build();
    within("dial", req.dial(&front_url)).await.unwrap();
    within("send", req.send("pay 10 to bob")).await.unwrap();
    let r = within("the one reply", req.recv()).await.unwrap();
    assert_eq!(r.body(), b"echo:pay 10 to bob");
    assert_eq!(runs.load(Ordering::SeqCst), 1, "executed more than once");
    assert_eq!(req_stats.verified(), 1);
    // the context goes on as usual
    within("send", req.send("next")).await.unwrap();
    assert_eq!(
        within("reply", req.recv()).await.unwrap().body(),
        b"echo:next"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    assert_eq!(rep_stats.verified(), 2);
}

#[tokio::test]
async fn a_request_resent_after_max_age_still_verifies_and_runs_once() {
    // REQ resends later than max_age (as by default: 60 s against 30 s),
    // scaled down; the first request is lost
    let keys = Keys::new();
    let max_age = Duration::from_secs(1);
    let resend = Duration::from_millis(1500);
    let layer = Integrity::replier(keys.cfg(&keys.server).max_age(max_age));
    let rep_stats = layer.stats();
    let s = rep().message_layer(layer).build();
    let url = s
        .listen("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .url()
        .to_string();
    let runs = Arc::new(AtomicUsize::new(0));
    let n = runs.clone();
    let svc = tower::service_fn(move |m: Message| {
        n.fetch_add(1, Ordering::SeqCst);
        async move { Ok::<_, Error>(Message::from([b"echo:", m.body()].concat())) }
    });
    tokio::spawn(sp_protocols::rep::serve(s, svc, 2));
    let (front_url, _back, _replies, _requests) = lossy_device(&url, |i| i == 0, |_| false).await;
    let layer = Integrity::requester(keys.cfg(&keys.client).max_age(max_age));
    let req_stats = layer.stats();
    let req = req()
        .with_options(|o| o.req_resend(Some(resend)))
        .message_layer(layer)
        .build();
    within("dial", req.dial(&front_url)).await.unwrap();
    within("send", req.send("pay 10 to bob")).await.unwrap();
    let r = within("reply", req.recv()).await.unwrap();
    assert_eq!(r.body(), b"echo:pay 10 to bob");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(req_stats.verified(), 1);
    let s = rep_stats.snapshot();
    assert_eq!((s.verified, s.stale), (1, 0), "{s:?}");
}

#[tokio::test]
async fn a_captured_request_replayed_later_is_not_run_again() {
    let keys = Keys::new();
    let (_rep, rep_stats, url, runs) = counting_server(&keys).await;
    let (front_url, _back, _replies, mut requests) = lossy_device(&url, |_| false, |_| false).await;
    let (req, _) = signed_client(&keys, &front_url).await;
    within("send", req.send("pay 10 to bob")).await.unwrap();
    let r = within("reply", req.recv()).await.unwrap();
    assert_eq!(r.body(), b"echo:pay 10 to bob");
    // whoever captured the request replays it, from a connection of its own
    let captured = within("captured", requests.recv()).await.unwrap();
    let attacker = transports(SocketBuilder::new(raw::Req0Raw)).build();
    within("dial", attacker.dial(&url)).await.unwrap();
    for id in [1, 2] {
        within(
            "replay",
            attacker.raw().send(as_request(captured.clone(), id)),
        )
        .await
        .unwrap();
        // it gets the reply the client got (signed anew, for the client),
        // nothing new is run
        let again = within("the kept reply", attacker.raw().recv())
            .await
            .unwrap();
        assert!(again.body().starts_with(b"echo:pay 10 to bob"));
    }
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "a replayed request ran again"
    );
    let s = rep_stats.snapshot();
    assert_eq!(
        (s.verified, s.duplicate, s.reanswered, s.replayed),
        (1, 2, 2, 0),
        "{s:?}"
    );
}

#[tokio::test]
async fn a_raw_rep_with_the_layer_answers_a_resend_on_the_resent_requests_route() {
    let keys = Keys::new();
    // a raw REP with the layer: the application routes replies itself, by
    // the backtrace each request arrives with
    let layer = Integrity::replier(keys.cfg(&keys.server));
    let rep_stats = layer.stats();
    let s = transports(SocketBuilder::new(raw::Rep0Raw))
        .message_layer(layer)
        .build();
    let url = s
        .listen("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .url()
        .to_string();
    let runs = Arc::new(AtomicUsize::new(0));
    let (srv, n) = (s.clone(), runs.clone());
    tokio::spawn(async move {
        while let Ok(m) = srv.recv().await {
            n.fetch_add(1, Ordering::SeqCst);
            let mut r = Message::from([b"echo:", m.body()].concat());
            r.push_header(m.header());
            r.set_pipe(m.pipe());
            if srv.send(r).await.is_err() {
                return;
            }
        }
    });
    // the first reply is lost
    let (front_url, _back, _replies, _) = lossy_device(&url, |_| false, |i| i == 0).await;
    let layer = Integrity::requester(keys.cfg(&keys.client));
    let req = req()
        .with_options(|o| o.req_resend(Some(Duration::from_millis(200))))
        .message_layer(layer)
        .build();
    within("dial", req.dial(&front_url)).await.unwrap();
    within("send", req.send("pay 10 to bob")).await.unwrap();
    let r = within("reply", req.recv()).await.unwrap();
    assert_eq!(r.body(), b"echo:pay 10 to bob");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert!(rep_stats.reanswered() >= 1);
}

// ---------------------------------------------------------------- batches
//
// A one-way receiver verifies the signatures of the messages that are ready
// together as one batch. These run the layer on an in-memory stream, so
// which messages form a batch is certain, not up to TCP's timing.

mod batches {
    use super::*;
    use curve25519_dalek::scalar::Scalar;
    use futures::{FutureExt, StreamExt};
    use sha2::{Digest, Sha512};
    use sp_core::layer::{LayerHandle, MessageLayer};
    use sp_core::{DropReason, MessageIo};
    use sp_crypto::integrity::encode_record;

    /// The receiving half of a PULL's layer over `incoming`, its counters,
    /// and the socket counters the layer was attached to.
    fn receiver(
        keys: &Keys,
        batch: bool,
        incoming: impl futures::Stream<Item = sp_core::Result<Message>> + Send + 'static,
    ) -> (sp_core::BoxStream, IntegrityStats, LayerHandle) {
        let layer = Integrity::new(keys.cfg(&keys.server).batch_verification(batch))
            .on_protocol(ProtocolId::PULL0);
        let handle = LayerHandle::detached("integrity/2");
        layer.attach(&handle);
        let stats = layer.stats();
        let sink = futures::sink::drain().sink_map_err(|_| Error::ConnectionClosed);
        let io = tower::Layer::layer(&layer, MessageIo::new(Box::pin(sink), Box::pin(incoming)));
        (io.rx, stats, handle)
    }

    use futures::SinkExt as _;

    /// Body `[i; 8]` signed by the client as its PUSH would.
    fn signed(keys: &Keys, i: u8) -> Vec<u8> {
        keys.cfg(&keys.client)
            .signer()
            .sign_with(&fields(u64::from(i), now_ms()), &[i; 8])
    }

    /// The secret scalar a of an Ed25519 key (A = aB), as RFC 8032 derives it.
    fn secret_scalar(key: &SigningKeypair) -> Scalar {
        let h = Sha512::digest(&key.to_bytes()[..]);
        let mut a = [0u8; 32];
        a.copy_from_slice(&h[..32]);
        a[0] &= 248;
        a[31] &= 127;
        a[31] |= 64;
        Scalar::from_bytes_mod_order(a)
    }

    /// Message `i` signed by the client's key with these R bytes and
    /// S = H(R || A || record)·a: the group equation holds for any R that
    /// decodes to the identity, which `verify_strict` refuses (small order,
    /// or not canonically encoded) and the bare batch equation accepts.
    fn with_identity_r(keys: &Keys, i: u8, r: [u8; 32]) -> Vec<u8> {
        let f = fields(u64::from(i), now_ms());
        let mut record = Vec::new();
        encode_record(
            &mut record,
            keys.client.key_id().as_bytes(),
            AUDIENCE.as_bytes(),
            &f,
            &[i; 8],
        );
        let mut h = Sha512::new();
        h.update(r);
        h.update(keys.client.verifying_key().as_bytes());
        h.update(&record);
        let k = Scalar::from_bytes_mod_order_wide(&h.finalize().into());
        let mut signature = [0u8; 64];
        signature[..32].copy_from_slice(&r);
        signature[32..].copy_from_slice(&(k * secret_scalar(&keys.client)).to_bytes());
        let mut wire = signed(keys, i);
        let at = wire.len() - TRAILER_LEN;
        let mut t = SignedTrailer::parse(&wire).unwrap();
        t.fields = f;
        t.signature = signature;
        wire[at..].copy_from_slice(&t.to_bytes());
        wire
    }

    fn identity() -> [u8; 32] {
        let mut r = [0u8; 32];
        r[0] = 1;
        r
    }

    /// Everything the stream yields until it ends, without waiting.
    fn drain(rx: &mut sp_core::BoxStream) -> Vec<sp_core::Result<Message>> {
        let mut out = Vec::new();
        while let Some(Some(m)) = rx.next().now_or_never() {
            out.push(m);
        }
        out
    }

    fn bodies(got: &[sp_core::Result<Message>]) -> Vec<u8> {
        got.iter()
            .map(|m| m.as_ref().expect("a message").body()[0])
            .collect()
    }

    #[test]
    fn one_bad_signature_in_a_batch_is_dropped_and_counted_and_the_rest_delivered_in_order() {
        let keys = Keys::new();
        let mut identity_unreduced = [0xffu8; 32];
        identity_unreduced[0] = 0xee; // y = p + 1
        identity_unreduced[31] = 0x7f;
        let mut identity_signed = identity();
        identity_signed[31] |= 0x80;
        let forged = |i| {
            let mut w = signed(&keys, i);
            let at = w.len() - 20;
            w[at] ^= 0x01; // in S
            w
        };
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("a forged signature", forged(3)),
            ("a small-order R", with_identity_r(&keys, 3, identity())),
            (
                "R = identity with the sign bit",
                with_identity_r(&keys, 3, identity_signed),
            ),
            (
                "a non-canonical R",
                with_identity_r(&keys, 3, identity_unreduced),
            ),
        ];
        for batch in [true, false] {
            for (what, bad) in &cases {
                let mut wires: Vec<Vec<u8>> = (0..7).map(|i| signed(&keys, i)).collect();
                wires[3] = bad.clone();
                let incoming =
                    futures::stream::iter(wires.into_iter().map(|w| Ok(Message::from(w))));
                let (mut rx, stats, _) = receiver(&keys, batch, incoming);
                let got = drain(&mut rx);
                assert_eq!(bodies(&got), [0, 1, 2, 4, 5, 6], "{what} (batch {batch})");
                let c = stats.snapshot();
                assert_eq!(
                    (c.bad_signature, c.verified, c.total_dropped()),
                    (1, 6, 1),
                    "{what} (batch {batch})"
                );
                // batched, the seven formed one batch equation (failed for
                // the forgery, then each checked alone; passed for the six
                // others when the strict checks refused R first): the
                // answers above are the batch's, not a one-by-one path's
                assert_eq!(stats.batches(), u64::from(batch), "{what} (batch {batch})");
            }
        }
    }

    #[test]
    fn every_kind_of_refusal_in_one_batch_is_counted_in_its_own_counter() {
        let keys = Keys::new();
        let stranger = SigningKeypair::generate();
        let mut wires: Vec<Vec<u8>> = (0..8).map(|i| signed(&keys, i)).collect();
        wires[1] = b"not signed".to_vec();
        wires[2] = IntegrityConfig::new(stranger, keys.trusted(), AUDIENCE)
            .unwrap()
            .signer()
            .sign_with(&fields(2, now_ms()), &[2; 8]);
        wires[4] = wires[0].clone(); // a replay of message 0, in the same batch
        wires[6] = keys
            .cfg(&keys.client)
            .signer()
            .sign_with(&fields(6, now_ms() - 3_600_000), &[6; 8]);
        let incoming = futures::stream::iter(wires.into_iter().map(|w| Ok(Message::from(w))));
        let (mut rx, stats, _) = receiver(&keys, true, incoming);
        assert_eq!(bodies(&drain(&mut rx)), [0, 3, 5, 7]);
        let c = stats.snapshot();
        assert_eq!(
            (
                c.unsigned,
                c.unknown_signer,
                c.replayed,
                c.stale,
                c.bad_signature,
                c.verified
            ),
            (1, 1, 1, 1, 0, 4)
        );
    }

    #[test]
    fn one_ready_message_is_delivered_without_waiting_for_more() {
        let keys = Keys::new();
        let incoming = futures::stream::iter([Ok(Message::from(signed(&keys, 9)))])
            .chain(futures::stream::pending());
        let (mut rx, stats, _) = receiver(&keys, true, incoming);
        let m = rx.next().now_or_never().expect("delivered at once");
        assert_eq!(m.expect("some").expect("verified").body(), [9; 8]);
        assert!(rx.next().now_or_never().is_none(), "then it waits");
        assert_eq!(stats.verified(), 1);
    }

    #[test]
    fn an_error_below_comes_after_the_messages_that_preceded_it() {
        let keys = Keys::new();
        let incoming = futures::stream::iter([
            Ok(Message::from(signed(&keys, 0))),
            Ok(Message::from(signed(&keys, 1))),
            Err(Error::ConnectionClosed),
            Ok(Message::from(signed(&keys, 2))),
        ]);
        let (mut rx, _, _) = receiver(&keys, true, incoming);
        let got = drain(&mut rx);
        assert_eq!(bodies(&got[..2]), [0, 1]);
        assert!(
            matches!(got[2], Err(Error::ConnectionClosed)),
            "{:?}",
            got[2]
        );
        assert_eq!(bodies(&got[3..]), [2]);
    }

    #[test]
    fn after_a_failed_batch_the_next_messages_are_verified_one_by_one() {
        // 64 messages per batch: the first batch holds a forgery and fails,
        // the next 64 are verified alone (no batch equation), then batches
        // resume: a sender of bad signatures cannot make every batch fail
        // and be verified twice
        let keys = Keys::new();
        let mut wires: Vec<Vec<u8>> = (0..192u32).map(|i| signed(&keys, i as u8)).collect();
        let at = wires[3].len() - 20;
        wires[3][at] ^= 1;
        let incoming = futures::stream::iter(wires.into_iter().map(|w| Ok(Message::from(w))));
        let (mut rx, stats, _) = receiver(&keys, true, incoming);
        let got = drain(&mut rx);
        assert_eq!(got.len(), 191);
        assert_eq!(
            (stats.batches(), stats.bad_signature(), stats.verified()),
            (2, 1, 191)
        );
    }

    #[test]
    fn verified_messages_dropped_undelivered_are_counted_as_closed() {
        let keys = Keys::new();
        let wires: Vec<_> = (0..5)
            .map(|i| Ok(Message::from(signed(&keys, i))))
            .collect();
        let incoming = futures::stream::iter(wires).chain(futures::stream::pending());
        let (mut rx, stats, handle) = receiver(&keys, true, incoming);
        let first = rx.next().now_or_never().expect("ready").expect("some");
        assert_eq!(first.expect("verified").body(), [0; 8]);
        drop(rx);
        assert_eq!(stats.verified(), 1, "delivered");
        assert_eq!(handle.counters().snapshot().drops(DropReason::Closed), 4);
    }
}

//! The Noise pipe layer end to end: real sockets over tcp and ipc, a raw
//! TCP peer for hostile handshakes, and a man-in-the-middle proxy that
//! rewrites announcements and replays, flips, truncates and reorders frames.
//!
//! Every network wait is bounded by `WAIT`; "nothing arrives" checks use a
//! short `QUIET` window and assert on counters, never on timing.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sp_core::layer::{ComponentInfo, Handshake, Overhead, PipeLayer};
use sp_core::{
    Announcement, BoxFuture, Connection, Message, Options, PipeEvent, ProtocolId, RejectReason,
    Result, Socket, SocketBuilder,
};
use sp_crypto::noise::{self, NoiseConfig, Padding, Pattern, StaticKeypair};
use sp_protocols::{raw, Bus0Raw, Plain, Rep0, Req0};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);
const QUIET: Duration = Duration::from_millis(300);

#[derive(Clone, Copy)]
enum Proto {
    Pair0,
    Bus0,
    Req0,
    Rep0,
    Push0,
    Pull0,
}

fn builder(p: Proto) -> SocketBuilder {
    let b = match p {
        Proto::Pair0 => SocketBuilder::new(raw::Pair0Raw).cooked(Plain::PAIR0),
        Proto::Bus0 => SocketBuilder::new(Bus0Raw).cooked(Plain::BUS0),
        Proto::Req0 => SocketBuilder::new(raw::Req0Raw).cooked(Req0),
        Proto::Rep0 => SocketBuilder::new(raw::Rep0Raw).cooked(Rep0),
        Proto::Push0 => SocketBuilder::new(raw::Push0Raw).cooked(Plain::PUSH0),
        Proto::Pull0 => SocketBuilder::new(raw::Pull0Raw).cooked(Plain::PULL0),
    };
    b.transport(Arc::new(sp_transports::Tcp))
        .transport(Arc::new(sp_transports::Ipc))
}

fn opts() -> Options {
    Options::default()
        .reconnect_min(Duration::from_millis(50))
        .reconnect_max(Duration::from_millis(200))
}

fn sock(p: Proto, cfg: NoiseConfig) -> Socket {
    builder(p)
        .pipe_layer(noise::layer(cfg))
        .options(opts())
        .build()
}

fn sock_opts(p: Proto, cfg: NoiseConfig, o: Options) -> Socket {
    builder(p).pipe_layer(noise::layer(cfg)).options(o).build()
}

/// Two keypairs that allow each other.
fn mutual() -> (NoiseConfig, NoiseConfig) {
    let (a, b) = (StaticKeypair::generate(), StaticKeypair::generate());
    let (pa, pb) = (a.public(), b.public());
    (NoiseConfig::new(a).allow(pb), NoiseConfig::new(b).allow(pa))
}

fn ipc_url(name: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let p = std::env::temp_dir().join(format!(
        "spcrypto-noise-{}-{name}-{}.ipc",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_file(&p);
    format!("ipc://{}", p.display())
}

fn payload(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 9) as u8)
        .collect()
}

async fn recv(s: &Socket) -> Message {
    timeout(WAIT, s.recv())
        .await
        .expect("timed out waiting for a message")
        .expect("recv")
}

async fn send(s: &Socket, m: impl Into<Message>) {
    timeout(WAIT, s.send(m))
        .await
        .expect("timed out sending")
        .expect("send");
}

/// Asserts nothing is delivered within the quiet window.
async fn nothing_arrives(s: &Socket) {
    if let Ok(Ok(m)) = timeout(QUIET, s.recv()).await {
        panic!("a message of {} bytes was delivered", m.len());
    }
}

/// Waits (bounded) until `f(stats)` holds.
async fn until(s: &Socket, what: &str, f: impl Fn(&sp_core::Stats) -> bool) {
    let r = timeout(WAIT, async {
        while !f(&s.stats()) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(
        r.is_ok(),
        "timed out waiting for {what}; stats: {}",
        s.stats()
    );
}

async fn wait_pipe(s: &Socket) {
    let r = timeout(WAIT, async {
        while s.pipes().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(r.is_ok(), "no pipe joined; stats: {}", s.stats());
}

// ------------------------------------------------------------------------
// 1. round trips
// ------------------------------------------------------------------------

const SIZES: [usize; 6] = [0, 1, 65519, 65520, 200 << 10, 1 << 20];

async fn round_trip_sizes(url: &str) {
    let (cs, cc) = mutual();
    let (server_pub, client_pub) = (cs.public_key(), cc.public_key());
    let server = sock(Proto::Pair0, cs);
    let mut events = server.pipe_events();
    let ep = timeout(WAIT, server.listen(url))
        .await
        .expect("listen timed out")
        .expect("listen");
    let client = sock(Proto::Pair0, cc);
    timeout(WAIT, client.dial(ep.url()))
        .await
        .expect("dial timed out")
        .expect("dial");

    // identity in the AddPost event and in pipe_info, on both sides
    let ev = timeout(WAIT, events.recv())
        .await
        .expect("no pipe event")
        .expect("event");
    match ev {
        PipeEvent::AddPost(_, info) => {
            assert_eq!(info.peer_identity.as_deref(), Some(&client_pub[..]))
        }
        other => panic!("expected AddPost, got {other:?}"),
    }
    wait_pipe(&server).await;
    wait_pipe(&client).await;
    let sp = server.pipes()[0];
    let cp = client.pipes()[0];
    assert_eq!(
        server.pipe_info(sp).expect("info").peer_identity.as_deref(),
        Some(&client_pub[..])
    );
    assert_eq!(
        client.pipe_info(cp).expect("info").peer_identity.as_deref(),
        Some(&server_pub[..])
    );

    for (i, n) in SIZES.into_iter().enumerate() {
        let up = payload(n, i as u8);
        send(&client, up.clone()).await;
        let got = recv(&server).await;
        assert_eq!(got.body().len(), n);
        assert!(got.body() == &up[..], "client->server {n} bytes differ");
        let down = payload(n, 100 + i as u8);
        send(&server, down.clone()).await;
        let got = recv(&client).await;
        assert!(got.body() == &down[..], "server->client {n} bytes differ");
    }
    assert_eq!(server.stats().total_rejects(), 0, "{}", server.stats());
    assert_eq!(client.stats().total_rejects(), 0, "{}", client.stats());
    client.close();
    server.close();
}

#[tokio::test]
async fn xx_round_trip_tcp() {
    round_trip_sizes("tcp://127.0.0.1:0").await;
}

#[tokio::test]
async fn xx_round_trip_ipc() {
    round_trip_sizes(&ipc_url("rt")).await;
}

#[tokio::test]
async fn ik_round_trip_and_wrong_pin() {
    let (sk, ck, other) = (
        StaticKeypair::generate(),
        StaticKeypair::generate(),
        StaticKeypair::generate(),
    );
    let (spub, cpub) = (sk.public(), ck.public());
    let rep = sock(
        Proto::Rep0,
        NoiseConfig::new(sk).pattern(Pattern::IK).allow(cpub),
    );
    let ep = rep.listen("tcp://127.0.0.1:0").await.expect("listen");
    let req = sock(
        Proto::Req0,
        NoiseConfig::new(ck.clone())
            .pattern(Pattern::IK)
            .remote_static(spub),
    );
    req.dial(ep.url()).await.expect("dial");
    for i in 0..3u8 {
        let body = payload(150 << 10, i);
        send(&req, body.clone()).await;
        let got = recv(&rep).await;
        assert!(got.body() == &body[..]);
        send(&rep, got.body()[..1000].to_vec()).await;
        assert_eq!(recv(&req).await.body(), &body[..1000]);
    }
    wait_pipe(&req).await;
    let info = req.pipe_info(req.pipes()[0]).expect("info");
    assert_eq!(info.peer_identity.as_deref(), Some(&spub[..]));
    assert_eq!(
        noise::layer(NoiseConfig::new(StaticKeypair::generate()).pattern(Pattern::IK))
            .info()
            .name,
        "noise-ik/3"
    );

    // a dialer pinned to another key cannot complete the handshake
    let wrong = sock(
        Proto::Req0,
        NoiseConfig::new(ck)
            .pattern(Pattern::IK)
            .remote_static(other.public()),
    );
    let _ = wrong.dial(ep.url()).await;
    until(&rep, "the listener to refuse the mispinned dialer", |s| {
        s.rejects(RejectReason::LayerFailed) >= 1
    })
    .await;
    assert!(wrong.pipes().is_empty());
    // and an IK dialer without a pin is told what to do
    let unpinned = sock(
        Proto::Req0,
        NoiseConfig::new(StaticKeypair::generate())
            .pattern(Pattern::IK)
            .accept_any_key(),
    );
    let err = unpinned
        .dial(ep.url())
        .await
        .expect_err("IK dial without a pin");
    assert!(err.to_string().contains("remote_static"), "{err}");
}

#[tokio::test]
async fn xx_and_ik_peers_do_not_mix() {
    let (a, b) = mutual();
    let server = sock(Proto::Pair0, a.pattern(Pattern::XX));
    let ep = server.listen("tcp://127.0.0.1:0").await.expect("listen");
    let client = sock(Proto::Pair0, b.pattern(Pattern::IK).remote_static([9; 32]));
    let err = client.dial(ep.url()).await.expect_err("pattern mismatch");
    assert!(err.to_string().contains("noise"), "{err}");
    until(&server, "a layer mismatch", |s| {
        s.rejects(RejectReason::LayerMismatch) >= 1
    })
    .await;
}

// ------------------------------------------------------------------------
// 2. allow-list
// ------------------------------------------------------------------------

#[tokio::test]
async fn empty_allow_list_admits_nobody() {
    let server = sock(Proto::Pair0, NoiseConfig::new(StaticKeypair::generate()));
    let ep = server.listen("tcp://127.0.0.1:0").await.expect("listen");
    let client = sock(
        Proto::Pair0,
        NoiseConfig::new(StaticKeypair::generate()).accept_any_key(),
    );
    let _ = client.dial(ep.url()).await;
    until(&server, "the listener to refuse the key", |s| {
        s.rejects(RejectReason::LayerFailed) >= 1
    })
    .await;
    let _ = timeout(QUIET, client.send("knock knock")).await;
    nothing_arrives(&server).await;
    assert!(server.pipes().is_empty());
    assert_eq!(server.stats().pipes_opened, 0);

    // the listener's error says what to do (seen from the dialing side of
    // a listener that refuses, here reversed: the dialer refuses)
    let picky = sock(Proto::Pair0, NoiseConfig::new(StaticKeypair::generate()));
    let open = sock(
        Proto::Pair0,
        NoiseConfig::new(StaticKeypair::generate()).accept_any_key(),
    );
    let ep2 = open.listen("tcp://127.0.0.1:0").await.expect("listen");
    let err = picky.dial(ep2.url()).await.expect_err("refused");
    let msg = err.to_string();
    assert!(msg.contains("not in the allow-list"), "{msg}");
    assert!(msg.contains("NoiseConfig::allow"), "{msg}");
}

#[tokio::test]
async fn unlisted_key_never_gets_a_message_in_while_a_listed_one_works() {
    let (sk, good, bad) = (
        StaticKeypair::generate(),
        StaticKeypair::generate(),
        StaticKeypair::generate(),
    );
    let spub = sk.public();
    let pull = sock(Proto::Pull0, NoiseConfig::new(sk).allow(good.public()));
    let ep = pull.listen("tcp://127.0.0.1:0").await.expect("listen");
    let intruder = sock(Proto::Push0, NoiseConfig::new(bad).accept_any_key());
    let _ = intruder.dial(ep.url()).await;
    let friend = sock(Proto::Push0, NoiseConfig::new(good).allow(spub));
    friend.dial(ep.url()).await.expect("dial");
    for i in 0..20u32 {
        // the intruder's sends may block or vanish; they must never arrive
        let _ = timeout(
            Duration::from_millis(20),
            intruder.send(format!("bad {i}").into_bytes()),
        )
        .await;
        send(&friend, format!("good {i}").into_bytes()).await;
    }
    for i in 0..20u32 {
        let m = recv(&pull).await;
        assert_eq!(m.body(), format!("good {i}").as_bytes());
    }
    nothing_arrives(&pull).await;
    assert!(pull.stats().rejects(RejectReason::LayerFailed) >= 1);
    assert_eq!(pull.pipes().len(), 1);
}

#[tokio::test]
async fn accept_any_key_admits_and_exposes_the_key() {
    let (sk, ck) = (StaticKeypair::generate(), StaticKeypair::generate());
    let (spub, cpub) = (sk.public(), ck.public());
    let server = sock(Proto::Pair0, NoiseConfig::new(sk).accept_any_key());
    let ep = server.listen("tcp://127.0.0.1:0").await.expect("listen");
    let client = sock(Proto::Pair0, NoiseConfig::new(ck).allow(spub));
    client.dial(ep.url()).await.expect("dial");
    send(&client, "hi").await;
    assert_eq!(recv(&server).await.body(), b"hi");
    let info = server.pipe_info(server.pipes()[0]).expect("info");
    assert_eq!(info.peer_identity.as_deref(), Some(&cpub[..]));
}

// ------------------------------------------------------------------------
// A raw SP/TCP peer and a man-in-the-middle proxy
// ------------------------------------------------------------------------

/// Reads one announcement (fixed 8 bytes, then the layer list if any).
async fn read_announcement<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<Vec<u8>> {
    let mut h = [0u8; 8];
    r.read_exact(&mut h).await?;
    let mut out = h.to_vec();
    if h[3] == 1 {
        let mut l = [0u8; 2];
        r.read_exact(&mut l).await?;
        let n = u16::from_be_bytes(l) as usize;
        if n > 1024 {
            return Err(std::io::Error::other("layer list too long"));
        }
        let mut list = vec![0u8; n];
        r.read_exact(&mut list).await?;
        out.extend_from_slice(&l);
        out.extend_from_slice(&list);
    }
    Ok(out)
}

fn parse_announcement(b: &[u8]) -> Announcement {
    let fixed: [u8; 8] = b[..8].try_into().expect("8 bytes");
    let (protocol, ext) = Announcement::parse_fixed(&fixed).expect("valid header");
    let layers = if ext {
        Announcement::parse_layers(&b[10..]).expect("valid layer list")
    } else {
        vec![]
    };
    Announcement { protocol, layers }
}

async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<Vec<u8>> {
    let mut l = [0u8; 8];
    r.read_exact(&mut l).await?;
    let n = u64::from_be_bytes(l);
    if n > 16 << 20 {
        return Err(std::io::Error::other("frame too large for the proxy"));
    }
    let mut f = vec![0u8; n as usize];
    r.read_exact(&mut f).await?;
    Ok(f)
}

async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, f: &[u8]) -> std::io::Result<()> {
    w.write_all(&(f.len() as u64).to_be_bytes()).await?;
    w.write_all(f).await
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dir {
    /// Dialer to listener.
    Up,
    /// Listener to dialer.
    Down,
}

type AnnRewrite = Arc<dyn Fn(Dir, Announcement) -> Announcement + Send + Sync>;
/// Frame `i` of a direction in, frames out (drop, duplicate, alter, hold).
type Tamper = Box<dyn FnMut(usize, Vec<u8>) -> Vec<Vec<u8>> + Send>;

struct Proxy {
    url: String,
    /// Sizes of the frames seen, per direction, in order.
    sizes: Arc<Mutex<Vec<(Dir, usize)>>>,
}

/// A proxy for one connection to `upstream` (a tcp:// URL).
async fn proxy(upstream: &str, ann: AnnRewrite, up: Tamper, down: Tamper) -> Proxy {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("tcp://{}", l.local_addr().expect("addr"));
    let target = upstream.trim_start_matches("tcp://").to_string();
    let sizes = Arc::new(Mutex::new(Vec::new()));
    let log = sizes.clone();
    tokio::spawn(async move {
        // exactly one connection: reconnects after a closed pipe are refused
        let Ok((client, _)) = l.accept().await else {
            return;
        };
        drop(l);
        let Ok(server) = TcpStream::connect(target).await else {
            return;
        };
        let (cr, cw) = client.into_split();
        let (sr, sw) = server.into_split();
        let a = tokio::spawn(pump(cr, sw, Dir::Up, ann.clone(), up, log.clone()));
        let b = tokio::spawn(pump(sr, cw, Dir::Down, ann, down, log));
        let _ = tokio::join!(a, b);
    });
    Proxy { url, sizes }
}

async fn pump<R, W>(
    mut r: R,
    mut w: W,
    dir: Dir,
    ann: AnnRewrite,
    mut tamper: Tamper,
    log: Arc<Mutex<Vec<(Dir, usize)>>>,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let work = async {
        let a = read_announcement(&mut r).await?;
        let a = ann(dir, parse_announcement(&a)).encode();
        w.write_all(&a).await?;
        for i in 0.. {
            let f = read_frame(&mut r).await?;
            log.lock().expect("log").push((dir, f.len()));
            for out in tamper(i, f) {
                write_frame(&mut w, &out).await?;
            }
        }
        Ok::<(), std::io::Error>(())
    };
    let _ = timeout(Duration::from_secs(60), work).await;
    let _ = w.shutdown().await;
}

fn same() -> AnnRewrite {
    Arc::new(|_, a| a)
}

fn pass() -> Tamper {
    Box::new(|_, f| vec![f])
}

// ------------------------------------------------------------------------
// 3. man in the middle
// ------------------------------------------------------------------------

/// A no-op pipe layer with a given name, to make layer lists differ.
struct Named(&'static str);
impl Handshake for Named {
    fn info(&self) -> ComponentInfo {
        ComponentInfo::new(self.0, Overhead::NONE)
    }
    fn handshake(&self, conn: Connection) -> BoxFuture<'static, Result<Connection>> {
        Box::pin(async move { Ok(conn) })
    }
}

/// The control experiment: without Noise the same rewrite fools the
/// stack-wide peer check and the pipe opens.
async fn rewrite_fools_the_peer_check(server: Socket, client: Socket, ann: AnnRewrite) {
    let ep = server.listen("tcp://127.0.0.1:0").await.expect("listen");
    let px = proxy(ep.url(), ann, pass(), pass()).await;
    timeout(WAIT, client.dial(&px.url))
        .await
        .expect("dial timed out")
        .expect("without Noise the rewritten announcements are accepted");
    wait_pipe(&server).await;
}

/// Both sides see the peer they expect, but the prologues differ.
async fn consistent_rewrite_fails(server: Socket, client: Socket, ann: AnnRewrite) {
    let ep = server.listen("tcp://127.0.0.1:0").await.expect("listen");
    let px = proxy(ep.url(), ann, pass(), pass()).await;
    let _ = timeout(WAIT, client.dial(&px.url)).await;
    let failed = |s: &sp_core::Stats| s.rejects(RejectReason::LayerFailed) >= 1;
    let r = timeout(WAIT, async {
        while !failed(&server.stats()) && !failed(&client.stats()) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(
        r.is_ok(),
        "no handshake failure; server {} client {}",
        server.stats(),
        client.stats()
    );
    // neither side accepted the peer: no mismatch counters (the rewrite
    // fooled the announcement check), only the Noise failure
    for s in [&server, &client] {
        assert_eq!(s.stats().rejects(RejectReason::ProtocolMismatch), 0);
        assert_eq!(s.stats().rejects(RejectReason::LayerMismatch), 0);
    }
    assert_eq!(server.stats().pipes_opened, 0, "{}", server.stats());
    let _ = timeout(QUIET, client.send("leak?")).await;
    nothing_arrives(&server).await;
}

#[tokio::test]
async fn mitm_rewriting_the_protocol_breaks_the_handshake() {
    let (a, b) = mutual();
    // BUS0 listener, PAIR0 dialer: each side gets told the peer is its kind
    let server = sock(Proto::Bus0, a);
    let client = sock(Proto::Pair0, b);
    let ann: AnnRewrite = Arc::new(|dir, mut a| {
        a.protocol = match dir {
            Dir::Up => ProtocolId::BUS0,
            Dir::Down => ProtocolId::PAIR0,
        };
        a
    });
    consistent_rewrite_fails(server, client, ann.clone()).await;
    let plain = |p| builder(p).options(opts()).build();
    rewrite_fools_the_peer_check(plain(Proto::Bus0), plain(Proto::Pair0), ann).await;
}

#[tokio::test]
async fn mitm_rewriting_the_layer_list_breaks_the_handshake() {
    let (a, b) = mutual();
    let server = builder(Proto::Pair0)
        .pipe_layer(noise::layer(a))
        .pipe_layer(PipeLayer::new(Named("tag-a/1")))
        .options(opts())
        .build();
    let client = builder(Proto::Pair0)
        .pipe_layer(noise::layer(b))
        .pipe_layer(PipeLayer::new(Named("tag-b/1")))
        .options(opts())
        .build();
    let ann: AnnRewrite = Arc::new(|dir, mut a| {
        a.layers[1] = match dir {
            Dir::Up => "tag-a/1".into(),
            Dir::Down => "tag-b/1".into(),
        };
        a
    });
    consistent_rewrite_fails(server, client, ann.clone()).await;
    let tagged = |name| {
        builder(Proto::Pair0)
            .pipe_layer(PipeLayer::new(Named("pad/1")))
            .pipe_layer(PipeLayer::new(Named(name)))
            .options(opts())
            .build()
    };
    rewrite_fools_the_peer_check(tagged("tag-a/1"), tagged("tag-b/1"), ann).await;
}

/// Frames dialer->listener: 0 and 1 are XX handshake messages 1 and 3, data
/// starts at 2.
const FIRST_DATA_UP: usize = 2;

/// Runs a PAIR0 pair through a proxy tampering with the dialer's data
/// frames; sends `msgs`; returns the bodies the listener received before
/// its pipe closed.
async fn tampered(up: Tamper, msgs: &[&[u8]]) -> Vec<Vec<u8>> {
    let (a, b) = mutual();
    let server = sock(Proto::Pair0, a);
    let mut events = server.pipe_events();
    let ep = server.listen("tcp://127.0.0.1:0").await.expect("listen");
    let px = proxy(ep.url(), same(), up, pass()).await;
    let client = sock(Proto::Pair0, b);
    client.dial(&px.url).await.expect("dial");
    wait_pipe(&server).await;
    for m in msgs {
        send(&client, m.to_vec()).await;
    }
    // the pipe must go away
    let removed = timeout(WAIT, async {
        loop {
            match events.recv().await {
                Ok(PipeEvent::RemovePost(..)) => return true,
                Ok(_) => continue,
                Err(_) => return false,
            }
        }
    })
    .await;
    assert_eq!(
        removed,
        Ok(true),
        "the pipe was not closed; {}",
        server.stats()
    );
    assert!(server.stats().rejects(RejectReason::ProtocolError) >= 1);
    let mut got = Vec::new();
    while let Ok(Ok(m)) = timeout(QUIET, server.recv()).await {
        got.push(m.body().to_vec());
    }
    assert!(server.pipes().is_empty());
    got
}

#[tokio::test]
async fn mitm_replayed_frame_closes_the_pipe() {
    let got = tampered(
        Box::new(|i, f| {
            if i == FIRST_DATA_UP {
                vec![f.clone(), f]
            } else {
                vec![f]
            }
        }),
        &[b"once"],
    )
    .await;
    assert_eq!(got, vec![b"once".to_vec()], "the replay was delivered");
}

#[tokio::test]
async fn mitm_flipped_bit_closes_the_pipe() {
    let got = tampered(
        Box::new(|i, mut f| {
            if i == FIRST_DATA_UP {
                let n = f.len();
                f[n / 2] ^= 0x04;
            }
            vec![f]
        }),
        &[&payload(3000, 1), b"after"],
    )
    .await;
    assert!(got.is_empty(), "delivered {} messages", got.len());
}

#[tokio::test]
async fn mitm_truncated_frame_closes_the_pipe() {
    let got = tampered(
        Box::new(|i, mut f| {
            if i == FIRST_DATA_UP {
                f.pop();
            }
            vec![f]
        }),
        &[&payload(100_000, 2), b"after"],
    )
    .await;
    assert!(got.is_empty(), "delivered {} messages", got.len());
}

#[tokio::test]
async fn mitm_reordered_frames_close_the_pipe() {
    let mut held = None;
    let got = tampered(
        Box::new(move |i, f| {
            if i == FIRST_DATA_UP {
                held = Some(f);
                vec![]
            } else if i == FIRST_DATA_UP + 1 {
                let mut out = vec![f];
                out.extend(held.take());
                out
            } else {
                vec![f]
            }
        }),
        &[b"first", b"second"],
    )
    .await;
    assert!(got.is_empty(), "delivered {got:?}");
}

// ------------------------------------------------------------------------
// 4. handshake bounds, early frames
// ------------------------------------------------------------------------

/// A raw peer: connects, swaps announcements claiming a PAIR0 Noise XX stack.
async fn raw_peer(url: &str) -> TcpStream {
    raw_peer_as(url, Pattern::XX).await
}

/// A raw peer announcing a PAIR0 stack with Noise in pattern `p`.
async fn raw_peer_as(url: &str, p: Pattern) -> TcpStream {
    let mut s = timeout(WAIT, TcpStream::connect(url.trim_start_matches("tcp://")))
        .await
        .expect("connect timed out")
        .expect("connect");
    let ours = Announcement {
        protocol: ProtocolId::PAIR0,
        layers: vec![p.component_name().into()],
    };
    s.write_all(&ours.encode()).await.expect("announce");
    let theirs = timeout(WAIT, read_announcement(&mut s))
        .await
        .expect("no announcement")
        .expect("announcement");
    assert_eq!(parse_announcement(&theirs).layers, vec![p.component_name()]);
    s
}

/// The peer sees the connection end (EOF or reset) within the bound.
async fn closed_by_server(s: &mut TcpStream) {
    let mut b = [0u8; 64];
    let r = timeout(WAIT, async {
        loop {
            match s.read(&mut b).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await;
    assert!(r.is_ok(), "the server kept the connection open");
}

#[tokio::test]
async fn oversize_handshake_frame_is_refused_before_allocation() {
    let server = sock_opts(
        Proto::Pair0,
        NoiseConfig::new(StaticKeypair::generate()).accept_any_key(),
        opts().handshake_timeout(Duration::from_secs(60)),
    );
    let ep = server.listen("tcp://127.0.0.1:0").await.expect("listen");
    let mut s = raw_peer(ep.url()).await;
    // claims 1 GiB; sends 16 bytes of it
    s.write_all(&(1u64 << 30).to_be_bytes()).await.expect("len");
    s.write_all(&[0u8; 16]).await.expect("bytes");
    until(&server, "the oversize frame to be refused", |st| {
        st.rejects(RejectReason::LayerFailed) >= 1
    })
    .await;
    assert_eq!(server.stats().rejects(RejectReason::HandshakeTimeout), 0);
    closed_by_server(&mut s).await;

    // just above the default 1 KiB cap is refused too
    let mut s = raw_peer(ep.url()).await;
    write_frame(&mut s, &[7u8; 1025]).await.expect("frame");
    until(&server, "the 1025-byte frame to be refused", |st| {
        st.rejects(RejectReason::LayerFailed) >= 2
    })
    .await;
    closed_by_server(&mut s).await;
}

#[tokio::test]
async fn stalled_handshake_is_cut_at_the_deadline() {
    let server = sock_opts(
        Proto::Pair0,
        NoiseConfig::new(StaticKeypair::generate()).accept_any_key(),
        opts().handshake_timeout(Duration::from_millis(300)),
    );
    let ep = server.listen("tcp://127.0.0.1:0").await.expect("listen");
    // announcements done, then silence where Noise message 1 should be
    let mut s = raw_peer(ep.url()).await;
    until(&server, "the handshake deadline", |st| {
        st.rejects(RejectReason::HandshakeTimeout) >= 1
    })
    .await;
    closed_by_server(&mut s).await;

    // a peer that sends a valid message 1 and then stops
    let mut s = raw_peer(ep.url()).await;
    let mut hs = snow::Builder::new("Noise_XX_25519_ChaChaPoly_BLAKE2s".parse().expect("params"))
        .local_private_key(StaticKeypair::generate().secret_bytes())
        .expect("key")
        .build_initiator()
        .expect("initiator");
    let mut m1 = [0u8; 128];
    let n = hs.write_message(&[], &mut m1).expect("msg 1");
    write_frame(&mut s, &m1[..n]).await.expect("frame");
    let _msg2 = timeout(WAIT, read_frame(&mut s))
        .await
        .expect("no message 2")
        .expect("message 2");
    until(&server, "the second deadline", |st| {
        st.rejects(RejectReason::HandshakeTimeout) >= 2
    })
    .await;
    closed_by_server(&mut s).await;
    assert_eq!(server.stats().pipes_opened, 0);
}

#[tokio::test]
async fn half_open_handshakes_are_capped() {
    let (a, b) = mutual();
    let server = sock_opts(
        Proto::Pair0,
        a,
        opts()
            .max_half_open(2)
            .handshake_timeout(Duration::from_secs(60)),
    );
    let ep = server.listen("tcp://127.0.0.1:0").await.expect("listen");
    let mut stalled = Vec::new();
    for _ in 0..4 {
        stalled.push(raw_peer(ep.url()).await);
    }
    until(&server, "evictions", |st| {
        st.rejects(RejectReason::Evicted) >= 2
    })
    .await;
    // a genuine peer still gets through
    let client = sock(Proto::Pair0, b);
    client.dial(ep.url()).await.expect("dial");
    send(&client, "through").await;
    assert_eq!(recv(&server).await.body(), b"through");
    drop(stalled);
}

#[tokio::test]
async fn frames_sent_before_the_handshake_are_never_delivered() {
    let server = sock_opts(
        Proto::Pair0,
        NoiseConfig::new(StaticKeypair::generate()).accept_any_key(),
        opts().handshake_timeout(Duration::from_secs(60)),
    );
    let ep = server.listen("tcp://127.0.0.1:0").await.expect("listen");
    let mut s = raw_peer(ep.url()).await;
    // plaintext SP messages where Noise message 1 belongs
    for m in [&b"early bird"[..], &[0x41u8; 48][..], &payload(900, 3)[..]] {
        let _ = write_frame(&mut s, m).await;
    }
    until(&server, "the early frames to fail the handshake", |st| {
        st.rejects(RejectReason::LayerFailed) >= 1
    })
    .await;
    nothing_arrives(&server).await;
    assert_eq!(server.stats().msgs_in, 0);
    closed_by_server(&mut s).await;
}

// ------------------------------------------------------------------------
// 5. rekey and padding
// ------------------------------------------------------------------------

#[tokio::test]
async fn rekey_every_three_messages() {
    let (a, b) = mutual();
    let server = sock(Proto::Pair0, a.rekey_after_messages(3));
    let ep = server.listen(&ipc_url("rekey")).await.expect("listen");
    let client = sock(
        Proto::Pair0,
        b.rekey_after_messages(3).rekey_after_bytes(5000),
    );
    client.dial(ep.url()).await.expect("dial");
    for i in 0..50usize {
        let up = payload(10 + i * 97, i as u8);
        send(&client, up.clone()).await;
        let got = recv(&server).await;
        assert!(got.body() == &up[..], "message {i} up");
        let down = payload(i * 131, 7 + i as u8);
        send(&server, down.clone()).await;
        assert!(recv(&client).await.body() == &down[..], "message {i} down");
    }
    assert_eq!(server.stats().total_rejects(), 0);
    assert_eq!(server.stats().pipes_opened, 1, "the pipe never broke");
}

#[tokio::test]
async fn padding_buckets_hide_lengths() {
    let buckets = vec![256, 1024, 4096];
    let (a, b) = mutual();
    let server = sock(Proto::Pair0, a);
    let ep = server.listen("tcp://127.0.0.1:0").await.expect("listen");
    let px = proxy(ep.url(), same(), pass(), pass()).await;
    let client = sock(Proto::Pair0, b.padding(Padding::Buckets(buckets.clone())));
    client.dial(&px.url).await.expect("dial");
    let sizes = [
        0usize, 1, 100, 251, 252, 700, 1019, 1020, 3000, 5000, 70_000,
    ];
    for (i, n) in sizes.iter().enumerate() {
        let body = payload(*n, i as u8);
        send(&client, body.clone()).await;
        assert!(recv(&server).await.body() == &body[..]);
    }
    let seen: Vec<usize> = px
        .sizes
        .lock()
        .expect("sizes")
        .iter()
        .filter(|(d, _)| *d == Dir::Up)
        .map(|&(_, n)| n)
        .skip(FIRST_DATA_UP)
        .collect();
    let pad = Padding::Buckets(buckets);
    let expect: Vec<usize> = sizes
        .iter()
        .map(|n| noise::record::sealed_len(pad.padded(n + noise::record::RECORD_HEADER)))
        .collect();
    assert_eq!(seen, expect);
    // what an observer sees: bucket sizes plus one 16-byte tag per chunk
    assert_eq!(&seen[..4], &[272, 272, 272, 272]);
    assert_eq!(&seen[4..7], &[1040, 1040, 1040]);
    assert_eq!(&seen[7..9], &[4112, 4112]);
    assert_eq!(seen[9], 8192 + 16);
    assert_eq!(seen[10], 73728 + 32);
}

#[tokio::test]
async fn low_order_ephemeral_key_is_refused() {
    let server = sock_opts(
        Proto::Pair0,
        NoiseConfig::new(StaticKeypair::generate()).accept_any_key(),
        opts().handshake_timeout(Duration::from_secs(60)),
    );
    let ep = server.listen("tcp://127.0.0.1:0").await.expect("listen");
    let mut s = raw_peer(ep.url()).await;
    // XX message 1 is just `e`: here u = 1, a point of order 4, so every
    // DH with it is all zeros. snow would answer with message 2.
    let mut e = [0u8; 32];
    e[0] = 1;
    write_frame(&mut s, &e).await.expect("frame");
    let reply = timeout(WAIT, read_frame(&mut s))
        .await
        .expect("the server neither answered nor closed");
    assert!(reply.is_err(), "the server answered a low-order key");
    until(&server, "the refusal to be counted", |st| {
        st.rejects(RejectReason::LayerFailed) >= 1
    })
    .await;
}

// ------------------------------------------------------------------------
// 6. IK key confirmation
// ------------------------------------------------------------------------

/// IK message 1 carries the dialer's static key and proves nothing fresh:
/// anyone who recorded it can send it again, and the listener learns the
/// victim's key from it. Before key confirmation the listener attached that
/// connection as the victim's pipe after message 2, and PAIR, holding one
/// peer, then refused the real client for as long as the replayer stayed.
#[tokio::test]
async fn ik_replayed_first_message_never_attaches_a_pipe() {
    let (sk, ck) = (StaticKeypair::generate(), StaticKeypair::generate());
    let (spub, cpub) = (sk.public(), ck.public());
    // a deadline far beyond the test: the stalled replayer below is still
    // half-open when the real client comes back
    let server = sock_opts(
        Proto::Pair0,
        NoiseConfig::new(sk).pattern(Pattern::IK).allow(cpub),
        opts().handshake_timeout(Duration::from_secs(60)),
    );
    let ep = server.listen("tcp://127.0.0.1:0").await.expect("listen");
    let client_cfg = || {
        NoiseConfig::new(ck.clone())
            .pattern(Pattern::IK)
            .remote_static(spub)
    };

    // a genuine session, recorded on the path
    let recorded = Arc::new(Mutex::new(Vec::new()));
    let rec = recorded.clone();
    let px = proxy(
        ep.url(),
        same(),
        Box::new(move |_, f| {
            rec.lock().expect("recording").push(f.clone());
            vec![f]
        }),
        pass(),
    )
    .await;
    let victim = sock(Proto::Pair0, client_cfg());
    victim.dial(&px.url).await.expect("dial");
    send(&victim, "recorded").await;
    assert_eq!(recv(&server).await.body(), b"recorded");
    victim.close();
    let gone = timeout(WAIT, async {
        while !server.pipes().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(gone.is_ok(), "the victim's pipe stayed; {}", server.stats());
    let up = recorded.lock().expect("recording").clone();
    assert!(up.len() >= 2, "recorded {} frames", up.len());
    let opened = server.stats().pipes_opened;
    assert_eq!(opened, 1);
    let mut events = server.pipe_events();

    // replayer 1: message 1, then silence
    let mut stalled = raw_peer_as(ep.url(), Pattern::IK).await;
    write_frame(&mut stalled, &up[0]).await.expect("message 1");
    // the listener takes message 1 for the victim's and answers it
    timeout(WAIT, read_frame(&mut stalled))
        .await
        .expect("no message 2")
        .expect("message 2");
    tokio::time::sleep(QUIET).await;
    assert!(
        server.pipes().is_empty(),
        "a replayed IK message 1 attached a pipe in the victim's name; {}",
        server.stats()
    );
    assert_eq!(server.stats().pipes_opened, opened, "{}", server.stats());

    // replayer 2: everything the victim sent, again, in order
    let mut replayer = raw_peer_as(ep.url(), Pattern::IK).await;
    for f in &up {
        if write_frame(&mut replayer, f).await.is_err() {
            break;
        }
    }
    until(&server, "the replayed session to be refused", |s| {
        s.rejects(RejectReason::LayerFailed) >= 1
    })
    .await;
    closed_by_server(&mut replayer).await;

    // the real client, while replayer 1 still holds its connection
    let client = sock(Proto::Pair0, client_cfg());
    timeout(WAIT, client.dial(ep.url()))
        .await
        .expect("dial timed out")
        .expect("dial");
    send(&client, "genuine").await;
    assert_eq!(recv(&server).await.body(), b"genuine");
    send(&server, "reply").await;
    assert_eq!(recv(&client).await.body(), b"reply");

    assert_eq!(server.pipes().len(), 1);
    assert_eq!(
        server.stats().pipes_opened,
        opened + 1,
        "{}",
        server.stats()
    );
    assert_eq!(server.stats().rejects(RejectReason::PipeLimit), 0);
    let (mut joined, mut refused) = (0, Vec::new());
    while let Ok(ev) = events.try_recv() {
        match ev {
            PipeEvent::AddPost(..) => joined += 1,
            PipeEvent::Refused(r) => refused.push(r),
            _ => {}
        }
    }
    assert_eq!(joined, 1, "only the real client's pipe may join");
    // replayer 2 failed at the confirmation, not somewhere else
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0].reason, RejectReason::LayerFailed);
    assert_eq!(
        refused[0].layer.as_deref(),
        Some(Pattern::IK.component_name())
    );
    assert!(
        refused[0].error.contains("key confirmation"),
        "{}",
        refused[0].error
    );
    drop(stalled);
}

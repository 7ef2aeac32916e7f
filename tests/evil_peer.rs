//! "Bad input gets a clear error, nothing else."
//!
//! A raw `TcpStream` (or `UnixStream` over `ipc://`) plays an evil peer
//! against a real spstack socket: malformed SP headers, broken frames, absurd
//! lengths, malformed REQ/REP backtraces, too many hops, a bad IPC type byte,
//! and a flood of connections that never finish the handshake.
//!
//! For every attack the suite checks that
//! * the pipe is refused or closed (the peer sees EOF or a reset within a
//!   bounded time), or the message alone is dropped and the pipe kept;
//! * the counter naming the reason moves (and, for several cases, a `tracing`
//!   event says why);
//! * the socket still serves a well-behaved peer afterwards (a real round trip);
//! * nothing in the library panics (a panic hook records every panic raised
//!   outside this file, and each test ends by checking that list is empty).
//!
//! Every wait is bounded; the whole file runs in a few seconds.

use std::io;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use spstack::{DropReason, Options, RejectReason, Socket, Stats};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UnixStream};
use tokio::time::{sleep, timeout};

/// Upper bound for any single wait.
const WAIT: Duration = Duration::from_secs(5);

const PAIR0: u16 = 0x10;
const PAIR1: u16 = 0x11;
const REQ0: u16 = 0x30;
const REP0: u16 = 0x31;
const PUSH0: u16 = 0x50;
const PULL0: u16 = 0x51;

// ------------------------------------------------------------------------
// Harness: captured logs, library panics, serialisation of heavy tests
// ------------------------------------------------------------------------

static LOG: Mutex<Vec<u8>> = Mutex::new(Vec::new());
static LIB_PANICS: Mutex<Vec<String>> = Mutex::new(Vec::new());
/// Held by the tests that measure process memory or open 1,000 sockets, so
/// they do not disturb each other.
static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct LogWriter;

impl io::Write for LogWriter {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        LOG.lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Installs (once) a global tracing subscriber writing into [`LOG`] and a
/// panic hook recording every panic whose location is not this file.
fn init() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("spstack=debug"))
            .with_writer(|| LogWriter)
            .with_ansi(false)
            .try_init();
        let default_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let file = info.location().map(|l| l.file()).unwrap_or("<unknown>");
            if !file.ends_with("evil_peer.rs") {
                LIB_PANICS
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(info.to_string());
            }
            default_hook(info);
        }));
    });
}

/// Every test ends here: no panic may have happened outside the test code.
fn assert_no_library_panic() {
    let p = LIB_PANICS.lock().unwrap_or_else(|e| e.into_inner());
    assert!(p.is_empty(), "the library panicked: {p:#?}");
}

fn log_text() -> String {
    String::from_utf8_lossy(&LOG.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
}

/// Waits until one captured log line contains every needle.
async fn wait_log(needles: &[&str]) {
    let t0 = Instant::now();
    loop {
        if log_text()
            .lines()
            .any(|l| needles.iter().all(|n| l.contains(n)))
        {
            return;
        }
        if t0.elapsed() > WAIT {
            let text = log_text();
            let tail: Vec<&str> = text.lines().rev().take(30).collect();
            panic!(
                "no log line contains all of {needles:?}; last lines (newest first):\n{tail:#?}"
            );
        }
        sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until `cond` holds for the socket's counters; returns them.
async fn wait_stats(sock: &Socket, what: &str, cond: impl Fn(&Stats) -> bool) -> Stats {
    let t0 = Instant::now();
    loop {
        let st = sock.stats();
        if cond(&st) {
            return st;
        }
        if t0.elapsed() > WAIT {
            panic!("timed out waiting for {what}; counters now:\n{st}");
        }
        sleep(Duration::from_millis(5)).await;
    }
}

async fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        assert!(t0.elapsed() < WAIT, "timed out waiting for {what}");
        sleep(Duration::from_millis(5)).await;
    }
}

/// Resident set size of this process, in bytes.
fn proc_status_bytes(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .map(|kib| kib * 1024)
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

// ------------------------------------------------------------------------
// The evil peer's tools
// ------------------------------------------------------------------------

fn sp_header(proto: u16) -> [u8; 8] {
    let p = proto.to_be_bytes();
    [0, b'S', b'P', 0, p[0], p[1], 0, 0]
}

fn tcp_frame(payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u64).to_be_bytes().to_vec();
    f.extend_from_slice(payload);
    f
}

fn ipc_frame(payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x01];
    f.extend_from_slice(&tcp_frame(payload));
    f
}

/// A REQ request payload: the request id with its top bit set, then the body.
fn request(id: u32, body: &[u8]) -> Vec<u8> {
    let mut p = (0x8000_0000 | id).to_be_bytes().to_vec();
    p.extend_from_slice(body);
    p
}

async fn connect(url: &str) -> TcpStream {
    let addr = url.strip_prefix("tcp://").expect("a tcp:// url");
    timeout(WAIT, TcpStream::connect(addr))
        .await
        .expect("connect timed out")
        .expect("connect")
}

async fn connect_ipc(url: &str) -> UnixStream {
    let path = url.strip_prefix("ipc://").expect("an ipc:// url");
    timeout(WAIT, UnixStream::connect(path))
        .await
        .expect("ipc connect timed out")
        .expect("ipc connect")
}

/// A fresh ipc:// url in the temp dir, unique to this process and test.
fn ipc_url(name: &str) -> String {
    let p = std::env::temp_dir().join(format!("spstack-evil-{}-{name}.ipc", std::process::id()));
    let _ = std::fs::remove_file(&p);
    format!("ipc://{}", p.display())
}

/// Reads the 8-byte SP header the real socket sends as soon as it connects.
async fn read_header<S: AsyncRead + Unpin>(s: &mut S) -> [u8; 8] {
    let mut h = [0u8; 8];
    timeout(WAIT, s.read_exact(&mut h))
        .await
        .expect("the socket did not send its SP header in time")
        .expect("read the SP header");
    h
}

/// A correct handshake as protocol `mine` with a socket speaking `theirs`.
async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, mine: u16, theirs: u16) {
    s.write_all(&sp_header(mine)).await.expect("send SP header");
    assert_eq!(read_header(s).await, sp_header(theirs));
}

/// Reads one TCP frame (bounded size) the socket sent.
async fn read_tcp_frame<S: AsyncRead + Unpin>(s: &mut S) -> Vec<u8> {
    let mut len = [0u8; 8];
    timeout(WAIT, s.read_exact(&mut len))
        .await
        .expect("no frame in time")
        .expect("read frame length");
    let len = u64::from_be_bytes(len);
    assert!(len <= 1 << 20, "unexpectedly large frame: {len}");
    let mut buf = vec![0u8; len as usize];
    timeout(WAIT, s.read_exact(&mut buf))
        .await
        .expect("frame body in time")
        .expect("read frame body");
    buf
}

/// The socket must close the connection: EOF or a reset, within `WAIT`.
/// Anything the socket still sends before closing is skipped.
async fn expect_closed<S: AsyncRead + Unpin>(s: &mut S, what: &str) {
    let mut buf = vec![0u8; 64 << 10];
    let t0 = Instant::now();
    loop {
        let left = WAIT.saturating_sub(t0.elapsed());
        match timeout(left, s.read(&mut buf)).await {
            Err(_) => panic!("{what}: the socket did not close the connection within {WAIT:?}"),
            Ok(Ok(0)) => return,
            Ok(Ok(_)) => continue,
            Ok(Err(e))
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionReset
                        | io::ErrorKind::ConnectionAborted
                        | io::ErrorKind::BrokenPipe
                ) =>
            {
                return
            }
            Ok(Err(e)) => panic!("{what}: unexpected read error {e}"),
        }
    }
}

/// The connection must stay open: nothing to read, no EOF, for `d`.
async fn expect_open<S: AsyncRead + Unpin>(s: &mut S, d: Duration, what: &str) {
    let mut b = [0u8; 1];
    if let Ok(r) = timeout(d, s.read(&mut b)).await {
        panic!("{what}: expected the connection to stay open and silent, read gave {r:?}");
    }
}

// ------------------------------------------------------------------------
// Real sockets and the "still serves a good peer" check
// ------------------------------------------------------------------------

async fn listen(sock: &Socket, url: &str) -> String {
    timeout(WAIT, sock.listen(url))
        .await
        .expect("listen timed out")
        .expect("listen")
        .url()
        .to_string()
}

async fn rep_on(url: &str, opts: Options) -> (Socket, String) {
    let rep = spstack::rep0().options(opts).build();
    let bound = listen(&rep, url).await;
    (rep, bound)
}

async fn rep_on_tcp(opts: Options) -> (Socket, String) {
    rep_on("tcp://127.0.0.1:0", opts).await
}

/// A fresh, well-behaved REQ dials `url` and does a full round trip with
/// `rep`. Requests other peers left queued on `rep` are skipped.
async fn assert_rep_serves(rep: &Socket, url: &str) {
    let req = spstack::req0().build();
    timeout(WAIT, req.dial(url))
        .await
        .expect("good REQ: dial timed out")
        .expect("good REQ: dial");
    let nonce = format!("ping-{:x}", Instant::now().elapsed().as_nanos() ^ 0x5eed);
    timeout(WAIT, req.send(nonce.as_str()))
        .await
        .expect("good REQ: send timed out")
        .expect("good REQ: send");
    let t0 = Instant::now();
    loop {
        let left = WAIT.saturating_sub(t0.elapsed());
        let m = timeout(left, rep.recv())
            .await
            .expect("REP: the good request never arrived")
            .expect("REP: recv");
        if m.body() == nonce.as_bytes() {
            break;
        }
    }
    timeout(WAIT, rep.send("pong"))
        .await
        .expect("REP: reply timed out")
        .expect("REP: reply");
    let r = timeout(WAIT, req.recv())
        .await
        .expect("good REQ: no reply in time")
        .expect("good REQ: recv");
    assert_eq!(r.body(), b"pong");
    req.close();
}

/// Waits for a pipe to appear and returns its id.
async fn wait_pipe(sock: &Socket, known: &[u32]) -> u32 {
    let t0 = Instant::now();
    loop {
        if let Some(p) = sock.pipes().into_iter().find(|p| !known.contains(p)) {
            return p;
        }
        assert!(t0.elapsed() < WAIT, "no new pipe appeared");
        sleep(Duration::from_millis(5)).await;
    }
}

// ------------------------------------------------------------------------
// SP header attacks (TCP)
// ------------------------------------------------------------------------

/// Sends `bytes` as the handshake; expects the socket to close and count
/// `reason`, without ever opening a pipe. Returns the evil peer's port.
async fn refused_handshake(rep: &Socket, url: &str, bytes: &[u8], reason: RejectReason) -> u16 {
    let before = rep.stats();
    let mut s = connect(url).await;
    let port = s.local_addr().expect("local addr").port();
    assert_eq!(read_header(&mut s).await, sp_header(REP0));
    s.write_all(bytes).await.expect("send the bad header");
    expect_closed(&mut s, &format!("handshake {bytes:02x?}")).await;
    let st = wait_stats(rep, &format!("{reason:?} after {bytes:02x?}"), |st| {
        st.rejects(reason) > before.rejects(reason)
    })
    .await;
    assert_eq!(
        st.pipes_opened, before.pipes_opened,
        "a bad header opened a pipe"
    );
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_magic_is_refused() {
    init();
    let (rep, url) = rep_on_tcp(Options::default()).await;
    let cases: [&[u8]; 4] = [
        &[0x01, b'S', b'P', 0, 0, 0x30, 0, 0],
        &[0, b's', b'p', 0, 0, 0x30, 0, 0],
        &[0, b'S', b'Q', 0, 0, 0x30, 0, 0],
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    ];
    for bytes in cases {
        let port = refused_handshake(&rep, &url, bytes, RejectReason::BadHeader).await;
        let peer = format!("peer=tcp://127.0.0.1:{port}");
        wait_log(&[&peer, "pipe refused", "BadHeader", "bad SP header magic"]).await;
    }
    assert_eq!(
        rep.stats().rejects(RejectReason::BadHeader),
        cases.len() as u64
    );
    assert_rep_serves(&rep, &url).await;
    assert_no_library_panic();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_version_byte_is_refused() {
    init();
    let (rep, url) = rep_on_tcp(Options::default()).await;
    for v in [2u8, 0x7f, 0xff] {
        let port = refused_handshake(
            &rep,
            &url,
            &[0, b'S', b'P', v, 0, 0x30, 0, 0],
            RejectReason::BadHeader,
        )
        .await;
        let peer = format!("peer=tcp://127.0.0.1:{port}");
        wait_log(&[
            &peer,
            "BadHeader",
            &format!("unsupported SP header version {v}"),
        ])
        .await;
    }
    assert_eq!(rep.stats().rejects(RejectReason::BadHeader), 3);
    assert_rep_serves(&rep, &url).await;
    assert_no_library_panic();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nonzero_reserved_bytes_are_refused() {
    init();
    let (rep, url) = rep_on_tcp(Options::default()).await;
    let cases: [[u8; 8]; 3] = [
        [0, b'S', b'P', 0, 0, 0x30, 1, 0],
        [0, b'S', b'P', 0, 0, 0x30, 0, 1],
        [0, b'S', b'P', 0, 0, 0x30, 0xff, 0xff],
    ];
    for h in cases {
        let port = refused_handshake(&rep, &url, &h, RejectReason::BadHeader).await;
        let peer = format!("peer=tcp://127.0.0.1:{port}");
        wait_log(&[&peer, "BadHeader", "non-zero reserved bytes"]).await;
    }
    assert_eq!(rep.stats().rejects(RejectReason::BadHeader), 3);
    assert_rep_serves(&rep, &url).await;
    assert_no_library_panic();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incompatible_protocol_is_refused() {
    init();
    let (rep, url) = rep_on_tcp(Options::default()).await;
    // PUSH, REP (same protocol, not its peer), PAIR1, and an unknown id.
    let protos = [PUSH0, REP0, PAIR1, 0xffff];
    for p in protos {
        let port =
            refused_handshake(&rep, &url, &sp_header(p), RejectReason::ProtocolMismatch).await;
        let peer = format!("peer=tcp://127.0.0.1:{port}");
        wait_log(&[&peer, "ProtocolMismatch", "peer speaks"]).await;
    }
    wait_log(&["ProtocolMismatch", "peer speaks push(0x0050)"]).await;
    let st = rep.stats();
    assert_eq!(
        st.rejects(RejectReason::ProtocolMismatch),
        protos.len() as u64
    );
    assert_eq!(st.rejects(RejectReason::BadHeader), 0);
    assert_rep_serves(&rep, &url).await;
    assert_no_library_panic();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_header_then_close_is_refused() {
    init();
    let (rep, url) = rep_on_tcp(Options::default()).await;
    for n in [0usize, 1, 3, 7] {
        let before = rep.stats();
        let mut s = connect(&url).await;
        // read the socket's header first, so our close is a clean FIN
        assert_eq!(read_header(&mut s).await, sp_header(REP0));
        s.write_all(&sp_header(REQ0)[..n])
            .await
            .expect("send part of a header");
        s.shutdown().await.expect("shutdown");
        expect_closed(&mut s, &format!("{n} header bytes then FIN")).await;
        let st = wait_stats(&rep, "BadHeader after a truncated header", |st| {
            st.rejects(RejectReason::BadHeader) > before.rejects(RejectReason::BadHeader)
        })
        .await;
        assert_eq!(st.pipes_opened, 0);
    }
    wait_log(&["BadHeader", "truncated header"]).await;

    // closing before reading anything: counted as a bad header or an I/O error
    let before = rep.stats();
    let s = connect(&url).await;
    drop(s);
    wait_stats(&rep, "BadHeader or Io after connect-and-close", |st| {
        st.rejects(RejectReason::BadHeader) + st.rejects(RejectReason::Io)
            > before.rejects(RejectReason::BadHeader) + before.rejects(RejectReason::Io)
    })
    .await;

    assert_eq!(rep.stats().pipes_opened, 0);
    assert_rep_serves(&rep, &url).await;
    assert_no_library_panic();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_header_attacks_are_refused() {
    init();
    let (rep, url) = rep_on_tcp(Options::default()).await;
    let ext = |list_len: u16, list: &[u8]| {
        let mut h = vec![0, b'S', b'P', 1, 0, 0x30, 0, 0];
        h.extend_from_slice(&list_len.to_be_bytes());
        h.extend_from_slice(list);
        h
    };
    // a layer list longer than the 1 KiB cap: refused before allocating it
    refused_handshake(&rep, &url, &ext(0xffff, &[]), RejectReason::BadHeader).await;
    wait_log(&["BadHeader", "layer list of 65535 bytes exceeds"]).await;
    // an entry running past the end of the list
    refused_handshake(
        &rep,
        &url,
        &ext(3, &[9, b'a', b'b']),
        RejectReason::BadHeader,
    )
    .await;
    wait_log(&["BadHeader", "truncated layer list"]).await;
    // a layer name that is not UTF-8
    refused_handshake(
        &rep,
        &url,
        &ext(3, &[2, 0xff, 0xfe]),
        RejectReason::BadHeader,
    )
    .await;
    wait_log(&["BadHeader", "not UTF-8"]).await;
    // a well-formed list of layers this plain stack lacks
    refused_handshake(
        &rep,
        &url,
        &ext(6, b"\x05evl/1"),
        RejectReason::LayerMismatch,
    )
    .await;
    wait_log(&["LayerMismatch", "evl/1"]).await;

    assert_eq!(rep.stats().pipes_opened, 0);
    assert_rep_serves(&rep, &url).await;
    assert_no_library_panic();
}

// ------------------------------------------------------------------------
// Frame attacks (TCP)
// ------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_mid_frame_closes_pipe() {
    init();
    // 16 MiB limit so the 8 MiB case takes the growing-buffer path
    let (rep, url) = rep_on_tcp(Options::default().recv_max_size(16 << 20)).await;
    // (what, announced length, bytes actually sent after the length)
    let cases: [(&str, Option<u64>, usize); 4] = [
        ("half a length prefix", None, 0),
        ("small frame", Some(100), 10),
        ("direct-read frame", Some(100_000), 20_000),
        ("growing frame", Some(8 << 20), 200_000),
    ];
    for (i, (what, len, sent)) in cases.into_iter().enumerate() {
        let k = i as u64 + 1;
        let mut s = connect(&url).await;
        handshake(&mut s, REQ0, REP0).await;
        wait_stats(&rep, "pipe opened", |st| st.pipes_opened == k).await;
        match len {
            None => s.write_all(&[0, 0, 0, 0]).await.expect("write"),
            Some(l) => {
                s.write_all(&l.to_be_bytes()).await.expect("write");
                s.write_all(&vec![0x80; sent]).await.expect("write");
            }
        }
        s.shutdown().await.expect("shutdown");
        expect_closed(&mut s, what).await;
        let st = wait_stats(&rep, &format!("pipe closed after {what}"), |st| {
            st.pipes_closed == k && st.rejects(RejectReason::ProtocolError) == k
        })
        .await;
        assert_eq!(st.msgs_in, 0, "{what}: a partial frame was delivered");
        assert!(rep.pipes().is_empty(), "{what}: the pipe is still listed");
    }
    wait_log(&["pipe closed", "connection closed mid-frame"]).await;

    // the same with a reset instead of a FIN: the pipe goes, nothing else
    let mut s = connect(&url).await;
    handshake(&mut s, REQ0, REP0).await;
    wait_stats(&rep, "pipe opened", |st| st.pipes_opened == 5).await;
    s.write_all(&100u64.to_be_bytes()).await.expect("write");
    s.write_all(&[0x80; 10]).await.expect("write");
    s.set_zero_linger().expect("SO_LINGER 0");
    drop(s);
    wait_stats(&rep, "pipe closed after a reset", |st| st.pipes_closed == 5).await;
    assert!(rep.pipes().is_empty());

    assert_rep_serves(&rep, &url).await;
    assert_no_library_panic();
}

/// Announces `len` on a fresh pipe to a REP whose limit is `recv_max`.
async fn oversized_length_case(len: u64, recv_max: usize) {
    let (rep, url) = rep_on_tcp(Options::default().recv_max_size(recv_max)).await;
    let mut s = connect(&url).await;
    let port = s.local_addr().expect("local addr").port();
    handshake(&mut s, REQ0, REP0).await;
    wait_stats(&rep, "pipe opened", |st| st.pipes_opened == 1).await;
    s.write_all(&len.to_be_bytes())
        .await
        .expect("send the length");
    // a few bytes of "payload"; the socket must not wait for the rest
    let _ = s.write_all(&request(1, b"x")).await;
    expect_closed(&mut s, &format!("length {len}")).await;
    let st = wait_stats(&rep, "TooLarge", |st| {
        st.drops(DropReason::TooLarge) == 1
            && st.rejects(RejectReason::ProtocolError) == 1
            && st.pipes_closed == 1
    })
    .await;
    assert_eq!(st.msgs_in, 0);
    assert!(rep.pipes().is_empty());
    let peer = format!("peer=tcp://127.0.0.1:{port}");
    let msg = format!("message of {len} bytes exceeds the limit of {recv_max} bytes");
    wait_log(&[&peer, "pipe closed", &msg]).await;
    assert_rep_serves(&rep, &url).await;
    assert_no_library_panic();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn length_u64_max_is_refused() {
    init();
    oversized_length_case(u64::MAX, 1 << 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn length_2_pow_63_is_refused() {
    init();
    oversized_length_case(1 << 63, 1 << 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn length_with_reserved_top_bits_is_refused() {
    init();
    // nng's test_sfd_reserved_length_bits: 10 00 00 00 00 00 00 00
    oversized_length_case(1 << 60, 1 << 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn length_usize_max_minus_k_is_refused() {
    init();
    // the CVE-2019-6250 class: a size whose `pos + size` would overflow
    oversized_length_case(usize::MAX as u64 - 7, 1 << 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recv_max_plus_one_is_refused_and_recv_max_is_accepted() {
    init();
    const MAX: usize = 4096;
    let (rep, url) = rep_on_tcp(Options::default().recv_max_size(MAX)).await;

    // exactly the limit (request id included) is delivered and answered
    let mut s = connect(&url).await;
    handshake(&mut s, REQ0, REP0).await;
    let body = vec![b'a'; MAX - 4];
    s.write_all(&tcp_frame(&request(7, &body)))
        .await
        .expect("send");
    let m = timeout(WAIT, rep.recv())
        .await
        .expect("recv in time")
        .expect("recv");
    assert_eq!(m.body().len(), MAX - 4);
    timeout(WAIT, rep.send("ok"))
        .await
        .expect("reply in time")
        .expect("reply");
    assert_eq!(read_tcp_frame(&mut s).await, request(7, b"ok"));
    drop(s);

    // one byte more: refused before allocation, pipe closed
    let mut s = connect(&url).await;
    handshake(&mut s, REQ0, REP0).await;
    let mut f = tcp_frame(&request(8, &vec![b'a'; MAX - 3]));
    assert_eq!(
        u64::from_be_bytes(f[..8].try_into().expect("8 bytes")),
        MAX as u64 + 1
    );
    f.truncate(8 + 16);
    s.write_all(&f).await.expect("send");
    expect_closed(&mut s, "recv_max + 1").await;
    let st = wait_stats(&rep, "TooLarge", |st| {
        st.drops(DropReason::TooLarge) == 1 && st.rejects(RejectReason::ProtocolError) == 1
    })
    .await;
    assert_eq!(st.msgs_in, 1);
    wait_log(&["message of 4097 bytes exceeds the limit of 4096 bytes"]).await;

    assert_rep_serves(&rep, &url).await;
    assert_no_library_panic();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_announced_length_does_not_allocate() {
    init();
    let _heavy = HEAVY.lock().await;
    const GIB: u64 = 1 << 30;
    const PEERS: usize = 4;
    let (rep, url) = rep_on_tcp(Options::default().recv_max_size(2 << 30)).await;
    assert_rep_serves(&rep, &url).await; // warm up: runtime, buffers, log

    let rss0 = proc_status_bytes("VmRSS:");
    let vm0 = proc_status_bytes("VmSize:");
    let mut evil = Vec::new();
    for _ in 0..PEERS {
        let mut s = connect(&url).await;
        handshake(&mut s, REQ0, REP0).await;
        // announce 1 GiB (allowed: the limit is 2 GiB), then send nothing
        s.write_all(&GIB.to_be_bytes())
            .await
            .expect("send the length");
        evil.push(s);
    }
    wait_stats(&rep, "pipes opened", |st| {
        st.pipes_opened == 1 + PEERS as u64
    })
    .await;
    sleep(Duration::from_millis(300)).await;

    let rss1 = proc_status_bytes("VmRSS:");
    let vm1 = proc_status_bytes("VmSize:");
    let grew = rss1.saturating_sub(rss0);
    assert!(
        grew < 64 << 20,
        "{PEERS} peers announcing 1 GiB each grew RSS by {} MiB",
        grew >> 20
    );
    // address space too: a zeroed allocation might not be resident yet
    let vgrew = vm1.saturating_sub(vm0);
    assert!(
        vgrew < 2 * GIB,
        "{PEERS} peers announcing 1 GiB each grew VmSize by {} MiB",
        vgrew >> 20
    );
    // the pipes wait for their bytes (nothing delivered, nothing dropped)
    assert_eq!(rep.pipes().len(), PEERS);
    for s in &mut evil {
        expect_open(s, Duration::from_millis(20), "1 GiB announced").await;
    }

    // a peer that trickles some of the frame costs what it sent, no more
    evil[0]
        .write_all(&vec![0u8; 4 << 20])
        .await
        .expect("send 4 MiB");
    sleep(Duration::from_millis(200)).await;
    let grew = proc_status_bytes("VmRSS:").saturating_sub(rss0);
    assert!(
        grew < 64 << 20,
        "4 MiB trickled grew RSS by {} MiB",
        grew >> 20
    );

    assert_rep_serves(&rep, &url).await;
    let st = rep.stats();
    assert_eq!(st.msgs_in, 2, "only the two good requests were delivered");
    assert_eq!(st.total_drops(), 0);

    // when they give up, the pipes close, counted as broken frames
    for mut s in evil {
        s.shutdown().await.expect("shutdown");
        expect_closed(&mut s, "FIN after 1 GiB announced").await;
    }
    wait_stats(&rep, "pipes closed", |st| {
        st.rejects(RejectReason::ProtocolError) == PEERS as u64
    })
    .await;
    wait_until("pipes gone", || rep.pipes().is_empty()).await;
    assert_no_library_panic();
}

// ------------------------------------------------------------------------
// REQ/REP header attacks
// ------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn req_reply_shorter_than_request_id_closes_pipe() {
    init();
    let evil_l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let evil_url = format!("tcp://{}", evil_l.local_addr().expect("addr"));
    let req = spstack::req0()
        .options(Options::default().reconnect_min(Duration::from_millis(20)))
        .build();

    // the REQ dials the evil REP; dial returns once the handshake is done
    let accept = async {
        let (mut s, _) = evil_l.accept().await.expect("accept");
        handshake(&mut s, REP0, REQ0).await;
        s
    };
    let (dialed, s) = tokio::join!(timeout(WAIT, req.dial(&evil_url)), timeout(WAIT, accept));
    dialed.expect("dial in time").expect("dial");
    let mut s = s.expect("evil accept in time");

    timeout(WAIT, req.send("hello"))
        .await
        .expect("send in time")
        .expect("send");
    // the request is outstanding while we misbehave; its resend must survive
    let pending = {
        let req = req.clone();
        tokio::spawn(async move { timeout(Duration::from_secs(15), req.recv()).await })
    };

    // each bad reply on a new connection: the REQ redials and resends
    let replies: [&[u8]; 4] = [b"", b"a", b"\x80\x00\x01", b"\x00\x00\x00\x01"];
    for (i, bad) in replies.iter().enumerate() {
        let k = i as u64 + 1;
        if i > 0 {
            let (ns, _) = timeout(WAIT, evil_l.accept())
                .await
                .expect("REQ redialed in time")
                .expect("accept");
            s = ns;
            handshake(&mut s, REP0, REQ0).await;
        }
        let got = read_tcp_frame(&mut s).await;
        assert!(
            got.len() == 4 + 5 && got[0] & 0x80 != 0,
            "request {got:02x?}"
        );
        assert_eq!(&got[4..], b"hello");
        s.write_all(&tcp_frame(bad)).await.expect("send bad reply");
        expect_closed(&mut s, &format!("reply {bad:02x?}")).await;
        wait_stats(&req, &format!("pipe closed after reply {bad:02x?}"), |st| {
            st.drops(DropReason::Malformed) == k
                && st.rejects(RejectReason::ProtocolError) == k
                && st.pipes_closed == k
        })
        .await;
    }
    wait_log(&[
        "protocol violation",
        "reply shorter than its 4-byte request id",
    ])
    .await;
    wait_log(&["protocol violation", "backtrace with no terminating word"]).await;
    assert!(!pending.is_finished(), "a bad reply was delivered");

    // the evil REP goes away; a real one answers the very same request
    drop(evil_l);
    drop(s);
    let (rep, rep_url) = rep_on_tcp(Options::default()).await;
    timeout(WAIT, req.dial(&rep_url))
        .await
        .expect("dial in time")
        .expect("dial");
    let m = timeout(WAIT, rep.recv())
        .await
        .expect("resend in time")
        .expect("recv");
    assert_eq!(m.body(), b"hello");
    timeout(WAIT, rep.send("world"))
        .await
        .expect("reply in time")
        .expect("reply");
    let r = pending
        .await
        .expect("recv task")
        .expect("reply within 15 s")
        .expect("recv");
    assert_eq!(r.body(), b"world");

    // and a fresh round trip
    timeout(WAIT, req.send("again"))
        .await
        .expect("send in time")
        .expect("send");
    let m = timeout(WAIT, rep.recv())
        .await
        .expect("recv in time")
        .expect("recv");
    assert_eq!(m.body(), b"again");
    timeout(WAIT, rep.send("yes"))
        .await
        .expect("reply in time")
        .expect("reply");
    let r = timeout(WAIT, req.recv())
        .await
        .expect("reply in time")
        .expect("recv");
    assert_eq!(r.body(), b"yes");
    assert_no_library_panic();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rep_backtrace_without_terminating_word_closes_pipe() {
    init();
    let (rep, url) = rep_on_tcp(Options::default()).await;
    let cases: [&[u8]; 5] = [
        b"",
        b"\x00\x00\x00\x01",
        b"\x00\x00\x00\x01\x00\x00\x00\x02",
        b"\x00\x00\x00\x01\x80\x00",
        b"hello",
    ];
    for (i, payload) in cases.iter().enumerate() {
        let k = i as u64 + 1;
        let mut s = connect(&url).await;
        let port = s.local_addr().expect("addr").port();
        handshake(&mut s, REQ0, REP0).await;
        s.write_all(&tcp_frame(payload)).await.expect("send");
        expect_closed(&mut s, &format!("request {payload:02x?}")).await;
        let st = wait_stats(&rep, &format!("pipe closed after {payload:02x?}"), |st| {
            st.drops(DropReason::Malformed) == k
                && st.rejects(RejectReason::ProtocolError) == k
                && st.pipes_closed == k
        })
        .await;
        assert_eq!(st.drops(DropReason::TtlExceeded), 0);
        let peer = format!("peer=tcp://127.0.0.1:{port}");
        wait_log(&[
            &peer,
            "protocol violation",
            "request backtrace with no terminating word",
        ])
        .await;
    }
    assert_rep_serves(&rep, &url).await;
    assert_no_library_panic();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rep_more_hops_than_ttl_is_dropped_and_pipe_kept() {
    init();
    let (rep, url) = rep_on_tcp(Options::default().ttl(8)).await;
    let mut s = connect(&url).await;
    let port = s.local_addr().expect("addr").port();
    handshake(&mut s, REQ0, REP0).await;
    let pipe = wait_pipe(&rep, &[]).await;

    let hops = |n: u32, id: u32, body: &[u8]| {
        let mut p = Vec::new();
        for w in 1..=n {
            p.extend_from_slice(&w.to_be_bytes());
        }
        p.extend_from_slice(&request(id, body));
        p
    };

    // 9 hop words + the request id = 10 words > ttl 8: dropped
    s.write_all(&tcp_frame(&hops(9, 1, b"too far")))
        .await
        .expect("send");
    wait_stats(&rep, "TtlExceeded", |st| {
        st.drops(DropReason::TtlExceeded) == 1
    })
    .await;
    // 8 + 1 = 9 words: one too many, dropped as well
    s.write_all(&tcp_frame(&hops(8, 2, b"one too far")))
        .await
        .expect("send");
    let st = wait_stats(&rep, "TtlExceeded", |st| {
        st.drops(DropReason::TtlExceeded) == 2
    })
    .await;
    assert_eq!(st.pipes_closed, 0);
    assert_eq!(st.total_rejects(), 0);
    assert_eq!(rep.pipes(), vec![pipe], "the pipe must be kept");
    let peer = format!("peer=tcp://127.0.0.1:{port}");
    wait_log(&[&peer, "message dropped", "TtlExceeded"]).await;

    // 7 + 1 = 8 words: exactly the ttl, delivered; the reply carries the stack back
    s.write_all(&tcp_frame(&hops(7, 3, b"just fits")))
        .await
        .expect("send");
    let m = timeout(WAIT, rep.recv())
        .await
        .expect("recv in time")
        .expect("recv");
    assert_eq!(m.body(), b"just fits", "a dropped request was delivered");
    timeout(WAIT, rep.send("ack 3"))
        .await
        .expect("reply in time")
        .expect("reply");
    assert_eq!(read_tcp_frame(&mut s).await, hops(7, 3, b"ack 3"));

    // a plain request on the same connection is answered
    s.write_all(&tcp_frame(&request(4, b"plain")))
        .await
        .expect("send");
    let m = timeout(WAIT, rep.recv())
        .await
        .expect("recv in time")
        .expect("recv");
    assert_eq!(m.body(), b"plain");
    timeout(WAIT, rep.send("ack 4"))
        .await
        .expect("reply in time")
        .expect("reply");
    assert_eq!(read_tcp_frame(&mut s).await, request(4, b"ack 4"));

    let st = rep.stats();
    assert_eq!(st.drops(DropReason::TtlExceeded), 2);
    assert_eq!(st.pipes_closed, 0);
    assert_rep_serves(&rep, &url).await;
    assert_no_library_panic();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn req_drops_late_and_too_deep_replies_and_keeps_the_pipe() {
    init();
    let evil_l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let evil_url = format!("tcp://{}", evil_l.local_addr().expect("addr"));
    let req = spstack::req0().options(Options::default().ttl(8)).build();
    let accept = async {
        let (mut s, _) = evil_l.accept().await.expect("accept");
        handshake(&mut s, REP0, REQ0).await;
        s
    };
    let (dialed, s) = tokio::join!(timeout(WAIT, req.dial(&evil_url)), timeout(WAIT, accept));
    dialed.expect("dial in time").expect("dial");
    let mut s = s.expect("evil accept in time");

    timeout(WAIT, req.send("question"))
        .await
        .expect("send in time")
        .expect("send");
    let got = read_tcp_frame(&mut s).await;
    let id = u32::from_be_bytes(got[..4].try_into().expect("4 bytes")) & 0x7fff_ffff;
    assert_eq!(&got[4..], b"question");
    let pending = {
        let req = req.clone();
        tokio::spawn(async move { timeout(WAIT, req.recv()).await })
    };

    // a reply to a request nobody sent: dropped as late, pipe kept
    s.write_all(&tcp_frame(&request(id ^ 0x1234, b"stranger")))
        .await
        .expect("send");
    wait_stats(&req, "Late", |st| st.drops(DropReason::Late) == 1).await;
    // a reply that went through 9 devices + the id word: more than ttl 8
    let mut deep = Vec::new();
    for w in 1..=9u32 {
        deep.extend_from_slice(&w.to_be_bytes());
    }
    deep.extend_from_slice(&request(id, b"too deep"));
    s.write_all(&tcp_frame(&deep)).await.expect("send");
    let st = wait_stats(&req, "TtlExceeded", |st| {
        st.drops(DropReason::TtlExceeded) == 1
    })
    .await;
    assert_eq!(st.pipes_closed, 0);
    assert_eq!(st.total_rejects(), 0);
    assert_eq!(req.pipes().len(), 1);
    assert!(!pending.is_finished(), "a bad reply was delivered");

    // the right reply on the same connection is delivered
    s.write_all(&tcp_frame(&request(id, b"answer")))
        .await
        .expect("send");
    let r = pending
        .await
        .expect("recv task")
        .expect("reply in time")
        .expect("recv");
    assert_eq!(r.body(), b"answer");
    expect_open(&mut s, Duration::from_millis(50), "after dropped replies").await;
    assert_no_library_panic();
}

/// A raw REP peer `req` dialed: a listener, the dial, the SP handshake.
async fn raw_rep_dialed_by(req: &Socket) -> TcpStream {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("tcp://{}", l.local_addr().expect("addr"));
    let accept = async {
        let (mut s, _) = l.accept().await.expect("accept");
        handshake(&mut s, REP0, REQ0).await;
        s
    };
    let (dialed, s) = tokio::join!(timeout(WAIT, req.dial(&url)), timeout(WAIT, accept));
    dialed.expect("dial in time").expect("dial");
    s.expect("accept in time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn req_takes_a_reply_only_from_the_pipe_that_carried_the_request() {
    // A REQ took a reply with the right id from any of its pipes, and its
    // ids follow one another: one server that saw a request could answer
    // the next one, sent to another server, before that server did.
    init();
    let req = spstack::req0().build();
    let mut peers = [raw_rep_dialed_by(&req).await, raw_rep_dialed_by(&req).await];
    timeout(WAIT, req.send("first"))
        .await
        .expect("send in time")
        .expect("send");
    let (a, b) = peers.split_at_mut(1);
    let (evil, seen) = tokio::select! {
        f = read_tcp_frame(&mut a[0]) => (0, f),
        f = read_tcp_frame(&mut b[0]) => (1, f),
    };
    let seen = u32::from_be_bytes(seen[..4].try_into().expect("4 bytes")) & 0x7fff_ffff;
    let honest = 1 - evil;
    // a new request replaces the first; balanced to the other pipe
    timeout(WAIT, req.send("second"))
        .await
        .expect("send in time")
        .expect("send");
    let got = read_tcp_frame(&mut peers[honest]).await;
    assert_eq!(
        &got[4..],
        b"second",
        "the second request went to the other pipe"
    );
    let id = u32::from_be_bytes(got[..4].try_into().expect("4 bytes")) & 0x7fff_ffff;
    tracing::info!("first id {seen:#x}, second {id:#x}: the evil server can predict it");

    // the evil server answers the request it never got, first
    peers[evil]
        .write_all(&tcp_frame(&request(id, b"forged")))
        .await
        .expect("send");
    wait_stats(&req, "the forged reply at the socket", |st| st.msgs_in == 1).await;
    peers[honest]
        .write_all(&tcp_frame(&request(id, b"genuine")))
        .await
        .expect("send");
    let r = timeout(WAIT, req.recv())
        .await
        .expect("reply in time")
        .expect("recv");
    assert_eq!(
        r.body(),
        b"genuine",
        "the reply of the pipe the request took"
    );
    let st = req.stats();
    assert_eq!(st.drops(DropReason::WrongPipe), 1, "{st}");
    assert_eq!(st.pipes_closed, 0, "both pipes kept\n{st}");
    assert_no_library_panic();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_never_reads_does_not_block_the_rep() {
    init();
    const N: u32 = 400;
    let (rep, url) = rep_on_tcp(Options::default().send_queue(8).write_batch(8)).await;
    let mut s = connect(&url).await;
    handshake(&mut s, REQ0, REP0).await;
    let mut burst = Vec::new();
    for id in 1..=N {
        burst.extend_from_slice(&tcp_frame(&request(id, b"give me 64 KiB")));
    }
    s.write_all(&burst).await.expect("send");
    // answer every request with 64 KiB; the evil peer reads none of it
    let reply = vec![0x42u8; 64 << 10];
    for _ in 0..N {
        let m = timeout(WAIT, rep.recv())
            .await
            .expect("recv in time")
            .expect("recv");
        assert_eq!(m.body(), b"give me 64 KiB");
        timeout(WAIT, rep.send(reply.clone()))
            .await
            .expect("a reply to a peer that never reads must not block")
            .expect("reply");
    }
    let st = wait_stats(&rep, "QueueFull", |st| st.drops(DropReason::QueueFull) > 0).await;
    assert_eq!(st.pipes_closed, 0);
    assert_rep_serves(&rep, &url).await;
    drop(s);
    wait_stats(&rep, "the silent pipe closed", |st| st.pipes_closed == 2).await;
    assert_no_library_panic();
}

// ------------------------------------------------------------------------
// IPC
// ------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipc_type_byte_other_than_1_closes_pipe() {
    init();
    let (rep, url) = rep_on(&ipc_url("type-byte"), Options::default()).await;

    // a correct frame first: the evil peer's framing is right
    let mut s = connect_ipc(&url).await;
    handshake(&mut s, REQ0, REP0).await;
    s.write_all(&ipc_frame(&request(1, b"fine")))
        .await
        .expect("send");
    let m = timeout(WAIT, rep.recv())
        .await
        .expect("recv in time")
        .expect("recv");
    assert_eq!(m.body(), b"fine");
    drop(s);

    for (i, t) in [0x00u8, 0x02, 0xff].into_iter().enumerate() {
        let k = i as u64 + 1;
        let mut s = connect_ipc(&url).await;
        handshake(&mut s, REQ0, REP0).await;
        let mut f = ipc_frame(&request(2, b"bad type"));
        f[0] = t;
        s.write_all(&f).await.expect("send");
        expect_closed(&mut s, &format!("ipc type {t:#04x}")).await;
        wait_stats(
            &rep,
            &format!("ProtocolError after ipc type {t:#04x}"),
            |st| st.rejects(RejectReason::ProtocolError) == k,
        )
        .await;
        wait_log(&[
            "pipe closed",
            &format!("ipc message type {t:#04x}, expected 0x01"),
        ])
        .await;
    }
    let st = wait_stats(&rep, "all bad pipes closed", |st| st.pipes_closed == 4).await;
    assert_eq!(st.msgs_in, 1);
    assert_rep_serves(&rep, &url).await;
    assert_no_library_panic();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipc_header_and_length_attacks() {
    init();
    let (rep, url) = rep_on(&ipc_url("header"), Options::default().recv_max_size(4096)).await;

    // wrong magic
    let mut s = connect_ipc(&url).await;
    assert_eq!(read_header(&mut s).await, sp_header(REP0));
    s.write_all(b"\x00SQ\x00\x00\x30\x00\x00")
        .await
        .expect("send");
    expect_closed(&mut s, "ipc wrong magic").await;
    wait_stats(&rep, "BadHeader", |st| {
        st.rejects(RejectReason::BadHeader) == 1
    })
    .await;

    // incompatible protocol
    let mut s = connect_ipc(&url).await;
    assert_eq!(read_header(&mut s).await, sp_header(REP0));
    s.write_all(&sp_header(PULL0)).await.expect("send");
    expect_closed(&mut s, "ipc protocol mismatch").await;
    wait_stats(&rep, "ProtocolMismatch", |st| {
        st.rejects(RejectReason::ProtocolMismatch) == 1
    })
    .await;

    // truncated header, then a clean close
    let mut s = connect_ipc(&url).await;
    assert_eq!(read_header(&mut s).await, sp_header(REP0));
    s.write_all(b"\x00SP").await.expect("send");
    s.shutdown().await.expect("shutdown");
    expect_closed(&mut s, "ipc truncated header").await;
    wait_stats(&rep, "BadHeader", |st| {
        st.rejects(RejectReason::BadHeader) == 2
    })
    .await;
    assert_eq!(rep.stats().pipes_opened, 0);

    // u64::MAX and recv_max + 1
    for (i, len) in [u64::MAX, 4097].into_iter().enumerate() {
        let k = i as u64 + 1;
        let mut s = connect_ipc(&url).await;
        handshake(&mut s, REQ0, REP0).await;
        let mut f = vec![0x01];
        f.extend_from_slice(&len.to_be_bytes());
        f.extend_from_slice(&request(1, b"x"));
        s.write_all(&f).await.expect("send");
        expect_closed(&mut s, &format!("ipc length {len}")).await;
        wait_stats(&rep, "TooLarge", |st| {
            st.drops(DropReason::TooLarge) == k && st.rejects(RejectReason::ProtocolError) == k
        })
        .await;
    }

    // a frame cut short
    let mut s = connect_ipc(&url).await;
    handshake(&mut s, REQ0, REP0).await;
    s.write_all(&ipc_frame(&request(1, b"cut short"))[..12])
        .await
        .expect("send");
    s.shutdown().await.expect("shutdown");
    expect_closed(&mut s, "ipc mid-frame close").await;
    let st = wait_stats(&rep, "ProtocolError", |st| {
        st.rejects(RejectReason::ProtocolError) == 3 && st.pipes_closed == 3
    })
    .await;
    assert_eq!(st.msgs_in, 0);
    assert_rep_serves(&rep, &url).await;
    assert_no_library_panic();
}

// ------------------------------------------------------------------------
// Many half-open connections
// ------------------------------------------------------------------------

/// Copies `from` to `to`, every chunk `delay` later, order kept; shuts
/// `to` down after `from` ends. One direction of a delaying proxy.
fn pump<R, W>(mut from: R, mut to: W, delay: Duration)
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(tokio::time::Instant, Vec<u8>)>(1024);
    tokio::spawn(async move {
        let mut buf = vec![0u8; 16 << 10];
        while let Ok(n @ 1..) = from.read(&mut buf).await {
            let due = tokio::time::Instant::now() + delay;
            if tx.send((due, buf[..n].to_vec())).await.is_err() {
                break;
            }
        }
    });
    tokio::spawn(async move {
        while let Some((due, b)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&b).await.is_err() {
                break;
            }
        }
        let _ = to.shutdown().await;
    });
}

/// A TCP proxy to `to` that delays every chunk `delay` in each direction,
/// order kept: a peer that far away. Serves until the test ends.
/// Returns the proxy's `ip:port`.
async fn delay_proxy(to: std::net::SocketAddr, delay: Duration) -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("proxy bind");
    let url = l.local_addr().expect("addr").to_string();
    tokio::spawn(async move {
        while let Ok((c, _)) = l.accept().await {
            let Ok(u) = TcpStream::connect(to).await else {
                continue;
            };
            let (cr, cw) = c.into_split();
            let (ur, uw) = u.into_split();
            pump(cr, uw, delay);
            pump(ur, cw, delay);
        }
    });
    url
}

/// The same over unix sockets: listens at `at` (an ipc:// url), connects
/// to the socket file `to` as this process's user. Returns `at`.
async fn ipc_delay_proxy(to: std::path::PathBuf, at: String, delay: Duration) -> String {
    let l = tokio::net::UnixListener::bind(at.strip_prefix("ipc://").expect("ipc url"))
        .expect("proxy bind");
    tokio::spawn(async move {
        while let Ok((c, _)) = l.accept().await {
            let Ok(u) = UnixStream::connect(&to).await else {
                continue;
            };
            let (cr, cw) = c.into_split();
            let (ur, uw) = u.into_split();
            pump(cr, uw, delay);
            pump(ur, cw, delay);
        }
    });
    at
}

/// Idle connections to `target` from 127.0.0.2 (one source address), one
/// a millisecond, held open (the newest 2,000), until `stop` is set or 20 s
/// have passed. Returns how many connected.
fn idle_flood_from_127_0_0_2(
    target: std::net::SocketAddr,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<u32> {
    tokio::spawn(async move {
        let t0 = Instant::now();
        let mut held = std::collections::VecDeque::new();
        let mut made = 0u32;
        while !stop.load(std::sync::atomic::Ordering::Relaxed)
            && t0.elapsed() < Duration::from_secs(20)
        {
            let s = tokio::net::TcpSocket::new_v4().expect("socket");
            s.bind("127.0.0.2:0".parse().expect("src"))
                .expect("bind 127.0.0.2");
            if let Ok(c) = s.connect(target).await {
                made += 1;
                held.push_back(c);
                if held.len() > 2000 {
                    held.pop_front();
                }
            }
            sleep(Duration::from_millis(1)).await;
        }
        made
    })
}

/// A listener whose handshake slots (`max_half_open`, or a WebSocket
/// port's `max_routing`) are held by idle connections from 127.0.0.2,
/// which keep arriving and evicting, while honest REQs from 127.0.0.1,
/// 150 ms away, dial: see [`flood_spares_a_far_peer`].
async fn one_source_flood_spares_a_far_peer(
    rep: &Socket,
    target: std::net::SocketAddr,
    dial_url: impl Fn(&str) -> String,
    req: impl Fn() -> Socket,
) -> Stats {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flood = idle_flood_from_127_0_0_2(target, stop.clone());
    let far = dial_url(&delay_proxy(target, Duration::from_millis(150)).await);
    flood_spares_a_far_peer(rep, flood, stop, &far, req).await
}

/// While `flood` (one source: an address, or for ipc a user) fills `rep`'s
/// handshake slots and keeps arriving and evicting, three honest REQs
/// dialing `far` (another source, 150 ms away behind a delaying proxy)
/// dial once each (no redial for a minute, so an evicted handshake is not
/// rescued by a retry) and must complete a round trip: the flood's source
/// holds the most slots, so the evictions it causes fall on its own
/// connections. With every connection counted as a source of its own
/// (tcp's `tcp://ip:port` was not parsed) or all as one (tls+tcp and ws
/// reported no address, ipc its listener's path), eviction was random and
/// each honest handshake, overlapping ~100 evictions among 8 slots, almost
/// never survived. Stops the flood (`stop`) before returning.
async fn flood_spares_a_far_peer(
    rep: &Socket,
    flood: tokio::task::JoinHandle<u32>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    far: &str,
    req: impl Fn() -> Socket,
) -> Stats {
    // the slots fill within a few dozen connections
    sleep(Duration::from_millis(300)).await;
    let mut outcome = Ok(());
    for round in 0..3 {
        let req = req();
        let body = format!("far {round}");
        let round_trip = async {
            req.dial(far).await.map_err(|e| format!("dial: {e}"))?;
            req.send(body.as_str())
                .await
                .map_err(|e| format!("send: {e}"))?;
            let m = rep.recv().await.map_err(|e| format!("recv: {e}"))?;
            assert_eq!(m.body(), body.as_bytes());
            rep.send("near").await.map_err(|e| format!("reply: {e}"))?;
            let r = req.recv().await.map_err(|e| format!("reply recv: {e}"))?;
            assert_eq!(r.body(), b"near");
            Ok::<_, String>(())
        };
        outcome = match timeout(Duration::from_secs(8), round_trip).await {
            Ok(r) => r,
            Err(_) => Err("no round trip within 8 s".into()),
        }
        .map_err(|e| format!("honest peer {round}: {e}"));
        req.close();
        if outcome.is_err() {
            break;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let made = flood.await.expect("flood");
    let st = rep.stats();
    if let Err(e) = outcome {
        panic!("{e}, under a flood of {made} idle connections from one source\n{st}");
    }
    assert!(
        st.rejects(RejectReason::Evicted) > 50,
        "the flood ({made} connections) filled the slots and was evicted, counted on the socket\n{st}"
    );
    st
}

/// A REQ that dials once and does not redial within the test.
fn req_no_redial() -> spstack::SocketBuilder {
    spstack::req0().options(
        Options::default()
            .reconnect_min(Duration::from_secs(60))
            .reconnect_max(Duration::from_secs(60)),
    )
}

/// Slow handshakes (10 s) and 8 slots: a flood fills them at once.
fn flooded_listener_opts() -> Options {
    Options::default()
        .max_half_open(8)
        .handshake_timeout(Duration::from_secs(10))
}

fn tls_pair() -> (sp_transports::TlsConfig, sp_transports::TlsConfig) {
    use sp_transports::tls::{Identity, Roots, TlsConfig};
    let c = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
    let der = rustls_pki_types::CertificateDer::from(c.cert.der().to_vec());
    let key = rustls_pki_types::PrivatePkcs8KeyDer::from(c.key_pair.serialize_der());
    let server =
        TlsConfig::new().server_identity(Identity::from_der(vec![der.clone()], key.into()));
    let client = TlsConfig::new()
        .roots(Roots::from_der(vec![der]))
        .server_name("localhost");
    (server, client)
}

fn addr_of(url: &str) -> std::net::SocketAddr {
    let rest = url.split_once("://").expect("scheme").1;
    let authority = rest.split_once('/').map_or(rest, |(a, _)| a);
    authority.parse().expect("ip:port")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_flood_from_one_source_does_not_evict_a_peer_from_another_over_tcp() {
    init();
    let _heavy = HEAVY.lock().await;
    let (rep, url) = rep_on_tcp(flooded_listener_opts()).await;
    one_source_flood_spares_a_far_peer(
        &rep,
        addr_of(&url),
        |a| format!("tcp://{a}"),
        || req_no_redial().build(),
    )
    .await;
    assert_no_library_panic();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_flood_from_one_source_does_not_evict_a_peer_from_another_over_tls_tcp() {
    init();
    let _heavy = HEAVY.lock().await;
    let (server, client) = tls_pair();
    let rep = spstack::rep0()
        .options(flooded_listener_opts())
        .transport(std::sync::Arc::new(sp_transports::tls_tcp(server)))
        .build();
    let url = listen(&rep, "tls+tcp://127.0.0.1:0").await;
    one_source_flood_spares_a_far_peer(
        &rep,
        addr_of(&url),
        |a| format!("tls+tcp://{a}"),
        || {
            req_no_redial()
                .transport(std::sync::Arc::new(sp_transports::tls_tcp(client.clone())))
                .build()
        },
    )
    .await;
    assert_no_library_panic();
}

/// A ws:// (or wss://) REP whose port reads at most 8 request heads at once.
fn ws_rep(secure: Option<sp_transports::TlsConfig>) -> Socket {
    let cfg = sp_ws::WsConfig::default().max_routing(8);
    let ws: std::sync::Arc<dyn spstack::transport::Transport> = match secure {
        None => std::sync::Arc::new(sp_ws::Ws::new(spstack::Tcp).with_config(cfg)),
        Some(tls) => std::sync::Arc::new(
            sp_ws::Ws::secure(sp_transports::Tls::new(spstack::Tcp, tls)).with_config(cfg),
        ),
    };
    spstack::rep0()
        .options(flooded_listener_opts())
        .transport(ws)
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_flood_from_one_source_does_not_evict_a_peer_from_another_over_ws() {
    init();
    let _heavy = HEAVY.lock().await;
    let rep = ws_rep(None);
    let url = listen(&rep, "ws://127.0.0.1:0/sp").await;
    one_source_flood_spares_a_far_peer(
        &rep,
        addr_of(&url),
        |a| format!("ws://{a}/sp"),
        || {
            req_no_redial()
                .transport(std::sync::Arc::new(sp_ws::Ws::new(spstack::Tcp)))
                .build()
        },
    )
    .await;
    assert_no_library_panic();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_flood_from_one_source_does_not_evict_a_peer_from_another_over_wss() {
    init();
    let _heavy = HEAVY.lock().await;
    let (server, client) = tls_pair();
    let rep = ws_rep(Some(server));
    let url = listen(&rep, "wss://127.0.0.1:0/sp").await;
    one_source_flood_spares_a_far_peer(
        &rep,
        addr_of(&url),
        |a| format!("wss://{a}/sp"),
        || {
            let tls = sp_transports::Tls::new(spstack::Tcp, client.clone());
            req_no_redial()
                .transport(std::sync::Arc::new(sp_ws::Ws::secure(tls)))
                .build()
        },
    )
    .await;
    assert_no_library_panic();
}

/// The user the ipc flood connects as: another source than this process's
/// (root's) for ipc's half-open cap, which counts peers by user id.
const FLOOD_UID: u32 = 65534;

/// Idle connections to the socket file `path` made as user `uid`, one a
/// millisecond, held open (the newest 2,000), until `stop` is set or 20 s
/// have passed. Returns how many connected. They are made on a thread of
/// their own whose credentials alone change: the runtime's threads, which
/// the honest peer's connections come from, stay this process's user.
/// Needs root (as tests/hosts does); says so instead of skipping.
fn idle_ipc_flood_as(
    uid: u32,
    path: std::path::PathBuf,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<u32> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        // SAFETY: setresuid(2) through the raw system call changes the
        // calling thread's credentials only (libc's wrapper would change
        // every thread's, the runtime's too); it takes plain integers.
        let r = unsafe {
            libc::syscall(
                libc::SYS_setresuid,
                libc::uid_t::from(uid),
                libc::uid_t::from(uid),
                libc::uid_t::from(uid),
            )
        };
        let started = if r == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        };
        let ok = started.is_ok();
        let _ = ready_tx.send(started);
        if !ok {
            return 0;
        }
        let t0 = Instant::now();
        let mut held = std::collections::VecDeque::new();
        let mut made = 0u32;
        while !stop.load(std::sync::atomic::Ordering::Relaxed)
            && t0.elapsed() < Duration::from_secs(20)
        {
            if let Ok(c) = std::os::unix::net::UnixStream::connect(&path) {
                made += 1;
                held.push_back(c);
                if held.len() > 2000 {
                    held.pop_front();
                }
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        made
    });
    match ready_rx.recv() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!(
            "the flood connects as uid {uid}, another ipc source than this process's: \
             this test runs as root (setresuid: {e})"
        ),
        Err(_) => panic!("the flood thread ended before starting"),
    }
    tokio::task::spawn_blocking(move || thread.join().expect("flood thread"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_flood_from_one_user_does_not_evict_a_peer_of_another_over_ipc() {
    // ipc's peers have no address: every connection reported the
    // listener's path, so all were one source and eviction random. Its
    // sources are now user ids (SO_PEERCRED): one local user's flood
    // evicts its own handshakes, not another user's.
    init();
    let _heavy = HEAVY.lock().await;
    let (rep, url) = rep_on(&ipc_url("flood-by-uid"), flooded_listener_opts()).await;
    let path = std::path::PathBuf::from(url.strip_prefix("ipc://").expect("ipc url"));
    // the flood's user may connect (connect(2) needs write permission)
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o777))
        .expect("chmod the socket file");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flood = idle_ipc_flood_as(FLOOD_UID, path.clone(), stop.clone());
    let proxy_at = ipc_url("flood-by-uid-proxy");
    let far = ipc_delay_proxy(path.clone(), proxy_at.clone(), Duration::from_millis(150)).await;
    flood_spares_a_far_peer(&rep, flood, stop, &far, || req_no_redial().build()).await;
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_file(proxy_at.strip_prefix("ipc://").expect("ipc url"));
    assert_no_library_panic();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_flood_does_not_starve_a_peer_50ms_away() {
    // Evicting the oldest handshake let ~1,000 connections a second kill
    // every handshake slower than the flood's turnover (16 slots: 16 ms):
    // a peer 50 ms away never opened a pipe. Evicting from the source that
    // holds the most keeps it.
    init();
    let _heavy = HEAVY.lock().await;
    let (rep, url) = rep_on_tcp(
        Options::default()
            .max_half_open(16)
            .handshake_timeout(Duration::from_secs(5)),
    )
    .await;
    let target: std::net::SocketAddr = url["tcp://".len()..].parse().expect("addr");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flooding = stop.clone();
    // idle connections from 127.0.0.2, one a millisecond, for at most 10 s
    let flood = tokio::spawn(async move {
        let t0 = Instant::now();
        let mut held = std::collections::VecDeque::new();
        let mut made = 0u32;
        while !flooding.load(std::sync::atomic::Ordering::Relaxed)
            && t0.elapsed() < Duration::from_secs(10)
        {
            let s = tokio::net::TcpSocket::new_v4().expect("socket");
            s.bind("127.0.0.2:0".parse().expect("src"))
                .expect("bind 127.0.0.2");
            if let Ok(c) = s.connect(target).await {
                made += 1;
                held.push_back(c);
                if held.len() > 2000 {
                    held.pop_front();
                }
            }
            sleep(Duration::from_millis(1)).await;
        }
        made
    });
    let far = format!(
        "tcp://{}",
        delay_proxy(target, Duration::from_millis(50)).await
    );
    sleep(Duration::from_millis(300)).await;
    let req = spstack::req0()
        .options(Options::default().reconnect_min(Duration::from_millis(20)))
        .build();
    req.dial_background(&far).expect("dial");
    let t1 = Instant::now();
    // the client awaits its reply while the server serves, as a REQ user
    // does: a request written to a connection the flood's eviction then
    // closed is resent by the waiting recv when that pipe dies
    let client = async {
        req.send("far").await.expect("send");
        assert_eq!(req.recv().await.expect("reply").body(), b"near");
    };
    let server = async {
        let m = rep.recv().await.expect("recv");
        assert_eq!(m.body(), b"far");
        rep.send("near").await.expect("reply");
    };
    let round_trip = async {
        tokio::join!(client, server);
    };
    let served = timeout(Duration::from_secs(8), round_trip).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let made = flood.await.expect("flood");
    let st = rep.stats();
    assert!(
        served.is_ok(),
        "the far peer got no round trip in 8 s under a flood of {made} connections\n{st}"
    );
    assert!(
        st.rejects(RejectReason::Evicted) > 100,
        "the flood filled the cap ({made} connections)\n{st}"
    );
    tracing::info!(
        "far peer served in {:?} during a flood of {made}",
        t1.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_flood_does_not_starve_a_good_peer() {
    init();
    let _heavy = HEAVY.lock().await;
    const N: usize = 1000;
    let hs = Duration::from_secs(2);
    let opts = Options::default().handshake_timeout(hs);
    let default_half_open = opts.max_half_open;
    let (rep, url) = rep_on_tcp(opts).await;

    // a background REQ that starts dialing in the middle of the flood
    let req_bg = spstack::req0()
        .options(Options::default().reconnect_min(Duration::from_millis(20)))
        .build();
    let t0 = Instant::now();
    let mut evil = Vec::with_capacity(N);
    for i in 0..N {
        let mut s = connect(&url).await;
        if i % 2 == 1 {
            // three bytes of a header, then silence
            s.write_all(b"\x00SP").await.expect("send 3 bytes");
        }
        evil.push(s);
        if i == N / 2 {
            req_bg.dial_background(&url).expect("dial_background");
        }
    }
    let flood_time = t0.elapsed();

    // the good peer round-trips within a few seconds, during the half-open storm
    let t1 = Instant::now();
    let serve = async {
        timeout(WAIT, req_bg.send("bg"))
            .await
            .expect("bg send in time")
            .expect("send");
        let m = timeout(WAIT, rep.recv())
            .await
            .expect("bg request in time")
            .expect("recv");
        assert_eq!(m.body(), b"bg");
        timeout(WAIT, rep.send("bg ok"))
            .await
            .expect("reply in time")
            .expect("reply");
        let r = timeout(WAIT, req_bg.recv())
            .await
            .expect("bg reply in time")
            .expect("recv");
        assert_eq!(r.body(), b"bg ok");
    };
    serve.await;
    assert_rep_serves(&rep, &url).await;
    let served = t1.elapsed();
    assert!(
        served < Duration::from_secs(3),
        "good peers took {served:?} during the flood"
    );

    // Eviction is random, so a flood connection that escaped it waits out
    // its deadline instead: each one beyond the cap is counted either way.
    let st = rep.stats();
    let ended = st.rejects(RejectReason::Evicted) + st.rejects(RejectReason::HandshakeTimeout);
    assert!(
        ended >= (N - default_half_open - 16) as u64,
        "{N} half-open connections with max_half_open {default_half_open}: only {ended} evicted or timed out\n{st}"
    );
    assert!(st.rejects(RejectReason::Evicted) > 0, "{st}");
    wait_log(&["half-open handshake evicted"]).await;

    // every evil connection is closed: evicted at once, or at the deadline
    let mut closers = tokio::task::JoinSet::new();
    for (i, mut s) in evil.into_iter().enumerate() {
        closers.spawn(async move {
            expect_closed(&mut s, &format!("half-open connection {i}")).await;
        });
    }
    while let Some(r) = closers.join_next().await {
        r.expect("every half-open connection is closed by the socket");
    }
    let st = wait_stats(&rep, "every half-open connection counted", |st| {
        st.rejects(RejectReason::Evicted) + st.rejects(RejectReason::HandshakeTimeout) >= N as u64
    })
    .await;
    assert!(st.rejects(RejectReason::HandshakeTimeout) > 0, "{st}");
    assert_eq!(
        st.pipes_opened, 2,
        "only the two good peers became pipes\n{st}"
    );
    wait_log(&["HandshakeTimeout", "handshake did not complete within"]).await;
    assert!(
        t0.elapsed() < flood_time + hs + WAIT,
        "the flood took {:?} to clear",
        t0.elapsed()
    );

    assert_rep_serves(&rep, &url).await;
    assert_no_library_panic();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_reset_at_once_do_not_stall_the_listener() {
    init();
    let (rep, url) = rep_on_tcp(Options::default()).await;
    let t0 = Instant::now();
    for _ in 0..300 {
        let s = connect(&url).await;
        s.set_zero_linger().expect("SO_LINGER 0");
        drop(s);
    }
    assert_rep_serves(&rep, &url).await;
    let took = t0.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "300 resets then a round trip took {took:?}"
    );
    assert_eq!(rep.stats().pipes_opened, 1);
    assert_no_library_panic();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_deadline_covers_a_trickling_peer() {
    init();
    let hs = Duration::from_millis(800);
    let (rep, url) = rep_on_tcp(Options::default().handshake_timeout(hs)).await;
    let mut s = connect(&url).await;
    let port = s.local_addr().expect("addr").port();
    assert_eq!(read_header(&mut s).await, sp_header(REP0));
    let (mut r, mut w) = s.into_split();
    // an extended header whose 1 KiB layer list arrives one byte every 10 ms:
    // every read makes progress, but the whole handshake has one deadline
    let t0 = Instant::now();
    let trickle = tokio::spawn(async move {
        let mut bytes = vec![0, b'S', b'P', 1, 0, 0x30, 0, 0, 0x04, 0x00];
        bytes.extend(std::iter::repeat_n(3u8, 1024));
        for b in bytes {
            if w.write_all(&[b]).await.is_err() {
                return;
            }
            sleep(Duration::from_millis(10)).await;
        }
    });
    expect_closed(&mut r, "trickled handshake").await;
    let took = t0.elapsed();
    trickle.abort();
    assert!(
        took >= hs.mul_f32(0.9) && took < hs + Duration::from_millis(1500),
        "a trickling handshake was closed after {took:?} (deadline {hs:?})"
    );
    let st = wait_stats(&rep, "HandshakeTimeout", |st| {
        st.rejects(RejectReason::HandshakeTimeout) == 1
    })
    .await;
    assert_eq!(st.pipes_opened, 0);
    let peer = format!("peer=tcp://127.0.0.1:{port}");
    wait_log(&[
        &peer,
        "HandshakeTimeout",
        "handshake did not complete within",
    ])
    .await;
    assert_rep_serves(&rep, &url).await;
    assert_no_library_panic();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dialing_an_evil_listener_fails_with_a_clear_error() {
    init();
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("tcp://{}", l.local_addr().expect("addr"));
    let req = spstack::req0()
        .options(Options::default().handshake_timeout(Duration::from_millis(500)))
        .build();
    // (what the evil listener answers, reason counted, words the error must contain)
    let cases: [(Option<[u8; 8]>, RejectReason, &str); 3] = [
        (
            None,
            RejectReason::HandshakeTimeout,
            "handshake did not complete within",
        ),
        (
            Some(*b"\x00SP\x00\x00\x31\x00\x01"),
            RejectReason::BadHeader,
            "non-zero reserved bytes",
        ),
        (
            Some(sp_header(PULL0)),
            RejectReason::ProtocolMismatch,
            "peer speaks pull",
        ),
    ];
    for (answer, reason, words) in cases {
        let evil = async {
            let (mut s, _) = l.accept().await.expect("accept");
            assert_eq!(read_header(&mut s).await, sp_header(REQ0));
            if let Some(h) = answer {
                s.write_all(&h).await.expect("answer");
            }
            s
        };
        let (dialed, s) = tokio::join!(timeout(WAIT, req.dial(&url)), timeout(WAIT, evil));
        let err = dialed
            .expect("dial must return within the deadline")
            .expect_err("dialing an evil listener must fail");
        assert!(
            err.to_string().contains(words),
            "{reason:?}: unclear error: {err}"
        );
        let mut s = s.expect("evil accept in time");
        expect_closed(&mut s, &format!("dialer after {reason:?}")).await;
        wait_stats(&req, &format!("{reason:?}"), |st| st.rejects(reason) == 1).await;
    }
    assert_eq!(req.stats().pipes_opened, 0);
    // a failed first dial leaves no redialer behind
    assert!(
        timeout(Duration::from_millis(300), l.accept())
            .await
            .is_err(),
        "the failed dial kept redialing"
    );

    let (rep, rep_url) = rep_on_tcp(Options::default()).await;
    timeout(WAIT, req.dial(&rep_url))
        .await
        .expect("dial in time")
        .expect("dial");
    timeout(WAIT, req.send("hi"))
        .await
        .expect("send in time")
        .expect("send");
    let m = timeout(WAIT, rep.recv())
        .await
        .expect("recv in time")
        .expect("recv");
    assert_eq!(m.body(), b"hi");
    timeout(WAIT, rep.send("ho"))
        .await
        .expect("reply in time")
        .expect("reply");
    let r = timeout(WAIT, req.recv())
        .await
        .expect("reply in time")
        .expect("recv");
    assert_eq!(r.body(), b"ho");
    assert_no_library_panic();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_a_pipe_stops_a_writer_blocked_on_a_peer_that_does_not_read() {
    init();
    let _heavy = HEAVY.lock().await;
    const BIG: usize = 64 << 20;
    let (rep, url) = rep_on_tcp(Options::default()).await;
    let mut s = connect(&url).await;
    handshake(&mut s, REQ0, REP0).await;
    s.write_all(&tcp_frame(&request(1, b"send me a lot")))
        .await
        .expect("send");
    let m = timeout(WAIT, rep.recv())
        .await
        .expect("recv in time")
        .expect("recv");
    assert_eq!(m.body(), b"send me a lot");
    timeout(WAIT, rep.send(vec![0x5a; BIG]))
        .await
        .expect("reply queued in time")
        .expect("reply");
    // we do not read: the pipe's writer is stuck with most of 64 MiB unsent
    sleep(Duration::from_millis(200)).await;

    // now break the protocol: the socket closes the pipe...
    s.write_all(&u64::MAX.to_be_bytes()).await.expect("send");
    wait_stats(&rep, "pipe closed for TooLarge", |st| {
        st.drops(DropReason::TooLarge) == 1 && st.pipes_closed == 1
    })
    .await;
    assert!(rep.pipes().is_empty());
    // (a short linger to flush a closing pipe is fine; a stuck writer is not)
    sleep(Duration::from_millis(500)).await;

    // ...so the connection must end without the rest of the reply being
    // written: at most what already sat in kernel buffers arrives
    let mut total = 0usize;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match timeout(WAIT, s.read(&mut buf)).await {
            Err(_) => panic!("the connection neither ended nor delivered anything for {WAIT:?}"),
            Ok(Ok(0)) => break,
            Ok(Ok(n)) => total += n,
            Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionReset => break,
            Ok(Err(e)) => panic!("read: {e}"),
        }
    }
    let frame = 8 + 4 + BIG;
    assert!(
        total < frame,
        "the closed pipe kept writing: the peer received all {total} bytes of the \
         {frame}-byte reply after the pipe was closed"
    );
    assert_rep_serves(&rep, &url).await;
    assert_no_library_panic();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_empty_frames_cost_linear_time() {
    init();
    const N: usize = 50_000;
    let pull = spstack::pull0().build();
    let url = listen(&pull, "tcp://127.0.0.1:0").await;
    let mut s = connect(&url).await;
    handshake(&mut s, PUSH0, PULL0).await;
    let bytes = vec![0u8; 8 * N]; // N zero-length frames
    let t0 = Instant::now();
    let writer = tokio::spawn(async move {
        s.write_all(&bytes).await.expect("send");
        s
    });
    for i in 0..N {
        let m = timeout(WAIT, pull.recv())
            .await
            .unwrap_or_else(|_| panic!("empty frame {i} of {N} not delivered in time"))
            .expect("recv");
        assert!(m.body().is_empty());
    }
    let took = t0.elapsed();
    let _s = writer.await.expect("writer");
    assert!(
        took < Duration::from_secs(10),
        "{N} empty frames took {took:?}"
    );
    assert_eq!(pull.stats().msgs_in, N as u64);
    let push = spstack::push0().build();
    timeout(WAIT, push.dial(&url))
        .await
        .expect("dial in time")
        .expect("dial");
    timeout(WAIT, push.send("after"))
        .await
        .expect("send in time")
        .expect("send");
    let m = timeout(WAIT, pull.recv())
        .await
        .expect("recv in time")
        .expect("recv");
    assert_eq!(m.body(), b"after");
    assert_no_library_panic();
}

// ------------------------------------------------------------------------
// Other protocols
// ------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pair_refuses_a_second_peer_and_keeps_the_first() {
    init();
    let a = spstack::pair0().build();
    let url = listen(&a, "tcp://127.0.0.1:0").await;
    let b = spstack::pair0().build();
    timeout(WAIT, b.dial(&url))
        .await
        .expect("dial in time")
        .expect("dial");
    wait_stats(&a, "first pipe", |st| st.pipes_opened == 1).await;

    let mut s = connect(&url).await;
    handshake(&mut s, PAIR0, PAIR0).await;
    s.write_all(&tcp_frame(b"intruder")).await.expect("send");
    expect_closed(&mut s, "second PAIR peer").await;
    wait_stats(&a, "PipeLimit", |st| {
        st.rejects(RejectReason::PipeLimit) == 1
    })
    .await;
    wait_log(&["pipe refused", "PipeLimit", "takes no more pipes"]).await;

    timeout(WAIT, b.send("to a"))
        .await
        .expect("send in time")
        .expect("send");
    let m = timeout(WAIT, a.recv())
        .await
        .expect("recv in time")
        .expect("recv");
    assert_eq!(m.body(), b"to a", "the intruder's message was delivered");
    timeout(WAIT, a.send("to b"))
        .await
        .expect("send in time")
        .expect("send");
    let m = timeout(WAIT, b.recv())
        .await
        .expect("recv in time")
        .expect("recv");
    assert_eq!(m.body(), b"to b");
    assert_no_library_panic();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_survives_an_evil_pusher() {
    init();
    let pull = spstack::pull0()
        .options(Options::default().recv_max_size(1024))
        .build();
    let url = listen(&pull, "tcp://127.0.0.1:0").await;

    // oversized
    let mut s = connect(&url).await;
    handshake(&mut s, PUSH0, PULL0).await;
    s.write_all(&tcp_frame(&[7u8; 1025])).await.expect("send");
    expect_closed(&mut s, "PUSH oversize").await;
    wait_stats(&pull, "TooLarge", |st| st.drops(DropReason::TooLarge) == 1).await;

    // a good frame then a cut one on the same connection: the good one arrives
    let mut s = connect(&url).await;
    handshake(&mut s, PUSH0, PULL0).await;
    let mut bytes = tcp_frame(b"whole");
    bytes.extend_from_slice(&tcp_frame(b"cut short")[..11]);
    s.write_all(&bytes).await.expect("send");
    s.shutdown().await.expect("shutdown");
    expect_closed(&mut s, "PUSH mid-frame").await;
    let m = timeout(WAIT, pull.recv())
        .await
        .expect("recv in time")
        .expect("recv");
    assert_eq!(m.body(), b"whole");
    wait_stats(&pull, "ProtocolError", |st| {
        st.rejects(RejectReason::ProtocolError) == 2 && st.pipes_closed == 2
    })
    .await;

    // a PULL speaking to a PULL is refused
    let mut s = connect(&url).await;
    assert_eq!(read_header(&mut s).await, sp_header(PULL0));
    s.write_all(&sp_header(PULL0)).await.expect("send");
    expect_closed(&mut s, "PULL to PULL").await;
    wait_stats(&pull, "ProtocolMismatch", |st| {
        st.rejects(RejectReason::ProtocolMismatch) == 1
    })
    .await;

    let push = spstack::push0().build();
    timeout(WAIT, push.dial(&url))
        .await
        .expect("dial in time")
        .expect("dial");
    timeout(WAIT, push.send("good"))
        .await
        .expect("send in time")
        .expect("send");
    let m = timeout(WAIT, pull.recv())
        .await
        .expect("recv in time")
        .expect("recv");
    assert_eq!(m.body(), b"good");
    assert_no_library_panic();
}

// ------------------------------------------------------------------------
// Garbage
// ------------------------------------------------------------------------

/// xorshift64*: deterministic garbage without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_garbage_never_panics() {
    init();
    let (rep, url) = rep_on_tcp(Options::default().recv_max_size(4096).ttl(8)).await;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for round in 0..120u64 {
        let mut s = connect(&url).await;
        match round % 4 {
            // garbage instead of a header
            0 => {
                let n = rng.below(24) as usize;
                let _ = s.write_all(&rng.bytes(n)).await;
            }
            // a good header, then frames with random headers and lengths
            _ => {
                s.write_all(&sp_header(REQ0)).await.expect("send");
                for _ in 0..rng.below(8) {
                    let n = rng.below(64) as usize;
                    let mut payload = rng.bytes(n);
                    if rng.below(2) == 0 && payload.len() >= 4 {
                        payload[0] |= 0x80; // often a plausible request id
                    }
                    let mut f = tcp_frame(&payload);
                    if rng.below(8) == 0 {
                        f[..8].copy_from_slice(&rng.next().to_be_bytes()); // absurd length
                    }
                    if rng.below(8) == 0 {
                        let cut = rng.below(f.len() as u64) as usize;
                        f.truncate(cut);
                    }
                    if s.write_all(&f).await.is_err() {
                        break;
                    }
                }
            }
        }
        if round % 3 == 0 {
            let _ = s.set_zero_linger();
        }
        drop(s);
    }
    // drain what was plausible enough to be delivered, then a good round trip
    while let Ok(Ok(_)) = timeout(Duration::from_millis(50), rep.recv()).await {}
    assert_rep_serves(&rep, &url).await;
    wait_until("garbage pipes closed", || rep.pipes().is_empty()).await;
    assert_no_library_panic();
}

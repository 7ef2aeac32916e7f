//! zmq.rs (the `zeromq` crate) as an anchor beside spstack and the C anchors
//! of `../shared/perf-anchors` (same modes, same RESULT lines as their
//! `harness.h`):
//!
//! ```text
//! bench_zmqrs thr URL SIZE SECS    PUSH/PULL, timed at the receiver
//! bench_zmqrs lat URL SIZE COUNT   REQ/REP round trips
//! ```
//!
//! `thr`: PULL binds in this process and does the timing; PUSH runs in a
//! child process (this binary, `--push`), sends SIZE-byte messages for SECS
//! seconds (at most 200 M), then a 0-byte terminator. The receiver times from
//! the first message to the last one before the terminator.
//!
//! zmq.rs queues up to 100,000 messages per peer behind `send` (hundreds of
//! MB at 64 KiB), so a sender left alone measures its own queue rather than
//! the transfer. Here the sender keeps at most a window of messages in flight
//! (sent, not yet taken by the receiving application): the receiver
//! acknowledges the count it has taken every quarter window, over the child's
//! stdin (8 bytes, not through zmq.rs). The window is `ZMQRS_WINDOW`
//! messages (default 1000, libzmq's default SNDHWM) and at most
//! `ZMQRS_WINDOW_BYTES` bytes (default 8 MiB), never under 2 messages;
//! `ZMQRS_WINDOW=0` removes the cap (zmq.rs as it is). The RESULT line
//! reports the window and the sender's peak RSS.
//!
//! `lat`: REP binds in a child process (`--rep`) and echoes the message
//! object; REQ here does 1,000 warm-up round trips, then COUNT timed ones.
//!
//! `SPBENCH_SPAWN=1` runs each role's body in `tokio::spawn` (a runtime
//! worker) instead of `#[tokio::main]`'s `block_on` thread and reports
//! `lib=zmqrs-spawn` (spstack's tools do the same). `SPBENCH_LIMIT_S`
//! (default 60) is a hard wall-clock limit per process (exit status 3).
//! Every loop is bounded by count and time.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use zeromq::{Socket, SocketRecv, SocketSend, ZmqMessage};

const THR_MAX_MSGS: u64 = 200_000_000;
const LAT_WARMUP: usize = 1000;
const RECV_TIMEOUT: Duration = Duration::from_secs(10);

fn spawned() -> bool {
    std::env::var("SPBENCH_SPAWN").is_ok_and(|v| v == "1")
}

fn lib() -> &'static str {
    if spawned() {
        "zmqrs-spawn"
    } else {
        "zmqrs"
    }
}

fn die(what: impl std::fmt::Display) -> ! {
    eprintln!("[bench_zmqrs] fatal: {what}");
    std::process::exit(2)
}

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn hard_limit() {
    let secs = env_num("SPBENCH_LIMIT_S", 60);
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(secs));
        eprintln!("[bench_zmqrs] fatal: hard time limit of {secs} s reached");
        std::process::exit(3);
    });
}

/// Peak resident set size in KiB (VmHWM), 0 if unknown.
fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Messages the sender may have in flight for this size (0: no cap).
fn window(size: usize) -> u64 {
    let msgs = env_num("ZMQRS_WINDOW", 1000);
    if msgs == 0 {
        return 0;
    }
    let bytes = env_num("ZMQRS_WINDOW_BYTES", 8 << 20);
    let by_bytes = if size == 0 { msgs } else { bytes / size as u64 };
    msgs.min(by_bytes).max(2)
}

fn usage() -> ! {
    eprintln!("usage: bench_zmqrs thr URL SIZE SECS | lat URL SIZE COUNT");
    std::process::exit(1)
}

#[tokio::main]
async fn main() {
    hard_limit();
    let a: Vec<String> = std::env::args().skip(1).collect();
    if a.len() != 4 {
        usage();
    }
    let url = a[1].clone();
    let size: usize = a[2].parse().unwrap_or_else(|_| usage());
    let body: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> = match a[0].as_str()
    {
        "thr" => Box::pin(thr(url, size, a[3].parse().unwrap_or_else(|_| usage()))),
        "lat" => Box::pin(lat(url, size, a[3].parse().unwrap_or_else(|_| usage()))),
        "--push" => Box::pin(push(url, size, a[3].parse().unwrap_or_else(|_| usage()))),
        "--rep" => Box::pin(rep(url, size, a[3].parse().unwrap_or_else(|_| usage()))),
        _ => usage(),
    };
    if spawned() {
        if let Err(e) = tokio::spawn(body).await {
            die(format_args!("task failed: {e}"));
        }
    } else {
        body.await
    }
}

fn child(role: &str, url: &str, size: usize, arg: &str) -> Child {
    let exe = std::env::current_exe().unwrap_or_else(|e| die(format_args!("current_exe: {e}")));
    Command::new(exe)
        .args([role, url, &size.to_string(), arg])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| die(format_args!("spawn {role}: {e}")))
}

/// Waits up to `ms` for the child to exit, then kills it; returns its stdout.
fn reap(mut c: Child, ms: u64) -> String {
    let mut out = String::new();
    let deadline = Instant::now() + Duration::from_millis(ms);
    loop {
        match c.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = c.kill();
                let _ = c.wait();
                break;
            }
        }
    }
    if let Some(mut o) = c.stdout.take() {
        let _ = o.read_to_string(&mut out);
    }
    out
}

async fn recv(s: &mut zeromq::PullSocket) -> usize {
    match tokio::time::timeout(RECV_TIMEOUT, s.recv()).await {
        Ok(Ok(m)) => m.iter().map(|f| f.len()).sum(),
        Ok(Err(e)) => die(format_args!("receiver: recv: {e}")),
        Err(_) => die("receiver: recv timed out"),
    }
}

fn ack(to: &mut ChildStdin, taken: u64) {
    if let Err(e) = to.write_all(&taken.to_le_bytes()) {
        die(format_args!("receiver: ack: {e}"));
    }
}

async fn thr(url: String, size: usize, secs: f64) {
    let rss_before = peak_rss_kb();
    let mut s = zeromq::PullSocket::new();
    s.bind(&url)
        .await
        .unwrap_or_else(|e| die(format_args!("bind {url}: {e}")));
    let win = window(size);
    let every = (win / 4).max(1);
    let mut c = child("--push", &url, size, &secs.to_string());
    let mut acks = c.stdin.take().expect("piped stdin");

    let r = recv(&mut s).await;
    if r != size {
        die(format_args!("first message has {r} bytes, expected {size}"));
    }
    let t0 = Instant::now();
    let mut t1 = t0;
    let hard = t0 + Duration::from_secs_f64(secs + 60.0);
    let mut n: u64 = 0;
    loop {
        let r = recv(&mut s).await;
        if r == 0 {
            break;
        }
        t1 = Instant::now();
        n += 1;
        // taken so far: n + 1 (the first, untimed, included)
        if win > 0 && (n + 1).is_multiple_of(every) {
            ack(&mut acks, n + 1);
        }
        if n & 1023 == 0 && t1 > hard {
            die("receiver: hard time limit");
        }
    }
    drop(acks); // EOF: the sender may go
    let sender = reap(c, 10_000);
    let field = |k: &str| {
        sender
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(k))
            .unwrap_or("?")
            .to_string()
    };
    let el = (t1 - t0).as_secs_f64();
    let mps = if el > 0.0 { n as f64 / el } else { 0.0 };
    println!(
        "RESULT lib={} test=thr url={url} size={size} msgs={n} secs={el:.3} msgps={mps:.0} MBps={:.2} rss_kb={} rss_before_kb={rss_before} window={win} sent={} sender_rss_kb={}",
        lib(),
        mps * size as f64 / 1e6,
        peak_rss_kb(),
        field("sent="),
        field("rss_kb="),
    );
    s.close().await;
}

/// The sender (child process): PUSH dials, sends for `secs`, then the
/// terminator; keeps at most `window(size)` messages ahead of the
/// receiver's acknowledgements (read from stdin by a thread).
async fn push(url: String, size: usize, secs: f64) {
    let win = window(size);
    let taken = Arc::new(AtomicU64::new(0));
    let closed = Arc::new(AtomicBool::new(false));
    let wake = Arc::new(tokio::sync::Notify::new());
    {
        let (taken, closed, wake) = (taken.clone(), closed.clone(), wake.clone());
        std::thread::spawn(move || {
            let mut stdin = std::io::stdin().lock();
            let mut b = [0u8; 8];
            while stdin.read_exact(&mut b).is_ok() {
                taken.store(u64::from_le_bytes(b), Ordering::Release);
                wake.notify_one();
            }
            closed.store(true, Ordering::Release);
            wake.notify_one();
        });
    }
    let mut s = zeromq::PushSocket::new();
    s.connect(&url)
        .await
        .unwrap_or_else(|e| die(format_args!("connect {url}: {e}")));
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let mut n: u64 = 0;
    while n < THR_MAX_MSGS {
        while win > 0 && n - taken.load(Ordering::Acquire) >= win {
            if closed.load(Ordering::Acquire) {
                die("sender: receiver went away");
            }
            if tokio::time::timeout(RECV_TIMEOUT, wake.notified())
                .await
                .is_err()
            {
                die("sender: no acknowledgement for 10 s");
            }
        }
        let m = ZmqMessage::from(vec![0u8; size]);
        s.send(m)
            .await
            .unwrap_or_else(|e| die(format_args!("sender: send: {e}")));
        n += 1;
        if n & 63 == 0 && Instant::now() >= deadline {
            break;
        }
    }
    s.send(ZmqMessage::from(Vec::<u8>::new()))
        .await
        .unwrap_or_else(|e| die(format_args!("sender: send terminator: {e}")));
    // stay until the receiver is done (it closes our stdin), so nothing queued is lost
    let until = Instant::now() + Duration::from_secs(30);
    while !closed.load(Ordering::Acquire) && Instant::now() < until {
        let _ = tokio::time::timeout(Duration::from_millis(100), wake.notified()).await;
    }
    println!("SENDER sent={n} rss_kb={}", peak_rss_kb());
}

/// The echo server (child process): REP binds, says "ready" on stdout, then
/// sends every request back as it came.
async fn rep(url: String, _size: usize, count: usize) {
    let mut s = zeromq::RepSocket::new();
    s.bind(&url)
        .await
        .unwrap_or_else(|e| die(format_args!("bind {url}: {e}")));
    println!("ready");
    let _ = std::io::stdout().flush();
    for _ in 0..count + LAT_WARMUP {
        let m = match tokio::time::timeout(RECV_TIMEOUT, s.recv()).await {
            Ok(Ok(m)) => m,
            _ => return,
        };
        if s.send(m).await.is_err() {
            return;
        }
    }
}

async fn lat(url: String, size: usize, count: usize) {
    let mut c = child("--rep", &url, size, &count.to_string());
    let mut line = String::new();
    let out = c.stdout.take().expect("piped stdout");
    if BufReader::new(out).read_line(&mut line).is_err() || line.trim() != "ready" {
        die("REP did not start");
    }
    let mut s = zeromq::ReqSocket::new();
    s.connect(&url)
        .await
        .unwrap_or_else(|e| die(format_args!("connect {url}: {e}")));
    async fn rt(s: &mut zeromq::ReqSocket, size: usize) {
        s.send(ZmqMessage::from(vec![0u8; size]))
            .await
            .unwrap_or_else(|e| die(format_args!("req: send: {e}")));
        let m = match tokio::time::timeout(RECV_TIMEOUT, s.recv()).await {
            Ok(Ok(m)) => m,
            Ok(Err(e)) => die(format_args!("req: recv: {e}")),
            Err(_) => die("req: recv timed out"),
        };
        let got: usize = m.iter().map(|f| f.len()).sum();
        if got != size {
            die(format_args!("req: reply has {got} bytes, expected {size}"));
        }
    }
    for _ in 0..LAT_WARMUP {
        rt(&mut s, size).await;
    }
    let mut v: Vec<u64> = Vec::with_capacity(count);
    let start = Instant::now();
    let hard = start + Duration::from_secs(120);
    for _ in 0..count {
        let a = Instant::now();
        rt(&mut s, size).await;
        let b = Instant::now();
        v.push((b - a).as_nanos() as u64);
        if b > hard {
            break;
        }
    }
    let total = start.elapsed().as_secs_f64();
    let _ = c.kill();
    let _ = c.wait();
    let n = v.len();
    let sum: f64 = v.iter().map(|&x| x as f64).sum();
    v.sort_unstable();
    let us = |x: u64| x as f64 / 1e3;
    println!(
        "RESULT lib={} test=lat url={url} size={size} n={n} mean_us={:.2} p50_us={:.2} p99_us={:.2} min_us={:.2} max_us={:.2} rt_per_s={:.0}",
        lib(),
        sum / n as f64 / 1e3,
        us(v[n / 2]),
        us(v[n * 99 / 100]),
        us(v[0]),
        us(v[n - 1]),
        n as f64 / total
    );
    s.close().await;
}

//! `pipes <bind-url> <npipes> [<msg-size> <msgs> <curve>]`: one PULL socket
//! with many pipes.
//!
//! **Memory.** PULL listens; a PUSH opens `npipes` pipes to it (dials that
//! many times): from a child process for tcp/ipc (`--dialer`, so the
//! listener's figures are its own), from this process for inproc (then the
//! figures cover both ends of every pipe). Once every pipe is up and idle,
//! the listener reads its live heap bytes (a counting allocator) and its
//! resident set (VmRSS), against the same before it listened; then the PUSH
//! sends one message down every pipe and the figures are read again (an
//! idle pipe that has carried traffic). Prints
//! `RESULT lib=spstack test=pipes_mem url= pipes= phase=fresh|after_one size= heap_bytes_per_pipe= rss_kb_per_pipe= heap_bytes= rss_kb=`.
//!
//! **Throughput as pipes grow.** With `<curve>` a comma-separated list of
//! pipe counts (e.g. `1,10,100,1000,10000`), for each count a fresh PUSH
//! opens that many pipes to a fresh PULL and sends `<msgs>` messages of
//! `<msg-size>` bytes, spread over them by PUSH's round robin; the PULL times
//! first to last message as `local_thr` does. Prints
//! `RESULT lib=spstack test=pipes_thr url= pipes= size= msgs= secs= msgps= MBps=`.
//! Defaults: 64 B, 1,000,000 messages, curve `1,10,100,1000,<npipes>`.
//!
//! tcp needs a file descriptor per pipe on each side (`ulimit -n`).
#[path = "common/mod.rs"]
mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

const TOOL: &str = "pipes";

/// Live heap bytes of this process.
static LIVE: AtomicIsize = AtomicIsize::new(0);

struct Counting;

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        LIVE.fetch_add(n as isize - l.size() as isize, Ordering::Relaxed);
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

/// Resident set of this process in KiB (VmRSS).
fn rss_kb() -> i64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn opts() -> spstack::Options {
    spstack::Options::default()
        .recv_max_size(common::RECV_MAX)
        .max_pipes_per_listener(1 << 20)
}

#[tokio::main]
async fn main() {
    common::run(body()).await
}

fn usage() -> ! {
    eprintln!("usage: {TOOL} <bind-url> <npipes> [<msg-size> <msgs> <curve: n,n,..>]");
    std::process::exit(1)
}

async fn body() {
    common::hard_limit(TOOL);
    let a: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if a.first().map(String::as_str) == Some("--dialer") {
        let url = a.get(1).unwrap_or_else(|| usage());
        let n: usize = a
            .get(2)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| usage());
        let size: usize = a
            .get(3)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| usage());
        return dialer_child(url, n, size).await;
    }
    if a.len() != 2 && a.len() != 5 {
        usage();
    }
    let url = a[0].clone();
    let n: usize = a[1].parse().unwrap_or_else(|_| usage());
    let size: usize = a
        .get(2)
        .map_or(Some(64), |v| v.parse().ok())
        .unwrap_or_else(|| usage());
    let msgs: usize = a
        .get(3)
        .map_or(Some(1_000_000), |v| v.parse().ok())
        .unwrap_or_else(|| usage());
    let curve: Vec<usize> = match a.get(4) {
        Some(c) => c
            .split(',')
            .map(|v| v.parse().unwrap_or_else(|_| usage()))
            .collect(),
        None => {
            let mut c: Vec<usize> = [1, 10, 100, 1000].into_iter().filter(|&p| p < n).collect();
            c.push(n);
            c
        }
    };
    memory(&url, n).await;
    for (i, &p) in curve.iter().enumerate() {
        throughput(&fresh_url(&url, i + 1), p, size, msgs).await;
    }
}

/// The URL for run `i`: tcp on a port the system picks (thousands of pipes
/// take thousands of ephemeral ports, any fixed one may be among them), ipc
/// paths and inproc names numbered.
fn fresh_url(url: &str, i: usize) -> String {
    if let Some(rest) = url.strip_prefix("tcp://") {
        if let Some((host, _)) = rest.rsplit_once(':') {
            return format!("tcp://{host}:0");
        }
        return url.to_string();
    }
    format!("{url}.{i}")
}

/// The other end: a PUSH with `n` pipes to `url`, in this process (inproc)
/// or in a child (`--dialer`), which sends `count` messages on `go(count)`.
enum Peer {
    Local(spstack::Socket, Vec<spstack::Endpoint>),
    Child {
        child: std::process::Child,
        stdin: std::process::ChildStdin,
        /// Kept open so that the child's prints do not fail.
        _out: std::io::Lines<BufReader<std::process::ChildStdout>>,
    },
}

impl Peer {
    async fn open(url: &str, n: usize, size: usize) -> Peer {
        if url.starts_with("inproc://") {
            let push = spstack::push0().options(opts()).build();
            let mut eps = Vec::with_capacity(n);
            for _ in 0..n {
                eps.push(
                    push.dial(url)
                        .await
                        .unwrap_or_else(|e| common::die(TOOL, format_args!("dial {url}: {e}"))),
                );
            }
            return Peer::Local(push, eps);
        }
        let exe = std::env::current_exe().unwrap_or_else(|e| common::die(TOOL, e));
        let mut child = Command::new(exe)
            .args(["--dialer", url, &n.to_string(), &size.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| common::die(TOOL, format_args!("spawn dialer: {e}")));
        let stdin = child.stdin.take().expect("piped");
        let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        let ready = tokio::task::block_in_place(|| lines.next());
        if !matches!(ready, Some(Ok(ref l)) if l == "READY") {
            common::die(TOOL, format_args!("dialer did not get ready: {ready:?}"));
        }
        Peer::Child {
            child,
            stdin,
            _out: lines,
        }
    }

    /// Sends `count` messages of `size` bytes, spread over the pipes.
    async fn go(&mut self, count: usize, size: usize) {
        match self {
            Peer::Local(push, _) => {
                for _ in 0..count {
                    let m = push.new_message(size);
                    push.send(m)
                        .await
                        .unwrap_or_else(|e| common::die(TOOL, format_args!("send: {e}")));
                }
            }
            Peer::Child { stdin, .. } => {
                writeln!(stdin, "{count}").unwrap_or_else(|e| common::die(TOOL, e));
                stdin.flush().unwrap_or_else(|e| common::die(TOOL, e));
            }
        }
    }

    fn close(self) {
        match self {
            Peer::Local(push, eps) => {
                drop(eps);
                push.close();
            }
            Peer::Child {
                mut child, stdin, ..
            } => {
                drop(stdin);
                let _ = child.wait();
            }
        }
    }
}

async fn pull_with_pipes(
    url: &str,
    n: usize,
    size: usize,
) -> (spstack::Socket, spstack::Endpoint, Peer) {
    let pull = spstack::pull0().options(opts()).build();
    common::watch(&pull);
    let ep = pull
        .listen(url)
        .await
        .unwrap_or_else(|e| common::die(TOOL, format_args!("listen {url}: {e}")));
    let peer = Peer::open(ep.url(), n, size).await;
    let t = Instant::now();
    while pull.pipes().len() < n {
        if t.elapsed() > Duration::from_secs(120) {
            common::die(
                TOOL,
                format_args!("{} of {n} pipes after 120 s", pull.pipes().len()),
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (pull, ep, peer)
}

async fn memory(url: &str, n: usize) {
    let size = 64;
    // settle what the runtime and the first socket allocate once
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (heap0, rss0) = (live(), rss_kb());
    let (pull, ep, mut peer) = pull_with_pipes(url, n, size).await;
    // what opening left behind (handshake buffers, dial retries) goes first
    tokio::time::sleep(Duration::from_millis(500)).await;
    report(url, n, "fresh", size, heap0, rss0);
    peer.go(n, size).await;
    for i in 0..n {
        let m = tokio::time::timeout(Duration::from_secs(30), pull.recv())
            .await
            .unwrap_or_else(|_| common::die(TOOL, format_args!("message {i} of {n} not in")))
            .unwrap_or_else(|e| common::die(TOOL, format_args!("recv: {e}")));
        drop(m);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    report(url, n, "after_one", size, heap0, rss0);
    peer.close();
    drop(ep);
    pull.close();
}

fn report(url: &str, n: usize, phase: &str, size: usize, heap0: isize, rss0: i64) {
    let (heap, rss) = (live() - heap0, rss_kb() - rss0);
    println!(
        "RESULT lib={} test=pipes_mem url={url} pipes={n} phase={phase} size={size} heap_bytes_per_pipe={:.0} rss_kb_per_pipe={:.2} heap_bytes={heap} rss_kb={rss}",
        common::lib_name(),
        heap as f64 / n as f64,
        rss as f64 / n as f64,
    );
}

async fn throughput(url: &str, p: usize, size: usize, msgs: usize) {
    let (pull, ep, mut peer) = pull_with_pipes(url, p, size).await;
    let sender = {
        // the local sender must run beside the receiving loop
        let go = async move {
            peer.go(msgs, size).await;
            peer
        };
        tokio::spawn(go)
    };
    let first = pull
        .recv()
        .await
        .unwrap_or_else(|e| common::die(TOOL, format_args!("recv: {e}")));
    drop(first);
    let t0 = Instant::now();
    let mut t1 = t0;
    for _ in 1..msgs {
        let m = pull
            .recv()
            .await
            .unwrap_or_else(|e| common::die(TOOL, format_args!("recv: {e}")));
        drop(m);
        t1 = Instant::now();
    }
    let el = (t1 - t0).as_secs_f64();
    let mps = if el > 0.0 {
        (msgs - 1) as f64 / el
    } else {
        0.0
    };
    println!(
        "RESULT lib={} test=pipes_thr url={url} pipes={p} size={size} msgs={} secs={el:.3} msgps={mps:.0} MBps={:.2}",
        common::lib_name(),
        msgs - 1,
        mps * size as f64 / 1e6,
    );
    let peer = sender
        .await
        .unwrap_or_else(|e| common::die(TOOL, format_args!("sender: {e}")));
    peer.close();
    drop(ep);
    pull.close();
}

/// `--dialer URL N SIZE`: a PUSH with N pipes to URL; prints READY, then for
/// every number read on stdin sends that many messages; exits at EOF.
async fn dialer_child(url: &str, n: usize, size: usize) {
    let push = spstack::push0().options(opts()).build();
    let mut eps = Vec::with_capacity(n);
    for _ in 0..n {
        eps.push(
            push.dial(url)
                .await
                .unwrap_or_else(|e| common::die("pipes-dialer", format_args!("dial {url}: {e}"))),
        );
    }
    println!("READY");
    let _ = std::io::stdout().flush();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<usize>();
    std::thread::spawn(move || {
        for l in std::io::stdin().lock().lines() {
            let Ok(l) = l else { break };
            if let Ok(c) = l.trim().parse() {
                if tx.send(c).is_err() {
                    break;
                }
            }
        }
    });
    while let Some(count) = rx.recv().await {
        for _ in 0..count {
            let m = push.new_message(size);
            push.send(m)
                .await
                .unwrap_or_else(|e| common::die("pipes-dialer", format_args!("send: {e}")));
        }
    }
    // stdin closed: the parent has everything it wanted; hang up
    let _ = push.shutdown().await;
    drop(eps);
}

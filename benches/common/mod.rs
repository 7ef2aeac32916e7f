//! Helpers shared by the four perf tools (not a bench target itself: cargo
//! only auto-discovers `benches/*.rs` and `benches/*/main.rs`).
#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Messages (or round trips) done so far; printed if the hard limit hits.
pub static PROGRESS: AtomicU64 = AtomicU64::new(0);
static SOCKET: OnceLock<spstack::Socket> = OnceLock::new();

/// Counts one message or round trip done.
#[inline]
pub fn progress() {
    PROGRESS.fetch_add(1, Ordering::Relaxed);
}

/// Registers the tool's socket so the hard limit can print its counters.
pub fn watch(sock: &spstack::Socket) {
    let _ = SOCKET.set(sock.clone());
}

/// `SPBENCH_SPAWN=1` runs the tool's body in `tokio::spawn` (on a runtime
/// worker) instead of on `main`'s `block_on` thread, and reports
/// `lib=spstack-spawn`. The default measures what `#[tokio::main]` code gets.
pub fn spawned() -> bool {
    std::env::var("SPBENCH_SPAWN")
        .map(|v| v == "1")
        .unwrap_or(false)
}

/// `SPBENCH_LOSSLESS=1`: the pubsub tool runs the lossless PUB/SUB mode.
pub fn lossless() -> bool {
    env_on("SPBENCH_LOSSLESS")
}

/// The `lib=` name of this run.
pub fn lib_name() -> &'static str {
    match (lossless(), spawned()) {
        (false, false) => "spstack",
        (false, true) => "spstack-spawn",
        (true, false) => "spstack-lossless",
        (true, true) => "spstack-lossless-spawn",
    }
}

/// Runs `body` on the current task, or in `tokio::spawn` with `SPBENCH_SPAWN=1`.
pub async fn run(body: impl std::future::Future<Output = ()> + Send + 'static) {
    if spawned() {
        if let Err(e) = tokio::spawn(body).await {
            eprintln!("fatal: tool task failed: {e}");
            std::process::exit(2);
        }
    } else {
        body.await
    }
}

/// Largest message a tool accepts: 1 MiB payload plus headers, with room.
pub const RECV_MAX: usize = 2 << 20;
/// REQ/REP warm-up round trips before timing (as the C anchors).
pub const LAT_WARMUP: usize = 1000;

pub struct Args {
    pub url: String,
    pub size: usize,
    pub count: usize,
}

/// `<url> <msg-size> <count>` like nng's perf tools. Exits with usage on error.
pub fn args(tool: &str, what: &str) -> Args {
    let a: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let usage = || -> ! {
        eprintln!("usage: {tool} <url> <msg-size> <{what}>");
        std::process::exit(1)
    };
    if a.len() != 3 {
        usage();
    }
    let size = a[1].parse().unwrap_or_else(|_| usage());
    let count: usize = a[2].parse().unwrap_or_else(|_| usage());
    if count == 0 {
        usage();
    }
    Args {
        url: a[0].clone(),
        size,
        count,
    }
}

/// Hard wall-clock limit: after `SPBENCH_LIMIT_S` seconds (default 60) the
/// process prints an error and exits with status 3, whatever it is doing.
///
/// Also turns on `tracing` output to stderr when `RUST_LOG` is set
/// (e.g. `RUST_LOG=spstack=debug`), for diagnosing a stuck run.
pub fn hard_limit(tool: &'static str) {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .try_init();
    }
    let secs: u64 = std::env::var("SPBENCH_LIMIT_S")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(secs));
        eprintln!(
            "[{tool}] fatal: hard time limit of {secs} s reached; progress {}",
            PROGRESS.load(Ordering::Relaxed)
        );
        if let Some(s) = SOCKET.get() {
            eprintln!(
                "[{tool}] stats: {}; pipes {:?}",
                s.stats().to_string().replace('\n', "; "),
                s.pipes()
            );
        }
        std::process::exit(3);
    });
}

/// Peak resident set size of this process in KiB (VmHWM), 0 if unknown.
pub fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|v| v.parse().unwrap_or(0)))
        })
        .unwrap_or(0)
}

pub fn die(tool: &str, what: impl std::fmt::Display) -> ! {
    eprintln!("[{tool}] fatal: {what}");
    std::process::exit(2)
}

pub fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

pub fn since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64()
}

fn env_on(name: &str) -> bool {
    std::env::var(name).map(|v| v == "1").unwrap_or(false)
}

/// `SPBENCH_NOISE=1` adds the Noise hop layer, `SPBENCH_SIGN=1` the
/// integrity layer (fixed bench keys, each side trusting the other), so the
/// two-process tools measure hop encryption and signing. Above Noise,
/// `SPBENCH_HEARTBEAT=1` adds `heartbeat/1` (1 s) and `SPBENCH_ACK=1` adds
/// `ack/1` (`SPBENCH_ACK_DELAY_MS`, `SPBENCH_ACK_WINDOW`), last as it must
/// be: their cost.
pub fn layers(b: spstack::SocketBuilder, listener: bool) -> spstack::SocketBuilder {
    let b = crypto_layers(b, listener);
    let b = if env_on("SPBENCH_HEARTBEAT") {
        b.pipe_layer(spstack::reliable::heartbeat::layer(Duration::from_secs(1)))
    } else {
        b
    };
    if env_on("SPBENCH_ACK") {
        // SPBENCH_ACK_DELAY_MS, SPBENCH_ACK_WINDOW: the layer's settings
        // (its defaults, 10 ms and 4096, unless set)
        let num = |name: &str, default: u64| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(default)
        };
        b.pipe_layer(
            spstack::reliable::ack::Ack::new()
                .ack_delay(Duration::from_millis(num("SPBENCH_ACK_DELAY_MS", 10)))
                .window(num("SPBENCH_ACK_WINDOW", 4096) as usize)
                .layer(),
        )
    } else {
        b
    }
}

fn crypto_layers(b: spstack::SocketBuilder, listener: bool) -> spstack::SocketBuilder {
    let b = if env_on("SPBENCH_SIGN") {
        use sp_crypto::integrity::{Integrity, IntegrityConfig};
        use sp_crypto::keys::SigningKeypair;
        let key = SigningKeypair::from_bytes(&[3u8; 32]);
        let trusted = [key.verifying_key()];
        let cfg = IntegrityConfig::new(key, trusted, "spbench").expect("a valid audience");
        b.message_layer(Integrity::new(cfg))
    } else {
        b
    };
    if env_on("SPBENCH_NOISE") {
        use sp_crypto::noise::{self, NoiseConfig, StaticKeypair};
        let (mine, theirs) = if listener {
            ([1u8; 32], [2u8; 32])
        } else {
            ([2u8; 32], [1u8; 32])
        };
        let peer = StaticKeypair::from_secret(theirs).public();
        b.pipe_layer(noise::layer(
            NoiseConfig::new(StaticKeypair::from_secret(mine)).allow(peer),
        ))
    } else {
        b
    }
}

/// `remote_thr`'s loop: `count` fresh `new_message(size)` sent one by one;
/// prints the `SENDER` line (send-side rate) to stderr.
pub async fn send_loop(tool: &str, sock: &spstack::Socket, url: &str, size: usize, count: usize) {
    let t0 = Instant::now();
    for _ in 0..count {
        let m = sock.new_message(size);
        sock.send(m)
            .await
            .unwrap_or_else(|e| die(tool, format_args!("send: {e}")));
        progress();
    }
    let el = since(t0);
    eprintln!(
        "SENDER lib={} url={url} size={size} msgs={count} secs={el:.3} msgps={:.0} (includes connect)",
        lib_name(),
        count as f64 / el
    );
}

/// The sender of an in-process (`inproc://`) throughput run: a PUSH that
/// dials `url` and runs [`send_loop`], on a thread of its own entering the
/// current runtime (or, with `SPBENCH_SPAWN=1`, as a spawned task). It keeps
/// its socket until the returned future is awaited (after the receiver has
/// everything), so nothing queued is cut off.
pub fn inproc_sender(
    tool: &'static str,
    url: String,
    size: usize,
    count: usize,
) -> impl std::future::Future<Output = ()> {
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let body = async move {
        let sock = spstack::push0()
            .options(spstack::Options::default().recv_max_size(RECV_MAX))
            .build();
        sock.dial(&url)
            .await
            .unwrap_or_else(|e| die(tool, format_args!("dial {url}: {e}")));
        send_loop(tool, &sock, &url, size, count).await;
        let _ = done_rx.await;
    };
    let handle = tokio::runtime::Handle::current();
    let joined: Box<dyn FnOnce() + Send> = if spawned() {
        let t = handle.spawn(body);
        Box::new(move || drop(t))
    } else {
        let t = std::thread::spawn(move || handle.block_on(body));
        Box::new(move || {
            let _ = t.join();
        })
    };
    async move {
        let _ = done_tx.send(());
        tokio::task::spawn_blocking(joined).await.ok();
    }
}

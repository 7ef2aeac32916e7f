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

/// The `lib=` name of this run.
pub fn lib_name() -> &'static str {
    if spawned() {
        "spstack-spawn"
    } else {
        "spstack"
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

//! Helpers shared by the four perf tools (not a bench target itself: cargo
//! only auto-discovers `benches/*.rs` and `benches/*/main.rs`).
#![allow(dead_code)]

use std::time::{Duration, Instant};

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
pub fn hard_limit(tool: &'static str) {
    let secs: u64 = std::env::var("SPBENCH_LIMIT_S")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(secs));
        eprintln!("[{tool}] fatal: hard time limit of {secs} s reached");
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

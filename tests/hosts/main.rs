//! Real networks (issue 12): spstack across several hosts on one machine
//! (network namespaces, veth pairs, bridges: `net`), with faults injected
//! by the network (partition, link down, power loss), by killing nodes, and
//! by a seeded userspace TCP fault proxy (`proxy`: delay, jitter, loss as
//! TCP shows it, reordering, duplication, truncation, resets).
//!
//! Needs root and iproute2; fails (never skips) without them. Every test of
//! this binary takes [`serial`]: they measure the process (file
//! descriptors, RSS) and share two cores. See `tests/hosts/README.md`.

mod faults;
mod harness;
mod measure;
mod net;
#[path = "../common/pki.rs"]
mod pki;
mod proxy;
mod pubsub;
mod quic;
mod reconnect;
mod reliable;
mod reqrep;
mod soak;
mod survey;

use std::time::Duration;

/// One test at a time in this binary: they read process-wide figures.
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

/// Awaits `f` for at most `secs` seconds, panicking with `what` otherwise.
pub async fn within<T>(secs: u64, what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .unwrap_or_else(|_| panic!("{what}: nothing within {secs} s"))
}

/// Polls `cond` every 20 ms for at most `secs` seconds; panics with `what`
/// and the last `state` otherwise.
pub async fn eventually<S: std::fmt::Debug>(
    secs: u64,
    what: &str,
    mut state: impl FnMut() -> S,
    cond: impl Fn(&S) -> bool,
) -> S {
    let t0 = std::time::Instant::now();
    loop {
        let s = state();
        if cond(&s) {
            return s;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(secs),
            "{what}: not within {secs} s; last state: {s:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Options for sockets on test hosts: quick redials (the faults are
/// short), short linger (nodes are killed, not closed politely).
pub fn opts() -> spstack::Options {
    spstack::Options::default()
        .reconnect_min(Duration::from_millis(50))
        .reconnect_max(Duration::from_millis(500))
        .linger(Duration::from_millis(200))
}

//! Admission of unauthenticated work (handshakes, WebSocket request heads)
//! under a cap a flood cannot aim.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use sp_core::admission::{source_of, Admission};
//! let handshakes = Admission::new(128);
//! let source = source_of("tcp://192.0.2.7:40000");
//! assert_eq!(source, "192.0.2.7");
//! let evicted = handshakes.spawn(&source, async {
//!     // read the peer's handshake under its deadline ...
//! });
//! assert_eq!(evicted, 0, "room for it");
//! # }
//! ```
//!
//! A listener can only afford so many peers that have not yet proved
//! anything. What it does when the cap is reached decides who a flood
//! shuts out:
//! - refusing newcomers (nng's fixed slots, our old ws:// port) lets 128
//!   idle connections lock every honest client out;
//! - evicting the oldest (our old tcp listener) lets ~1,000 connections a
//!   second kill every handshake slower than the flood's turnover, so a
//!   peer 50 ms away never gets through.
//!
//! [`Admission`] evicts a random handshake *of the source holding the most*,
//! never the one just admitted. A flood from one address or a few evicts
//! itself; an honest peer from elsewhere keeps its slot however long its
//! round trips are. A flood spread across many addresses degrades to random
//! eviction, under which a slow honest handshake still survives with a
//! probability that does not depend on its age, and its dialer's retries
//! get through.
//!
//! What a source is, per transport (the transport says, through
//! [`crate::transport::Unannounced::source`]; by default [`source_of`] its
//! peer address, which every IP transport reports before its handshake):
//! - tcp, tls+tcp, ws, wss, quic: the peer's IPv4 address, or the /64 its
//!   IPv6 address is in (one host or site is usually given a whole /64, so
//!   counting each of its 2^64 addresses apart would let one attacker be
//!   many sources); an IPv4 address mapped into IPv6 (a dual-stack
//!   listener) counts as the IPv4 address;
//! - ipc: the peer process's user id (`SO_PEERCRED`): a local user's flood
//!   cannot evict another user's handshakes;
//! - inproc, and a peer whose address is unknown: one source for all.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, Weak};

use tokio::task::AbortHandle;

/// Handshakes running under one cap. Cheap to share (`Arc`).
pub struct Admission {
    cap: usize,
    state: Mutex<State>,
}

struct State {
    next: u64,
    running: Vec<Entry>,
    rng: fastrand::Rng,
}

struct Entry {
    id: u64,
    source: Box<str>,
    abort: AbortHandle,
}

impl Admission {
    /// At most `cap` (at least 1) at once.
    pub fn new(cap: usize) -> Arc<Admission> {
        Arc::new(Admission {
            cap: cap.max(1),
            state: Mutex::new(State {
                next: 0,
                running: Vec::new(),
                rng: fastrand::Rng::new(),
            }),
        })
    }

    /// Runs `work` for a peer of `source` (what [`source_of`] makes of its
    /// address, or a transport's own notion: see the module docs) as a
    /// tokio task; when that takes the count over the cap, aborts another
    /// one as [`victim`] picks it. Returns how many were aborted (0 or 1),
    /// for the caller's counters.
    pub fn spawn<F>(self: &Arc<Self>, source: &str, work: F) -> usize
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let me: Weak<Admission> = Arc::downgrade(self);
        // hold the state while spawning: work that finishes at once must
        // find its entry to remove it
        let mut guard = self.lock();
        let st = &mut *guard;
        st.next += 1;
        let id = st.next;
        let task = tokio::spawn(async move {
            work.await;
            if let Some(me) = me.upgrade() {
                me.lock().running.retain(|e| e.id != id);
            }
        });
        st.running.push(Entry {
            id,
            source: source.into(),
            abort: task.abort_handle(),
        });
        let mut evicted = 0;
        while st.running.len() > self.cap {
            let sources: Vec<&str> = st.running.iter().map(|e| &*e.source).collect();
            let Some(i) = victim(&sources, &mut st.rng) else {
                break;
            };
            let e = st.running.swap_remove(i);
            e.abort.abort();
            evicted += 1;
        }
        evicted
    }

    /// Handshakes running now.
    pub fn running(&self) -> usize {
        self.lock().running.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        for e in self.lock().running.drain(..) {
            e.abort.abort();
        }
    }
}

/// The source a peer address counts against, from any form a transport
/// reports: `ip:port`, `[v6]:port`, a bare IP, each optionally behind a
/// scheme (`tcp://`, `ws://`) and followed by a path (`ws://ip:port/path`).
/// An IPv4 address is its own source; an IPv6 address counts as its /64
/// (`2001:db8:0:7::/64`), an IPv4-mapped one as the IPv4 address. A string
/// that holds no IP address is its own source, so peers whose address is
/// unknown (an empty string) share one.
///
/// ```
/// use sp_core::admission::source_of;
/// assert_eq!(source_of("tcp://10.1.2.3:4000"), "10.1.2.3");
/// assert_eq!(source_of("[2001:db8::1]:9"), source_of("ws://[2001:db8::2]:7/sp"));
/// assert_ne!(source_of("[2001:db8::1]:9"), source_of("[2001:db8:0:1::1]:9"));
/// assert_eq!(source_of("[::ffff:127.0.0.2]:5"), "127.0.0.2");
/// ```
pub fn source_of(peer_addr: &str) -> String {
    use std::net::{IpAddr, SocketAddr};
    let rest = peer_addr.split_once("://").map_or(peer_addr, |(_, r)| r);
    // a path starts at the first '/', which no address form contains
    let authority = rest.split_once('/').map_or(rest, |(a, _)| a);
    let ip = authority
        .parse::<SocketAddr>()
        .map(|a| a.ip())
        .or_else(|_| authority.parse::<IpAddr>())
        .or_else(|_| {
            authority
                .strip_prefix('[')
                .and_then(|a| a.strip_suffix(']'))
                .unwrap_or(authority)
                .parse::<IpAddr>()
        });
    match ip.map(|ip| ip.to_canonical()) {
        Ok(IpAddr::V4(v4)) => v4.to_string(),
        Ok(IpAddr::V6(v6)) => {
            let s = v6.segments();
            let net = std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
            format!("{net}/64")
        }
        Err(_) => peer_addr.to_string(),
    }
}

/// Which of `running` (each entry's source, in admission order; the last
/// is the newcomer) to evict: a random entry among those of the source
/// holding the most, the newcomer excluded unless it is alone. Pure, for
/// deterministic tests.
pub fn victim(running: &[&str], rng: &mut fastrand::Rng) -> Option<usize> {
    let (_newcomer, older) = running.split_last()?;
    if older.is_empty() {
        return None;
    }
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for s in running {
        *counts.entry(s).or_default() += 1;
    }
    let most = counts.values().copied().max().unwrap_or(0);
    let heaviest: Vec<&str> = counts
        .iter()
        .filter(|(_, n)| **n == most)
        .map(|(s, _)| *s)
        .collect();
    let source = heaviest[rng.usize(..heaviest.len())];
    let candidates: Vec<usize> = older
        .iter()
        .enumerate()
        .filter(|(_, s)| **s == source)
        .map(|(i, _)| i)
        .collect();
    if candidates.is_empty() {
        // only the newcomer is of that source (every source holds one):
        // any older entry
        return Some(rng.usize(..older.len()));
    }
    Some(candidates[rng.usize(..candidates.len())])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_is_the_ip_without_its_port() {
        assert_eq!(source_of("10.1.2.3:4000"), "10.1.2.3");
        assert_eq!(source_of("[::1]:9"), "::/64");
        assert_eq!(source_of("ipc:///tmp/x"), "ipc:///tmp/x");
        assert_eq!(source_of(""), "");
    }

    #[test]
    fn source_of_every_transports_peer_address() {
        // tcp reports its peer as a URL: every connection from one address
        // is one source whatever its port (it was one source per port)
        assert_eq!(source_of("tcp://127.0.0.2:40001"), "127.0.0.2");
        assert_eq!(
            source_of("tcp://127.0.0.2:40001"),
            source_of("tcp://127.0.0.2:40002")
        );
        assert_eq!(source_of("tcp://[2001:db8::5]:80"), "2001:db8::/64");
        // tls+tcp, ws, wss and quic report ip:port; ws pipes dialed a URL
        assert_eq!(source_of("127.0.0.1:9"), "127.0.0.1");
        assert_eq!(source_of("ws://127.0.0.1:9/sp"), "127.0.0.1");
        assert_eq!(source_of("wss://[::1]:9/a/b"), "::/64");
        assert_eq!(source_of("quic://10.0.0.1:4433"), "10.0.0.1");
        // bare addresses, with or without brackets
        assert_eq!(source_of("192.0.2.1"), "192.0.2.1");
        assert_eq!(source_of("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::/64");
        assert_eq!(source_of("[2001:db8:1:2::9]"), "2001:db8:1:2::/64");
        // one /64 is one source, the next /64 another
        assert_eq!(
            source_of("[2001:db8:0:7::1]:1"),
            source_of("[2001:db8:0:7:ffff:ffff:ffff:ffff]:2")
        );
        assert_ne!(
            source_of("[2001:db8:0:7::1]:1"),
            source_of("[2001:db8:0:8::1]:1")
        );
        // a dual-stack listener sees IPv4 peers mapped into IPv6
        assert_eq!(source_of("[::ffff:192.0.2.9]:7"), "192.0.2.9");
        // distinct addresses are distinct sources
        assert_ne!(source_of("127.0.0.1:1"), source_of("127.0.0.2:1"));
        // no address: all such peers share one source
        assert_eq!(source_of("inproc://x"), "inproc://x");
        assert_eq!(source_of("localhost:80"), "localhost:80");
    }

    #[test]
    fn admission_evicts_from_the_heaviest_source_never_the_newcomer() {
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..1000 {
            // one honest peer among a flood from another address
            let mut running = vec!["flood"; 10];
            running.insert(rng.usize(..10), "honest");
            running.push("flood");
            let v = victim(&running, &mut rng).unwrap();
            assert_eq!(running[v], "flood");
            assert_ne!(v, running.len() - 1, "the newcomer stays");
        }
        // the newcomer is the honest one: still a flood entry goes
        let mut running = vec!["flood"; 10];
        running.push("honest");
        for _ in 0..100 {
            assert_eq!(running[victim(&running, &mut rng).unwrap()], "flood");
        }
        running.truncate(1);
        assert_eq!(victim(&running, &mut rng), None, "nothing but the newcomer");
    }

    #[test]
    fn admission_eviction_does_not_depend_on_age() {
        // all from one source: every older entry is equally likely to go,
        // so a slow handshake is not singled out for being old
        let mut rng = fastrand::Rng::with_seed(1);
        let running = vec!["one"; 9];
        let mut hits = [0u32; 8];
        for _ in 0..8000 {
            hits[victim(&running, &mut rng).unwrap()] += 1;
        }
        assert!(hits.iter().all(|h| (700..1300).contains(h)), "{hits:?}");
    }

    #[tokio::test]
    async fn admission_holds_its_cap_and_frees_finished_work() {
        let a = Admission::new(4);
        let (tx, rx) = tokio::sync::watch::channel(false);
        let mut evicted = 0;
        for i in 0..10 {
            let mut rx = rx.clone();
            evicted += a.spawn(&source_of(&format!("10.0.0.1:{i}")), async move {
                let _ = rx.wait_for(|go| *go).await;
            });
            assert!(a.running() <= 4);
        }
        assert_eq!(evicted, 6);
        tx.send(true).unwrap();
        for _ in 0..100 {
            if a.running() == 0 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(a.running(), 0, "finished work leaves");
    }
}

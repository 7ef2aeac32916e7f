//! Test support: a TCP proxy that can freeze or cut its connections, and a
//! hand-written layered SP peer.
#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How long any one wait may take.
pub const LONG: Duration = Duration::from_secs(30);

/// Waits (at most [`LONG`]) until `cond` holds.
pub async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    tokio::time::timeout(LONG, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Awaits `f` within [`LONG`].
pub async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(LONG, f)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// One proxied connection's switches.
#[derive(Default)]
pub struct Conn {
    /// Stop forwarding client → server (keep the sockets open).
    pub freeze_up: AtomicBool,
    /// Stop forwarding server → client.
    pub freeze_down: AtomicBool,
    /// Cut both sides (with a reset).
    pub cut: AtomicBool,
}

/// A TCP proxy in front of `target`: what it forwards, how, per connection.
pub struct Proxy {
    pub url: String,
    conns: Arc<Mutex<Vec<Arc<Conn>>>>,
}

impl Proxy {
    /// Proxies `tcp://127.0.0.1:<port>` to `target` (a `tcp://` URL).
    pub async fn start(target: &str) -> Proxy {
        let target = target.strip_prefix("tcp://").expect("tcp url").to_string();
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("tcp://{}", l.local_addr().expect("addr"));
        let conns: Arc<Mutex<Vec<Arc<Conn>>>> = Arc::default();
        let list = conns.clone();
        tokio::spawn(async move {
            while let Ok((down, _)) = l.accept().await {
                let Ok(up) = TcpStream::connect(&target).await else {
                    continue;
                };
                let c = Arc::new(Conn::default());
                list.lock().expect("lock").push(c.clone());
                // a cut is a reset, as a peer that lost power would look
                // once it is back: no FIN before it
                #[allow(deprecated)]
                {
                    let _ = down.set_linger(Some(Duration::ZERO));
                    let _ = up.set_linger(Some(Duration::ZERO));
                }
                let (dr, dw) = down.into_split();
                let (ur, uw) = up.into_split();
                tokio::spawn(pump(dr, uw, c.clone(), true));
                tokio::spawn(pump(ur, dw, c, false));
            }
        });
        Proxy { url, conns }
    }

    /// The connections so far, oldest first.
    pub fn conns(&self) -> Vec<Arc<Conn>> {
        self.conns.lock().expect("lock").clone()
    }

    /// Freezes every connection made so far, both ways: nothing read,
    /// nothing written, nothing closed. New connections flow.
    pub fn freeze_all(&self) {
        for c in self.conns() {
            c.freeze_up.store(true, Ordering::SeqCst);
            c.freeze_down.store(true, Ordering::SeqCst);
        }
    }

    /// Cuts every connection made so far.
    pub fn cut_all(&self) {
        for c in self.conns() {
            c.cut.store(true, Ordering::SeqCst);
        }
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    c: Arc<Conn>,
    up: bool,
) {
    let frozen = || {
        if up {
            c.freeze_up.load(Ordering::SeqCst)
        } else {
            c.freeze_down.load(Ordering::SeqCst)
        }
    };
    let mut buf = vec![0u8; 64 << 10];
    loop {
        if c.cut.load(Ordering::SeqCst) {
            // both halves of both sockets go: a reset each way
            return;
        }
        if frozen() {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        }
        let n = tokio::select! {
            r = from.read(&mut buf) => match r {
                Ok(n) if n > 0 => n,
                Ok(_) => {
                    // the end of one side: passed on as an end (not a reset,
                    // which could discard what the other side has not read)
                    let _ = to.shutdown().await;
                    while !c.cut.load(Ordering::SeqCst) {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    return;
                }
                Err(_) => return,
            },
            // look at the switches now and then
            _ = tokio::time::sleep(Duration::from_millis(10)) => continue,
        };
        // a read that was waiting when the switch flipped holds its bytes
        while frozen() {
            if c.cut.load(Ordering::SeqCst) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let cut = async {
            while !c.cut.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::select! {
            r = to.write_all(&buf[..n]) => if r.is_err() { return },
            _ = cut => return,
        }
    }
}

/// The announcement of a stack with pipe layers `layers` over `proto`.
pub fn layered_header(proto: u16, layers: &[&str]) -> Vec<u8> {
    let p = proto.to_be_bytes();
    let mut out = vec![0, b'S', b'P', 1, p[0], p[1], 0, 0];
    let mut list = Vec::new();
    for l in layers {
        list.push(l.len() as u8);
        list.extend_from_slice(l.as_bytes());
    }
    out.extend_from_slice(&(list.len() as u16).to_be_bytes());
    out.extend_from_slice(&list);
    out
}

/// `payload` framed for tcp.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u64).to_be_bytes().to_vec();
    f.extend_from_slice(payload);
    f
}

/// Connects to `url`, announces `proto` with `layers`, and reads the
/// socket's announcement (whatever it is).
pub async fn layered_peer(url: &str, proto: u16, layers: &[&str]) -> TcpStream {
    let mut s = within(
        "connect",
        TcpStream::connect(url.strip_prefix("tcp://").expect("tcp url")),
    )
    .await
    .expect("connect");
    s.write_all(&layered_header(proto, layers))
        .await
        .expect("announce");
    let mut h = [0u8; 8];
    within("header", s.read_exact(&mut h))
        .await
        .expect("header");
    if h[3] == 1 {
        let mut n = [0u8; 2];
        s.read_exact(&mut n).await.expect("list length");
        let mut list = vec![0u8; u16::from_be_bytes(n) as usize];
        s.read_exact(&mut list).await.expect("list");
    }
    s
}

/// Reads one tcp frame (at most 1 MiB).
pub async fn read_frame(s: &mut TcpStream) -> Vec<u8> {
    let mut len = [0u8; 8];
    within("frame length", s.read_exact(&mut len))
        .await
        .expect("frame length");
    let len = u64::from_be_bytes(len);
    assert!(len < 1 << 20);
    let mut b = vec![0u8; len as usize];
    within("frame", s.read_exact(&mut b)).await.expect("frame");
    b
}

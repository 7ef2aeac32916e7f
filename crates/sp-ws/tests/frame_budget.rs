//! Stalled WebSocket peers announcing large frames cost the socket its
//! allocation budget, not the announced size per connection.
//!
//! tungstenite reserves the whole length a frame header announces (up to
//! `WsConfig::max_frame_size`, 1 MiB) on parsing it. Every connection that
//! sent such a header and stalled held 1 MiB: 64 of them, 64 MiB. The
//! bytes the heap holds are counted here by a global allocator (live bytes,
//! not RSS: a reservation is counted whether or not its pages were touched).
//! The tests of this binary take turns, so that no other allocates meanwhile.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use common::{opts, raw_upgrade, sock_with, within};
use sp_ws::WsConfig;
use tokio::io::AsyncWriteExt;

struct Live;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Live {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc_zeroed(l) }
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
static GLOBAL: Live = Live;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

/// One measurement at a time.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The most the heap grew above `before` over a short while.
async fn peak_above(before: isize) -> isize {
    let mut peak = 0isize;
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        peak = peak.max(live() - before);
    }
    peak
}

const MIB: usize = 1 << 20;

/// A masked client frame header, binary and final, announcing `len`
/// (64-bit form), zero mask.
fn frame_header(len: u64) -> Vec<u8> {
    let mut h = vec![0x82, 0x80 | 127];
    h.extend_from_slice(&len.to_be_bytes());
    h.extend_from_slice(&[0, 0, 0, 0]);
    h
}

/// A whole masked client frame of fewer than 126 bytes, zero mask.
fn small_frame(payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x82, 0x80 | payload.len() as u8, 0, 0, 0, 0];
    f.extend_from_slice(payload);
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_ws_peers_announcing_large_frames_cost_the_budget_not_a_mib_each() {
    let _turn = TURN.lock().await;
    const PEERS: usize = 64;
    const BUDGET: usize = 4 * MIB;
    let pull = sock_with("pull", &WsConfig::default(), |b| {
        b.options(opts().recv_max_size(MIB).recv_queue_bytes(BUDGET))
    });
    let ep = pull.listen("ws://127.0.0.1:0/sp").await.expect("listen");
    // warm up: the runtime, the port, a first pipe
    let warm = raw_upgrade(ep.url(), "pull.sp.nanomsg.org").await;
    drop(warm);
    tokio::time::sleep(Duration::from_millis(100)).await;

    let before = live();
    let mut peers = Vec::with_capacity(PEERS);
    for i in 0..PEERS {
        // a complete small message, then in the same write a frame
        // announcing (just under) 1 MiB and 100 bytes of it: the server
        // reads both at once, delivers the first and parses the second's
        // header at once
        let mut bytes = small_frame(format!("m{i:03} ").as_bytes());
        bytes.extend(frame_header((MIB - 64) as u64));
        bytes.extend_from_slice(&[0u8; 100]);
        let mut s = raw_upgrade(ep.url(), "pull.sp.nanomsg.org").await;
        s.write_all(&bytes).await.expect("write");
        peers.push(s);
    }
    // every peer's small message arrived, so its large header was read
    for _ in 0..PEERS {
        let m = within("small message", pull.recv()).await.expect("recv");
        assert_eq!(m.body().len(), 5);
    }
    let peak = peak_above(before).await;
    // each connection's own buffers (the library's 16 KiB read buffer, the
    // pipe's queues, tasks), plus at most the budget for frames it covers
    let bound = (BUDGET + PEERS * 192 * 1024) as isize;
    assert!(
        peak < bound,
        "{PEERS} peers announcing 1 MiB frames and stalling hold {} KiB of heap (bound {} KiB; 1 MiB each would be {} KiB)",
        peak >> 10,
        bound >> 10,
        (PEERS * MIB) >> 10
    );
    eprintln!(
        "{PEERS} stalled peers: {} KiB of heap, {} KiB each",
        peak >> 10,
        (peak as usize / PEERS) >> 10
    );

    // a large frame still gets through when it arrives whole, budget or
    // not: one peer sends the rest of its frame
    let rest = MIB - 64 - 100;
    peers[PEERS - 1]
        .write_all(&vec![7u8; rest])
        .await
        .expect("the rest of the frame");
    let m = within("the large message", pull.recv())
        .await
        .expect("recv");
    assert_eq!(m.body().len(), MIB - 64);
    drop(peers);
}

/// An evil ws:// listener: it upgrades each connection (echoing the
/// subprotocol asked for), then in the same write as its 101 sends a small
/// message, a frame header announcing just under 1 MiB and 100 bytes of
/// it, and stalls. Returns its `ip:port`.
async fn evil_listener() -> String {
    use tokio::io::AsyncReadExt;
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr").to_string();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut s, _)) = l.accept().await {
            let mut head = Vec::new();
            let mut b = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
                if s.read_exact(&mut b).await.is_err() {
                    break;
                }
                head.push(b[0]);
            }
            let text = String::from_utf8_lossy(&head).into_owned();
            let header = |name: &str| {
                text.lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
                    })
                    .unwrap_or_default()
            };
            let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(
                header("sec-websocket-key").as_bytes(),
            );
            let mut out = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Protocol: {}\r\n\r\n",
                header("sec-websocket-protocol")
            )
            .into_bytes();
            // server frames are not masked
            out.extend_from_slice(&[0x82, 5]);
            out.extend_from_slice(b"small");
            out.extend_from_slice(&[0x82, 127]);
            out.extend_from_slice(&((MIB - 64) as u64).to_be_bytes());
            out.extend_from_slice(&[0u8; 100]);
            if s.write_all(&out).await.is_ok() {
                held.push(s);
            }
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dialer_to_a_listener_announcing_large_frames_costs_its_budget_not_a_mib_each() {
    // The frames a listener sends with its 101 were the tail of the
    // library's client handshake, parsed without the gate.
    let _turn = TURN.lock().await;
    const DIALS: usize = 32;
    const BUDGET: usize = 4 * MIB;
    let evil = evil_listener().await;
    let pull = sock_with("pull", &WsConfig::default(), |b| {
        b.options(opts().recv_max_size(MIB).recv_queue_bytes(BUDGET))
    });
    let url = format!("ws://{evil}/sp");
    within("warm-up dial", pull.dial(&url)).await.expect("dial");
    within("warm-up message", pull.recv()).await.expect("recv");
    tokio::time::sleep(Duration::from_millis(100)).await;

    let before = live();
    for _ in 0..DIALS {
        within("dial", pull.dial(&url)).await.expect("dial");
    }
    for _ in 0..DIALS {
        let m = within("small message", pull.recv()).await.expect("recv");
        assert_eq!(m.body(), b"small");
    }
    let peak = peak_above(before).await;
    let bound = (BUDGET + DIALS * 192 * 1024) as isize;
    assert!(
        peak < bound,
        "{DIALS} pipes to a listener announcing 1 MiB frames hold {} KiB of heap (bound {} KiB; 1 MiB each would be {} KiB)",
        peak >> 10,
        bound >> 10,
        (DIALS * MIB) >> 10
    );
    eprintln!(
        "{DIALS} dialed pipes: {} KiB of heap, {} KiB each",
        peak >> 10,
        (peak as usize / DIALS) >> 10
    );
}

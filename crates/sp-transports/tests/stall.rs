//! Peers that announce large frames and then send nothing: what the frame
//! reader allocates for them, counted by a counting allocator on this
//! thread (the readers are polled by hand, so every allocation they make is
//! made here and nowhere else).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::task::noop_waker_ref;
use futures::Stream;
use sp_core::layer::RecvLimit;
use sp_core::protocol::ProtocolId;
use sp_core::transport::{AllocBudget, PipeConfig};
use sp_core::Announcement;
use sp_transports::stream::{FrameReader, Framing};
use tokio::io::{AsyncWriteExt, DuplexStream};

struct Counting;

thread_local! {
    static COUNT: Cell<bool> = const { Cell::new(false) };
    static BYTES: Cell<usize> = const { Cell::new(0) };
}

fn count(bytes: usize) {
    let _ = COUNT.try_with(|c| {
        if c.get() {
            BYTES.with(|b| b.set(b.get() + bytes));
        }
    });
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        count(l.size());
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        // what a growing buffer adds
        count(n.saturating_sub(l.size()));
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Bytes allocated on this thread while `f` runs.
fn allocated(f: impl FnOnce()) -> usize {
    BYTES.with(|b| b.set(0));
    COUNT.with(|c| c.set(true));
    f();
    COUNT.with(|c| c.set(false));
    BYTES.with(|b| b.get())
}

const MAX: usize = 4 << 20;
/// The socket's budget for bytes allocated ahead of their arrival (its
/// default `recv_queue_bytes`).
const BUDGET: usize = 4 << 20;

fn config(budget: &AllocBudget) -> PipeConfig {
    PipeConfig {
        recv_max_size: MAX,
        recv_headroom: 64,
        local: Announcement {
            protocol: ProtocolId::PULL0,
            layers: Vec::new(),
        },
        recv_limit: RecvLimit::new(MAX),
        counters: Arc::default(),
        alloc_budget: budget.clone(),
        plain_peer_ok: false,
    }
}

fn poll(r: &mut FrameReader<DuplexStream>) -> Poll<Option<sp_core::Result<sp_core::Message>>> {
    Pin::new(r).poll_next(&mut Context::from_waker(noop_waker_ref()))
}

/// The next frame, once every byte of it has been written to the reader's
/// stream: a few polls at most (tokio's cooperative budget may make one of
/// them wait a turn).
async fn ready(r: &mut FrameReader<DuplexStream>) -> sp_core::Result<sp_core::Message> {
    for _ in 0..10 {
        match poll(r) {
            Poll::Ready(Some(m)) => return m,
            Poll::Ready(None) => return Err(sp_core::Error::Closed),
            Poll::Pending => tokio::task::yield_now().await,
        }
    }
    panic!("a frame whose bytes were all there did not arrive")
}

/// `n` readers of one socket, each with a peer that announced a frame of
/// `len` bytes and sent `body` bytes of it.
async fn stalled(
    budget: &AllocBudget,
    n: usize,
    len: usize,
    body: usize,
) -> (Vec<FrameReader<DuplexStream>>, Vec<DuplexStream>) {
    let cfg = config(budget);
    let mut readers = Vec::new();
    let mut peers = Vec::new();
    for _ in 0..n {
        let (ours, mut theirs) = tokio::io::duplex(2 * len);
        theirs.write_all(&(len as u64).to_be_bytes()).await.unwrap();
        theirs.write_all(&vec![1u8; body]).await.unwrap();
        readers.push(FrameReader::new(ours, Framing::Tcp, &cfg));
        peers.push(theirs);
    }
    (readers, peers)
}

#[tokio::test(flavor = "current_thread")]
async fn announced_frames_that_never_arrive_cost_little() {
    // 64 connections each announcing 1 MiB (within the 4 MiB limit) and
    // sending nothing more: allocating each frame whole on its length cost
    // 64 MiB for 512 bytes of the peers'
    const N: usize = 64;
    const LEN: usize = 1 << 20;
    let budget = AllocBudget::new(BUDGET);
    let (mut readers, mut peers) = stalled(&budget, N, LEN, 0).await;
    let bytes = allocated(|| {
        for r in &mut readers {
            assert!(poll(r).is_pending(), "a frame without its body");
        }
    });
    // the budget's worth were allocated whole (they would have been read
    // straight in), the rest wait for their first bytes without a buffer;
    // each pipe read its frame's prefix into its first (smallest) staging
    // chunk, which it keeps while it receives
    assert!(
        bytes <= BUDGET + N * (sp_transports::stream::CHUNK_MIN + 1024),
        "{bytes} bytes allocated for {N} announced frames of {LEN} bytes that never came"
    );
    assert_eq!(budget.available(), 0);
    // a pipe that goes gives its share back
    drop(readers.remove(0));
    drop(peers.remove(0));
    assert_eq!(budget.available(), LEN);
    // and every frame still arrives whole when its peer sends it, the way
    // it started (allocated ahead or not)
    let body: Vec<u8> = (0..LEN).map(|i| (i % 251) as u8).collect();
    for (i, (r, p)) in readers.iter_mut().zip(&mut peers).enumerate() {
        p.write_all(&body).await.unwrap();
        let m = ready(r).await.unwrap_or_else(|e| panic!("{i}: {e}"));
        assert!(m.body() == &body[..], "frame intact");
    }
    assert_eq!(budget.available(), BUDGET);
}

#[tokio::test(flavor = "current_thread")]
async fn a_trickled_frame_costs_about_what_arrived_and_arrives_intact() {
    // the budget is taken (by other stalled peers): frames grow as they come
    const N: usize = 16;
    const LEN: usize = 1 << 20;
    const SENT: usize = 100 << 10;
    let budget = AllocBudget::new(0);
    let (mut readers, mut peers) = stalled(&budget, N, LEN, SENT).await;
    let bytes = allocated(|| {
        for r in &mut readers {
            // one poll reads all that is there, then waits for more
            assert!(poll(r).is_pending(), "part of a frame");
        }
    });
    assert!(
        bytes <= N * (2 * SENT + 1024),
        "{bytes} bytes allocated for {N} frames with {SENT} of their {LEN} bytes sent"
    );
    for (r, p) in readers.iter_mut().zip(&mut peers) {
        p.write_all(&vec![1u8; LEN - SENT]).await.unwrap();
        let m = ready(r).await.expect("a frame");
        assert_eq!(m.body().len(), LEN);
        assert!(m.body().iter().all(|b| *b == 1));
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_prompt_frame_within_the_budget_is_read_straight_into_its_message() {
    const LEN: usize = 1 << 20;
    let budget = AllocBudget::new(BUDGET);
    let (mut readers, mut peers) = stalled(&budget, 1, LEN, 0).await;
    let r = &mut readers[0];
    assert!(poll(r).is_pending());
    assert_eq!(budget.available(), BUDGET - LEN, "the frame's bytes taken");
    let body: Vec<u8> = (0..LEN).map(|i| i as u8).collect();
    peers[0].write_all(&body).await.unwrap();
    let mut got = None;
    let bytes = allocated(|| got = Some(poll(r)));
    let Some(Poll::Ready(got)) = got else {
        panic!("the whole body was there")
    };
    let m = got.expect("a frame").expect("intact");
    assert_eq!(m.body(), &body[..]);
    // no growing buffer, no copy: the message was allocated up front
    assert!(
        bytes < 4096,
        "{bytes} bytes allocated while the body arrived"
    );
    assert_eq!(budget.available(), BUDGET, "given back as it arrived");
}

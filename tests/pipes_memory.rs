//! Memory of an idle pipe: a socket with many pipes holds at most 16 KiB of
//! heap per pipe end, fresh and after carrying a message (counted by a
//! global allocator that tracks live bytes). `benches/pipes.rs` measures the
//! same with 10,000 pipes, and resident memory too.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

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

/// Bytes per pipe end an idle pipe may hold.
const PER_PIPE_END: isize = 16 << 10;
const N: usize = 300;

async fn settle() {
    tokio::time::sleep(Duration::from_millis(200)).await;
}

/// Opens `N` pipes from one PUSH to one PULL (both here: every pipe has two
/// ends in this process) and checks the heap they hold, idle, then after
/// one message down each.
async fn check(url: &str) {
    settle().await;
    let before = LIVE.load(Ordering::Relaxed);
    let pull = spstack::pull0().build();
    let ep = pull.listen(url).await.unwrap();
    let push = spstack::push0().build();
    let mut eps = Vec::new();
    for _ in 0..N {
        eps.push(push.dial(ep.url()).await.unwrap());
    }
    tokio::time::timeout(Duration::from_secs(30), async {
        while pull.pipes().len() < N || push.pipes().len() < N {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("every pipe up");
    settle().await;
    let fresh = (LIVE.load(Ordering::Relaxed) - before) / (2 * N as isize);
    for _ in 0..N {
        push.send(push.new_message(64)).await.unwrap();
    }
    for _ in 0..N {
        drop(pull.recv().await.unwrap());
    }
    settle().await;
    let used = (LIVE.load(Ordering::Relaxed) - before) / (2 * N as isize);
    println!("{url}: {fresh} bytes per idle pipe end, {used} after one message each");
    assert!(
        fresh <= PER_PIPE_END,
        "{url}: {fresh} bytes per fresh pipe end"
    );
    assert!(
        used <= PER_PIPE_END,
        "{url}: {used} bytes per pipe end after a message"
    );
    drop(eps);
    push.close();
    pull.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_pipe_holds_at_most_16_kib_per_end() {
    check(&format!("inproc://pipes-memory-{}", std::process::id())).await;
    check("tcp://127.0.0.1:0").await;
}

//! One allocation per message on the send path, and no copy of the body:
//! cooked REQ → raw REQ → tcp, measured with a counting global allocator.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::layers::{full_stack, Seq};

struct Counting;

thread_local! {
    static COUNT: Cell<bool> = const { Cell::new(false) };
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let _ = COUNT.try_with(|c| {
            if c.get() {
                ALLOCS.with(|a| a.set(a.get() + 1));
            }
        });
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        let _ = COUNT.try_with(|c| {
            if c.get() {
                ALLOCS.with(|a| a.set(a.get() + 1));
            }
        });
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const N: usize = 10_000;
const SIZE: usize = 1024;

/// A plain REP peer on a std thread: answers the SP header, then reads and
/// checks every frame (u64 length, 4-byte request id, body).
fn sink_peer(received: Arc<AtomicUsize>) -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = format!("tcp://{}", l.local_addr().unwrap());
    std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.write_all(&[0, b'S', b'P', 0, 0, 0x31, 0, 0]).unwrap();
        let mut hdr = [0u8; 8];
        s.read_exact(&mut hdr).unwrap();
        assert_eq!(hdr, [0, b'S', b'P', 0, 0, 0x30, 0, 0]);
        let mut frame = vec![0u8; 4 + SIZE];
        for i in 0..N {
            s.read_exact(&mut hdr).unwrap();
            assert_eq!(u64::from_be_bytes(hdr) as usize, 4 + SIZE);
            s.read_exact(&mut frame).unwrap();
            assert!(frame[0] & 0x80 != 0, "request id has its top bit set");
            assert!(
                frame[4..].iter().all(|&b| b == (i % 251) as u8),
                "body intact"
            );
            received.fetch_add(1, Ordering::Release);
        }
    });
    addr
}

#[test]
fn send_path_allocates_once_per_message_and_copies_nothing() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let received = Arc::new(AtomicUsize::new(0));
    let addr = sink_peer(received.clone());
    rt.block_on(async {
        let req = spstack::req0().build();
        req.dial(&addr).await.unwrap();
        // warm up: queues, timers and the runtime reach their steady size
        for i in 0..100 {
            let mut m = req.new_message(SIZE);
            m.body_mut().fill((i % 251) as u8);
            req.send(m).await.unwrap();
        }
        while received.load(Ordering::Acquire) < 100 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let copied_before = spstack::copied_bytes();
        ALLOCS.with(|a| a.set(0));
        COUNT.with(|c| c.set(true));
        for i in 100..N {
            let mut m = req.new_message(SIZE);
            m.body_mut().fill((i % 251) as u8);
            req.send(m).await.unwrap();
        }
        // the writer task runs on this thread too: wait for the peer to have it all
        while received.load(Ordering::Acquire) < N {
            tokio::task::yield_now().await;
        }
        COUNT.with(|c| c.set(false));
        let allocs = ALLOCS.with(|a| a.get());
        let sent = N - 100;
        println!("{allocs} allocations for {sent} messages");
        assert!(
            allocs <= sent + 64,
            "{allocs} allocations for {sent} messages: more than one per message"
        );
        assert_eq!(
            spstack::copied_bytes() - copied_before,
            0,
            "the body was copied on the send path"
        );
    });
}

#[test]
fn pipe_layer_headers_on_a_shared_request_copy_nothing() {
    // REQ keeps a clone of each request for resending, so the buffer is
    // shared when pipe layers add their header and trailer: those go to the
    // inline frame areas, not into a copy of the body.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let rep = full_stack(spstack::rep0(), Seq::default()).build();
        let ep = rep.listen("tcp://127.0.0.1:0").await.unwrap();
        let req = full_stack(spstack::req0(), Seq::default()).build();
        req.dial(ep.url()).await.unwrap();
        req.send("warm").await.unwrap();
        rep.recv().await.unwrap();
        let before = spstack::copied_bytes();
        for _ in 0..50 {
            let mut m = req.new_message(4096);
            m.body_mut().fill(7);
            req.send(m).await.unwrap();
            let got = tokio::time::timeout(Duration::from_secs(5), rep.recv())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(got.body().len(), 4096);
        }
        let copied = spstack::copied_bytes() - before;
        assert!(
            copied < 4096,
            "send path copied {copied} bytes for 50 × 4 KiB"
        );
    });
}

#[test]
fn inproc_hands_over_the_very_same_buffer() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let pull = spstack::pull0().build();
        pull.listen("inproc://alloc-zero-copy").await.unwrap();
        let push = spstack::push0().build();
        push.dial("inproc://alloc-zero-copy").await.unwrap();
        for size in [1usize, 1024, 1 << 20] {
            let mut m = push.new_message(size);
            m.body_mut().fill(3);
            let sent_at = m.body().as_ptr();
            push.send(m).await.unwrap();
            let got = pull.recv().await.unwrap();
            assert_eq!(got.body().len(), size);
            assert_eq!(
                got.body().as_ptr(),
                sent_at,
                "inproc serialised or copied a {size}-byte body"
            );
        }
    });
}

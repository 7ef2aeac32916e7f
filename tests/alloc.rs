//! Allocations and copied bytes per message, sent and received, on every
//! stack, measured with a counting global allocator and the sockets' own
//! copy counters, and held against what each stack declares:
//!
//! * a message made by `Socket::new_message` has the room every component
//!   declared, so the only copies on the way out are those of components
//!   that declare `copies` (a TLS session, a WebSocket library's buffers, the
//!   integrity layer's signed record), and a stream framing's gathering of
//!   frames below `sp_transports::stream::COPY_BELOW` (prefix included) into
//!   its batch buffer: none for larger frames on a plain or Noise stack;
//! * on the way in, a stream framing reads frames below
//!   `sp_transports::STAGED_BELOW` many per system call into a chunk they
//!   then share (no copy; a PULL reserves no room in front of them), unless
//!   a pipe layer transforms them in place (Noise), which copies each once
//!   out of the chunk; larger ones are read straight into their message;
//!   copying components add theirs;
//! * one allocation per message on each side (the message) on plain and
//!   Noise stacks, none on the way in for a small frame that shares its
//!   read chunk (no pipe layer), and a small, bounded number more where a
//!   component declares its own (measured and asserted below); the integrity
//!   layer's receiving side also allocates a few per batch of signatures it
//!   verifies at once (not per message), counted by its stats.
//!
//! Sender and receiver each run on their own thread and current-thread
//! runtime, so each side's allocations are its own.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use sp_crypto::integrity::{Integrity, IntegrityConfig, IntegrityStats};
use sp_crypto::keys::SigningKeypair;
use sp_crypto::noise::{self, NoiseConfig, StaticKeypair};
use sp_transports::tls::{Identity, Roots, Tls, TlsConfig};
use spstack::{Socket, SocketBuilder};

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

fn counting(on: bool) {
    if on {
        ALLOCS.with(|a| a.set(0));
    }
    COUNT.with(|c| c.set(on));
}

fn allocs() -> usize {
    ALLOCS.with(|a| a.get())
}

/// Messages before and during the measurement: about 4 MiB of each, so the
/// queues and buffers have reached their steady size first and debug builds
/// of the crypto stay quick.
fn counts(size: usize) -> (usize, usize) {
    let n = ((4 << 20) / size.max(1)).clamp(32, 2_000);
    // queues fill up to their byte bound (4 MiB) in a burst, and a socket
    // keeps the large buffers of its bursts for the next: the warm-up must
    // have seen a few
    (4 * n, n)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stack {
    Plain,
    Noise,
    Integrity,
    NoiseIntegrity,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wire {
    Tcp,
    Ipc,
    TlsTcp,
    Ws,
    Wss,
}

fn tls() -> TlsConfig {
    use std::sync::OnceLock;
    static C: OnceLock<TlsConfig> = OnceLock::new();
    C.get_or_init(|| {
        let c = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
        let der = rustls_pki_types::CertificateDer::from(c.cert.der().to_vec());
        let key = rustls_pki_types::PrivatePkcs8KeyDer::from(c.key_pair.serialize_der());
        TlsConfig::new()
            .server_identity(Identity::from_der(vec![der.clone()], key.into()))
            .roots(Roots::from_der(vec![der]))
            .server_name("localhost")
    })
    .clone()
}

fn url(w: Wire, n: usize) -> String {
    match w {
        Wire::Tcp => "tcp://127.0.0.1:0".into(),
        Wire::Ipc => format!("ipc:///tmp/spstack-alloc-{}-{n}.ipc", std::process::id()),
        Wire::TlsTcp => "tls+tcp://127.0.0.1:0".into(),
        Wire::Ws => "ws://127.0.0.1:0/alloc".into(),
        Wire::Wss => "wss://127.0.0.1:0/alloc".into(),
    }
}

/// Keys shared by both sides of one run.
struct Keys {
    sender: SigningKeypair,
    receiver: SigningKeypair,
}

fn build(b: SocketBuilder, stack: Stack, wire: Wire, keys: &Keys, sending: bool) -> Socket {
    build_with_stats(b, stack, wire, keys, sending).0
}

/// The socket and, on an integrity stack, its layer's counters.
fn build_with_stats(
    b: SocketBuilder,
    stack: Stack,
    wire: Wire,
    keys: &Keys,
    sending: bool,
) -> (Socket, Option<IntegrityStats>) {
    let mut b = match wire {
        Wire::Tcp | Wire::Ipc => b,
        Wire::TlsTcp => b.transport(Arc::new(sp_transports::tls::tls_tcp(tls()))),
        Wire::Ws => b.transport(Arc::new(sp_ws::Ws::new(sp_transports::Tcp))),
        Wire::Wss => b.transport(Arc::new(sp_ws::Ws::secure(Tls::new(
            sp_transports::Tcp,
            tls(),
        )))),
    };
    if matches!(stack, Stack::Noise | Stack::NoiseIntegrity) {
        b = b.pipe_layer(noise::layer(
            NoiseConfig::new(StaticKeypair::generate()).accept_any_key(),
        ));
    }
    let mut stats = None;
    if matches!(stack, Stack::Integrity | Stack::NoiseIntegrity) {
        let (me, peer) = if sending {
            (&keys.sender, &keys.receiver)
        } else {
            (&keys.receiver, &keys.sender)
        };
        let layer = Integrity::new(
            IntegrityConfig::new(me.clone(), [peer.verifying_key()], "alloc").expect("config"),
        );
        stats = Some(layer.stats());
        b = b.message_layer(layer);
    }
    let s = b
        .options(spstack::Options::default().recv_max_size(4 << 20))
        .build();
    (s, stats)
}

/// At most what one batch of signatures costs in allocations: ed25519-dalek
/// 2.2's `verify_batch` makes 9 for two signatures and 18 for 64 (its hashes,
/// signatures, scalars and weights, the multiscalar multiplication's digits
/// and tables, some grown as they are collected), the layer one more for
/// the list of the batch's records.
const ALLOCS_PER_BATCH: f64 = 19.0;

/// Per message, one side.
#[derive(Debug, Default, Clone, Copy)]
struct Side {
    allocs: f64,
    copied: f64,
    /// Signature batches the integrity layer verified, per message.
    batches: f64,
}

#[derive(Debug)]
struct Measured {
    send: Side,
    recv: Side,
    /// Bytes of one frame as the transport gets it (pipe layers included,
    /// the transport's own framing excluded).
    frame: usize,
}

fn measure(stack: Stack, wire: Wire, size: usize, n: usize) -> Measured {
    let (warm, measured) = counts(size);
    let keys = Arc::new(Keys {
        sender: SigningKeypair::generate(),
        receiver: SigningKeypair::generate(),
    });
    let (url_tx, url_rx) = mpsc::channel::<String>();
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let k = keys.clone();
    let receiver = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let (pull, integrity) = build_with_stats(spstack::pull0(), stack, wire, &k, false);
            let batches = || integrity.as_ref().map_or(0, |s| s.batches());
            let ep = pull.listen(&url(wire, n)).await.expect("listen");
            url_tx.send(ep.url().to_string()).unwrap();
            for _ in 0..warm {
                let m = pull.recv().await.expect("warm-up recv");
                assert_eq!(m.body().len(), size);
            }
            // the sender waits for this: nothing is in flight from here on
            ready_tx.send(()).unwrap();
            let before = pull.stats();
            let batches_before = batches();
            counting(true);
            let mut bytes = 0;
            for _ in 0..measured {
                let m = pull.recv().await.expect("recv");
                bytes += m.body().len();
                drop(m);
            }
            counting(false);
            let after = pull.stats();
            assert_eq!(bytes, measured * size, "bodies intact");
            go_tx.send(()).unwrap();
            Side {
                allocs: allocs() as f64 / measured as f64,
                copied: (after.bytes_copied_in - before.bytes_copied_in) as f64 / measured as f64,
                batches: (batches() - batches_before) as f64 / measured as f64,
            }
        })
    });
    let url = url_rx.recv_timeout(Duration::from_secs(20)).expect("url");
    let sender = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let push = build(spstack::push0(), stack, wire, &keys, true);
            push.dial(&url).await.expect("dial");
            for _ in 0..warm {
                let mut m = push.new_message(size);
                m.body_mut().fill(7);
                push.send(m).await.expect("send");
            }
            tokio::task::spawn_blocking(move || ready_rx.recv_timeout(Duration::from_secs(60)))
                .await
                .unwrap()
                .expect("receiver warmed up");
            let start_out = push.stats();
            let before = start_out.bytes_copied;
            counting(true);
            for _ in 0..measured {
                let mut m = push.new_message(size);
                m.body_mut().fill(7);
                push.send(m).await.expect("send");
            }
            // the writer runs on this thread too: until it has written all
            while push.stats().msgs_out < (warm + measured) as u64 {
                tokio::task::yield_now().await;
            }
            counting(false);
            let after = push.stats();
            let sp = ((after.bytes_out - start_out.bytes_out) / measured as u64) as usize;
            // what the transport carries: the SP message and the pipe layers'
            let (head, tail) = push.frame_plan().room(sp);
            let frame = sp + head + tail;
            // keep the socket until the receiver has it all
            tokio::task::spawn_blocking(move || go_rx.recv_timeout(Duration::from_secs(60)))
                .await
                .unwrap()
                .expect("receiver done");
            (
                Side {
                    allocs: allocs() as f64 / measured as f64,
                    copied: (after.bytes_copied - before) as f64 / measured as f64,
                    batches: 0.0,
                },
                frame,
            )
        })
    });
    let (send, frame) = sender.join().expect("sender");
    let recv = receiver.join().expect("receiver");
    Measured { send, recv, frame }
}

/// What the declarations say one message costs in copies, each way, as a
/// range (a TLS record or a WebSocket frame header adds a few bytes).
fn declared_copies(stack: Stack, wire: Wire, size: usize, frame: usize) -> [(f64, f64); 2] {
    let mut send = 0.0;
    let mut recv = 0.0;
    let mut slack = 0.0;
    if matches!(stack, Stack::Integrity | Stack::NoiseIntegrity) {
        // the signed record holds the body once, each way
        send += size as f64;
        recv += size as f64;
    }
    let layered = matches!(stack, Stack::Noise | Stack::NoiseIntegrity);
    // a frame small enough to be read many per system call: shared with its
    // chunk, unless a pipe layer decrypts it in place (one copy out of it)
    let staged = |bytes: usize| {
        if bytes < sp_transports::STAGED_BELOW && layered {
            bytes as f64
        } else {
            0.0
        }
    };
    // a frame small enough to be gathered into the writer's batch buffer
    let gathered = |bytes: usize, prefix: usize| {
        if bytes + prefix < sp_transports::stream::COPY_BELOW {
            bytes as f64
        } else {
            0.0
        }
    };
    match wire {
        Wire::Tcp => {
            send += gathered(frame, 8);
            recv += staged(frame);
        }
        Wire::Ipc => {
            send += gathered(frame, 9);
            recv += staged(frame);
        }
        Wire::TlsTcp => {
            // the session copies every byte, its u64 length prefix included
            send += (frame + 8) as f64 + gathered(frame, 8);
            recv += (frame + 8) as f64 + staged(frame);
        }
        Wire::Ws | Wire::Wss => {
            // into the library's write buffer; out of it only when it had to
            // reassemble fragments (we send 64 KiB fragments)
            send += frame as f64;
            if frame > sp_ws::WsConfig::default().send_frame_size {
                recv += frame as f64;
            }
            if matches!(stack, Stack::Noise | Stack::NoiseIntegrity) {
                // a frame that is a view of the library's read buffer is
                // opened in a buffer of its own
                recv += frame as f64;
            }
            if wire == Wire::Wss {
                send += frame as f64;
                recv += frame as f64;
                slack = 14.0 + 8.0;
            }
        }
    }
    [(send, send + slack), (recv, recv + slack)]
}

fn check(stack: Stack, wire: Wire, size: usize, n: usize) {
    let m = measure(stack, wire, size, n);
    let [(s_lo, s_hi), (r_lo, r_hi)] = declared_copies(stack, wire, size, m.frame);
    println!(
        "{stack:?} over {wire:?}, {size} B (frame {}): send {:.2} allocs {:.0} B copied (declared {s_lo}..={s_hi}); recv {:.2} allocs {:.0} B copied (declared {r_lo}..={r_hi}), {:.3} signature batches",
        m.frame, m.send.allocs, m.send.copied, m.recv.allocs, m.recv.copied, m.recv.batches
    );
    // copies: exactly what is declared (a frame header's worth of slack
    // where a TLS record or a WebSocket header is counted with it)
    assert!(
        m.send.copied >= s_lo - 0.5 && m.send.copied <= s_hi + 0.5,
        "{stack:?}/{wire:?}/{size}: send copied {} per message, declared {s_lo}..={s_hi}",
        m.send.copied
    );
    assert!(
        m.recv.copied >= r_lo - 0.5 && m.recv.copied <= r_hi + 0.5,
        "{stack:?}/{wire:?}/{size}: recv copied {} per message, declared {r_lo}..={r_hi}",
        m.recv.copied
    );
    // allocations: the message on each side; what else a component of its
    // own allocates per message is bounded
    // a TLS session allocates per 16 KiB record it seals or opens, more
    // when the records arrive in pieces (its buffers grow with the reads)
    let records = 2.0 * (m.frame / (16 << 10)) as f64;
    // a small frame of a stack without pipe layers shares the chunk it was
    // read into: no allocation of its own (one chunk per many frames)
    let shared =
        m.frame < sp_transports::STAGED_BELOW && matches!(stack, Stack::Plain | Stack::Integrity);
    let (send_max, recv_max) = match (stack, wire) {
        (_, Wire::Tcp | Wire::Ipc) if shared => (1.1, 0.05),
        (_, Wire::Tcp | Wire::Ipc) => (1.1, 1.1),
        (_, Wire::TlsTcp) => (2.1 + records, 2.1 + records),
        // the WebSocket library's frame, our hand-over of the frame's bytes
        // to its task, its write buffer
        (_, Wire::Ws) => (4.1, 4.1),
        (_, Wire::Wss) => (6.1 + records, 6.1 + records),
    };
    assert!(
        m.send.allocs <= send_max,
        "{stack:?}/{wire:?}/{size}: {} allocations per message sent, at most {send_max}",
        m.send.allocs
    );
    // a batch of signatures verified at once allocates, not its messages
    let recv_max = recv_max + ALLOCS_PER_BATCH * m.recv.batches;
    assert!(
        m.recv.allocs <= recv_max,
        "{stack:?}/{wire:?}/{size}: {} allocations per message received, at most {recv_max}",
        m.recv.allocs
    );
}

const SIZES: [usize; 2] = [64, 64 << 10];

#[test]
fn plain_over_tcp_and_ipc() {
    for (i, w) in [Wire::Tcp, Wire::Ipc].into_iter().enumerate() {
        for s in SIZES {
            check(Stack::Plain, w, s, i);
        }
    }
}

#[test]
fn noise_over_tcp_and_ipc() {
    for (i, w) in [Wire::Tcp, Wire::Ipc].into_iter().enumerate() {
        for s in SIZES {
            check(Stack::Noise, w, s, 10 + i);
        }
    }
}

#[test]
fn integrity_over_tcp_and_ipc() {
    for (i, w) in [Wire::Tcp, Wire::Ipc].into_iter().enumerate() {
        for s in SIZES {
            check(Stack::Integrity, w, s, 20 + i);
        }
    }
}

#[test]
fn noise_and_integrity_over_tcp_and_ipc() {
    for (i, w) in [Wire::Tcp, Wire::Ipc].into_iter().enumerate() {
        for s in SIZES {
            check(Stack::NoiseIntegrity, w, s, 30 + i);
        }
    }
}

#[test]
fn tls_tcp() {
    for s in SIZES {
        check(Stack::Plain, Wire::TlsTcp, s, 40);
    }
}

#[test]
fn ws_and_wss() {
    for w in [Wire::Ws, Wire::Wss] {
        for s in SIZES {
            check(Stack::Plain, w, s, 50);
        }
    }
}

#[test]
fn a_vec_body_is_taken_over_and_copied_once_only_where_a_layer_needs_one_slice() {
    // plain: the vector reaches the kernel uncopied, its header beside it;
    // noise: flattened into a buffer with the room, exactly once
    for (stack, copies) in [(Stack::Plain, 0.0), (Stack::Noise, 1.0)] {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let keys = Keys {
                sender: SigningKeypair::generate(),
                receiver: SigningKeypair::generate(),
            };
            let pull = build(spstack::pull0(), stack, Wire::Tcp, &keys, false);
            let ep = pull.listen("tcp://127.0.0.1:0").await.unwrap();
            let push = build(spstack::push0(), stack, Wire::Tcp, &keys, true);
            push.dial(ep.url()).await.unwrap();
            let before = push.stats().bytes_copied;
            for i in 0..100u8 {
                push.send(vec![i; 4096]).await.unwrap();
                assert_eq!(pull.recv().await.unwrap().body(), &[i; 4096][..]);
            }
            let per = (push.stats().bytes_copied - before) as f64 / 100.0;
            assert_eq!(
                per,
                copies * 4096.0,
                "{stack:?}: {per} bytes copied per message"
            );
        });
    }
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

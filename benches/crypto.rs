//! Plain vs hop-encrypted vs signed vs both, PUSH → PULL over tcp in one
//! process, beside the primitives the layers use (ring's ChaCha20-Poly1305 in
//! place, and the RustCrypto 0.10 one snow uses for the handshake; Ed25519
//! sign, verify_strict and a 64-signature verify_batch) measured in the same
//! run. The signed stack's RESULT line also gives the receiver's verified
//! messages and batch equations (their ratio: messages per batch).
//!
//! `cargo bench --bench crypto` (or `benches/run_crypto.sh` for the
//! side-by-side run with ../shared/perf-anchors/cryptobench). Prints RESULT
//! lines in the anchors' format. `SPBENCH_QUICK=1` for a smoke run;
//! `SPBENCH_MODES` / `SPBENCH_SIZES` (comma-separated) pick stacks and sizes.
//! The two-process tools measure the same with `SPBENCH_NOISE=1` /
//! `SPBENCH_SIGN=1` (see `benches/common`).

use std::hint::black_box;

use futures::SinkExt as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::{ChaCha20Poly1305, KeyInit};
use ed25519_dalek::{Signer, SigningKey};
use sp_crypto::integrity::{Integrity, IntegrityConfig, IntegrityStats};
use sp_crypto::keys::SigningKeypair;
use sp_crypto::noise::{self, NoiseConfig, StaticKeypair};
use spstack::{Options, SocketBuilder};

const SIZES: [usize; 4] = [64, 1024, 65536, 1 << 20];

fn quick() -> bool {
    std::env::var("SPBENCH_QUICK").is_ok_and(|v| v == "1")
}

/// `var` unset, or a comma-separated list holding `what`: which stacks
/// (`SPBENCH_MODES=plain,hop`) and sizes (`SPBENCH_SIZES=64,65536`) run.
fn wanted(var: &str, what: &str) -> bool {
    std::env::var(var).map_or(true, |v| v.split(',').any(|x| x.trim() == what))
}

fn median(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

fn per_run() -> Duration {
    if quick() {
        Duration::from_millis(100)
    } else {
        Duration::from_millis(700)
    }
}

/// Runs `op` in a loop for one period, three times; returns ops/s (median, min, max).
fn rate(mut op: impl FnMut()) -> (f64, f64, f64) {
    let mut rates = Vec::new();
    for _ in 0..3 {
        let start = Instant::now();
        let mut n = 0u64;
        loop {
            op();
            n += 1;
            if n % 16 == 0 && start.elapsed() >= per_run() {
                break;
            }
        }
        rates.push(n as f64 / start.elapsed().as_secs_f64());
    }
    median(rates)
}

fn primitives() {
    let cipher = ChaCha20Poly1305::new_from_slice(&[7u8; 32]).expect("key");
    for sz in SIZES {
        let mut buf = vec![0x5au8; sz];
        let mut ctr = 0u64;
        let (m, lo, hi) = rate(|| {
            let mut nonce = [0u8; 12];
            nonce[4..].copy_from_slice(&ctr.to_le_bytes());
            ctr += 1;
            let tag = cipher
                .encrypt_in_place_detached(&nonce.into(), b"", &mut buf)
                .expect("encrypt");
            black_box(tag);
        });
        let mb = |r: f64| r * sz as f64 / 1e6;
        println!(
            "RESULT lib=chacha20poly1305-0.10 variant=default test=aead_encrypt size={sz} MBps={:.1} min={:.1} max={:.1} ops_per_s={m:.0}",
            mb(m),
            mb(lo),
            mb(hi)
        );
    }
    // the hop layer's AEAD since it left the RustCrypto crate (noise::cipher)
    let key = ring::aead::LessSafeKey::new(
        ring::aead::UnboundKey::new(&ring::aead::CHACHA20_POLY1305, &[7u8; 32]).expect("key"),
    );
    for sz in SIZES {
        let mut buf = vec![0x5au8; sz];
        let mut ctr = 0u64;
        let (m, lo, hi) = rate(|| {
            let mut nonce = [0u8; 12];
            nonce[4..].copy_from_slice(&ctr.to_le_bytes());
            ctr += 1;
            let tag = key
                .seal_in_place_separate_tag(
                    ring::aead::Nonce::assume_unique_for_key(nonce),
                    ring::aead::Aad::empty(),
                    &mut buf,
                )
                .expect("encrypt");
            let _ = black_box(tag);
        });
        let mb = |r: f64| r * sz as f64 / 1e6;
        println!(
            "RESULT lib=ring-0.17 variant=default test=aead_encrypt size={sz} MBps={:.1} min={:.1} max={:.1} ops_per_s={m:.0}",
            mb(m),
            mb(lo),
            mb(hi)
        );
    }
    let sk = SigningKey::from_bytes(&[1u8; 32]);
    let vk = sk.verifying_key();
    let msg = [0x42u8; 64];
    let sig = sk.sign(&msg);
    let (s, slo, shi) = rate(|| {
        black_box(sk.sign(black_box(&msg)));
    });
    println!("RESULT lib=ed25519-dalek-2 variant=default test=sign size=64 ops_per_s={s:.0} min={slo:.0} max={shi:.0}");
    let (v, vlo, vhi) = rate(|| {
        vk.verify_strict(black_box(&msg), black_box(&sig))
            .expect("verify");
    });
    println!("RESULT lib=ed25519-dalek-2 variant=default test=verify size=64 ops_per_s={v:.0} min={vlo:.0} max={vhi:.0}");
    // what the integrity layer does with 64 ready messages: one batch
    let msgs: Vec<[u8; 64]> = (0..64u8).map(|i| [i; 64]).collect();
    let refs: Vec<&[u8]> = msgs.iter().map(|m| &m[..]).collect();
    let sigs: Vec<_> = msgs.iter().map(|m| sk.sign(m)).collect();
    let keys = vec![vk; 64];
    let (b, blo, bhi) = rate(|| {
        ed25519_dalek::verify_batch(black_box(&refs), &sigs, &keys).expect("batch");
    });
    let per = |r: f64| r * 64.0;
    println!(
        "RESULT lib=ed25519-dalek-2 variant=default test=verify_batch64 size=64 ops_per_s={:.0} min={:.0} max={:.0}",
        per(b),
        per(blo),
        per(bhi)
    );
}

/// The hop layer's record path without the network: seal (gather + encrypt
/// in place) then open (decrypt in place) on one core, beside the AEAD done
/// twice (once per direction) — the layer's own overhead over the primitive.
fn record_path() {
    use sp_crypto::noise::cipher::CipherState;
    use sp_crypto::noise::record::{Padding, Receiver, RekeyPolicy, Sender};
    let policy = RekeyPolicy {
        messages: 1 << 20,
        bytes: 1 << 30,
    };
    for sz in SIZES {
        let mut tx = Sender::new(
            "noise-xx/2",
            CipherState::new(&[9; 32]),
            Padding::None,
            policy,
        );
        let mut rx = Receiver::new("noise-xx/2", CipherState::new(&[9; 32]), 2 << 20);
        let msg = spstack::Message::from(vec![0x5au8; sz]);
        let (m, lo, hi) = rate(|| {
            let sealed = tx.seal(msg.clone()).expect("seal");
            let opened = rx.open(sealed).expect("open");
            black_box(opened);
        });
        let mb = |r: f64| r * sz as f64 / 1e6;
        println!(
            "RESULT lib=spstack variant=hop test=record_seal_open size={sz} MBps={:.1} min={:.1} max={:.1} ops_per_s={m:.0}",
            mb(m),
            mb(lo),
            mb(hi)
        );
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Plain,
    Hop,
    Signed,
    Both,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Plain => "plain",
            Mode::Hop => "hop",
            Mode::Signed => "signed",
            Mode::Both => "hop+signed",
        }
    }
}

struct Keys {
    push_noise: StaticKeypair,
    pull_noise: StaticKeypair,
    signer: SigningKeypair,
}

fn opts() -> Options {
    Options::default().recv_max_size(2 << 20)
}

fn build(b: SocketBuilder, mode: Mode, keys: &Keys, pushing: bool) -> spstack::Socket {
    build_stats(b, mode, keys, pushing).0
}

/// The socket and, with the integrity layer, its counters.
fn build_stats(
    b: SocketBuilder,
    mode: Mode,
    keys: &Keys,
    pushing: bool,
) -> (spstack::Socket, Option<IntegrityStats>) {
    let mut b = b.options(opts());
    let mut stats = None;
    if matches!(mode, Mode::Hop | Mode::Both) {
        let (mine, theirs) = if pushing {
            (&keys.push_noise, &keys.pull_noise)
        } else {
            (&keys.pull_noise, &keys.push_noise)
        };
        let cfg = NoiseConfig::new(StaticKeypair::from_secret(*mine.secret_bytes()))
            .allow(theirs.public());
        b = b.pipe_layer(noise::layer(cfg));
    }
    if matches!(mode, Mode::Signed | Mode::Both) {
        let cfg = IntegrityConfig::new(
            SigningKeypair::from_bytes(&keys.signer.to_bytes()),
            [keys.signer.verifying_key()],
            "bench",
        )
        .expect("a valid audience");
        let layer = Integrity::new(cfg);
        stats = Some(layer.stats());
        b = b.message_layer(layer);
    }
    (b.build(), stats)
}

/// msgs/s (median, min, max) and the receiver's integrity counters.
async fn stack(
    mode: Mode,
    keys: Arc<Keys>,
    size: usize,
) -> ((f64, f64, f64), Option<IntegrityStats>) {
    let (pull, stats) = build_stats(spstack::pull0(), mode, &keys, false);
    let ep = pull.listen("tcp://127.0.0.1:0").await.expect("listen");
    let push = build(spstack::push0(), mode, &keys, true);
    push.dial(ep.url()).await.expect("dial");
    let secs = per_run().as_secs_f64() * 2.0;
    let mut rates = Vec::new();
    for _ in 0..3 {
        // the sender runs until told to stop; the receiver counts what arrives
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (p, s) = (push.clone(), stop.clone());
        let sender = tokio::spawn(async move {
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                let m = p.new_message(size);
                if p.send(m).await.is_err() {
                    break;
                }
            }
        });
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed().as_secs_f64() < secs {
            match tokio::time::timeout(Duration::from_secs(5), pull.recv()).await {
                Ok(Ok(m)) => {
                    debug_assert_eq!(m.body().len(), size);
                    n += 1
                }
                _ => break,
            }
        }
        let el = start.elapsed().as_secs_f64();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        // drain what is in flight so the next round starts empty
        while let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(200), pull.recv()).await {}
        let _ = sender.await;
        rates.push(n as f64 / el);
    }
    push.close();
    pull.close();
    (median(rates), stats)
}

/// One code path run `n` times, for `valgrind --tool=callgrind
/// --toggle-collect=<function>` (instructions per message, independent of
/// the machine's load): `SPBENCH_CALLGRIND=<path>:<size>:<n>`, path one of
/// `seal`, `open` (the hop layer's record), `sign`, `verify` (the integrity
/// layer over PUSH -> PULL, every message ready at once, as a busy PULL
/// sees them), or a whole stack (`plain`, `hop`, `signed`, `hop+signed`:
/// PUSH -> PULL over tcp, both sides; callgrind without toggles, two counts,
/// the difference). Uses only APIs that older trees have too: copied into a
/// `BEFORE` checkout's bench (with what it lacks elsewhere taken out), it
/// measures that tree the same way.
fn callgrind_mode(spec: &str) {
    use futures::StreamExt;
    use sp_crypto::noise::cipher::CipherState;
    use sp_crypto::noise::record::{room, Padding, Receiver, RekeyPolicy, Sender};
    use spstack::{Message, MessageIo, ProtocolId};
    let mut it = spec.split(':');
    let path = it.next().unwrap_or("");
    let size: usize = it.next().and_then(|s| s.parse().ok()).expect("size");
    let n: usize = it.next().and_then(|s| s.parse().ok()).expect("count");
    let policy = RekeyPolicy {
        messages: 1 << 40,
        bytes: 1 << 60,
    };
    let fresh = || {
        let (head, tail) = room(&Padding::None, size);
        let mut m = Message::with_capacity(head, size, tail);
        m.body_mut().fill(0x5a);
        m
    };
    match path {
        "seal" | "open" => {
            let mut tx = Sender::new(
                "noise-xx/2",
                CipherState::new(&[9; 32]),
                Padding::None,
                policy,
            );
            let mut rx = Receiver::new("noise-xx/2", CipherState::new(&[9; 32]), 2 << 20);
            let frames: Vec<Message> = (0..n).map(|_| tx.seal(fresh()).expect("seal")).collect();
            if path == "open" {
                for f in frames {
                    black_box(rx.open(f).expect("open"));
                }
            }
        }
        "sign" | "verify" => {
            let key = SigningKeypair::from_bytes(&[3u8; 32]);
            let cfg = || {
                IntegrityConfig::new(
                    SigningKeypair::from_bytes(&key.to_bytes()),
                    [key.verifying_key()],
                    "bench",
                )
                .expect("a valid audience")
            };
            let signer = Integrity::new(cfg()).on_protocol(ProtocolId::PUSH0);
            let body = vec![0x5au8; size];
            let signed: Vec<Message> = (0..n)
                .map(|_| signer.sign_message(&body).expect("sign"))
                .collect();
            if path == "verify" {
                let receiver = Integrity::new(cfg()).on_protocol(ProtocolId::PULL0);
                let sink =
                    futures::sink::drain().sink_map_err(|_| spstack::Error::ConnectionClosed);
                let io = MessageIo::new(
                    Box::pin(sink),
                    Box::pin(futures::stream::iter(signed.into_iter().map(Ok))),
                );
                let mut io = tower::Layer::layer(&receiver, io);
                futures::executor::block_on(async {
                    let mut got = 0;
                    while let Some(m) = io.rx.next().await {
                        black_box(m.expect("verified"));
                        got += 1;
                    }
                    assert_eq!(got, n, "every message verified");
                });
            }
        }
        stack => {
            // a whole PUSH -> PULL stack over tcp, both sides in this
            // process: run with two counts and take the difference
            let mode = [Mode::Plain, Mode::Hop, Mode::Signed, Mode::Both]
                .into_iter()
                .find(|m| m.name() == stack)
                .unwrap_or_else(|| panic!("unknown path {stack}"));
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            let keys = Keys {
                push_noise: StaticKeypair::from_secret([1; 32]),
                pull_noise: StaticKeypair::from_secret([2; 32]),
                signer: SigningKeypair::from_bytes(&[3; 32]),
            };
            rt.block_on(async move {
                let pull = build(spstack::pull0(), mode, &keys, false);
                let ep = pull.listen("tcp://127.0.0.1:0").await.expect("listen");
                let push = build(spstack::push0(), mode, &keys, true);
                push.dial(ep.url()).await.expect("dial");
                let p = push.clone();
                let sender = tokio::spawn(async move {
                    for _ in 0..n {
                        p.send(p.new_message(size)).await.expect("send");
                    }
                });
                for _ in 0..n {
                    black_box(pull.recv().await.expect("recv"));
                }
                sender.await.expect("sender");
                push.close();
                pull.close();
            });
        }
    }
}

fn main() {
    if let Ok(spec) = std::env::var("SPBENCH_CALLGRIND") {
        callgrind_mode(&spec);
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    println!("# spstack crypto bench: PUSH -> PULL over tcp, one process, 2 workers");
    primitives();
    record_path();
    let keys = Arc::new(Keys {
        push_noise: StaticKeypair::generate(),
        pull_noise: StaticKeypair::generate(),
        signer: SigningKeypair::generate(),
    });
    // the measuring loop runs in a spawned task, on a runtime worker, as a
    // tokio service's code does (the two-process tools show the block_on
    // thread adding a cross-thread wake-up per message; benches/README.md)
    let run = rt.spawn(async move {
        for mode in [Mode::Plain, Mode::Hop, Mode::Signed, Mode::Both] {
            if !wanted("SPBENCH_MODES", mode.name()) {
                continue;
            }
            for size in SIZES {
                if !wanted("SPBENCH_SIZES", &size.to_string()) {
                    continue;
                }
                let before = spstack::copied_bytes();
                let ((m, lo, hi), stats) = stack(mode, keys.clone(), size).await;
                let copied = spstack::copied_bytes() - before;
                let mb = |r: f64| r * size as f64 / 1e6;
                // signed: how many messages a batch equation covered on average
                let batching = stats
                    .map(|s| {
                        format!(
                            " verified={} sig_batches={}",
                            s.verified(),
                            s.batches()
                        )
                    })
                    .unwrap_or_default();
                println!(
                    "RESULT lib=spstack variant={} test=push_pull_tcp size={size} MBps={:.1} min={:.1} max={:.1} msgs_per_s={m:.0} copied_bytes={copied}{batching}",
                    mode.name(),
                    mb(m),
                    mb(lo),
                    mb(hi)
                );
            }
        }
    });
    rt.block_on(run).expect("bench task");
}

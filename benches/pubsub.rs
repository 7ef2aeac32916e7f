//! `pubsub <bind-url> <msg-size> <secs> <nsubs>`: PUB→N SUB fan-out, the
//! anchors' `pubsub URL SIZE SECS NSUBS` mode (`../shared/perf-anchors/harness.h`).
//!
//! The parent listens with PUB and starts `nsubs` copies of this binary in the
//! hidden role `--sub-child K URL SIZE SECS NSUBS`. Each child dials with SUB,
//! subscribes to "" and reports `READY` on its stdout once its pipe is up. When
//! the PUB sees all of them, it waits 0.5 s, then sends fresh `new_message(size)`
//! messages as fast as `send` takes them for `secs` seconds, and then 50 0-byte
//! terminators 10 ms apart (PUB drops when a queue is full, so one may be lost).
//!
//! Each SUB times first message → last message (`msgs` counts the intervals, as
//! the anchors do). It stops on a terminator, or after 1 s idle once traffic
//! started. It prints
//! `RESULT lib=spstack test=pubsub url= size= role=subK nsubs= msgs= secs= msgps= rss_kb= msgs_in= drops_queuefull= drops_other=`
//! where `msgs_in` counts what its pipes read off the wire and `drops_queuefull`
//! counts what its own receive queue dropped (oldest first).
//!
//! The parent relays the children's lines and then prints
//! `RESULT lib=spstack test=pubsub url= size= role=pub nsubs= msgs= secs= msgps= msgs_out= drops_queuefull= pipe_drops_queuefull=`.
//! Here `msgs` is what `send` accepted (the offered rate) and `msgs_out` is what
//! the pipes wrote. `drops_queuefull` is the socket counter and
//! `pipe_drops_queuefull` the sum of the per-pipe counters, taken right after
//! the timed loop, before the terminators.
//!
//! `SPBENCH_LOSSLESS=1` runs the opt-in lossless mode (`pub0_lossless` and
//! `sub0_lossless`: back-pressure instead of drops) and reports
//! `lib=spstack-lossless` (`-spawn` with `SPBENCH_SPAWN=1`).
#[path = "common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use spstack::DropReason;

const TOOL: &str = "pubsub";
/// At most this many subscribers (as the anchors).
const MAX_SUBS: usize = 64;
/// How long the parent waits for all children to connect.
const READY_WAIT: Duration = Duration::from_secs(20);

#[tokio::main]
async fn main() {
    common::run(body()).await
}

fn usage() -> ! {
    eprintln!("usage: {TOOL} <url> <msg-size> <secs> <nsubs>");
    std::process::exit(1)
}

async fn body() {
    common::hard_limit(TOOL);
    let a: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if a.first().map(String::as_str) == Some("--sub-child") {
        if a.len() != 6 {
            usage();
        }
        let k: usize = a[1].parse().unwrap_or_else(|_| usage());
        let size: usize = a[3].parse().unwrap_or_else(|_| usage());
        let secs: f64 = a[4].parse().unwrap_or_else(|_| usage());
        let nsubs: usize = a[5].parse().unwrap_or_else(|_| usage());
        return sub_child(k, &a[2], size, secs, nsubs).await;
    }
    if a.len() != 4 {
        usage();
    }
    let size: usize = a[1].parse().unwrap_or_else(|_| usage());
    let secs: f64 = a[2].parse().unwrap_or_else(|_| usage());
    let nsubs: usize = a[3].parse().unwrap_or_else(|_| usage());
    if !secs.is_finite() || secs <= 0.0 || nsubs == 0 || nsubs > MAX_SUBS {
        usage();
    }
    publisher(&a[0], size, secs, nsubs).await
}

/// One child's stdout: `READY`, then its RESULT line; collected by a thread.
struct Kid {
    child: Child,
    reader: std::thread::JoinHandle<Vec<String>>,
}

async fn publisher(url: &str, size: usize, secs: f64, nsubs: usize) {
    let builder = if common::lossless() {
        spstack::pub0_lossless()
    } else {
        spstack::pub0()
    };
    let sock = builder
        .options(spstack::Options::default().recv_max_size(common::RECV_MAX))
        .build();
    common::watch(&sock);
    let _ep = sock
        .listen(url)
        .await
        .unwrap_or_else(|e| common::die(TOOL, format_args!("listen {url}: {e}")));

    let exe = std::env::current_exe().unwrap_or_else(|e| common::die(TOOL, e));
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::unbounded_channel::<usize>();
    let mut kids = Vec::with_capacity(nsubs);
    for k in 0..nsubs {
        let mut child = Command::new(&exe)
            .args([
                "--sub-child",
                &k.to_string(),
                url,
                &size.to_string(),
                &secs.to_string(),
                &nsubs.to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| common::die(TOOL, format_args!("spawn sub {k}: {e}")));
        let out = child.stdout.take().expect("piped stdout");
        let tx = ready_tx.clone();
        let reader = std::thread::spawn(move || {
            let mut lines = Vec::new();
            for l in BufReader::new(out).lines() {
                let Ok(l) = l else { break };
                if l == "READY" {
                    let _ = tx.send(k);
                } else {
                    lines.push(l);
                }
            }
            lines
        });
        kids.push(Kid { child, reader });
    }
    drop(ready_tx);

    // every child connected and subscribed, and the PUB sees every pipe
    let waited = tokio::time::timeout(READY_WAIT, async {
        for _ in 0..nsubs {
            if ready_rx.recv().await.is_none() {
                return false;
            }
        }
        while sock.pipes().len() < nsubs {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    })
    .await;
    if waited != Ok(true) {
        kill_all(&mut kids);
        common::die(
            TOOL,
            format_args!(
                "subscribers not ready: {} pipes of {nsubs} after {READY_WAIT:?}",
                sock.pipes().len()
            ),
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await; // settle, as the anchors

    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs_f64(secs);
    let mut n: u64 = 0;
    loop {
        let m = sock.new_message(size);
        sock.send(m)
            .await
            .unwrap_or_else(|e| common::die(TOOL, format_args!("send: {e}")));
        n += 1;
        common::progress();
        if n & 63 == 0 && Instant::now() >= deadline {
            break;
        }
    }
    let el = common::since(t0);
    let s = sock.stats();
    let pipe_drops: u64 = sock
        .pipes()
        .into_iter()
        .filter_map(|p| sock.pipe_stats(p))
        .map(|p| p.drops(DropReason::QueueFull))
        .sum();

    // terminators (may be dropped; the subscribers also idle out)
    for _ in 0..50 {
        let _ = sock.send(sock.new_message(0)).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // reap, 15 s grace in all (the anchors give 15 s each)
    let grace = Instant::now() + Duration::from_secs(15);
    let mut sub_lines = Vec::new();
    for (k, mut kid) in kids.into_iter().enumerate() {
        loop {
            match kid.child.try_wait() {
                Ok(Some(st)) => {
                    if !st.success() {
                        eprintln!("[{TOOL}] sub {k} exited with {st}");
                    }
                    break;
                }
                Ok(None) if Instant::now() < grace => {
                    tokio::time::sleep(Duration::from_millis(10)).await
                }
                _ => {
                    eprintln!("[{TOOL}] sub {k} still running after the grace period; killed");
                    let _ = kid.child.kill();
                    let _ = kid.child.wait();
                    break;
                }
            }
        }
        sub_lines.extend(kid.reader.join().unwrap_or_default());
    }
    for l in sub_lines {
        println!("{l}");
    }
    println!(
        "RESULT lib={} test=pubsub url={url} size={size} role=pub nsubs={nsubs} msgs={n} secs={el:.3} msgps={:.0} msgs_out={} drops_queuefull={} pipe_drops_queuefull={pipe_drops} rss_kb={}",
        common::lib_name(),
        n as f64 / el,
        s.msgs_out,
        s.drops(DropReason::QueueFull),
        common::peak_rss_kb()
    );
    let s = sock.stats();
    eprintln!("[{TOOL}] pub stats: {}", s.to_string().replace('\n', "; "));
    sock.close();
}

fn kill_all(kids: &mut [Kid]) {
    for k in kids {
        let _ = k.child.kill();
        let _ = k.child.wait();
    }
}

async fn sub_child(k: usize, url: &str, size: usize, secs: f64, nsubs: usize) {
    let tool = "pubsub-sub";
    let builder = if common::lossless() {
        spstack::sub0_lossless()
    } else {
        spstack::sub0()
    };
    let sock = builder
        .options(
            spstack::Options::default()
                .recv_max_size(common::RECV_MAX)
                .recv_timeout(Some(Duration::from_secs(1))),
        )
        .build();
    common::watch(&sock);
    sock.control::<spstack::SubControl>()
        .unwrap_or_else(|| common::die(tool, "no SubControl"))
        .subscribe(b"")
        .unwrap_or_else(|e| common::die(tool, format_args!("subscribe: {e}")));
    let _ep = sock
        .dial_background(url)
        .unwrap_or_else(|e| common::die(tool, format_args!("dial {url}: {e}")));
    let t = Instant::now();
    while sock.pipes().is_empty() {
        if t.elapsed() > READY_WAIT {
            common::die(tool, format_args!("sub {k}: not connected to {url}"));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    {
        use std::io::Write;
        let mut o = std::io::stdout().lock();
        let _ = writeln!(o, "READY");
        let _ = o.flush();
    }

    let begin = Instant::now();
    let hard = begin + Duration::from_secs_f64(secs + 30.0);
    let (mut t0, mut t1) = (begin, begin);
    let mut n: u64 = 0;
    let mut got_first = false;
    loop {
        let r = sock.recv().await;
        let t = Instant::now();
        match r {
            Err(spstack::Error::TimedOut(_)) => {
                if got_first || t > hard {
                    break; // idle 1 s after traffic: done
                }
                continue;
            }
            Err(e) => common::die(tool, format_args!("sub {k}: recv: {e}")),
            Ok(m) if m.body().is_empty() => {
                if got_first {
                    break; // terminator
                }
                continue;
            }
            Ok(m) => {
                if m.body().len() != size {
                    common::die(
                        tool,
                        format_args!("got {} bytes, expected {size}", m.body().len()),
                    );
                }
            }
        }
        if !got_first {
            got_first = true;
            t0 = t;
        } else {
            n += 1;
        }
        t1 = t;
        common::progress();
        if t > hard {
            break;
        }
    }
    let el = (t1 - t0).as_secs_f64();
    let s = sock.stats();
    println!(
        "RESULT lib={} test=pubsub url={url} size={size} role=sub{k} nsubs={nsubs} msgs={n} secs={el:.3} msgps={:.0} rss_kb={} msgs_in={} drops_queuefull={} drops_other={}",
        common::lib_name(),
        if el > 0.0 { n as f64 / el } else { 0.0 },
        common::peak_rss_kb(),
        s.msgs_in,
        s.drops(DropReason::QueueFull),
        s.total_drops() - s.drops(DropReason::QueueFull)
    );
    sock.close();
}

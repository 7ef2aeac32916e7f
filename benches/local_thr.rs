//! `local_thr <bind-url> <msg-size> <count>`: PULL listens, receives `count`
//! messages of `msg-size` bytes and times them from the first to the last
//! (so `count - 1` intervals, as the C anchors' `thr` mode). Prints one line:
//! `RESULT lib=spstack test=thr url=.. size=.. msgs=.. secs=.. msgps=.. MBps=.. rss_kb=.. rss_before_kb=..`
//! (MB = 10^6 bytes, payload only). Pair with `remote_thr`.
//!
//! With an `inproc://` URL the sender runs in this process, as the anchors'
//! `thr inproc://..` does with a thread: it dials the PULL and sends `count`
//! fresh `new_message(size)` exactly as `remote_thr` does, from a thread of
//! its own that enters the same runtime (`Handle::block_on`), or with
//! `SPBENCH_SPAWN=1` from a spawned task beside the spawned receiver.
#[path = "common/mod.rs"]
mod common;

use std::time::Instant;

const TOOL: &str = "local_thr";

#[tokio::main]
async fn main() {
    common::run(body()).await
}

async fn body() {
    common::hard_limit(TOOL);
    let a = common::args(TOOL, "count");
    let rss_before = common::peak_rss_kb();
    let sock = common::layers(spstack::pull0(), true)
        .options(spstack::Options::default().recv_max_size(common::RECV_MAX))
        .build();
    common::watch(&sock);
    let _ep = sock
        .listen(&a.url)
        .await
        .unwrap_or_else(|e| common::die(TOOL, format_args!("listen {}: {e}", a.url)));
    let sender = a
        .url
        .starts_with("inproc://")
        .then(|| common::inproc_sender(TOOL, a.url.clone(), a.size, a.count));

    let m = sock
        .recv()
        .await
        .unwrap_or_else(|e| common::die(TOOL, format_args!("recv: {e}")));
    if m.body().len() != a.size {
        common::die(
            TOOL,
            format_args!("got {} bytes, expected {}", m.body().len(), a.size),
        );
    }
    drop(m);
    let t0 = Instant::now();
    let mut t1 = t0;
    for _ in 1..a.count {
        let m = sock
            .recv()
            .await
            .unwrap_or_else(|e| common::die(TOOL, format_args!("recv: {e}")));
        if m.body().len() != a.size {
            common::die(
                TOOL,
                format_args!("got {} bytes, expected {}", m.body().len(), a.size),
            );
        }
        t1 = Instant::now();
        common::progress();
    }
    let n = (a.count - 1) as f64;
    let el = (t1 - t0).as_secs_f64();
    let mps = if el > 0.0 { n / el } else { 0.0 };
    println!(
        "RESULT lib={} test=thr url={} size={} msgs={} secs={:.3} msgps={:.0} MBps={:.2} rss_kb={} rss_before_kb={}",
        common::lib_name(),
        a.url,
        a.size,
        a.count - 1,
        el,
        mps,
        mps * a.size as f64 / 1e6,
        common::peak_rss_kb(),
        rss_before
    );
    let s = sock.stats();
    eprintln!("[{TOOL}] stats: {}", s.to_string().replace('\n', "; "));
    sock.close();
    if let Some(done) = sender {
        done.await;
    }
}

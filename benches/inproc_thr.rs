//! `inproc_thr <inproc-url> <msg-size> <count>`: PUSH → PULL over `inproc://`
//! in one process, as the C anchors' `thr inproc://bench SIZE SECS` (their
//! sender is a thread of the receiving process). PULL listens, PUSH dials;
//! the sender, a `tokio::spawn`ed task, sends `count` messages, each a fresh
//! `new_message(size)` with the payload untouched; the receiver times them
//! from the first to the last (`count - 1` intervals, as `local_thr`) and
//! prints the same line as `local_thr`:
//! `RESULT lib=spstack test=thr url=inproc://.. size=.. msgs=.. secs=.. msgps=.. MBps=.. rss_kb=.. rss_before_kb=..`
//! (peak RSS covers both sides, as the anchors' inproc figure).
//!
//! The receiving loop runs on `#[tokio::main]`'s `block_on` thread, or with
//! `SPBENCH_SPAWN=1` in a spawned task (`lib=spstack-spawn`); the sender is a
//! spawned task either way. inproc moves message values: MB/s here is not
//! bandwidth, compare msgs/s.
#[path = "common/mod.rs"]
mod common;

use std::time::Instant;

const TOOL: &str = "inproc_thr";

#[tokio::main]
async fn main() {
    common::run(body()).await
}

async fn body() {
    common::hard_limit(TOOL);
    let a = common::args(TOOL, "count");
    if !a.url.starts_with("inproc://") {
        common::die(TOOL, format_args!("{}: an inproc:// url, please", a.url));
    }
    let rss_before = common::peak_rss_kb();
    let opts = || spstack::Options::default().recv_max_size(common::RECV_MAX);
    let pull = spstack::pull0().options(opts()).build();
    common::watch(&pull);
    let _lep = pull
        .listen(&a.url)
        .await
        .unwrap_or_else(|e| common::die(TOOL, format_args!("listen {}: {e}", a.url)));
    let push = spstack::push0().options(opts()).build();
    let _dep = push
        .dial(&a.url)
        .await
        .unwrap_or_else(|e| common::die(TOOL, format_args!("dial {}: {e}", a.url)));

    let (size, count) = (a.size, a.count);
    let sender = tokio::spawn(async move {
        let t0 = Instant::now();
        for _ in 0..count {
            let m = push.new_message(size);
            push.send(m)
                .await
                .unwrap_or_else(|e| common::die(TOOL, format_args!("send: {e}")));
        }
        // kept open until the receiver has everything: closing drops nothing
        // here, but the receiver decides when the run is over
        (push, common::since(t0))
    });

    let recv_one = || async {
        let m = pull
            .recv()
            .await
            .unwrap_or_else(|e| common::die(TOOL, format_args!("recv: {e}")));
        if m.body().len() != size {
            common::die(
                TOOL,
                format_args!("got {} bytes, expected {size}", m.body().len()),
            );
        }
    };
    recv_one().await;
    let t0 = Instant::now();
    let mut t1 = t0;
    for _ in 1..count {
        recv_one().await;
        t1 = Instant::now();
        common::progress();
    }
    let (push, sent_s) = sender
        .await
        .unwrap_or_else(|e| common::die(TOOL, format_args!("sender task: {e}")));
    let n = (count - 1) as f64;
    let el = (t1 - t0).as_secs_f64();
    let mps = if el > 0.0 { n / el } else { 0.0 };
    println!(
        "RESULT lib={} test=thr url={} size={size} msgs={} secs={el:.3} msgps={mps:.0} MBps={:.2} rss_kb={} rss_before_kb={rss_before}",
        common::lib_name(),
        a.url,
        count - 1,
        mps * size as f64 / 1e6,
        common::peak_rss_kb(),
    );
    eprintln!(
        "SENDER lib={} url={} size={size} msgs={count} secs={sent_s:.3} msgps={:.0}",
        common::lib_name(),
        a.url,
        count as f64 / sent_s
    );
    push.close();
    pull.close();
}

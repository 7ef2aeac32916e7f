//! `remote_lat <connect-url> <msg-size> <roundtrips>`: REQ dials (retrying
//! until `local_lat` is up), does 1,000 untimed warm-up round trips, then
//! `roundtrips` round trips each timed on its own (fresh `new_message` per
//! request). Prints one line:
//! `RESULT lib=spstack test=lat url=.. size=.. n=.. mean_us=.. p50_us=.. p99_us=.. min_us=.. max_us=.. rt_per_s=.. avg_latency_us=..`
//! where `avg_latency_us` is nng's/nanomsg's "average latency": total time of
//! the timed loop / (2 * roundtrips), i.e. one-way.
#[path = "common/mod.rs"]
mod common;

use std::time::Instant;

const TOOL: &str = "remote_lat";

#[tokio::main]
async fn main() {
    common::run(body()).await
}

async fn body() {
    common::hard_limit(TOOL);
    let a = common::args(TOOL, "roundtrips");
    let sock = common::layers(spstack::req0(), false)
        .options(spstack::Options::default().recv_max_size(common::RECV_MAX))
        .build();
    common::watch(&sock);
    let _ep = sock
        .dial_background(&a.url)
        .unwrap_or_else(|e| common::die(TOOL, format_args!("dial {}: {e}", a.url)));

    for _ in 0..common::LAT_WARMUP {
        roundtrip(&sock, a.size).await;
    }
    let mut v: Vec<u64> = Vec::with_capacity(a.count);
    let start = Instant::now();
    for _ in 0..a.count {
        let t = Instant::now();
        roundtrip(&sock, a.size).await;
        v.push(t.elapsed().as_nanos() as u64);
    }
    let total = start.elapsed().as_secs_f64();
    let n = v.len();
    let sum: f64 = v.iter().map(|&x| x as f64).sum();
    v.sort_unstable();
    println!(
        "RESULT lib={} test=lat url={} size={} n={} mean_us={:.2} p50_us={:.2} p99_us={:.2} min_us={:.2} max_us={:.2} rt_per_s={:.0} avg_latency_us={:.2}",
        common::lib_name(),
        a.url,
        a.size,
        n,
        sum / n as f64 / 1e3,
        v[n / 2] as f64 / 1e3,
        v[(n * 99) / 100] as f64 / 1e3,
        v[0] as f64 / 1e3,
        v[n - 1] as f64 / 1e3,
        n as f64 / total,
        total * 1e6 / (2.0 * n as f64)
    );
    sock.close();
}

async fn roundtrip(sock: &spstack::Socket, size: usize) {
    let m = sock.new_message(size);
    sock.send(m)
        .await
        .unwrap_or_else(|e| common::die(TOOL, format_args!("send: {e}")));
    let r = sock
        .recv()
        .await
        .unwrap_or_else(|e| common::die(TOOL, format_args!("recv: {e}")));
    if r.body().len() != size {
        common::die(
            TOOL,
            format_args!("reply of {} bytes, expected {size}", r.body().len()),
        );
    }
    common::progress();
}

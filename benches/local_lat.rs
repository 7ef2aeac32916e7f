//! `local_lat <bind-url> <msg-size> <roundtrips>`: REP echo server. Listens,
//! echoes every request (same message object back, size checked) until the
//! REQ peer hangs up after at least `roundtrips` echoes (`remote_lat` also
//! sends warm-up round trips first). Prints a `SERVER ...` line to stderr.
#[path = "common/mod.rs"]
mod common;

use std::sync::Arc;

const TOOL: &str = "local_lat";

#[tokio::main]
async fn main() {
    common::run(body()).await
}

async fn body() {
    common::hard_limit(TOOL);
    let a = common::args(TOOL, "roundtrips");
    let sock = common::layers(spstack::rep0(), true)
        .options(spstack::Options::default().recv_max_size(common::RECV_MAX))
        .build();
    common::watch(&sock);
    let gone = Arc::new(tokio::sync::Notify::new());
    {
        let gone = gone.clone();
        sock.on_pipe_event(move |ev| {
            if let spstack::PipeEvent::RemovePost(..) = ev {
                gone.notify_one();
            }
            true
        });
    }
    let _ep = sock
        .listen(&a.url)
        .await
        .unwrap_or_else(|e| common::die(TOOL, format_args!("listen {}: {e}", a.url)));
    let mut n: usize = 0;
    loop {
        let m = tokio::select! {
            biased;
            r = sock.recv() => r.unwrap_or_else(|e| common::die(TOOL, format_args!("recv: {e}"))),
            _ = gone.notified() => {
                if n >= a.count { break; }
                common::die(TOOL, format_args!("peer left after {n} of {} round trips", a.count));
            }
        };
        if m.body().len() != a.size {
            common::die(
                TOOL,
                format_args!("got {} bytes, expected {}", m.body().len(), a.size),
            );
        }
        sock.send(m)
            .await
            .unwrap_or_else(|e| common::die(TOOL, format_args!("send: {e}")));
        n += 1;
        common::progress();
    }
    eprintln!(
        "SERVER lib={} url={} size={} echoed={n}",
        common::lib_name(),
        a.url,
        a.size
    );
}

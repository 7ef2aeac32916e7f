//! `remote_thr <connect-url> <msg-size> <count>`: PUSH dials (retrying until
//! `local_thr` is up), sends `count` messages of `msg-size` bytes, each a
//! fresh `new_message` (one allocation, payload untouched, as the C anchors),
//! then stays until `local_thr` hangs up so nothing queued is lost.
//! Prints `SENDER lib=spstack ... secs=.. msgps=..` (send-side rate) to stderr.
#[path = "common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::Duration;

const TOOL: &str = "remote_thr";

#[tokio::main]
async fn main() {
    common::run(body()).await
}

async fn body() {
    common::hard_limit(TOOL);
    let a = common::args(TOOL, "count");
    let sock = common::layers(spstack::push0(), false)
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
        .dial_background(&a.url)
        .unwrap_or_else(|e| common::die(TOOL, format_args!("dial {}: {e}", a.url)));

    common::send_loop(TOOL, &sock, &a.url, a.size, a.count).await;
    // Wait for the receiver to hang up (it does once it has every message).
    if tokio::time::timeout(Duration::from_secs(30), gone.notified())
        .await
        .is_err()
    {
        let s = sock.stats();
        common::die(
            TOOL,
            format_args!("receiver did not hang up within 30 s; sent {}", s.msgs_out),
        );
    }
}

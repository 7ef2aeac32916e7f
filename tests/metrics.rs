//! The counters where Prometheus looks: the relay of
//! `examples/metrics_prometheus.rs` (included here, so the example is what
//! is tested), scraped over HTTP from its axum route while a peer sends it
//! traffic and a peer of the wrong protocol is refused.

use spstack::{DropReason, RejectReason};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[path = "../examples/metrics_prometheus.rs"]
#[allow(dead_code)] // its `main`
mod example;

const N: u64 = 25;

/// One GET, the body of the answer.
async fn scrape(url: &str) -> String {
    let rest = url.strip_prefix("http://").expect("an http URL");
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut s = tokio::net::TcpStream::connect(authority)
        .await
        .expect("connect to the metrics route");
    let req = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("the scrape answers in time")
        .unwrap();
    let text = String::from_utf8(out).expect("text exposition format");
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_string()
}

/// The labels of one exposition line (`name{a="x",b="y"} v`).
fn labels(line: &str) -> Vec<(&str, &str)> {
    let Some(open) = line.find('{') else {
        return Vec::new();
    };
    let close = line.rfind('}').expect("closing brace");
    line[open + 1..close]
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k, v.trim_matches('"')))
        .collect()
}

/// The value of the series `name` whose labels include `want`; panics when
/// several match (the test would be ambiguous).
fn value(text: &str, name: &str, want: &[(&str, &str)]) -> Option<f64> {
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let series = line.split([' ', '{']).next().unwrap_or("");
        if series != name {
            continue;
        }
        let have = labels(line);
        if want.iter().all(|w| have.contains(w)) {
            assert!(found.is_none(), "{name} {want:?} matches twice:\n{text}");
            let v = line.rsplit(' ').next().unwrap().parse::<f64>().unwrap();
            found = Some(v);
        }
    }
    found
}

/// Scrapes until `done` holds, at most 200 times (10 s).
async fn scrape_until(url: &str, done: impl Fn(&str) -> bool) -> String {
    let mut text = String::new();
    for _ in 0..200 {
        text = scrape(url).await;
        if done(&text) {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_shows_counters_move_with_traffic_and_drops_and_refusals_by_reason() {
    let handle = example::install_recorder().expect("the only recorder of this test binary");
    let relay = example::start(handle, "127.0.0.1:0", "tcp://127.0.0.1:0")
        .await
        .expect("relay");
    let sent = |t: &str| value(t, "spstack_messages_sent_total", &[("protocol", "push")]);
    let no_peer = |t: &str| {
        value(
            t,
            "spstack_messages_dropped_total",
            &[
                ("socket", "news"),
                ("protocol", "pub"),
                ("reason", "no_peer"),
            ],
        )
    };

    // before any traffic every series is there, at zero: a rate() over it
    // sees the first message
    let before = scrape(&relay.metrics_url).await;
    assert_eq!(sent(&before), Some(0.0), "{before}");
    assert_eq!(no_peer(&before), Some(0.0), "{before}");
    assert!(
        before.contains("# TYPE spstack_messages_sent_total counter"),
        "{before}"
    );

    let push = spstack::push0().build();
    push.dial(&relay.inbox_url).await.expect("dial the inbox");
    for i in 0..N {
        push.send(format!("job {i}")).await.unwrap();
    }
    let n = N as f64;
    let after = scrape_until(&relay.metrics_url, |t| {
        sent(t) == Some(n) && no_peer(t) == Some(n)
    })
    .await;
    assert_eq!(
        sent(&after),
        Some(n),
        "the outbox passed every job on:\n{after}"
    );
    let inbox = [("socket", "inbox"), ("protocol", "pull")];
    assert_eq!(
        value(&after, "spstack_messages_received_total", &inbox),
        Some(n),
        "{after}"
    );
    assert!(
        value(&after, "spstack_bytes_received_total", &inbox).unwrap() >= n * 5.0,
        "{after}"
    );
    assert_eq!(
        value(
            &after,
            "spstack_messages_received_total",
            &[("socket", "worker")]
        ),
        Some(n),
        "{after}"
    );
    // nobody subscribes to the news: each announcement is a drop, by reason
    assert_eq!(no_peer(&after), Some(n), "{after}");
    assert_eq!(value(&after, "spstack_pipes", &inbox), Some(1.0), "{after}");

    // a REQ is no peer of a PULL: refused, counted by reason
    let req = spstack::req0().build();
    assert!(req.dial(&relay.inbox_url).await.is_err());
    let refused = |t: &str| {
        value(
            t,
            "spstack_pipes_refused_total",
            &[("socket", "inbox"), ("reason", "protocol_mismatch")],
        )
    };
    let t = scrape_until(&relay.metrics_url, |t| refused(t) == Some(1.0)).await;
    assert_eq!(refused(&t), Some(1.0), "{t}");
    assert_eq!(value(&t, "spstack_pipes", &inbox), Some(1.0), "{t}");

    // bounded cardinality: only these labels, never a pipe id or address
    let mut series = 0;
    for line in t.lines().filter(|l| l.starts_with("spstack_")) {
        series += 1;
        for (k, _) in labels(line) {
            assert!(
                ["socket", "protocol", "reason", "direction"].contains(&k),
                "label {k} in {line}"
            );
        }
    }
    // 4 sockets × (6 counters and the pipes gauge, 2 copy directions, every
    // drop and refusal reason), however many pipes came and went
    let per_socket = 7 + 2 + DropReason::ALL.len() + RejectReason::ALL.len();
    assert_eq!(series, 4 * per_socket, "{t}");
}

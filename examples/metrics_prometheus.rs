//! Socket counters where Prometheus looks: a small relay whose sockets are
//! exported through the `metrics` facade, rendered by
//! `metrics-exporter-prometheus` (its own HTTP listener off) on an axum
//! route.
//!
//! The relay: an `inbox` PULL socket takes messages from anyone on an SP
//! URL; each goes on through an `outbox` PUSH to an in-process worker, and is
//! announced on a `news` PUB that nobody subscribes to (so every
//! announcement is counted dropped, `reason="no_peer"`).
//!
//! ```text
//! cargo run --example metrics_prometheus --features metrics -- \
//!     --http 127.0.0.1:9000 --sp tcp://127.0.0.1:5557
//! nngcat --push --connect tcp://127.0.0.1:5557 --data job --count 5 --interval 1
//! curl -s http://127.0.0.1:9000/metrics | grep spstack_
//! ```
//!
//! In your own program: `spstack = { features = ["metrics"] }`, install a
//! recorder, then `socket.export_metrics("name")` for each socket.

use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// The relay and the HTTP server, running.
pub struct Relay {
    /// Where the metrics are served (`http://host:port/metrics`).
    pub metrics_url: String,
    /// The SP URL the inbox listens on.
    pub inbox_url: String,
}

/// Installs the Prometheus recorder for this process (once: a second
/// recorder is refused by the facade).
pub fn install_recorder() -> Result<PrometheusHandle, Box<dyn std::error::Error>> {
    Ok(PrometheusBuilder::new().install_recorder()?)
}

/// Starts the relay on `sp` and the metrics route on `http` (port 0 picks
/// one), exported to the recorder behind `handle`.
pub async fn start(
    handle: PrometheusHandle,
    http: &str,
    sp: &str,
) -> Result<Relay, Box<dyn std::error::Error>> {
    let inbox = spstack::pull0().build();
    let inbox_url = inbox.listen(sp).await?.url().to_string();
    let worker = spstack::pull0().build();
    worker.listen("inproc://metrics-example-worker").await?;
    let outbox = spstack::push0().build();
    outbox.dial("inproc://metrics-example-worker").await?;
    let news = spstack::pub0().build();
    // one name per socket: the `socket` label
    for (s, name) in [
        (&inbox, "inbox"),
        (&outbox, "outbox"),
        (&worker, "worker"),
        (&news, "news"),
    ] {
        s.export_metrics(name);
    }
    tokio::spawn(async move {
        while let Ok(m) = inbox.recv().await {
            let body = m.body().to_vec();
            if outbox.send(body.clone()).await.is_err() || news.send(body).await.is_err() {
                break;
            }
        }
    });
    tokio::spawn(async move { while worker.recv().await.is_ok() {} });

    let app = Router::new().route(
        "/metrics",
        get(move || {
            let handle = handle.clone();
            async move {
                // the counters as of this scrape, not of the last second
                spstack::metrics::update_all();
                handle.render()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(http).await?;
    let metrics_url = format!("http://{}/metrics", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    // the tasks hold the sockets: they live as long as the runtime
    Ok(Relay {
        metrics_url,
        inbox_url,
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut http = "127.0.0.1:9000".to_string();
    let mut sp = "tcp://127.0.0.1:5557".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match (a.as_str(), args.next()) {
            ("--http", Some(v)) => http = v,
            ("--sp", Some(v)) => sp = v,
            _ => return Err("usage: metrics_prometheus [--http ADDR] [--sp URL]".into()),
        }
    }
    let relay = start(install_recorder()?, &http, &sp).await?;
    println!("metrics: {}", relay.metrics_url);
    println!("inbox:   {}", relay.inbox_url);
    tokio::signal::ctrl_c().await?;
    Ok(())
}

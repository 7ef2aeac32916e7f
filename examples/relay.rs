//! A multi-hop stack: REQ client → device → device → REP server, over tcp.
//!
//! Each device is two raw sockets joined with `spstack::device`; the request
//! carries one more backtrace word per hop and the reply finds its way back.
//! Run with `cargo run --example relay`.

use std::time::Duration;

use spstack::{Protocol, Result};

async fn start_device(name: &'static str, upstream: &str) -> Result<String> {
    let front = spstack::raw(Protocol::Rep0).build();
    let ep = front.listen("tcp://127.0.0.1:0").await?;
    let back = spstack::raw(Protocol::Req0).build();
    back.dial(upstream).await?;
    println!(
        "{name}: listening on {}, forwarding to {upstream}",
        ep.url()
    );
    tokio::spawn(async move { spstack::device(&front, &back).await });
    Ok(ep.url().to_string())
}

#[tokio::main]
async fn main() -> Result<()> {
    // the server, answering with a raw REP so we can show the backtrace it sees
    let server = spstack::raw(Protocol::Rep0).build();
    let server_ep = server.listen("tcp://127.0.0.1:0").await?;
    println!("server: listening on {}", server_ep.url());
    let hop2 = start_device("device 2", server_ep.url()).await?;
    let hop1 = start_device("device 1", &hop2).await?;

    let client = spstack::req0().build();
    client.dial(&hop1).await?;
    println!("client: dialed {hop1}");

    let srv = server.clone();
    tokio::spawn(async move {
        while let Ok(req) = srv.recv().await {
            let words: Vec<String> = req
                .header()
                .chunks(4)
                .map(|w| format!("{:02x}{:02x}{:02x}{:02x}", w[0], w[1], w[2], w[3]))
                .collect();
            println!(
                "server: got {:?} with backtrace [{}] ({} hops)",
                String::from_utf8_lossy(req.body()),
                words.join(" "),
                words.len()
            );
            let mut reply = spstack::Message::from(
                format!("reply to {}", String::from_utf8_lossy(req.body())).as_bytes(),
            );
            reply.set_header(req.header());
            let _ = srv.send(reply).await;
        }
    });

    for i in 0..3 {
        let msg = format!("request {i}");
        client.send(msg.as_str()).await?;
        let reply = tokio::time::timeout(Duration::from_secs(5), client.recv())
            .await
            .map_err(|_| spstack::Error::TimedOut(Duration::from_secs(5)))??;
        println!(
            "client: {:?} -> {:?}",
            msg,
            String::from_utf8_lossy(reply.body())
        );
    }
    let s = server.stats();
    println!(
        "server: {} messages in, {} out, {} dropped",
        s.msgs_in,
        s.msgs_out,
        s.total_drops()
    );
    Ok(())
}

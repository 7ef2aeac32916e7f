//! A REQ socket used as a `tower::Service`, with timeout and concurrency
//! limit middleware, calling a REP echo service driven by `rep::serve`.
//!
//! ```text
//! cargo run --example tower_client
//! ```

use std::time::{Duration, Instant};

use spstack::Message;
use tower::{Service, ServiceBuilder, ServiceExt};

#[tokio::main]
async fn main() -> Result<(), tower::BoxError> {
    // The server: a REP socket answered by a plain async function.
    let rep = spstack::rep0().build();
    let ep = rep.listen("tcp://127.0.0.1:0").await?;
    println!("echo service listening on {}", ep.url());
    let echo = tower::service_fn(|req: Message| async move {
        // pretend to work a little
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut body = b"echo: ".to_vec();
        body.extend_from_slice(req.body());
        Ok::<_, spstack::Error>(Message::from(body))
    });
    let server = tokio::spawn(spstack::rep::serve(rep.clone(), echo, 8));

    // The client: a REQ socket is a tower::Service<Message>; every call runs
    // on its own context, so middleware applies unchanged.
    let req = spstack::req0().build();
    req.dial(ep.url()).await?;
    let mut client = ServiceBuilder::new()
        .timeout(Duration::from_secs(1))
        .concurrency_limit(4)
        .service(req.clone());

    // one call
    let reply = client.ready().await?.call(Message::from("hello")).await?;
    println!("{}", String::from_utf8_lossy(reply.body()));

    // sixteen calls at once; at most four are in flight
    let t0 = Instant::now();
    let calls = (0..16).map(|i| {
        let svc = client.clone();
        async move {
            let r = svc
                .oneshot(Message::from(format!("request {i}").as_str()))
                .await;
            (i, r)
        }
    });
    for (i, r) in futures::future::join_all(calls).await {
        match r {
            Ok(m) => println!("call {i:2}: {}", String::from_utf8_lossy(m.body())),
            Err(e) => println!("call {i:2}: error: {e}"),
        }
    }
    println!("16 calls of 50 ms with 4 at a time took {:?}", t0.elapsed());

    // a server that never answers: the timeout middleware gives up
    let silent = spstack::rep0().build();
    let silent_ep = silent.listen("tcp://127.0.0.1:0").await?;
    let lonely = spstack::req0().build();
    lonely.dial(silent_ep.url()).await?;
    let impatient = ServiceBuilder::new()
        .timeout(Duration::from_millis(200))
        .service(lonely);
    match impatient.oneshot(Message::from("anyone?")).await {
        Ok(m) => println!("unexpected reply: {:?}", m.body()),
        Err(e) => println!("no answer from the silent server: {e}"),
    }

    rep.close();
    server.await?;
    println!("client stats:\n{}", req.stats());
    Ok(())
}

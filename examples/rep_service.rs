//! A REP server whose answers come from a `tower::Service` (here: upper-case
//! the request), and a REQ client that talks to it over ipc.
//!
//! ```text
//! cargo run --example rep_service
//! ```

use std::convert::Infallible;
use std::future::{ready, Ready};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use spstack::Message;

/// The service: upper-cases each request and counts what it served. Any
/// `tower::Service<Message, Response = Message>` that is `Clone` will do.
#[derive(Clone, Default)]
struct Uppercase {
    served: Arc<AtomicU64>,
}

impl tower::Service<Message> for Uppercase {
    type Response = Message;
    type Error = Infallible;
    type Future = Ready<Result<Message, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Message) -> Self::Future {
        self.served.fetch_add(1, Ordering::Relaxed);
        ready(Ok(Message::from(req.body().to_ascii_uppercase())))
    }
}

#[tokio::main]
async fn main() -> spstack::Result<()> {
    let path = std::env::temp_dir().join(format!("spstack-rep-service-{}.ipc", std::process::id()));
    let url = format!("ipc://{}", path.display());

    // Server: answer up to 4 requests at once, each on its own REP context.
    let rep = spstack::typed::rep0().build();
    rep.listen(&url).await?;
    println!("REP service on {url}");
    let service = Uppercase::default();
    let server = tokio::spawn(spstack::rep::serve(rep.clone(), service.clone(), 4));

    // Client: plain send/recv on the socket...
    let req = spstack::typed::req0().build();
    req.dial(&url).await?;
    for word in ["hello", "scalability", "protocols"] {
        req.send(word).await?;
        let reply = req.recv().await?;
        println!("{word} -> {}", String::from_utf8_lossy(reply.body()));
    }

    // ...and several requests at once, one context each.
    let tasks: Vec<_> = ["tokio", "tower", "nanomsg"]
        .into_iter()
        .map(|word| {
            let ctx = req.context();
            tokio::spawn(async move {
                ctx.send(word).await?;
                let reply = ctx.recv().await?;
                Ok::<_, spstack::Error>((word, reply))
            })
        })
        .collect();
    for t in tasks {
        let (word, reply) = t.await.expect("task panicked")?;
        println!(
            "{word} -> {} (context)",
            String::from_utf8_lossy(reply.body())
        );
    }

    rep.close();
    server.await.expect("server task panicked");
    println!(
        "served {} requests; server stats:\n{}",
        service.served.load(Ordering::Relaxed),
        rep.stats()
    );
    Ok(())
}

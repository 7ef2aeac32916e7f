//! Code written for the untyped API (before `spstack::typed`) still compiles
//! and works: the root builders build a `Socket`, helpers take `&Socket`,
//! per-protocol settings go through `control`, the REQ socket is a
//! `tower::Service`, a context is one through the deprecated
//! `into_service`, and Noise keys may still be bare `[u8; 32]`.

use std::time::Duration;

use spstack::noise::{NoiseConfig, StaticKeypair};
use spstack::{Message, Socket, SocketBuilder, SubControl};
use tower::ServiceExt;

const WAIT: Duration = Duration::from_secs(10);

/// A helper of the old style: it names the untyped types.
fn with_short_resend(b: SocketBuilder) -> SocketBuilder {
    b.with_options(|o| o.req_resend(Some(Duration::from_secs(5))))
}

async fn listen(s: &Socket) -> String {
    s.listen("tcp://127.0.0.1:0")
        .await
        .expect("listen")
        .url()
        .to_string()
}

/// Answers `n` requests with their body reversed.
fn echo_reversed(rep: Socket, n: usize) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        for _ in 0..n {
            let m = rep.recv().await.expect("recv");
            let mut body = m.body().to_vec();
            body.reverse();
            rep.send(body).await.expect("send");
        }
    })
}

#[tokio::test]
async fn root_builders_build_the_untyped_socket() {
    let rep: Socket = spstack::rep0().build();
    let url = listen(&rep).await;
    let req: Socket = with_short_resend(spstack::req0()).build();
    req.dial(&url).await.expect("dial");
    let server = echo_reversed(rep.clone(), 1);
    req.send("abc").await.expect("send");
    let reply = tokio::time::timeout(WAIT, req.recv())
        .await
        .expect("reply in time");
    assert_eq!(reply.expect("reply").body(), b"cba");
    server.await.expect("server");
    // and the typed handle of the same protocol converts to it
    let typed: Socket = spstack::typed::rep0().build().into();
    assert_eq!(typed.raw().protocol().name, rep.raw().protocol().name);
}

#[tokio::test]
async fn sub_settings_through_control_on_the_untyped_socket() {
    let publisher = spstack::pub0().build();
    let url = listen(&publisher).await;
    let sub = spstack::sub0().build();
    sub.control::<SubControl>()
        .expect("SUB has subscriptions")
        .subscribe(b"weather/")
        .expect("subscribe");
    sub.dial(&url).await.expect("dial");
    // PUB drops while no subscriber pipe is up: send until one arrives
    let got = tokio::time::timeout(WAIT, async {
        loop {
            publisher.send("sports/goal").await.expect("send");
            publisher.send("weather/rain").await.expect("send");
            if let Ok(Ok(m)) = tokio::time::timeout(Duration::from_millis(50), sub.recv()).await {
                return m;
            }
        }
    })
    .await
    .expect("a message in time");
    assert_eq!(
        got.body(),
        b"weather/rain",
        "the unsubscribed topic is filtered"
    );
}

#[tokio::test]
async fn the_untyped_req_socket_is_still_a_tower_service() {
    let rep = spstack::rep0().build();
    let url = listen(&rep).await;
    let req = spstack::req0().build();
    req.dial(&url).await.expect("dial");
    let server = echo_reversed(rep.clone(), 2);

    let reply = tokio::time::timeout(WAIT, req.clone().oneshot(Message::from("xy")))
        .await
        .expect("reply in time")
        .expect("reply");
    assert_eq!(reply.body(), b"yx");

    #[allow(deprecated)]
    let svc = req.context().into_service();
    let reply = tokio::time::timeout(WAIT, svc.oneshot(Message::from("12")))
        .await
        .expect("reply in time")
        .expect("reply");
    assert_eq!(reply.body(), b"21");
    server.await.expect("server");
}

#[tokio::test]
async fn noise_keys_as_bare_bytes_still_admit_the_peer() {
    let (server, client) = (StaticKeypair::generate(), StaticKeypair::generate());
    // keys kept as bytes, as code written before `NoisePublicKey` kept them
    let (server_bytes, client_bytes): ([u8; 32], [u8; 32]) =
        (server.public().into(), client.public().into());
    assert_eq!(server.public(), server_bytes);

    let rep = spstack::rep0()
        .pipe_layer(spstack::noise::layer(
            NoiseConfig::new(server).allow(client_bytes),
        ))
        .build();
    let url = listen(&rep).await;
    let req = spstack::req0()
        .pipe_layer(spstack::noise::layer(
            NoiseConfig::new(client).allow_all([server_bytes]),
        ))
        .build();
    req.dial(&url).await.expect("dial");
    let server_task = echo_reversed(rep.clone(), 1);
    req.send("noise").await.expect("send");
    let reply = tokio::time::timeout(WAIT, req.recv())
        .await
        .expect("reply in time");
    assert_eq!(reply.expect("reply").body(), b"esion");
    server_task.await.expect("server");
}

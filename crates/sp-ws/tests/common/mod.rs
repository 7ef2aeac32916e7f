//! Sockets with the WebSocket transport, for the tests of this crate.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use sp_core::{Options, Socket, SocketBuilder};
use sp_transports::Tcp;
use sp_ws::{Ws, WsConfig};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::header::SEC_WEBSOCKET_PROTOCOL;
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// A raw tungstenite client, for playing the peer by hand.
pub type Client =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// How long one step may take before a test fails.
pub const STEP: Duration = Duration::from_secs(20);

/// Awaits `f` within [`STEP`].
pub async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(STEP, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: timed out"))
}

/// Options for quick redials.
pub fn opts() -> Options {
    Options::default()
        .recv_max_size(2 << 20)
        .reconnect_min(Duration::from_millis(20))
        .reconnect_max(Duration::from_millis(200))
}

fn with_ws(b: SocketBuilder, cfg: &WsConfig) -> SocketBuilder {
    b.transport(Arc::new(Ws::new(Tcp).with_config(cfg.clone())))
        .transport(Arc::new(Tcp))
        .options(opts())
}

/// A cooked socket of `kind` with ws:// and tcp://.
pub fn sock(kind: &str) -> Socket {
    sock_with(kind, &WsConfig::default(), |b| b)
}

/// A cooked socket of `kind`, with settings and extra builder steps.
pub fn sock_with(
    kind: &str,
    cfg: &WsConfig,
    f: impl FnOnce(SocketBuilder) -> SocketBuilder,
) -> Socket {
    use sp_protocols::*;
    let b = match kind {
        "req" => SocketBuilder::new(raw::Req0Raw).cooked(Req0),
        "rep" => SocketBuilder::new(raw::Rep0Raw).cooked(Rep0),
        "pair" => SocketBuilder::new(raw::Pair0Raw).cooked(Plain::PAIR0),
        "pair1" => SocketBuilder::new(Pair1Raw::MONO).cooked(Pair1::MONO),
        "push" => SocketBuilder::new(raw::Push0Raw).cooked(Plain::PUSH0),
        "pull" => SocketBuilder::new(raw::Pull0Raw).cooked(Plain::PULL0),
        "pub" => SocketBuilder::new(Pub0Raw).cooked(Plain::PUB0),
        "sub" => {
            let sub = Sub0::new();
            SocketBuilder::new(sub.raw_protocol()).cooked(sub)
        }
        k => panic!("unknown socket kind {k}"),
    };
    f(with_ws(b, cfg)).build()
}

/// A raw tungstenite client offering `proto`, for the listener's view.
pub async fn raw_client(
    url: &str,
    proto: Option<&str>,
) -> Result<Client, tokio_tungstenite::tungstenite::Error> {
    let mut req = url.into_client_request().expect("request");
    if let Some(p) = proto {
        req.headers_mut()
            .insert(SEC_WEBSOCKET_PROTOCOL, p.parse().expect("header"));
    }
    tokio_tungstenite::connect_async(req)
        .await
        .map(|(ws, _)| ws)
}

/// Waits for the server to end the connection; returns its close code.
pub async fn closed_by_server(ws: &mut Client) -> Option<u16> {
    within("server closes", async {
        while let Some(m) = ws.next().await {
            match m {
                Ok(WsMessage::Close(f)) => return f.map(|f| u16::from(f.code)),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
        None
    })
    .await
}

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

/// An upgrade request to `url` offering `proto`, sent from a page of
/// `origin` if any.
pub fn upgrade_request(
    url: &str,
    proto: Option<&str>,
    origin: Option<&str>,
) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    let mut req = url.into_client_request().expect("request");
    if let Some(p) = proto {
        req.headers_mut()
            .insert(SEC_WEBSOCKET_PROTOCOL, p.parse().expect("header"));
    }
    if let Some(o) = origin {
        req.headers_mut()
            .insert("origin", o.parse().expect("origin"));
    }
    req
}

/// A raw tungstenite client offering `proto`, for the listener's view.
pub async fn raw_client(
    url: &str,
    proto: Option<&str>,
) -> Result<Client, tokio_tungstenite::tungstenite::Error> {
    tokio_tungstenite::connect_async(upgrade_request(url, proto, None))
        .await
        .map(|(ws, _)| ws)
}

/// The HTTP status the server answers an upgrade with (101 when it
/// upgrades).
pub async fn upgrade_status(url: &str, proto: &str, origin: Option<&str>) -> u16 {
    let r = within(
        "upgrade answer",
        tokio_tungstenite::connect_async(upgrade_request(url, Some(proto), origin)),
    )
    .await;
    match r {
        Ok((_, resp)) => resp.status().as_u16(),
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => r.status().as_u16(),
        Err(e) => panic!("neither upgraded nor refused: {e}"),
    }
}

/// `host:port` of a `ws://host:port/path` URL.
pub fn authority(url: &str) -> String {
    let rest = url.trim_start_matches("ws://");
    rest.split_once('/').map_or(rest, |(a, _)| a).to_string()
}

/// A WebSocket handshake done by hand over a raw TCP stream offering
/// `proto`, so a test can write frames and read the server's bytes
/// independently. Returns once the server answered 101.
pub async fn raw_upgrade(url: &str, proto: &str) -> tokio::net::TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = authority(url);
    let path = url
        .trim_start_matches("ws://")
        .split_once('/')
        .map_or("", |(_, p)| p);
    let mut s = tokio::net::TcpStream::connect(&host)
        .await
        .expect("connect");
    let req = format!(
        "GET /{path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: {proto}\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.expect("request");
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert!(head.len() < 4096, "response head too long");
        within("response", s.read_exact(&mut b))
            .await
            .expect("read");
        head.push(b[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    s
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

/// A TCP proxy to `to` (`host:port`) that delays every chunk by `delay` in
/// each direction, order kept: a peer that far away. Returns the proxy's
/// `ip:port`; serves until the test ends.
pub async fn delay_proxy(to: String, delay: Duration) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("proxy bind");
    let addr = l.local_addr().expect("addr").to_string();
    fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, delay: Duration) {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<(tokio::time::Instant, Vec<u8>)>(1024);
        tokio::spawn(async move {
            let mut buf = vec![0u8; 16 << 10];
            while let Ok(n @ 1..) = from.read(&mut buf).await {
                let due = tokio::time::Instant::now() + delay;
                if tx.send((due, buf[..n].to_vec())).await.is_err() {
                    break;
                }
            }
        });
        tokio::spawn(async move {
            while let Some((due, b)) = rx.recv().await {
                tokio::time::sleep_until(due).await;
                if to.write_all(&b).await.is_err() {
                    break;
                }
            }
            let _ = to.shutdown().await;
        });
    }
    tokio::spawn(async move {
        while let Ok((c, _)) = l.accept().await {
            let Ok(u) = tokio::net::TcpStream::connect(&to).await else {
                continue;
            };
            let (cr, cw) = c.into_split();
            let (ur, uw) = u.into_split();
            pump(cr, uw, delay);
            pump(ur, cw, delay);
        }
    });
    addr
}

/// An idle TCP connection to `to` from 127.0.0.2: another source address
/// than the honest peers' 127.0.0.1.
pub async fn connect_from_127_0_0_2(to: &str) -> std::io::Result<tokio::net::TcpStream> {
    let s = tokio::net::TcpSocket::new_v4()?;
    s.bind("127.0.0.2:0".parse().expect("source address"))?;
    s.connect(to.parse().expect("ip:port")).await
}

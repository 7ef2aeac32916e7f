//! Sockets with the WebSocket transport, for the tests of this crate.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use sp_core::{Options, Socket, SocketBuilder};
use sp_transports::Tcp;
use sp_ws::{Ws, WsConfig};

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

//! An spstack socket as a route of an axum `Router`, next to ordinary
//! routes: browsers and nng/nanomsg dialers reach it with the SP WebSocket
//! mapping (`Sec-WebSocket-Protocol: <proto>.sp.nanomsg.org`).
//!
//! ```no_run
//! # async fn demo(rep: sp_core::Socket) -> std::io::Result<()> {
//! use axum::{routing::get, Router};
//! let app = Router::new()
//!     .route("/", get(|| async { "hello" }))
//!     .route("/sp", sp_ws::axum::endpoint(&rep));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>()).await
//! # }
//! ```
//!
//! The handler checks the subprotocol (HTTP 400 when it is missing or names
//! another protocol, as nng does), upgrades with axum's `WebSocketUpgrade`
//! with explicit limits, and hands the WebSocket to the socket through
//! [`Socket::listen_on`](sp_core::Socket::listen_on): the pipe then opens
//! under the socket's handshake deadline and half-open cap like any other.
//! axum's `WebSocket` hides its byte stream, so the per-message byte budget
//! of [`Ws`](crate::Ws) (against floods of empty fragments) does not apply
//! here, nor does its hold on large frame headers until the socket's
//! allocation budget covers them (tungstenite reserves up to
//! `WsConfig::max_frame_size` per announced frame); tungstenite's frame and message limits do (a ceiling of twice
//! `recv_max_size` plus 64 KiB, room for a pipe layer's framing), and every
//! message is checked against the pipe's receive limit of the moment (a
//! Noise handshake's 1 KiB) once assembled, so a pipe layer's handshake cap
//! holds per message here, before buffering only with [`Ws`](crate::Ws).
//!
//! A page of another web origin is refused (HTTP 403) unless
//! [`WsConfig::allowed_origins`] names it. The pipe's `peer_addr` is the
//! TCP peer when the app is served with
//! `into_make_service_with_connect_info::<SocketAddr>()` (axum's
//! `ConnectInfo`), and empty otherwise: the `Host` header is the client's
//! claim, not its address.

use std::net::SocketAddr;
use std::sync::Arc;

use ::axum::extract::ws::rejection::WebSocketUpgradeRejection;
use ::axum::extract::ws::{CloseFrame, Message as AxMessage, WebSocket, WebSocketUpgrade};
use ::axum::extract::ConnectInfo;
use ::axum::http::{Extensions, HeaderMap, HeaderValue, StatusCode};
use ::axum::response::{IntoResponse, Response};
use ::axum::routing::{any, MethodRouter};
use bytes::Bytes;
use sp_core::transport::{Listener, PipeConfig, Unannounced};
use sp_core::{Announcement, BoxFuture, Connection, Error, ProtocolId, Result, Socket};
use tokio::sync::{mpsc, Mutex};

use crate::driver::{self, In, Wire};
use crate::{parse_subprotocol, peer_of, WsConfig};

/// Upgraded WebSockets waiting for the socket to accept them.
const QUEUE: usize = 32;

/// A route serving `socket` over WebSocket, with default [`WsConfig`].
/// Needs a tokio runtime (the socket starts accepting at once).
pub fn endpoint<S: Clone + Send + Sync + 'static>(socket: &Socket) -> MethodRouter<S> {
    endpoint_with(socket, WsConfig::default())
}

/// A route serving `socket` over WebSocket with the given settings.
pub fn endpoint_with<S: Clone + Send + Sync + 'static>(
    socket: &Socket,
    cfg: WsConfig,
) -> MethodRouter<S> {
    let (tx, rx) = mpsc::channel(QUEUE);
    let own = socket.raw().protocol().id;
    let recv_max = socket.options().recv_max_size;
    socket.listen_on(Box::new(AxumListener {
        rx: Mutex::new(rx),
        cfg: cfg.clone(),
        url: format!("ws+axum://{}", own.name()),
    }));
    let state = Arc::new(State {
        tx,
        own,
        recv_max,
        cfg,
    });
    any(
        move |headers: HeaderMap,
              ext: Extensions,
              ws: std::result::Result<WebSocketUpgrade, WebSocketUpgradeRejection>| {
            let state = state.clone();
            let connect = ext.get::<ConnectInfo<SocketAddr>>().cloned();
            async move { state.handle(headers, connect, ws.ok()) }
        },
    )
}

struct State {
    tx: mpsc::Sender<Upgraded>,
    own: ProtocolId,
    recv_max: usize,
    cfg: WsConfig,
}

struct Upgraded {
    ws: WebSocket,
    token: String,
    peer_addr: String,
}

impl State {
    fn handle(
        &self,
        headers: HeaderMap,
        connect: Option<ConnectInfo<SocketAddr>>,
        ws: Option<WebSocketUpgrade>,
    ) -> Response {
        if let Some(text) = crate::refused_origin(&self.cfg.allowed_origins, &headers) {
            return (StatusCode::FORBIDDEN, text).into_response();
        }
        let Some(ws) = ws else {
            return (
                StatusCode::BAD_REQUEST,
                "this is an SP WebSocket endpoint: upgrade with Sec-WebSocket-Protocol\n",
            )
                .into_response();
        };
        let offered: Vec<String> = ws
            .requested_protocols()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|t| t.trim().to_string())
            .collect();
        let token = offered
            .iter()
            .find(|t| parse_subprotocol(t).is_some_and(|a| a.protocol == self.own));
        let Some(token) = token.cloned() else {
            let want = format!("{}{}", self.own.name(), crate::SP_SUFFIX);
            return (
                StatusCode::BAD_REQUEST,
                format!("Sec-WebSocket-Protocol {offered:?} does not name this endpoint's protocol; use {want:?}\n"),
            )
                .into_response();
        };
        let Ok(value) = HeaderValue::from_str(&token) else {
            return StatusCode::BAD_REQUEST.into_response();
        };
        // the TCP peer as axum's server saw it; the Host header is what the
        // client claims to have dialled, not who it is
        let peer_addr = connect.map(|c| c.0.to_string()).unwrap_or_default();
        let ceiling = crate::message_ceiling(self.recv_max);
        let mut ws = ws
            .max_message_size(ceiling)
            .max_frame_size(self.cfg.max_frame_size.min(ceiling))
            .write_buffer_size(self.cfg.write_buffer_size)
            .max_write_buffer_size(
                self.cfg
                    .max_write_buffer_size
                    .max(self.cfg.write_buffer_size + 1),
            )
            .read_buffer_size(crate::READ_BUFFER)
            .accept_unmasked_frames(false);
        ws.set_selected_protocol(value);
        let tx = self.tx.clone();
        ws.on_upgrade(move |ws| async move {
            let up = Upgraded {
                ws,
                token,
                peer_addr,
            };
            // a full queue means the socket is not keeping up: refuse
            // rather than queue without bound
            if let Err(mpsc::error::TrySendError::Full(mut up)) = tx.try_send(up) {
                let _ = up
                    .ws
                    .send(AxMessage::Close(Some(CloseFrame {
                        code: 1013,
                        reason: "try again later".into(),
                    })))
                    .await;
            }
        })
    }
}

struct AxumListener {
    rx: Mutex<mpsc::Receiver<Upgraded>>,
    cfg: WsConfig,
    url: String,
}

impl Listener for AxumListener {
    fn url(&self) -> String {
        self.url.clone()
    }
    fn accept(&self) -> BoxFuture<'_, Result<Box<dyn Unannounced>>> {
        Box::pin(async move {
            let up = self.rx.lock().await.recv().await.ok_or(Error::Closed)?;
            Ok(Box::new(AxumUnannounced {
                up,
                cfg: self.cfg.clone(),
            }) as Box<dyn Unannounced>)
        })
    }
}

struct AxumUnannounced {
    up: Upgraded,
    cfg: WsConfig,
}

impl Unannounced for AxumUnannounced {
    fn peer_addr(&self) -> String {
        self.up.peer_addr.clone()
    }
    fn announce(
        self: Box<Self>,
        cfg: PipeConfig,
        dialer: bool,
    ) -> BoxFuture<'static, Result<Connection>> {
        Box::pin(async move {
            let AxumUnannounced { up, cfg: ws_cfg } = *self;
            let offered = parse_subprotocol(&up.token)
                .ok_or_else(|| Error::protocol("not an SP subprotocol"))?;
            // the token names us and carries the dialer's layer list: the
            // peer has the same list, or the stacks differ
            let peer = Announcement {
                protocol: peer_of(cfg.local.protocol).unwrap_or(cfg.local.protocol),
                layers: offered.layers,
            };
            if peer.layers != cfg.local.layers {
                return Err(crate::mismatch(&cfg.local, &peer));
            }
            let info = cfg.pipe_info("ws+axum", String::new(), up.peer_addr, peer, dialer);
            Ok(driver::spawn(up.ws, &cfg, &ws_cfg, info))
        })
    }
}

/// axum's WebSocket is a [`Wire`] as it is.
impl Wire for WebSocket {
    type Msg = AxMessage;
    type Err = ::axum::Error;
    fn classify(m: AxMessage) -> In {
        match m {
            AxMessage::Binary(b) => In::Binary(b),
            AxMessage::Text(_) => In::Text,
            AxMessage::Ping(_) | AxMessage::Pong(_) => In::Alive,
            AxMessage::Close(_) => In::Close,
        }
    }
    fn binary(b: Bytes, _frame: usize, out: &mut std::collections::VecDeque<AxMessage>) {
        // axum's WebSocket sends whole messages only (browsers reassemble
        // anything; the byte budget is the reader's concern)
        out.push_back(AxMessage::Binary(b));
    }
    fn ping() -> AxMessage {
        AxMessage::Ping(Bytes::new())
    }
    fn close(code: u16, reason: &'static str) -> AxMessage {
        AxMessage::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        }))
    }
    fn error(e: ::axum::Error) -> (Error, Option<(u16, &'static str)>) {
        // axum wraps tungstenite's error: the same meaning, the same close code
        match e
            .into_inner()
            .downcast::<tokio_tungstenite::tungstenite::Error>()
        {
            Ok(t) => crate::transport::map_error(*t),
            Err(other) => (Error::protocol(format!("WebSocket: {other}")), None),
        }
    }
}

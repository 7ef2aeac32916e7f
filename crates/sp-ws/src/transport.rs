//! `ws://host:port/path` and `wss://...`: the SP WebSocket mapping over any
//! stream transport.

use std::sync::Arc;

use bytes::Bytes;
use sp_core::layer::{ComponentInfo, Overhead};
use sp_core::transport::{
    Listener, PipeConfig, StreamTransport, StreamUpgrade, Transport, Unannounced,
};
use sp_core::{split_url, Announcement, BoxFuture, Connection, Error, Result};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{header, HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message as WsMessage};
use tokio_tungstenite::WebSocketStream;

use crate::driver::{self, In, Wire};
use crate::port::{self, OverBudget, PathListener, WsIo};
use crate::{
    mismatch, parse_subprotocol, peer_of, select_subprotocol, subprotocol, WsConfig, STACK_HEADER,
};

/// The SP WebSocket mapping over the byte streams of `S`.
///
/// `Ws::new(Tcp)` serves `ws://`, `Ws::secure(tls)` serves `wss://` over a
/// TLS stream transport. The WebSocket code never opens a socket itself:
/// it asks `S` for a stream and runs the stream's own handshake (TLS) and
/// then the WebSocket handshake inside the pipe's announce step, under the
/// socket's handshake deadline.
///
/// ```
/// use sp_core::transport::Transport;
/// let ws = sp_ws::Ws::new(sp_transports::Tcp);
/// assert_eq!(ws.schemes(), &["ws"]);
/// ```
pub struct Ws<S> {
    streams: Arc<S>,
    scheme: &'static str,
    cfg: WsConfig,
}

impl<S: StreamTransport> Ws<S> {
    /// `ws://` over `streams` (normally [`sp_transports::Tcp`]).
    pub fn new(streams: S) -> Self {
        Ws {
            streams: Arc::new(streams),
            scheme: "ws",
            cfg: WsConfig::default(),
        }
    }
    /// `wss://` over a stream transport that encrypts (TLS over TCP).
    pub fn secure(streams: S) -> Self {
        Ws {
            scheme: "wss",
            ..Ws::new(streams)
        }
    }
    /// Replaces the settings (keepalive, frame and request limits).
    pub fn with_config(mut self, cfg: WsConfig) -> Self {
        self.cfg = cfg;
        self
    }
}

/// Splits `ws://host:port/path` into `host:port` and `/path`.
fn parse_url(url: &str) -> Result<(String, String)> {
    let (_, rest) = split_url(url).ok_or_else(|| Error::Address {
        url: url.into(),
        reason: "expected ws://host:port/path".into(),
    })?;
    let (auth, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if auth.is_empty() {
        return Err(Error::Address {
            url: url.into(),
            reason: "missing host:port".into(),
        });
    }
    Ok((auth.to_string(), path.to_string()))
}

impl<S: StreamTransport> Transport for Ws<S> {
    fn schemes(&self) -> &'static [&'static str] {
        if self.scheme == "wss" {
            &["wss"]
        } else {
            &["ws"]
        }
    }
    fn info(&self) -> ComponentInfo {
        // a 2..14-byte frame header computed per message; nothing declared.
        // The WebSocket library copies each message into its write buffer,
        // and one reassembled from fragments out of its read buffer
        let info = ComponentInfo::new(
            format!("{}+{}", self.scheme, self.streams.name()),
            Overhead::NONE,
        )
        .copying();
        if self.streams.transforms() {
            info.opaque()
        } else {
            info
        }
    }
    fn dial(&self, url: &str) -> BoxFuture<'static, Result<Box<dyn Unannounced>>> {
        let parsed = parse_url(url);
        let streams = self.streams.clone();
        let cfg = self.cfg.clone();
        let scheme = self.scheme;
        Box::pin(async move {
            let (authority, path) = parsed?;
            let upgrade = streams.connect(&authority).await?;
            Ok(Box::new(Dialing {
                upgrade,
                authority,
                path,
                cfg,
                scheme,
            }) as Box<dyn Unannounced>)
        })
    }
    fn listen(&self, url: &str) -> BoxFuture<'static, Result<Box<dyn Listener>>> {
        let parsed = parse_url(url);
        let streams = self.streams.clone();
        let cfg = self.cfg.clone();
        let scheme = self.scheme;
        Box::pin(async move {
            let (authority, path) = parsed?;
            let l = port::listen(streams, &authority, &path, &cfg).await?;
            Ok(Box::new(WsListen {
                l: Arc::new(l),
                path,
                cfg,
                scheme,
            }) as Box<dyn Listener>)
        })
    }
}

struct WsListen {
    l: Arc<PathListener>,
    path: String,
    cfg: WsConfig,
    scheme: &'static str,
}

impl Listener for WsListen {
    fn url(&self) -> String {
        format!("{}://{}{}", self.scheme, self.l.local_addr(), self.path)
    }
    fn count_on(&self, counters: Arc<sp_core::stats::Counters>) {
        // what the port refuses before a connection reaches the socket
        self.l.count_on(counters);
    }
    fn accept(&self) -> BoxFuture<'_, Result<Box<dyn Unannounced>>> {
        Box::pin(async move {
            let r = self.l.accept().await?;
            Ok(Box::new(Accepting {
                r,
                cfg: self.cfg.clone(),
                scheme: self.scheme,
            }) as Box<dyn Unannounced>)
        })
    }
}

const BUDGET_WHAT: &str =
    "bytes received without completing a WebSocket message (a flood of empty or tiny frames?)";

struct Dialing {
    upgrade: StreamUpgrade,
    authority: String,
    path: String,
    cfg: WsConfig,
    scheme: &'static str,
}

impl Unannounced for Dialing {
    fn peer_addr(&self) -> String {
        self.authority.clone()
    }
    fn announce(
        self: Box<Self>,
        cfg: PipeConfig,
        dialer: bool,
    ) -> BoxFuture<'static, Result<Connection>> {
        Box::pin(async move {
            let Dialing {
                upgrade,
                authority,
                path,
                cfg: ws_cfg,
                scheme,
            } = *self;
            let peer = peer_of(cfg.local.protocol).ok_or_else(|| {
                Error::protocol(format!("{} has no WebSocket mapping", cfg.local.protocol))
            })?;
            let token = subprotocol(peer, &cfg.local.layers);
            let s = upgrade.await?;
            let mut req = format!("ws://{authority}{path}")
                .into_client_request()
                .map_err(|e| Error::Address {
                    url: format!("{scheme}://{authority}{path}"),
                    reason: e.to_string(),
                })?;
            let value = HeaderValue::from_str(&token)
                .map_err(|_| Error::protocol("subprotocol token is not a valid header value"))?;
            req.headers_mut()
                .insert(header::SEC_WEBSOCKET_PROTOCOL, value);
            let io = WsIo::dialed(s.io);
            let limits = ws_cfg.tungstenite(cfg.recv_max_size);
            let (mut ws, resp) = tokio_tungstenite::client_async_with_config(req, io, Some(limits))
                .await
                .map_err(|e| client_error(e, &token, &cfg.local))?;
            let got = resp
                .headers()
                .get(header::SEC_WEBSOCKET_PROTOCOL)
                .and_then(|v| v.to_str().ok());
            if got != Some(token.as_str()) {
                return Err(match got.and_then(parse_subprotocol) {
                    Some(theirs) => mismatch(&cfg.local, &theirs),
                    None => Error::protocol(format!(
                        "the listener answered subprotocol {got:?}, we asked for {token:?}"
                    )),
                });
            }
            let io = ws.get_mut();
            io.follow_limit(BUDGET_WHAT, cfg.recv_limit.clone());
            io.gate(
                cfg.alloc_budget.clone(),
                limits.max_frame_size.unwrap_or(usize::MAX),
            );
            let mut info = cfg.pipe_info(
                scheme,
                s.local_addr,
                format!("{scheme}://{authority}{path}"),
                Announcement {
                    protocol: peer,
                    layers: cfg.local.layers.clone(),
                },
                dialer,
            );
            info.peer_identity = s.peer_identity;
            Ok(driver::spawn(ws, &cfg, &ws_cfg, info))
        })
    }
}

fn client_error(e: tungstenite::Error, token: &str, local: &Announcement) -> Error {
    match e {
        tungstenite::Error::Http(resp) => {
            let status = resp.status();
            // an spstack listener names its own stack: say which layer differs
            let theirs = resp
                .headers()
                .get(STACK_HEADER)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_subprotocol);
            let body = resp
                .body()
                .as_deref()
                .map(|b| String::from_utf8_lossy(&b[..b.len().min(200)]).into_owned())
                .unwrap_or_default();
            if let (StatusCode::BAD_REQUEST, Some(theirs)) = (status, &theirs) {
                mismatch(local, theirs)
            } else if status == StatusCode::BAD_REQUEST {
                // another implementation: it serves another SP protocol, or
                // does not have our pipe layers
                tracing::debug!(target: "spstack", %body, "the listener refused our subprotocol with HTTP 400");
                Error::Mismatch {
                    index: None,
                    ours: Some(token.to_string()),
                    theirs: None,
                }
            } else {
                let hint = match status {
                    StatusCode::NOT_FOUND => " (wrong path?)",
                    StatusCode::SERVICE_UNAVAILABLE => {
                        " (the listener holds all the pipes it may, or does not accept fast enough; redialing)"
                    }
                    _ => "",
                };
                Error::protocol(format!(
                    "the listener answered HTTP {status} instead of upgrading to WebSocket{hint} {body}"
                ))
            }
        }
        tungstenite::Error::Protocol(p) => {
            Error::protocol(format!("WebSocket handshake failed: {p}"))
        }
        e => map_error(e).0,
    }
}

struct Accepting {
    r: port::Routed,
    cfg: WsConfig,
    scheme: &'static str,
}

impl Unannounced for Accepting {
    fn peer_addr(&self) -> String {
        self.r.peer_addr.clone()
    }
    fn refuse(self: Box<Self>) -> Option<BoxFuture<'static, ()>> {
        // the request head is read and no answer sent yet: a client gets a
        // status it can act on (retry later) rather than a bare close
        Some(Box::pin(self.r.io.refuse("503 Service Unavailable")))
    }
    fn announce(
        self: Box<Self>,
        cfg: PipeConfig,
        dialer: bool,
    ) -> BoxFuture<'static, Result<Connection>> {
        Box::pin(async move {
            let Accepting {
                r,
                cfg: ws_cfg,
                scheme,
            } = *self;
            let port::Routed {
                mut io,
                local_addr,
                peer_addr,
                peer_identity,
            } = r;
            io.set_cap(
                "the HTTP upgrade request (WsConfig::max_request_bytes)",
                ws_cfg.max_request_bytes,
            );
            let chosen: Arc<std::sync::Mutex<Option<Result<Announcement>>>> = Arc::default();
            let slot = chosen.clone();
            let local = cfg.local.clone();
            // the signature is tungstenite's `Callback`: its error type is not ours to box
            let origins = ws_cfg.allowed_origins.clone();
            #[allow(clippy::result_large_err)]
            let callback = move |req: &Request, mut resp: Response| {
                if let Some(text) = crate::refused_origin(&origins, req.headers()) {
                    *slot.lock().unwrap_or_else(|e| e.into_inner()) =
                        Some(Err(Error::protocol(text.trim_end().to_string())));
                    let mut r = ErrorResponse::new(Some(text));
                    *r.status_mut() = StatusCode::FORBIDDEN;
                    return Err(r);
                }
                let offered = req
                    .headers()
                    .get_all(header::SEC_WEBSOCKET_PROTOCOL)
                    .iter()
                    .filter_map(|v| v.to_str().ok());
                let res = select_subprotocol(&local, offered);
                let out = match &res {
                    Ok((token, _)) => match HeaderValue::from_str(token) {
                        Ok(v) => {
                            resp.headers_mut().insert(header::SEC_WEBSOCKET_PROTOCOL, v);
                            Ok(resp)
                        }
                        Err(_) => Err(bad_request("bad subprotocol token".into(), token)),
                    },
                    // nng answers a wrong or missing subprotocol with 400
                    Err(e) => Err(bad_request(
                        e.to_string(),
                        &subprotocol(local.protocol, &local.layers),
                    )),
                };
                *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(res.map(|(_, a)| a));
                out
            };
            let limits = ws_cfg.tungstenite(cfg.recv_max_size);
            let handshake =
                tokio_tungstenite::accept_hdr_async_with_config(io, callback, Some(limits)).await;
            let selected = chosen.lock().unwrap_or_else(|e| e.into_inner()).take();
            let mut ws = match (handshake, selected) {
                (Ok(ws), Some(Ok(_))) => ws,
                (_, Some(Err(e))) => return Err(e),
                (Err(e), _) => return Err(map_error(e).0),
                (Ok(_), None) => {
                    return Err(Error::protocol("WebSocket handshake without a request"))
                }
            };
            let peer = Announcement {
                protocol: peer_of(cfg.local.protocol).unwrap_or(cfg.local.protocol),
                layers: cfg.local.layers.clone(),
            };
            let io = ws.get_mut();
            io.follow_limit(BUDGET_WHAT, cfg.recv_limit.clone());
            io.gate(
                cfg.alloc_budget.clone(),
                limits.max_frame_size.unwrap_or(usize::MAX),
            );
            let mut info = cfg.pipe_info(scheme, local_addr, peer_addr, peer, dialer);
            info.peer_identity = peer_identity;
            Ok(driver::spawn(ws, &cfg, &ws_cfg, info))
        })
    }
}

fn bad_request(msg: String, ours: &str) -> ErrorResponse {
    let mut r = ErrorResponse::new(Some(msg));
    *r.status_mut() = StatusCode::BAD_REQUEST;
    if let Ok(v) = HeaderValue::from_str(ours) {
        r.headers_mut().insert(STACK_HEADER, v);
    }
    r
}

/// tokio-tungstenite's stream is a [`Wire`] as it is.
impl Wire for WebSocketStream<WsIo> {
    type Msg = WsMessage;
    type Err = tungstenite::Error;
    fn classify(m: WsMessage) -> In {
        match m {
            WsMessage::Binary(b) => In::Binary(b),
            WsMessage::Text(_) => In::Text,
            WsMessage::Ping(_) | WsMessage::Pong(_) | WsMessage::Frame(_) => In::Alive,
            WsMessage::Close(_) => In::Close,
        }
    }
    fn binary(b: Bytes, frame: usize, out: &mut std::collections::VecDeque<WsMessage>) {
        if b.len() <= frame {
            out.push_back(WsMessage::Binary(b));
            return;
        }
        // a binary frame, then continuation frames; the last one is final
        let mut at = 0;
        while at < b.len() {
            let end = (at + frame).min(b.len());
            let opcode = if at == 0 {
                OpCode::Data(Data::Binary)
            } else {
                OpCode::Data(Data::Continue)
            };
            out.push_back(WsMessage::Frame(Frame::message(
                b.slice(at..end),
                opcode,
                end == b.len(),
            )));
            at = end;
        }
    }
    fn ping() -> WsMessage {
        WsMessage::Ping(Bytes::new())
    }
    fn close(code: u16, reason: &'static str) -> WsMessage {
        WsMessage::Close(Some(CloseFrame {
            code: CloseCode::from(code),
            reason: reason.into(),
        }))
    }
    fn error(e: tungstenite::Error) -> (Error, Option<(u16, &'static str)>) {
        map_error(e)
    }
    fn progress(&mut self) {
        self.get_mut().progress();
    }
}

/// What a tungstenite error means for the pipe, and the close code to send
/// (if any). Shared by every [`Wire`]: axum's wraps the same errors.
pub(crate) fn map_error(e: tungstenite::Error) -> (Error, Option<(u16, &'static str)>) {
    use tungstenite::error::CapacityError;
    match e {
        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => {
            (Error::ConnectionClosed, None)
        }
        tungstenite::Error::Capacity(CapacityError::MessageTooLong { size, max_size }) => (
            Error::TooLarge {
                size: size as u64,
                limit: max_size,
            },
            Some((1009, "message too big")),
        ),
        tungstenite::Error::Capacity(c) => (
            Error::protocol(format!("WebSocket limit hit: {c}")),
            Some((1009, "too big")),
        ),
        tungstenite::Error::Protocol(p) => (
            Error::protocol(format!("WebSocket protocol violation: {p}")),
            Some((1002, "protocol error")),
        ),
        tungstenite::Error::Utf8(s) => (
            Error::protocol(format!("invalid UTF-8 in a WebSocket text or close frame: {s}")),
            Some((1007, "invalid utf-8")),
        ),
        tungstenite::Error::AttackAttempt => (
            Error::protocol(
                "HTTP upgrade request sent in too many tiny pieces (tungstenite's attack check)",
            ),
            None,
        ),
        tungstenite::Error::WriteBufferFull(_) => (
            Error::protocol(
                "an outgoing message does not fit WsConfig::max_write_buffer_size; raise it or send smaller messages",
            ),
            Some((1011, "write buffer full")),
        ),
        tungstenite::Error::Io(io) => {
            if let Some(b) = io.get_ref().and_then(|e| e.downcast_ref::<OverBudget>()) {
                (
                    Error::protocol(format!("WebSocket peer: {b}")),
                    Some((1009, "too much data")),
                )
            } else {
                (Error::Io(io), None)
            }
        }
        e => (Error::protocol(format!("WebSocket: {e}")), Some((1002, "error"))),
    }
}

//! Listening ports shared by URL path, as nng allows: `ws://h:p/a` on one
//! socket and `ws://h:p/b` on another. A process-wide registry keyed by the
//! bound address holds one accept loop per port; it reads each upgrade
//! request's head (bounded in bytes and time), and hands the connection to
//! the listener registered for its path. The WebSocket handshake itself
//! then runs in that listener's `announce`, under its socket's handshake
//! deadline and half-open cap.
//!
//! Reading request heads is unauthenticated work with a cap of its own
//! (`WsConfig::max_routing`), admitted like handshakes
//! ([`sp_core::admission`]: a random head of the source holding the most
//! is dropped, never the newest). What the port refuses or drops is
//! counted in the stats of the sockets listening on it, under the reason a
//! socket uses for the same fate of its own handshakes: once the request
//! names a listening path, on that path's socket only (503 when it does
//! not accept fast enough: `ListenerFull`); before that (evicted:
//! `Evicted`, no head within `WsConfig::route_timeout`: `HandshakeTimeout`,
//! a head too large (431), malformed (400) or for a path nobody serves
//! (404): `BadHeader`, closed or reset: `Io`, a failed TLS handshake of
//! wss: `LayerFailed`) on every socket listening on the port, since each
//! of them lost that capacity and none can be told apart. With one socket
//! per port, the usual case, the counts are exact; sockets sharing a port
//! each count its unattributed refusals.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::task::{Context, Poll};

use sp_core::admission::{source_of, Admission};
use sp_core::stats::{Counters, RejectReason};
use sp_core::transport::{ByteStream, StreamListener, StreamTransport};
use sp_core::{Error, Result};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::mpsc;

use crate::gate::{Gate, HeadEnd};
use crate::WsConfig;

/// Connections routed to one path and not yet accepted.
const ROUTE_QUEUE: usize = 32;
/// Headers we let httparse look at while routing (tungstenite allows 124).
const MAX_HEADERS: usize = 124;

/// Bytes read past a limit: the typed payload of the `io::Error` a
/// [`WsIo`] returns, so the pipe's error can say which limit it was.
#[derive(Debug)]
pub(crate) struct OverBudget {
    pub(crate) what: &'static str,
    pub(crate) limit: usize,
}

impl std::fmt::Display for OverBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} exceeds {} bytes", self.what, self.limit)
    }
}
impl std::error::Error for OverBudget {}

/// The byte stream under a WebSocket: the bytes already read while routing
/// first, then the stream, with a cap on bytes read since the last complete
/// message. The cap bounds what a peer can make us parse without ever
/// finishing a message (a million empty continuation frames, a ping flood,
/// an endless handshake).
///
/// After the handshake, every frame passes a [`Gate`] that holds a large
/// frame's header back until the socket's allocation budget covers it; a
/// dialer's library is given the upgrade response's head and no byte past
/// it during its handshake, so the first frames pass the gate too (see
/// [`crate::gate`]). Bytes read and not yet given wait in `held`.
pub(crate) struct WsIo {
    inner: Box<dyn ByteStream>,
    held: bytes::BytesMut,
    head: Option<HeadEnd>,
    gate: Option<Gate>,
    cap: Option<OverBudgetCap>,
    used: usize,
}

#[derive(Clone)]
struct OverBudgetCap {
    what: &'static str,
    limit: Cap,
}

#[derive(Clone)]
enum Cap {
    Fixed(usize),
    /// Follows the pipe's receive limit, which a pipe layer lowers for its
    /// handshake (Noise: 1 KiB): the cap holds before the WebSocket library
    /// buffers a message, not after.
    Message(sp_core::layer::RecvLimit),
}

impl Cap {
    fn get(&self) -> usize {
        match self {
            Cap::Fixed(n) => *n,
            Cap::Message(l) => message_budget(l.get()),
        }
    }
}

/// The bytes a message of at most `limit` bytes may take on the wire while
/// it is read: itself twice over (frame headers and interleaved control
/// frames), one read buffer, and what that read may bring of the next
/// message (bounded by the limit, so a small handshake cap stays small).
pub(crate) fn message_budget(limit: usize) -> usize {
    limit
        .saturating_mul(2)
        .saturating_add(crate::READ_BUFFER)
        .saturating_add(limit.min(64 << 10))
}

impl WsIo {
    /// A listener's stream, `prefix` read already (the request head, and
    /// whatever came with it, which the library refuses as junk).
    pub(crate) fn accepted(inner: Box<dyn ByteStream>, prefix: Vec<u8>) -> WsIo {
        WsIo::new(inner, prefix, None)
    }
    /// A dialer's stream.
    pub(crate) fn dialed(inner: Box<dyn ByteStream>) -> WsIo {
        WsIo::new(inner, Vec::new(), Some(HeadEnd::new()))
    }
    fn new(inner: Box<dyn ByteStream>, prefix: Vec<u8>, head: Option<HeadEnd>) -> WsIo {
        WsIo {
            inner,
            held: prefix.as_slice().into(),
            head,
            gate: None,
            cap: None,
            used: 0,
        }
    }
    /// From now on (the handshake done), frames larger than
    /// [`crate::gate::SMALL_FRAME`] reach the library only once `budget`
    /// covers what they announce, or once they have arrived whole.
    /// `max_frame`: the library's own frame limit.
    pub(crate) fn gate(&mut self, budget: sp_core::transport::AllocBudget, max_frame: usize) {
        self.gate = Some(Gate::new(budget, max_frame));
    }
    /// Caps the bytes read from now until the next [`WsIo::progress`].
    pub(crate) fn set_cap(&mut self, what: &'static str, limit: usize) {
        self.cap = Some(OverBudgetCap {
            what,
            limit: Cap::Fixed(limit),
        });
        self.used = 0;
    }
    /// Caps the bytes read between two messages by the message budget of
    /// the pipe's current receive limit, read at every read.
    pub(crate) fn follow_limit(&mut self, what: &'static str, limit: sp_core::layer::RecvLimit) {
        self.cap = Some(OverBudgetCap {
            what,
            limit: Cap::Message(limit),
        });
        self.used = 0;
    }
    /// A message (or control frame) completed: the count starts again.
    pub(crate) fn progress(&mut self) {
        self.used = 0;
    }
    /// Answers the upgrade request with `status` instead of upgrading, and
    /// closes.
    pub(crate) async fn refuse(mut self, status: &str) {
        refuse(&mut self.inner, status).await;
    }
}

impl WsIo {
    /// The error when the bytes read since the last message, and `held`
    /// more, exceed the cap.
    fn over_cap(&self, held: usize) -> Option<io::Error> {
        let cap = self.cap.as_ref()?;
        let limit = cap.limit.get();
        (self.used.saturating_add(held) > limit).then(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                OverBudget {
                    what: cap.what,
                    limit,
                },
            )
        })
    }

    /// How many of `avail` (the bytes at the library's position) it may
    /// read now, at most `limit`.
    fn passable(&mut self, avail: &[u8], limit: usize) -> usize {
        if let Some(h) = &mut self.head {
            let (n, ended) = h.scan(&avail[..limit.min(avail.len())]);
            if ended {
                self.head = None;
            }
            return n;
        }
        match &mut self.gate {
            Some(g) => g.passable(avail, limit),
            None => limit.min(avail.len()),
        }
    }

    /// Reads more into `held`: as much as the frame held at its front
    /// still needs, one read's worth at most, so `held` grows only with
    /// what the peer sends.
    fn poll_hold(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let want = match &self.gate {
            Some(g) => g.wanted(&self.held),
            None => 1,
        }
        .clamp(1, crate::READ_BUFFER);
        let len = self.held.len();
        self.held.resize(len + want, 0);
        let mut rb = ReadBuf::new(&mut self.held[len..]);
        let r = Pin::new(&mut self.inner).poll_read(cx, &mut rb);
        let n = rb.filled().len();
        self.held.truncate(len + n);
        r.map_ok(|()| n)
    }

    /// Gives the library what it may read of `held` and the stream.
    fn poll_pass(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let start = buf.filled().len();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        // bounded: every turn reads bytes from the peer, or ends
        loop {
            if !self.held.is_empty() {
                let held = std::mem::take(&mut self.held);
                let n = self.passable(&held, buf.remaining());
                self.held = held;
                if n > 0 {
                    buf.put_slice(&self.held[..n]);
                    bytes::Buf::advance(&mut self.held, n);
                    return Poll::Ready(Ok(()));
                }
                // what waits here counts as read: a frame held for want of
                // budget must not outgrow the cap (a pipe layer's
                // handshake limit) the library would have enforced
                if let Some(e) = self.over_cap(self.held.len()) {
                    return Poll::Ready(Err(e));
                }
                match self.poll_hold(cx) {
                    Poll::Ready(Ok(0)) => {
                        // the stream ended on a held header: the library
                        // gets what there is and reports the truncation
                        if let Some(g) = &mut self.gate {
                            g.open();
                        }
                        self.head = None;
                    }
                    Poll::Ready(Ok(_)) => {}
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => return Poll::Pending,
                }
                continue;
            }
            match Pin::new(&mut self.inner).poll_read(cx, buf) {
                Poll::Ready(Ok(())) => {}
                other => return other,
            }
            let end = buf.filled().len();
            if end == start {
                return Poll::Ready(Ok(()));
            }
            let n = {
                let fresh = &buf.filled()[start..];
                self.passable(fresh, fresh.len())
            };
            if start + n < end {
                self.held.extend_from_slice(&buf.filled()[start + n..]);
                buf.set_filled(start + n);
            }
            if n > 0 {
                return Poll::Ready(Ok(()));
            }
        }
    }
}

impl AsyncRead for WsIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match this.poll_pass(cx, buf) {
            Poll::Ready(Ok(())) => {}
            other => return other,
        }
        this.used = this.used.saturating_add(buf.filled().len() - before);
        match this.over_cap(0) {
            Some(e) => Poll::Ready(Err(e)),
            None => Poll::Ready(Ok(())),
        }
    }
}

impl AsyncWrite for WsIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A connection whose request head was read and routed to a path.
pub(crate) struct Routed {
    pub(crate) io: WsIo,
    pub(crate) local_addr: String,
    pub(crate) peer_addr: String,
    pub(crate) peer_identity: Option<Vec<u8>>,
}

/// The counters of the socket listening on a path, known once it accepts.
type SocketCounters = Arc<OnceLock<Arc<Counters>>>;

/// A path's listener, as the port sees it.
struct Route {
    tx: mpsc::Sender<Routed>,
    counters: SocketCounters,
}

type Routes = Mutex<HashMap<String, Route>>;

/// Counts a refusal on the socket listening on `path`, or on every socket
/// listening on the port when the path is not known (see the module docs).
fn count(routes: &Routes, path: Option<&str>, reason: RejectReason) {
    let routes = routes.lock().unwrap_or_else(|e| e.into_inner());
    let on = |r: &Route| {
        if let Some(c) = r.counters.get() {
            c.rejected(reason);
        }
    };
    match path {
        Some(p) => routes.get(p).into_iter().for_each(on),
        None => routes.values().for_each(on),
    }
}

/// Why the port refused a connection, and the path it asked for if known.
struct Refused {
    reason: RejectReason,
    path: Option<String>,
    error: Error,
}

impl Refused {
    fn before_path(reason: RejectReason, error: Error) -> Refused {
        Refused {
            reason,
            path: None,
            error,
        }
    }
}

/// One bound port and its accept loop.
pub(crate) struct Port {
    key: String,
    local_addr: String,
    routes: Arc<Routes>,
    task: tokio::task::AbortHandle,
}

impl Drop for Port {
    fn drop(&mut self) {
        self.task.abort();
        if let Ok(mut reg) = registry().try_lock() {
            if reg.get(&self.key).is_some_and(|w| w.strong_count() == 0) {
                reg.remove(&self.key);
            }
        }
    }
}

fn registry() -> &'static tokio::sync::Mutex<HashMap<String, Weak<Port>>> {
    static R: OnceLock<tokio::sync::Mutex<HashMap<String, Weak<Port>>>> = OnceLock::new();
    R.get_or_init(Default::default)
}

/// One path's share of a port: what a `ws://` listener holds.
pub(crate) struct PathListener {
    port: Arc<Port>,
    path: String,
    rx: tokio::sync::Mutex<mpsc::Receiver<Routed>>,
    counters: SocketCounters,
}

impl PathListener {
    pub(crate) fn local_addr(&self) -> &str {
        &self.port.local_addr
    }
    /// The port counts its refusals on these from now on.
    pub(crate) fn count_on(&self, counters: Arc<Counters>) {
        let _ = self.counters.set(counters);
    }
    pub(crate) async fn accept(&self) -> Result<Routed> {
        self.rx.lock().await.recv().await.ok_or(Error::Closed)
    }
}

impl Drop for PathListener {
    fn drop(&mut self) {
        self.port
            .routes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.path);
    }
}

/// Registers `path` on `authority`, binding the port if no listener of this
/// process holds it yet.
pub(crate) async fn listen<S: StreamTransport>(
    streams: Arc<S>,
    authority: &str,
    path: &str,
    cfg: &WsConfig,
) -> Result<PathListener> {
    let mut reg = registry().lock().await;
    reg.retain(|_, w| w.strong_count() > 0);
    let wanted = format!("{}://{authority}", streams.name());
    let port = match reg.get(&wanted).and_then(Weak::upgrade) {
        Some(p) => p,
        None => {
            let l = streams.bind(authority).await?;
            let local_addr = l.local_addr();
            let key = format!("{}://{local_addr}", streams.name());
            let routes: Arc<Routes> = Arc::default();
            let task = tokio::spawn(accept_loop(l, routes.clone(), cfg.clone())).abort_handle();
            let p = Arc::new(Port {
                key: key.clone(),
                local_addr,
                routes,
                task,
            });
            reg.insert(key, Arc::downgrade(&p));
            p
        }
    };
    drop(reg);
    let (tx, rx) = mpsc::channel(ROUTE_QUEUE);
    let counters = SocketCounters::default();
    {
        let mut routes = port.routes.lock().unwrap_or_else(|e| e.into_inner());
        if routes.contains_key(path) {
            return Err(Error::Address {
                url: format!("{wanted}{path}"),
                reason: "another listener of this process already serves this path on this port; pick another path".into(),
            });
        }
        let route = Route {
            tx,
            counters: counters.clone(),
        };
        routes.insert(path.to_string(), route);
    }
    Ok(PathListener {
        port,
        path: path.to_string(),
        rx: tokio::sync::Mutex::new(rx),
        counters,
    })
}

async fn accept_loop(l: Box<dyn StreamListener>, routes: Arc<Routes>, cfg: WsConfig) {
    // Refusing newcomers at the cap let 128 idle connections lock every
    // client out, and evicting at random among all of them let a flood
    // kill the heads of clients a round trip away. Admission evicts from
    // the source (IP) holding the most instead, never the newcomer: the
    // stream's peer address is known before its own handshake (TLS for
    // wss) runs, which runs here too.
    let routing = Admission::new(cfg.max_routing);
    loop {
        let upgrade = match l.accept().await {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!(target: "spstack", error = %e, "websocket accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let source = source_of(upgrade.peer_addr());
        let peer = upgrade.peer_addr().to_string();
        let task_routes = routes.clone();
        let cfg = cfg.clone();
        let evicted = routing.spawn(&source, async move {
            let routes = task_routes;
            let t = cfg.route_timeout;
            match tokio::time::timeout(t, route(upgrade, &routes, &cfg)).await {
                Ok(Ok(())) => {}
                Ok(Err(r)) => {
                    tracing::debug!(target: "spstack", %peer, reason = ?r.reason, error = %r.error, "websocket request refused");
                    count(&routes, r.path.as_deref(), r.reason);
                }
                Err(_) => {
                    tracing::debug!(target: "spstack", %peer, "websocket request head not read within {t:?}");
                    count(&routes, None, RejectReason::HandshakeTimeout);
                }
            }
        });
        for _ in 0..evicted {
            tracing::debug!(target: "spstack", "too many websocket request heads being read; one of the source with the most was dropped");
            count(&routes, None, RejectReason::Evicted);
        }
    }
}

/// Finds the end of an HTTP head in `buf`, looking only at bytes from
/// `from` (minus the three a `\r\n\r\n` may straddle), so reading a head in
/// tiny pieces stays linear.
fn head_end(buf: &[u8], from: usize) -> Option<usize> {
    let start = from.saturating_sub(3);
    buf[start..]
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| start + i + 4)
}

async fn refuse(io: &mut Box<dyn ByteStream>, status: &str) {
    let resp = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    let _ = io.write_all(resp.as_bytes()).await;
    let _ = io.shutdown().await;
}

/// What a failure to read from the peer counts as.
fn io_refusal(e: std::io::Error) -> Refused {
    Refused::before_path(RejectReason::Io, e.into())
}

async fn route(
    upgrade: sp_core::transport::StreamUpgrade,
    routes: &Routes,
    cfg: &WsConfig,
) -> std::result::Result<(), Refused> {
    let conn = upgrade.await.map_err(|e| {
        let reason = match e {
            Error::Io(_) | Error::ConnectionClosed => RejectReason::Io,
            _ => RejectReason::LayerFailed,
        };
        Refused::before_path(reason, e)
    })?;
    let mut io = conn.io;
    let cap = cfg.max_request_bytes;
    let mut buf = Vec::with_capacity(1024.min(cap));
    let mut chunk = [0u8; 1024];
    let end = loop {
        let n = io.read(&mut chunk).await.map_err(io_refusal)?;
        if n == 0 {
            return Err(Refused::before_path(
                RejectReason::Io,
                Error::protocol("connection closed during the upgrade request"),
            ));
        }
        let from = buf.len();
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = head_end(&buf, from) {
            break end;
        }
        if buf.len() > cap {
            refuse(&mut io, "431 Request Header Fields Too Large").await;
            return Err(Refused::before_path(
                RejectReason::BadHeader,
                Error::protocol(format!(
                    "upgrade request head exceeds {cap} bytes (WsConfig::max_request_bytes)"
                )),
            ));
        }
    };
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let path = match req.parse(&buf[..end]) {
        Ok(httparse::Status::Complete(_)) => req.path.unwrap_or("/").to_string(),
        Ok(httparse::Status::Partial) | Err(_) => {
            refuse(&mut io, "400 Bad Request").await;
            return Err(Refused::before_path(
                RejectReason::BadHeader,
                Error::protocol("malformed HTTP upgrade request"),
            ));
        }
    };
    let path = path.split('?').next().unwrap_or("/").to_string();
    let tx = routes
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&path)
        .map(|r| r.tx.clone());
    let Some(tx) = tx else {
        refuse(&mut io, "404 Not Found").await;
        return Err(Refused::before_path(
            RejectReason::BadHeader,
            Error::protocol(format!("no listener for path {path:?}")),
        ));
    };
    let routed = Routed {
        io: WsIo::accepted(io, buf),
        local_addr: conn.local_addr,
        peer_addr: conn.peer_addr,
        peer_identity: conn.peer_identity,
    };
    match tx.try_send(routed) {
        Ok(()) => Ok(()),
        Err(mpsc::error::TrySendError::Full(mut r)) => {
            refuse(&mut r.io.inner, "503 Service Unavailable").await;
            Err(Refused {
                reason: RejectReason::ListenerFull,
                error: Error::protocol(format!(
                    "listener for {path:?} is not accepting fast enough"
                )),
                path: Some(path),
            })
        }
        Err(mpsc::error::TrySendError::Closed(mut r)) => {
            refuse(&mut r.io.inner, "404 Not Found").await;
            Err(Refused::before_path(
                RejectReason::BadHeader,
                Error::protocol(format!("listener for {path:?} closed")),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::head_end;

    #[test]
    fn head_end_across_reads() {
        let b = b"GET / HTTP/1.1\r\nHost: x\r\n\r\nrest";
        assert_eq!(head_end(b, 0), Some(b.len() - 4));
        // the terminator straddles the previous read
        assert_eq!(head_end(b, b.len() - 6), Some(b.len() - 4));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n", 0), None);
    }
}

//! # sp-ws: WebSocket for spstack
//!
//! Three pieces, at three places in the stack:
//!
//! * [`Ws`]: the SP WebSocket mapping (`ws://host:port/path`, `wss://...`)
//!   as a transport over any [`StreamTransport`](sp_core::transport::StreamTransport)
//!   (TCP, TLS over TCP). Wire-compatible with nng and nanomsg: the
//!   subprotocol `<peer>.sp.nanomsg.org` carries the protocol, one SP message
//!   is one binary WebSocket message, no 8-byte SP header.
//! * [`Opcodes`]: a message layer above the scalability protocol that lets
//!   applications exchange text, binary and close frames end to end (through
//!   devices and over any transport).
//! * [`mod@axum`]: an spstack endpoint mounted as a route of an axum `Router`.
//!
//! ```no_run
//! # #[tokio::main] async fn main() -> sp_core::Result<()> {
//! use std::sync::Arc;
//! use sp_core::SocketBuilder;
//! use sp_transports::Tcp;
//!
//! let rep = SocketBuilder::new(sp_protocols::raw::Rep0Raw)
//!     .cooked(sp_protocols::Rep0)
//!     .transport(Arc::new(sp_ws::Ws::new(Tcp)))
//!     .build();
//! let ep = rep.listen("ws://127.0.0.1:0/sp").await?;
//! println!("nng peers can dial {}", ep.url());
//! # Ok(()) }
//! ```
#![warn(missing_docs)]
#![deny(clippy::unwrap_used)]

pub mod axum;
mod driver;
mod gate;
mod opcodes;
mod port;
mod transport;

use std::time::Duration;

use sp_core::{Announcement, Error, ProtocolId, Result};

pub use opcodes::{binary, close, text, CloseCode, Frame, OpcodeError, OpcodeStats, Opcodes};
pub use transport::Ws;

/// Settings of the WebSocket framing. Every limit is finite.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct WsConfig {
    /// Send a ping after this long without hearing from the peer. `None`
    /// turns keepalive off. Default 30 s.
    pub ping_interval: Option<Duration>,
    /// Drop the pipe if nothing (a pong or anything else) arrives this long
    /// after a ping. Default 30 s.
    pub ping_timeout: Duration,
    /// Largest single frame accepted (fragments of a message are checked one
    /// by one; the whole message against the socket's `recv_max_size`).
    /// Default 1 MiB, as nng's `NNG_OPT_WS_RECVMAXFRAME`; nanomsg sends a
    /// message as one frame, so a lower default would refuse its large
    /// messages. The WebSocket library reserves a frame's whole length on
    /// its header, so over [`Ws`] a header announcing more than 16 KiB is
    /// held back until the socket's `recv_queue_bytes` budget covers the
    /// bytes still to come (shared by all its pipes) or they have arrived:
    /// peers announcing large frames and stalling cost the budget, not this
    /// much each. The [`mod@axum`] endpoint hides its stream and cannot.
    pub max_frame_size: usize,
    /// Outgoing messages larger than this go out as a binary frame and
    /// continuation frames of at most this size. Default 64 KiB, what nng
    /// sends (`NNG_OPT_WS_SENDMAXFRAME`): nng refuses a single frame over
    /// its 1 MiB receive limit even when the message would fit.
    pub send_frame_size: usize,
    /// Bytes tungstenite buffers before it writes. Default 64 KiB.
    pub write_buffer_size: usize,
    /// Most bytes queued for writing, a message included; a larger outgoing
    /// message fails the pipe. Default 64 MiB.
    pub max_write_buffer_size: usize,
    /// Most bytes of an HTTP upgrade request (request line and headers).
    /// Default 16 KiB. (tungstenite's own cap is 64 KiB.)
    pub max_request_bytes: usize,
    /// Deadline to read an upgrade request's head and route it by path, on a
    /// listener's port (for wss, the TLS handshake included); the socket's
    /// own handshake deadline runs after it. Counted as
    /// `RejectReason::HandshakeTimeout`. Default 10 s.
    pub route_timeout: Duration,
    /// Connections a port reads request heads from at once; beyond it one
    /// of the source (IP address, IPv6 /64) holding the most, chosen at
    /// random and never the newest, is dropped, as the socket's half-open
    /// cap does ([`sp_core::admission`]): idle connections cannot lock
    /// clients out, and a flood from a few addresses evicts its own
    /// connections, not a client's. Counted as `RejectReason::Evicted` on
    /// the sockets listening on the port (every one of them: the path is
    /// not known yet). Default 128.
    pub max_routing: usize,
    /// Web origins (`"https://app.example.com"`, `scheme://host[:port]`) whose
    /// pages may open this endpoint, besides the endpoint's own origin;
    /// `"*"` allows any. A browser always sends `Origin`, so without this
    /// check any page a user visits could talk SP to a localhost or
    /// intranet listener. Upgrades without an `Origin` header (nng,
    /// nanomsg, spstack, tungstenite: programs, not pages) are not affected.
    /// Default: empty, only same-origin pages.
    pub allowed_origins: Vec<String>,
}

impl Default for WsConfig {
    fn default() -> Self {
        WsConfig {
            ping_interval: Some(Duration::from_secs(30)),
            ping_timeout: Duration::from_secs(30),
            max_frame_size: 1 << 20,
            send_frame_size: 64 << 10,
            write_buffer_size: 64 << 10,
            max_write_buffer_size: 64 << 20,
            max_request_bytes: 16 << 10,
            route_timeout: Duration::from_secs(10),
            max_routing: 128,
            allowed_origins: Vec::new(),
        }
    }
}

/// Whether an upgrade carrying `origin` (the `Origin` header, if any) for
/// `host` (its `Host` header) may proceed under `allowed`. Same-origin
/// means the origin's authority is the host the request was sent to, the
/// rule browsers' own WebSocket servers commonly apply.
pub(crate) fn origin_allowed(allowed: &[String], origin: Option<&str>, host: Option<&str>) -> bool {
    let Some(origin) = origin.map(str::trim) else {
        return true;
    };
    if allowed
        .iter()
        .any(|a| a == "*" || a.eq_ignore_ascii_case(origin))
    {
        return true;
    }
    let authority = origin.split_once("://").map(|(_, a)| a).unwrap_or("");
    match host {
        Some(h) => !authority.is_empty() && authority.eq_ignore_ascii_case(h.trim()),
        None => false,
    }
}

/// The refusal's text (for a 403) when the upgrade request's `Origin` is
/// not allowed by [`origin_allowed`]; `None` when it may proceed.
pub(crate) fn refused_origin(
    allowed: &[String],
    headers: &tokio_tungstenite::tungstenite::http::HeaderMap,
) -> Option<String> {
    use tokio_tungstenite::tungstenite::http::header;
    let h = |n| headers.get(n).and_then(|v| v.to_str().ok());
    let origin = h(header::ORIGIN);
    if origin_allowed(allowed, origin, h(header::HOST)) {
        return None;
    }
    let origin = origin.unwrap_or("");
    Some(format!("Origin {origin:?} may not open this SP endpoint; add it to WsConfig::allowed_origins if its pages should\n"))
}

impl WsConfig {
    /// Allows pages of `origin` (`scheme://host[:port]`, or `"*"` for any) to
    /// open this endpoint. See [`WsConfig::allowed_origins`].
    pub fn allow_origin(mut self, origin: impl Into<String>) -> Self {
        self.allowed_origins.push(origin.into());
        self
    }
    /// Sets `ping_interval` (`None`: no keepalive).
    pub fn ping_interval(mut self, v: Option<Duration>) -> Self {
        self.ping_interval = v;
        self
    }
    /// Sets `ping_timeout`.
    pub fn ping_timeout(mut self, v: Duration) -> Self {
        self.ping_timeout = v;
        self
    }
    /// Sets `max_frame_size`.
    pub fn max_frame_size(mut self, v: usize) -> Self {
        self.max_frame_size = v;
        self
    }
    /// Sets `send_frame_size` (at least 1 byte).
    pub fn send_frame_size(mut self, v: usize) -> Self {
        self.send_frame_size = v.max(1);
        self
    }
    /// Sets `max_request_bytes`.
    pub fn max_request_bytes(mut self, v: usize) -> Self {
        self.max_request_bytes = v;
        self
    }
    /// Sets `route_timeout`.
    pub fn route_timeout(mut self, v: Duration) -> Self {
        self.route_timeout = v;
        self
    }
    /// Sets `max_routing` (at least 1).
    pub fn max_routing(mut self, v: usize) -> Self {
        self.max_routing = v.max(1);
        self
    }

    /// The tungstenite limits for a pipe that accepts messages up to
    /// `recv_max` bytes.
    pub(crate) fn tungstenite(
        &self,
        recv_max: usize,
    ) -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
        let ceiling = message_ceiling(recv_max);
        tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
            .read_buffer_size(READ_BUFFER)
            .write_buffer_size(self.write_buffer_size)
            .max_write_buffer_size(self.max_write_buffer_size.max(self.write_buffer_size + 1))
            .max_message_size(Some(ceiling))
            .max_frame_size(Some(self.max_frame_size.min(ceiling)))
            .accept_unmasked_frames(false)
    }
}

/// The largest WebSocket message the library will assemble. A pipe layer
/// frames a body of `recv_max` bytes into more than `recv_max` (Noise
/// records: up to 17 × 65,535 bytes for 1 MiB) and raises the pipe's
/// receive limit to match, so the library's own static limit cannot be
/// `recv_max`: it is this ceiling, and the exact limit of the moment (1 KiB
/// during a Noise handshake) is enforced by the reader's byte budget before
/// buffering and checked again on every message.
pub(crate) fn message_ceiling(recv_max: usize) -> usize {
    recv_max.saturating_mul(2).saturating_add(64 << 10)
}

/// tungstenite's read buffer (allocated per connection).
pub(crate) const READ_BUFFER: usize = 16 << 10;

/// The protocol an SP protocol talks to (REQ ↔ REP, PUB ↔ SUB...), which
/// the WebSocket mapping names in the dialer's subprotocol: from the one
/// registry of protocols, so a protocol from another crate has a mapping too.
pub fn peer_of(p: ProtocolId) -> Option<ProtocolId> {
    p.peer()
}

fn by_name(name: &str) -> Option<ProtocolId> {
    ProtocolId::by_name(name).filter(|p| p.name() == name)
}

/// Response header in which an spstack listener that refuses an upgrade
/// names its own subprotocol token, so that the client can say which layer
/// differs (other SP implementations ignore it).
pub const STACK_HEADER: &str = "x-sp-subprotocol";

/// Why two announcements do not fit, as the structured error the TCP
/// mapping gives: `local` is this side, `peer` what the other side
/// announces about itself.
pub(crate) fn mismatch(local: &Announcement, peer: &Announcement) -> Error {
    let expected = local.protocol.peer().unwrap_or(local.protocol);
    match local.check_peer(expected, peer) {
        Err(e) => e,
        Ok(()) => Error::Mismatch {
            index: None,
            ours: None,
            theirs: None,
        },
    }
}

/// Suffix of the subprotocol of a plain stack (the SP WebSocket mapping).
pub const SP_SUFFIX: &str = ".sp.nanomsg.org";
/// Suffix of the subprotocol of a stack with pipe layers (spstack only).
pub const LAYERED_SUFFIX: &str = ".spstack";

/// The `Sec-WebSocket-Protocol` token naming the listener's protocol
/// `listener` for a stack with the pipe layers `layers`.
///
/// A plain stack uses the SP mapping's `<proto>.sp.nanomsg.org`. A stack with
/// pipe layers uses `<proto>.<hex of the layer list>.spstack`: nng and
/// nanomsg answer that with HTTP 400, a clean refusal, and an spstack
/// listener accepts it only if its own layer list is the same, so the
/// token is the whole announcement of both sides.
///
/// ```
/// use sp_core::ProtocolId;
/// assert_eq!(sp_ws::subprotocol(ProtocolId::REP0, &[]), "rep.sp.nanomsg.org");
/// let t = sp_ws::subprotocol(ProtocolId::REP0, &["noise/1".to_string()]);
/// assert!(t.starts_with("rep.") && t.ends_with(".spstack"));
/// ```
pub fn subprotocol(listener: ProtocolId, layers: &[String]) -> String {
    if layers.is_empty() {
        return format!("{}{SP_SUFFIX}", listener.name());
    }
    let enc = Announcement {
        protocol: listener,
        layers: layers.to_vec(),
    }
    .encode();
    // bytes 8..10 are the list length; the token's length already says it
    let hex: String = enc[10..].iter().map(|b| format!("{b:02x}")).collect();
    format!("{}.{hex}{LAYERED_SUFFIX}", listener.name())
}

/// Parses a subprotocol token back into the protocol it names and the
/// layer list it carries. `None` if it is not an SP token.
pub fn parse_subprotocol(token: &str) -> Option<Announcement> {
    let token = token.trim();
    if let Some(name) = token.strip_suffix(SP_SUFFIX) {
        return Some(Announcement {
            protocol: by_name(name)?,
            layers: Vec::new(),
        });
    }
    let rest = token.strip_suffix(LAYERED_SUFFIX)?;
    let (name, hex) = rest.split_once('.')?;
    if hex.len() % 2 != 0 || hex.len() > 2 * sp_core::MAX_LAYER_LIST || hex.is_empty() {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect();
    let layers = Announcement::parse_layers(&bytes?).ok()?;
    Some(Announcement {
        protocol: by_name(name)?,
        layers,
    })
}

/// The peer announcement a listener with announcement `local` derives from
/// the subprotocols a client offered, and the token to answer with.
pub(crate) fn select_subprotocol<'a>(
    local: &Announcement,
    offered: impl Iterator<Item = &'a str>,
) -> Result<(String, Announcement)> {
    let want = subprotocol(local.protocol, &local.layers);
    let peer = peer_of(local.protocol)
        .ok_or_else(|| Error::protocol("this protocol has no WebSocket mapping"))?;
    let mut other = None;
    for tok in offered.flat_map(|h| h.split(',')).map(str::trim) {
        if tok == want {
            return Ok((
                want,
                Announcement {
                    protocol: peer,
                    layers: local.layers.clone(),
                },
            ));
        }
        if other.is_none() {
            other = parse_subprotocol(tok);
        }
    }
    match other {
        // an SP client of another protocol or stack: what the TCP mapping
        // reports, naming the first differing layer. Its token names the
        // protocol it wants to talk to; it speaks that one's peer.
        Some(o) => Err(mismatch(
            local,
            &Announcement {
                protocol: o.protocol.peer().unwrap_or(o.protocol),
                layers: o.layers,
            },
        )),
        None => Err(Error::protocol(format!(
            "the client offered no SP subprotocol; a {} endpoint needs {want:?}",
            local.protocol
        ))),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ws_origin_check_allows_programs_same_origin_and_the_list_only() {
        use super::origin_allowed as ok;
        let none: Vec<String> = Vec::new();
        assert!(
            ok(&none, None, Some("127.0.0.1:80")),
            "no Origin: not a page"
        );
        assert!(ok(&none, Some("http://127.0.0.1:80"), Some("127.0.0.1:80")));
        assert!(!ok(
            &none,
            Some("http://evil.example"),
            Some("127.0.0.1:80")
        ));
        assert!(!ok(&none, Some("null"), Some("127.0.0.1:80")));
        assert!(!ok(&none, Some("http://127.0.0.1:80"), None));
        let list = vec!["https://app.example".to_string()];
        assert!(ok(&list, Some("https://app.example"), Some("10.0.0.1:1")));
        assert!(!ok(
            &list,
            Some("https://app.example.evil"),
            Some("10.0.0.1:1")
        ));
        assert!(ok(&["*".to_string()], Some("http://x"), None));
    }

    use super::*;

    #[test]
    fn tokens_roundtrip() {
        let layers = vec!["noise/1".to_string(), "crc/1".to_string()];
        let t = subprotocol(ProtocolId::PULL0, &layers);
        let a = parse_subprotocol(&t).expect("parses");
        assert_eq!(a.protocol, ProtocolId::PULL0);
        assert_eq!(a.layers, layers);
        let p = parse_subprotocol("pair1.sp.nanomsg.org").expect("parses");
        assert_eq!(p.protocol, ProtocolId::PAIR1);
        assert!(parse_subprotocol("chat.example.org").is_none());
        assert!(parse_subprotocol("rep.zz.spstack").is_none());
    }

    #[test]
    fn listener_selects_its_own_name() {
        let local = Announcement {
            protocol: ProtocolId::REP0,
            layers: vec![],
        };
        let (tok, peer) =
            select_subprotocol(&local, ["chat, rep.sp.nanomsg.org"].into_iter()).expect("ok");
        assert_eq!(tok, "rep.sp.nanomsg.org");
        assert_eq!(peer.protocol, ProtocolId::REQ0);
        // a REP client (its token names REQ) is the wrong protocol
        let e =
            select_subprotocol(&local, ["req.sp.nanomsg.org"].into_iter()).expect_err("mismatch");
        assert!(
            matches!(&e, Error::Mismatch { index: None, ours: Some(o), theirs: Some(t) } if o.starts_with("req") && t.starts_with("rep")),
            "{e:?}"
        );
        // the right protocol over another pipe-layer stack names the layer
        let layered = Announcement {
            protocol: ProtocolId::REP0,
            layers: vec!["noise/2".into()],
        };
        let tok = subprotocol(ProtocolId::REP0, &["xor/1".to_string()]);
        let e = select_subprotocol(&layered, [tok.as_str()].into_iter()).expect_err("layers");
        assert!(
            matches!(&e, Error::Mismatch { index: Some(0), ours: Some(o), theirs: Some(t) } if o == "noise/2" && t == "xor/1"),
            "{e:?}"
        );
        assert!(select_subprotocol(&local, std::iter::empty())
            .expect_err("missing")
            .to_string()
            .contains("offered no"));
    }
}

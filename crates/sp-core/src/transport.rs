//! What a transport provides: connections that announce themselves and then
//! carry frames. A transport knows nothing of the protocol above it.

use crate::layer::{BoxFuture, ComponentInfo, Connection, PipeInfo};
use crate::{Announcement, Result};

/// Per-pipe settings a transport needs.
#[derive(Clone, Debug)]
pub struct PipeConfig {
    /// Largest frame accepted, checked before allocating.
    pub recv_max_size: usize,
    /// Free bytes to leave in front of each received frame.
    pub recv_headroom: usize,
    /// What this side announces.
    pub local: Announcement,
}

impl PipeConfig {
    /// What a transport knows about a pipe it just announced.
    pub fn pipe_info(
        &self,
        transport: &'static str,
        local_addr: String,
        peer_addr: String,
        peer: Announcement,
        dialer: bool,
    ) -> PipeInfo {
        PipeInfo {
            transport,
            local_addr,
            peer_addr,
            local: self.local.clone(),
            peer,
            peer_identity: None,
            recv_max_size: self.recv_max_size,
            dialer,
        }
    }
}

/// A transport: `tcp`, `ipc`, `inproc`...
pub trait Transport: Send + Sync + 'static {
    /// URL schemes it serves, e.g. `["tcp", "tcp4", "tcp6"]`.
    fn schemes(&self) -> &'static [&'static str];
    /// Its framing, for `describe` (e.g. the u64 BE length of TCP).
    fn info(&self) -> ComponentInfo;
    /// Connects; the announcement exchange is left to [`Unannounced::announce`].
    fn dial(&self, url: &str) -> BoxFuture<'static, Result<Box<dyn Unannounced>>>;
    /// Binds.
    fn listen(&self, url: &str) -> BoxFuture<'static, Result<Box<dyn Listener>>>;
}

/// A bound listener.
pub trait Listener: Send + Sync {
    /// The bound address as a URL (a port of 0 is resolved).
    fn url(&self) -> String;
    /// Waits for the next connection.
    fn accept(&self) -> BoxFuture<'_, Result<Box<dyn Unannounced>>>;
}

/// A connected transport stream before the announcement exchange.
pub trait Unannounced: Send {
    /// The peer's address.
    fn peer_addr(&self) -> String;
    /// Exchanges announcements (for TCP and IPC: the 8-byte SP header) and
    /// returns a framed connection. Runs under the socket's handshake deadline.
    fn announce(
        self: Box<Self>,
        cfg: PipeConfig,
        dialer: bool,
    ) -> BoxFuture<'static, Result<Connection>>;
}

/// Splits `scheme://rest`.
pub fn split_url(url: &str) -> Option<(&str, &str)> {
    let i = url.find("://")?;
    Some((&url[..i], &url[i + 3..]))
}

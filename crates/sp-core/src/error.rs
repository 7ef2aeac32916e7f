//! The one error type of the core.

use std::io;
use std::time::Duration;

/// Why an operation or a pipe failed. Messages say what happened and what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The socket was closed; create a new one.
    #[error("socket closed")]
    Closed,
    /// A send or receive did not complete within its timeout.
    #[error("timed out after {0:?}")]
    TimedOut(Duration),
    /// The operation is not valid in this state (e.g. recv on a REQ context
    /// with no request outstanding: send a request first).
    #[error("invalid state: {0}")]
    State(&'static str),
    /// This protocol cannot do that (e.g. send on PULL).
    #[error("not supported by this protocol: {0}")]
    NotSupported(&'static str),
    /// The URL could not be parsed or its scheme has no transport.
    #[error("bad address {url:?}: {reason}")]
    Address {
        /// The address given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A message is larger than the receive limit (`Options::recv_max_size`).
    #[error("message of {size} bytes exceeds the limit of {limit} bytes; raise recv_max_size if this peer is trusted")]
    TooLarge {
        /// Announced size.
        size: u64,
        /// The limit in force.
        limit: usize,
    },
    /// The peer broke the wire protocol; the pipe was closed.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The peer speaks an incompatible SP protocol or stack of pipe layers.
    /// `index` is the first pipe layer (0 nearest the transport) that
    /// differs, `None` when the protocols themselves do not fit; `ours` and
    /// `theirs` are what each side has there (`None`: nothing, e.g. a plain
    /// nng peer has no pipe layer). Fix the stack on one side.
    #[error("peer mismatch: {}", mismatch_text(*.index, .ours.as_deref(), .theirs.as_deref()))]
    Mismatch {
        /// The first differing pipe layer; `None` for the protocol.
        index: Option<usize>,
        /// This side's layer (or the protocol this side needs).
        ours: Option<String>,
        /// The peer's layer (or the protocol it speaks).
        theirs: Option<String>,
    },
    /// A pipe layer refused the peer (authentication, checksum...).
    #[error("pipe layer {layer:?} failed: {reason}")]
    Layer {
        /// The layer's name.
        layer: String,
        /// What went wrong.
        reason: String,
    },
    /// The handshake did not finish before the deadline.
    #[error("handshake did not complete within {0:?}; the peer may not be an SP endpoint")]
    HandshakeTimeout(Duration),
    /// The peer closed the connection.
    #[error("connection closed by peer")]
    ConnectionClosed,
    /// A keepalive gave up on the peer: nothing arrived from it for `after`.
    /// It vanished without closing (power loss, partition), froze, or the
    /// link is down. The pipe is closed and counted as
    /// `RejectReason::Unresponsive`; a dialer redials.
    #[error("{by}: nothing heard from the peer for {after:?}; it is gone, frozen or unreachable")]
    PeerSilent {
        /// What noticed (`heartbeat/1`, the WebSocket keepalive).
        by: String,
        /// How long the peer was silent.
        after: Duration,
    },
    /// The peer is a plain SP endpoint (nng, nanomsg, a socket without
    /// pipe layers): it answered with the plain header and refuses the
    /// layered one this side sent. Raised only by a dialer whose pipe
    /// layers are all optional; it redials the endpoint plain at once.
    /// Counted as `RejectReason::PlainPeer`.
    #[error("the peer {peer:?} is a plain SP endpoint and refuses pipe layers; redialing it plain (without {layers:?})")]
    PlainPeer {
        /// The peer's address.
        peer: String,
        /// The pipe layers this side will run without.
        layers: Vec<String>,
    },
    /// An operating-system I/O error.
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
}

/// Result with the core error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn mismatch_text(index: Option<usize>, ours: Option<&str>, theirs: Option<&str>) -> String {
    match (index, ours, theirs) {
        (None, Some(o), Some(t)) => format!("peer speaks {t}, this socket needs {o}"),
        (None, Some(o), None) => format!("the peer does not speak {o}"),
        (None, None, Some(t)) => format!("peer speaks {t}, which this socket cannot talk to"),
        (None, None, None) => "the peer's stack does not fit this one".to_string(),
        (Some(i), Some(o), Some(t)) => {
            format!("pipe layer {i} differs: ours is {o:?}, the peer's is {t:?}")
        }
        (Some(i), Some(o), None) => format!(
            "pipe layer {i} {o:?} is missing on the peer (a plain nng/nanomsg peer has none)"
        ),
        (Some(i), None, Some(t)) => {
            format!("the peer has pipe layer {i} {t:?} that this stack lacks")
        }
        (Some(i), None, None) => format!("pipe layer {i} differs"),
    }
}

impl Error {
    /// A protocol mismatch: this side needs `ours`, the peer speaks `theirs`.
    pub fn protocol_mismatch(ours: impl Into<String>, theirs: impl Into<String>) -> Error {
        Error::Mismatch {
            index: None,
            ours: Some(ours.into()),
            theirs: Some(theirs.into()),
        }
    }
    /// The name of the pipe layer a failure or mismatch is about, if any.
    pub fn layer_name(&self) -> Option<&str> {
        match self {
            Error::Layer { layer, .. } => Some(layer),
            Error::Mismatch {
                index: Some(_),
                ours,
                theirs,
            } => ours.as_deref().or(theirs.as_deref()),
            _ => None,
        }
    }
    /// A protocol error with a formatted reason.
    pub fn protocol(reason: impl Into<String>) -> Error {
        Error::Protocol(reason.into())
    }
    /// A layer failure.
    pub fn layer(layer: impl Into<String>, reason: impl Into<String>) -> Error {
        Error::Layer {
            layer: layer.into(),
            reason: reason.into(),
        }
    }
}

//! What a QUIC transport counted: every connection it closed or refused,
//! by reason.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default, Debug)]
pub(crate) struct Counters {
    pub(crate) retries: AtomicU64,
    pub(crate) handshake_failed: AtomicU64,
    pub(crate) abandoned: AtomicU64,
    pub(crate) closed_protocol_error: AtomicU64,
    pub(crate) closed_mismatch: AtomicU64,
    pub(crate) closed_too_large: AtomicU64,
    pub(crate) closed_normally: AtomicU64,
    pub(crate) linger_expired: AtomicU64,
}

/// Counters of one QUIC transport (all its listeners and dials).
///
/// Datagrams quinn drops because they do not decrypt, or name no
/// connection, are not among them: quinn exposes no counter for those (its
/// per-connection count of authentication failures is private, used only
/// for the AEAD integrity limit, and `Endpoint::stats()` counts handshakes
/// only); they are logged at `debug`/`trace` under the target `quinn_proto`.
/// See `docs/quic-mapping.md` §10.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct QuicStats {
    /// Retry packets sent to clients whose address was not validated while
    /// the listener was busy (`QuicConfig::retry_above`).
    pub retries: u64,
    /// QUIC/TLS handshakes that failed (certificates, ALPN, timeouts).
    pub handshake_failed: u64,
    /// Connections closed with `SP_HANDSHAKE_TIMEOUT`: the SP handshake was
    /// given up (deadline passed, or evicted under the half-open cap).
    pub abandoned: u64,
    /// Closed with `SP_PROTOCOL_ERROR` (malformed SP header or frame).
    pub closed_protocol_error: u64,
    /// Closed with `SP_MISMATCH` (protocol or pipe layers do not fit).
    pub closed_mismatch: u64,
    /// Closed with `SP_TOO_LARGE` (a message above `recv_max_size`).
    pub closed_too_large: u64,
    /// Closed with `SP_NO_ERROR` after the pipe ended.
    pub closed_normally: u64,
    /// Normal closes whose last bytes were not acknowledged within
    /// `QuicConfig::close_linger` (they may not have arrived).
    pub linger_expired: u64,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> QuicStats {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        QuicStats {
            retries: g(&self.retries),
            handshake_failed: g(&self.handshake_failed),
            abandoned: g(&self.abandoned),
            closed_protocol_error: g(&self.closed_protocol_error),
            closed_mismatch: g(&self.closed_mismatch),
            closed_too_large: g(&self.closed_too_large),
            closed_normally: g(&self.closed_normally),
            linger_expired: g(&self.linger_expired),
        }
    }
}

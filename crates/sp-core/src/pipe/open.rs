//! Opening a pipe: the announcement exchange, the stack-wide peer check and
//! every pipe layer's handshake, all under the handshake deadline. A failure
//! is counted, traced and raised as a [`PipeEvent::Refused`](crate::PipeEvent).

use tower::ServiceExt;
use tracing::field::{display, Empty};
use tracing::{info_span, Instrument, Span};

use crate::core::Core;
use crate::layer::RecvLimit;
use crate::stats::RejectReason;
use crate::transport::{PipeConfig, Unannounced};
use crate::{Connection, Error, Result};

impl Core {
    pub(crate) fn pipe_config(&self) -> PipeConfig {
        PipeConfig {
            recv_max_size: self.opts.recv_max_size,
            recv_headroom: self.router.recv_headroom(),
            local: self.announce.clone(),
            recv_limit: RecvLimit::new(self.opts.recv_max_size),
            counters: self.counters.clone(),
            alloc_budget: self.alloc_budget.clone(),
            plain_peer_ok: self.plain_peer_ok,
        }
    }

    /// Announcement exchange, peer check, pipe layer handshakes, inside the
    /// span the pipe keeps for its whole life (returned with the connection
    /// for `attach`): what a layer logs during its handshake and why a pipe
    /// was refused carry the peer and the stack.
    ///
    /// `plain`: a dialer that learned its peer is plain sends the plain
    /// header and runs the pipe without pipe layers (only when every layer
    /// is optional, [`Core::plain_peer_ok`]).
    pub(crate) async fn open_pipe(
        &self,
        raw: Box<dyn Unannounced>,
        dialer: bool,
        plain: bool,
    ) -> Result<(Connection, Span)> {
        let peer = raw.peer_addr();
        // the id once it joins; the transport and the peer's protocol once
        // its announcement is read; `plain` when it runs without its layers
        let span = info_span!(target: "spstack", "pipe", id = Empty, peer = %peer, dialer, transport = Empty, protocol = self.spec.name, peer_protocol = Empty, stack = ?self.announce.layers, plain = Empty);
        let deadline = self.opts.handshake_timeout;
        let mut cfg = self.pipe_config();
        let plain_ok = self.plain_peer_ok;
        let plain = plain && plain_ok;
        if plain {
            cfg.local.layers.clear();
        }
        let upgrade = self.upgrade.clone();
        let expected = self.spec.peer;
        let local = self.announce.clone();
        let link = self.link();
        let peer_addr = peer.clone();
        // the layered attempt of a dialer that may run plain met a plain peer
        let plain_peer = move || {
            (
                RejectReason::PlainPeer,
                Error::PlainPeer {
                    peer: peer_addr.clone(),
                    layers: local.layers.clone(),
                },
            )
        };
        let may_fall_back = dialer && plain_ok && !plain;
        let local = self.announce.clone();
        let work = async move {
            // a stream layer under the framing (TLS, WebSocket) reports its
            // own failures as layer errors: count them as such
            let mut conn = raw.announce(cfg, dialer).await.map_err(|e| match e {
                // a transport that checks the peer itself (QUIC) saw a peer
                // without any pipe layer (when the peer's header arrived
                // before its refusal)
                Error::Mismatch {
                    index: Some(0),
                    ours: Some(_),
                    theirs: None,
                } if may_fall_back => plain_peer(),
                Error::Layer { .. } => (RejectReason::LayerFailed, e),
                Error::Mismatch { index: None, .. } => (RejectReason::ProtocolMismatch, e),
                Error::Mismatch { .. } => (RejectReason::LayerMismatch, e),
                e => (RejectReason::BadHeader, e),
            })?;
            conn.info.link = link;
            let mismatch = |conn: &Connection, e| {
                let r = if conn.info.peer.protocol != expected {
                    RejectReason::ProtocolMismatch
                } else {
                    RejectReason::LayerMismatch
                };
                (r, e)
            };
            if plain_ok && conn.info.local.layers.is_empty() {
                // this side sent (dialer) or answered (listener) the plain
                // header: the pipe runs without pipe layers, no handshakes
                conn.info
                    .local
                    .check_peer(expected, &conn.info.peer)
                    .map_err(|e| mismatch(&conn, e))?;
                return Ok(conn);
            }
            if may_fall_back
                && conn.info.peer.layers.is_empty()
                && conn.info.peer.protocol == expected
            {
                return Err(plain_peer());
            }
            local
                .check_peer(expected, &conn.info.peer)
                .map_err(|e| mismatch(&conn, e))?;
            let svc = upgrade
                .oneshot(conn)
                .await
                .map_err(|e| (RejectReason::LayerFailed, e))?;
            Ok::<_, (RejectReason, Error)>(svc)
        };
        let res = match tokio::time::timeout(deadline, work)
            .instrument(span.clone())
            .await
        {
            Ok(r) => r,
            Err(_) => Err((
                RejectReason::HandshakeTimeout,
                Error::HandshakeTimeout(deadline),
            )),
        };
        if let Ok(conn) = &res {
            span.record("transport", conn.info.transport);
            span.record("peer_protocol", display(conn.info.peer.protocol));
            if conn.info.local.layers.len() < self.announce.layers.len() {
                span.record("plain", true);
                tracing::info!(target: "spstack", layers = ?self.announce.layers, "the peer is plain: this pipe runs without pipe layers");
            }
        }
        let _in = span.enter();
        res.map(|conn| (conn, span.clone())).map_err(|(reason, e)| {
            let reason = match (&reason, &e) {
                (RejectReason::BadHeader, Error::Io(_) | Error::ConnectionClosed) => {
                    RejectReason::Io
                }
                _ => reason,
            };
            self.refuse(
                &peer,
                reason,
                e.layer_name().map(str::to_string),
                e.to_string(),
            );
            e
        })
    }
}

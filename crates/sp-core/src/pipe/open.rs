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
        }
    }

    /// Announcement exchange, peer check, pipe layer handshakes, inside the
    /// span the pipe keeps for its whole life (returned with the connection
    /// for `attach`): what a layer logs during its handshake and why a pipe
    /// was refused carry the peer and the stack.
    pub(crate) async fn open_pipe(
        &self,
        raw: Box<dyn Unannounced>,
        dialer: bool,
    ) -> Result<(Connection, Span)> {
        let peer = raw.peer_addr();
        // the id once it joins; the transport and the peer's protocol once
        // its announcement is read
        let span = info_span!(target: "spstack", "pipe", id = Empty, peer = %peer, dialer, transport = Empty, protocol = self.spec.name, peer_protocol = Empty, stack = ?self.announce.layers);
        let deadline = self.opts.handshake_timeout;
        let cfg = self.pipe_config();
        let upgrade = self.upgrade.clone();
        let expected = self.spec.peer;
        let local = self.announce.clone();
        let link = self.link();
        let work = async move {
            // a stream layer under the framing (TLS, WebSocket) reports its
            // own failures as layer errors: count them as such
            let mut conn = raw.announce(cfg, dialer).await.map_err(|e| match e {
                Error::Layer { .. } => (RejectReason::LayerFailed, e),
                Error::Mismatch { index: None, .. } => (RejectReason::ProtocolMismatch, e),
                Error::Mismatch { .. } => (RejectReason::LayerMismatch, e),
                e => (RejectReason::BadHeader, e),
            })?;
            conn.info.link = link;
            local.check_peer(expected, &conn.info.peer).map_err(|e| {
                let r = if conn.info.peer.protocol != expected {
                    RejectReason::ProtocolMismatch
                } else {
                    RejectReason::LayerMismatch
                };
                (r, e)
            })?;
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

//! Dialers and listeners: where pipes come from.
//!
//! A dialer connects, opens the pipe and attaches it, then waits for the
//! pipe to go and redials with jittered exponential backoff. A listener
//! accepts and runs every handshake in a task of its own, at most
//! `Options::max_half_open` at once, and holds at most
//! `Options::max_pipes_per_listener` pipes.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{debug, info_span, warn, Instrument};

use crate::admission::Admission;
use crate::core::Core;
use crate::stats::RejectReason;
use crate::transport::{Listener, Transport};
use crate::{split_url, Connection, Error, Result};

/// How long a refused connection's answer may take to send (an HTTP 503
/// fits one segment; a peer that does not read it is not waited for).
const REFUSAL_DEADLINE: Duration = Duration::from_secs(1);

/// An endpoint (dialer or listener) that can be closed.
#[derive(Clone, Debug)]
pub struct Endpoint {
    url: String,
    cancel: CancellationToken,
}

impl Endpoint {
    /// The endpoint's URL (for a listener on port 0, the port bound).
    pub fn url(&self) -> &str {
        &self.url
    }
    /// Stops dialing or listening and closes the pipes this endpoint opened
    /// (as `nng_dialer_close` / `nng_listener_close` do); what they had
    /// queued moves to the socket's other pipes where the protocol allows.
    pub fn close(&self) {
        self.cancel.cancel();
    }
}

/// A place among a listener's pipes, given back when dropped.
pub(crate) struct ListenerSlot(Arc<AtomicUsize>);

impl ListenerSlot {
    /// A place if fewer than `cap` are taken.
    fn take(held: &Arc<AtomicUsize>, cap: usize) -> Option<ListenerSlot> {
        held.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < cap).then_some(n + 1)
        })
        .ok()?;
        Some(ListenerSlot(held.clone()))
    }
}

impl Drop for ListenerSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Core {
    fn transport(&self, url: &str) -> Result<Arc<dyn Transport>> {
        let (scheme, _) = split_url(url).ok_or_else(|| Error::Address {
            url: url.into(),
            reason: "expected scheme://address".into(),
        })?;
        self.transports
            .iter()
            .find(|t| t.schemes().contains(&scheme))
            .cloned()
            .ok_or_else(|| Error::Address {
                url: url.into(),
                reason: format!("no transport for scheme {scheme:?}"),
            })
    }

    /// An endpoint's own token: closing the endpoint aborts its pipes;
    /// closing the socket stops its loop but lets its pipes linger.
    fn endpoint(&self, url: String) -> Endpoint {
        Endpoint {
            url,
            cancel: CancellationToken::new(),
        }
    }

    /// Binds and accepts pipes in the background.
    pub(crate) async fn listen(self: &Arc<Self>, url: &str) -> Result<Endpoint> {
        let t = self.transport(url)?;
        let listener = t.listen(url).await?;
        Ok(self.listen_on(listener))
    }

    /// Accepts pipes from a listener made elsewhere, with the same handshake
    /// deadline and half-open cap as [`Core::listen`].
    pub(crate) fn listen_on(self: &Arc<Self>, listener: Box<dyn Listener>) -> Endpoint {
        listener.count_on(self.counters.clone());
        let ep = self.endpoint(listener.url());
        let core = self.clone();
        let span = info_span!(target: "spstack", "listener", url = %ep.url);
        let token = ep.cancel.clone();
        tokio::spawn(async move { core.accept_loop(listener, token).await }.instrument(span));
        ep
    }

    async fn accept_loop(self: Arc<Self>, listener: Box<dyn Listener>, ep: CancellationToken) {
        // dropped with the loop: aborts the handshakes still running
        let half_open = Admission::new(self.opts.max_half_open);
        // answers to connections refused at the cap (a WebSocket's 503):
        // as many at once as handshakes, each briefly
        let refusals = Admission::new(self.opts.max_half_open);
        let cap = self.opts.max_pipes_per_listener;
        let held = Arc::new(AtomicUsize::new(0));
        loop {
            let accepted = tokio::select! {
                _ = self.cancel.cancelled() => return,
                _ = ep.cancelled() => return,
                a = listener.accept() => a,
            };
            let raw = match accepted {
                Ok(r) => r,
                Err(e) => {
                    warn!(target: "spstack", error = %e, "accept failed");
                    // e.g. out of file descriptors: do not spin
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let peer = raw.peer_addr();
            let source = raw.source();
            if held.load(Ordering::Acquire) >= cap {
                // full: no handshake work for a connection that cannot join
                if let Some(answer) = raw.refuse() {
                    refusals.spawn(&source, async move {
                        let _ = tokio::time::timeout(REFUSAL_DEADLINE, answer).await;
                    });
                }
                self.refuse_full(&peer, "before its handshake");
                continue;
            }
            let core = self.clone();
            let pipe_ep = ep.clone();
            let held = held.clone();
            let evicted = half_open.spawn(&source, async move {
                let Ok((conn, span)) = core.open_pipe(raw, false, false).await else {
                    return;
                };
                // the places may have gone while the handshake ran
                match ListenerSlot::take(&held, cap) {
                    Some(slot) => {
                        let _ = core.attach(conn, span, &pipe_ep, Some(slot));
                    }
                    None => {
                        let peer = conn.info.peer_addr.clone();
                        drop(conn);
                        let _g = span.enter();
                        core.refuse_full(&peer, "after its handshake");
                    }
                }
            });
            for _ in 0..evicted {
                self.counters.rejected(RejectReason::Evicted);
                debug!(target: "spstack", "half-open handshake evicted");
            }
        }
    }

    fn refuse_full(&self, peer: &str, when: &str) {
        self.refuse(
            peer,
            RejectReason::ListenerFull,
            None,
            format!(
                "the listener holds {} pipes (max_pipes_per_listener); refused {when}",
                self.opts.max_pipes_per_listener
            ),
        );
    }

    /// Dials `url` once and returns when the pipe is open (or the error),
    /// then keeps it open, redialing with backoff, until the endpoint closes.
    pub(crate) async fn dial(self: &Arc<Self>, url: &str) -> Result<Endpoint> {
        let t = self.transport(url)?;
        let ep = self.endpoint(url.to_string());
        let plain = Arc::new(AtomicBool::new(false));
        let (conn, span) = self.connect(&t, url, &plain).await?;
        let pipe = self.attach(conn, span, &ep.cancel, None)?;
        self.spawn_dialer(t, ep.clone(), Some(pipe.gone.clone()), plain);
        Ok(ep)
    }

    /// Starts dialing `url` in the background (retrying with backoff) and
    /// returns at once.
    pub(crate) fn dial_background(self: &Arc<Self>, url: &str) -> Result<Endpoint> {
        let t = self.transport(url)?;
        let ep = self.endpoint(url.to_string());
        self.spawn_dialer(t, ep.clone(), None, Arc::default());
        Ok(ep)
    }

    fn spawn_dialer(
        self: &Arc<Self>,
        t: Arc<dyn Transport>,
        ep: Endpoint,
        first: Option<CancellationToken>,
        plain: Arc<AtomicBool>,
    ) {
        let core = self.clone();
        let span = info_span!(target: "spstack", "dialer", url = %ep.url);
        tokio::spawn(
            async move {
                let stop = ep.cancel.clone();
                let socket = core.cancel.clone();
                let halt = async move {
                    tokio::select! { _ = stop.cancelled() => {}, _ = socket.cancelled() => {} }
                };
                tokio::select! {
                    _ = halt => {}
                    _ = core.dial_loop(&t, &ep, first, &plain) => {}
                }
            }
            .instrument(span),
        );
    }

    async fn dial_loop(
        self: &Arc<Self>,
        t: &Arc<dyn Transport>,
        ep: &Endpoint,
        first: Option<CancellationToken>,
        plain: &AtomicBool,
    ) {
        let min = self.opts.reconnect_min.max(Duration::from_millis(1));
        let max = self.opts.reconnect_max.max(min);
        let mut backoff = min;
        if let Some(gone) = first {
            gone.cancelled().await;
            sleep_jittered(min).await;
        }
        loop {
            match self.connect(t, &ep.url, plain).await {
                Ok((conn, span)) => {
                    match self
                        .attach(conn, span, &ep.cancel, None)
                        .map(|p| p.gone.clone())
                    {
                        Ok(gone) => {
                            backoff = min;
                            gone.cancelled().await;
                            sleep_jittered(min).await;
                        }
                        Err(_) => {
                            sleep_jittered(backoff).await;
                            backoff = (backoff * 2).min(max);
                        }
                    }
                }
                Err(e) => {
                    debug!(target: "spstack", error = %e, ?backoff, "dial failed; will retry");
                    sleep_jittered(backoff).await;
                    backoff = (backoff * 2).min(max);
                }
            }
        }
    }

    /// One connection, or two when the peer turns out to be plain: a
    /// dialer whose pipe layers are all optional remembers in `plain` that
    /// this endpoint's peer answered plain (refusing our layered header)
    /// and redials it plain at once; it forgets when a peer answers
    /// layered to the plain header (it gained layers), so the next attempt
    /// announces them again.
    async fn connect(
        &self,
        t: &Arc<dyn Transport>,
        url: &str,
        plain: &AtomicBool,
    ) -> Result<(Connection, tracing::Span)> {
        let was_plain = plain.load(Ordering::Relaxed);
        let raw = t.dial(url).await?;
        match self.open_pipe(raw, true, was_plain).await {
            Err(Error::PlainPeer { .. }) => {
                plain.store(true, Ordering::Relaxed);
                debug!(target: "spstack", url, "the peer is plain: redialing without pipe layers");
                let raw = t.dial(url).await?;
                self.open_pipe(raw, true, true).await
            }
            Err(
                e @ Error::Mismatch {
                    index: Some(_),
                    ours: None,
                    theirs: Some(_),
                },
            ) if was_plain => {
                plain.store(false, Ordering::Relaxed);
                Err(e)
            }
            r => r,
        }
    }
}

async fn sleep_jittered(base: Duration) {
    // uniform in [base/2, base): spread out a crowd of reconnecting dialers
    let nanos = base.as_nanos().min(u64::MAX as u128) as u64;
    let d = Duration::from_nanos(nanos / 2 + fastrand::u64(0..=nanos / 2));
    tokio::time::sleep(d).await;
}

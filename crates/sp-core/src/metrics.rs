//! A socket's counters and pipe events through the [`metrics`] facade
//! (feature `metrics`), to whatever recorder the program installs
//! (`metrics-exporter-prometheus`, StatsD, OpenTelemetry...).
//!
//! ```no_run
//! # async fn demo(socket: sp_core::Socket) {
//! let exported = socket.export_metrics("frontend");
//! // ... in the scrape handler, for values as of this instant:
//! sp_core::metrics::update_all();
//! # drop(exported); }
//! ```
//!
//! Every series carries `socket` (the name given to
//! [`Socket::export_metrics`]) and `protocol` (`push`, `req`, ...); drops and
//! refusals add `reason` (`no_peer`, `layer_mismatch`: [`DropReason::label`],
//! [`RejectReason::label`]), copies add `direction`. Every label value comes
//! from a closed set, so the number of series per socket is fixed: pipe ids,
//! peer addresses and layer names a peer announces are never labels (those
//! are in the pipe's `tracing` span and in `Socket::pipe_stats`).
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `spstack_messages_sent_total` | counter | socket, protocol |
//! | `spstack_messages_received_total` | counter | socket, protocol |
//! | `spstack_bytes_sent_total` | counter | socket, protocol |
//! | `spstack_bytes_received_total` | counter | socket, protocol |
//! | `spstack_bytes_copied_total` | counter | socket, protocol, direction (`send`, `recv`) |
//! | `spstack_messages_dropped_total` | counter | socket, protocol, reason |
//! | `spstack_pipes_opened_total` | counter | socket, protocol |
//! | `spstack_pipes_closed_total` | counter | socket, protocol |
//! | `spstack_pipes_refused_total` | counter | socket, protocol, reason |
//! | `spstack_pipes` | gauge | socket, protocol |
//!
//! The values are the socket's own counters (`Socket::stats`), published
//! as absolute values: every second, at once on every pipe event (a pipe
//! joined, left or was refused), once more when the socket has shut down,
//! and whenever [`update_all`] or [`Exported::update`] is called. The hot
//! path is not touched: no facade call happens per message.

use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, gauge, Unit};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::stats::{Counters, DropReason, RejectReason};
use crate::Socket;

/// How often a running socket's counters are published without an event.
pub const INTERVAL: Duration = Duration::from_secs(1);

struct State {
    socket: String,
    protocol: &'static str,
    counters: Arc<Counters>,
}

/// Every export alive, for [`update_all`].
fn registry() -> &'static Mutex<Vec<Weak<State>>> {
    static R: OnceLock<Mutex<Vec<Weak<State>>>> = OnceLock::new();
    R.get_or_init(Mutex::default)
}

/// A socket's counters exported under one name. Publishing goes on in the
/// background while the socket lives; dropping this handle changes nothing
/// there. After the socket is gone its last values stay published.
#[derive(Clone)]
pub struct Exported {
    state: Arc<State>,
}

impl std::fmt::Debug for Exported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exported")
            .field("socket", &self.state.socket)
            .field("protocol", &self.state.protocol)
            .finish()
    }
}

impl Exported {
    /// Publishes the counters now.
    pub fn update(&self) {
        self.state.publish();
    }
    /// The `socket` label.
    pub fn name(&self) -> &str {
        &self.state.socket
    }
}

/// Publishes every exported socket's counters now: call it before a
/// recorder renders (a scrape handler) to serve values as of this instant.
pub fn update_all() {
    let live: Vec<Arc<State>> = {
        let mut r = registry().lock().unwrap_or_else(|e| e.into_inner());
        r.retain(|w| w.strong_count() > 0);
        r.iter().filter_map(Weak::upgrade).collect()
    };
    for s in live {
        s.publish();
    }
}

fn describe() {
    describe_counter!(
        "spstack_messages_sent_total",
        Unit::Count,
        "Messages written to a transport"
    );
    describe_counter!(
        "spstack_messages_received_total",
        Unit::Count,
        "Messages read from a transport"
    );
    describe_counter!(
        "spstack_bytes_sent_total",
        Unit::Bytes,
        "Bytes written (SP header and body)"
    );
    describe_counter!(
        "spstack_bytes_received_total",
        Unit::Bytes,
        "Bytes read (SP header and body)"
    );
    describe_counter!(
        "spstack_bytes_copied_total",
        Unit::Bytes,
        "Bytes of message data copied, by direction"
    );
    describe_counter!(
        "spstack_messages_dropped_total",
        Unit::Count,
        "Messages dropped, by reason"
    );
    describe_counter!(
        "spstack_pipes_opened_total",
        Unit::Count,
        "Pipes that joined the socket"
    );
    describe_counter!(
        "spstack_pipes_closed_total",
        Unit::Count,
        "Pipes that left the socket"
    );
    describe_counter!(
        "spstack_pipes_refused_total",
        Unit::Count,
        "Connections refused or pipes closed for breaking the protocol, by reason"
    );
    describe_gauge!("spstack_pipes", Unit::Count, "Pipes open now");
}

impl State {
    fn publish(&self) {
        // handles are looked up on every publish, not kept: a recorder
        // installed after the socket was exported still gets the series
        describe();
        let s = self.counters.snapshot();
        let (sock, proto) = (self.socket.clone(), self.protocol);
        let labels = [("socket", sock.clone()), ("protocol", proto.to_string())];
        counter!("spstack_messages_sent_total", &labels).absolute(s.msgs_out);
        counter!("spstack_messages_received_total", &labels).absolute(s.msgs_in);
        counter!("spstack_bytes_sent_total", &labels).absolute(s.bytes_out);
        counter!("spstack_bytes_received_total", &labels).absolute(s.bytes_in);
        for (dir, v) in [("send", s.bytes_copied), ("recv", s.bytes_copied_in)] {
            counter!("spstack_bytes_copied_total", "socket" => sock.clone(), "protocol" => proto, "direction" => dir)
                .absolute(v);
        }
        counter!("spstack_pipes_opened_total", &labels).absolute(s.pipes_opened);
        counter!("spstack_pipes_closed_total", &labels).absolute(s.pipes_closed);
        gauge!("spstack_pipes", &labels).set(s.pipes_opened.saturating_sub(s.pipes_closed) as f64);
        // every reason, zeros included: a rate() over a series that appears
        // only with the first drop misses that drop
        for r in DropReason::ALL {
            counter!("spstack_messages_dropped_total", "socket" => sock.clone(), "protocol" => proto, "reason" => r.label())
                .absolute(s.drops(r));
        }
        for r in RejectReason::ALL {
            counter!("spstack_pipes_refused_total", "socket" => sock.clone(), "protocol" => proto, "reason" => r.label())
                .absolute(s.rejects(r));
        }
    }
}

impl Socket {
    /// Exports this socket's counters and pipe events through the `metrics`
    /// facade under `name` (the `socket` label; see [`crate::metrics`]).
    /// Publishes at once, then in the background on a tokio runtime if one
    /// is running (otherwise on [`update_all`] / [`Exported::update`] only).
    pub fn export_metrics(&self, name: &str) -> Exported {
        let raw = self.raw();
        let state = Arc::new(State {
            socket: name.to_string(),
            protocol: raw.protocol().name,
            counters: raw.counters().clone(),
        });
        registry()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::downgrade(&state));
        state.publish();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let core = &raw.core;
            rt.spawn(publish_loop(
                state.clone(),
                core.pipe_events(),
                core.cancel.clone(),
                core.tasks.clone(),
            ));
        }
        Exported { state }
    }
}

/// Publishes on every tick and pipe event until the socket closes, then once
/// more when its pipes are done (what the linger counted included). Holds
/// no handle on the socket, so it never keeps one open.
async fn publish_loop(
    state: Arc<State>,
    mut events: tokio::sync::broadcast::Receiver<crate::PipeEvent>,
    closed: CancellationToken,
    pipes: TaskTracker,
) {
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = closed.cancelled() => break,
            _ = tick.tick() => {}
            ev = events.recv() => {
                if let Err(tokio::sync::broadcast::error::RecvError::Closed) = ev {
                    break;
                }
                // a lagged receiver missed events, not counts: publish anyway
            }
        }
        state.publish();
    }
    pipes.wait().await;
    state.publish();
}

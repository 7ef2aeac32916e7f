//! Every log line on a pipe's path is inside the pipe's `tracing` span, and
//! the span carries the pipe id, the peer, the protocols and the stack: a
//! subscriber that records spans and events (no formatting, no parsing of
//! text) sees pipes join, carry traffic, break the protocol, leave, and be
//! refused, over plain TCP and under a Noise layer.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sp_crypto::noise::{self, NoiseConfig, StaticKeypair};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

const WAIT: Duration = Duration::from_secs(10);

type Fields = HashMap<String, String>;

struct Collect<'a>(&'a mut Fields);

impl Visit for Collect<'_> {
    fn record_debug(&mut self, f: &Field, v: &dyn Debug) {
        self.0.insert(f.name().to_string(), format!("{v:?}"));
    }
    fn record_str(&mut self, f: &Field, v: &str) {
        self.0.insert(f.name().to_string(), v.to_string());
    }
}

/// One event: its own fields (`message` among them) and the spans it was
/// in, innermost first, each with the fields recorded so far.
#[derive(Clone, Debug)]
struct Seen {
    target: String,
    fields: Fields,
    spans: Vec<(String, Fields)>,
}

impl Seen {
    fn message(&self) -> &str {
        self.fields.get("message").map_or("", String::as_str)
    }
    fn pipe_span(&self) -> Option<&Fields> {
        self.spans.iter().find(|(n, _)| n == "pipe").map(|(_, f)| f)
    }
}

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<Seen>>>);

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut f = Fields::new();
        attrs.record(&mut Collect(&mut f));
        if let Some(s) = ctx.span(id) {
            s.extensions_mut().insert(f);
        }
    }
    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(s) = ctx.span(id) {
            if let Some(f) = s.extensions_mut().get_mut::<Fields>() {
                values.record(&mut Collect(f));
            }
        }
    }
    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields::new();
        event.record(&mut Collect(&mut fields));
        let spans = ctx
            .event_scope(event)
            .map(|scope| {
                scope
                    .map(|s| {
                        let f = s.extensions().get::<Fields>().cloned().unwrap_or_default();
                        (s.name().to_string(), f)
                    })
                    .collect()
            })
            .unwrap_or_default();
        self.0.lock().unwrap().push(Seen {
            target: event.metadata().target().to_string(),
            fields,
            spans,
        });
    }
}

impl Capture {
    fn events(&self) -> Vec<Seen> {
        self.0.lock().unwrap().clone()
    }
    /// Waits (bounded) until an event with `message` was seen `n` times.
    async fn wait_for(&self, message: &str, n: usize) -> Vec<Seen> {
        for _ in 0..200 {
            let found: Vec<Seen> = self
                .events()
                .into_iter()
                .filter(|e| e.message() == message)
                .collect();
            if found.len() >= n {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("{n} × {message:?} never logged: {:#?}", self.events())
    }
}

/// What a pipe's events are: everything the core logs about a pipe, from
/// its handshake to its removal.
const PIPE_MESSAGES: &[&str] = &[
    "pipe added",
    "pipe removed",
    "peer closed the pipe",
    "pipe closed",
    "pipe refused",
    "protocol violation; closing pipe",
    "pipe write failed",
];

fn check_pipe_fields(e: &Seen, protocol: &str, peer_protocol: &str, stack: &str) {
    let f = e
        .pipe_span()
        .unwrap_or_else(|| panic!("{:?} outside a pipe span: {e:#?}", e.message()));
    let id: u32 = f
        .get("id")
        .unwrap_or_else(|| panic!("no pipe id: {e:#?}"))
        .parse()
        .expect("a numeric id");
    assert!(id > 0, "{e:#?}");
    assert!(f["peer"].starts_with("tcp://127.0.0.1:"), "{e:#?}");
    assert_eq!(f["transport"], "tcp", "{e:#?}");
    assert_eq!(f["protocol"], protocol, "{e:#?}");
    assert_eq!(f["peer_protocol"], peer_protocol, "{e:#?}");
    assert_eq!(f["stack"], stack, "{e:#?}");
    assert!(f.contains_key("dialer"), "{e:#?}");
}

#[test]
fn pipe_events_carry_the_pipe_span_with_id_peer_protocol_and_stack() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::registry().with(capture.clone());
    // a current-thread runtime: every task runs where the subscriber is set
    let _guard = tracing::subscriber::set_default(subscriber);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // plain REQ/REP: a round trip, then the REQ leaves
        let rep = spstack::rep0().build();
        let ep = rep.listen("tcp://127.0.0.1:0").await.unwrap();
        let req = spstack::req0().build();
        req.dial(ep.url()).await.unwrap();
        req.send("ping").await.unwrap();
        let m = timeout(WAIT, rep.recv()).await.unwrap().unwrap();
        rep.send(m.body()).await.unwrap();
        timeout(WAIT, req.recv()).await.unwrap().unwrap();
        req.shutdown().await;
        let added = capture.wait_for("pipe added", 2).await;
        let removed = capture.wait_for("pipe removed", 2).await;
        for e in added.iter().chain(&removed) {
            let rep_side = e.pipe_span().and_then(|f| f.get("protocol")) == Some(&"rep".into());
            let (me, them) = if rep_side {
                ("rep", "req")
            } else {
                ("req", "rep")
            };
            check_pipe_fields(e, me, them, "[]");
        }
        // each pipe logs in one span: join and leave name the same id
        let ids = |v: &[Seen]| {
            let mut ids: Vec<String> = v
                .iter()
                .map(|e| e.pipe_span().unwrap()["id"].clone())
                .collect();
            ids.sort();
            ids
        };
        assert_eq!(ids(&added), ids(&removed));

        // a peer that breaks SP framing after its header: the reader's
        // complaint is in the span of that pipe
        let pull = spstack::pull0().build();
        let ep = pull.listen("tcp://127.0.0.1:0").await.unwrap();
        let addr = ep.url().trim_start_matches("tcp://").to_string();
        let mut evil = tokio::net::TcpStream::connect(&addr).await.unwrap();
        evil.write_all(&[0, b'S', b'P', 0, 0, 0x50, 0, 0])
            .await
            .unwrap();
        let mut theirs = [0u8; 8];
        evil.read_exact(&mut theirs).await.unwrap();
        evil.write_all(&u64::MAX.to_be_bytes()).await.unwrap();
        let closed = capture.wait_for("pipe closed", 1).await;
        check_pipe_fields(&closed[0], "pull", "push", "[]");

        // a refusal: the handshake's span, no id (it never joined)
        let req = spstack::req0().build();
        assert!(req.dial(ep.url()).await.is_err());
        let refused = capture.wait_for("pipe refused", 2).await;
        for e in &refused {
            let f = e.pipe_span().unwrap_or_else(|| panic!("{e:#?}"));
            assert!(!f.contains_key("id"), "a refused pipe has no id: {e:#?}");
            assert!(f["peer"].starts_with("tcp://127.0.0.1:"), "{e:#?}");
            assert!(["req", "pull"].contains(&f["protocol"].as_str()), "{e:#?}");
            assert_eq!(e.fields["reason"], "ProtocolMismatch", "{e:#?}");
        }

        // a stack with a pipe layer: the span names it
        let layer = || noise::layer(NoiseConfig::new(StaticKeypair::generate()).accept_any_key());
        let a = spstack::pair1().pipe_layer(layer()).build();
        let ep = a.listen("tcp://127.0.0.1:0").await.unwrap();
        let b = spstack::pair1().pipe_layer(layer()).build();
        b.dial(ep.url()).await.unwrap();
        // REQ, REP, the evil peer's, then both PAIR1 pipes
        let added = capture.wait_for("pipe added", 5).await;
        let pair1: Vec<&Seen> = added
            .iter()
            .filter(|e| e.pipe_span().unwrap()["protocol"] == "pair1")
            .collect();
        assert_eq!(pair1.len(), 2, "{added:#?}");
        for e in pair1 {
            check_pipe_fields(e, "pair1", "pair1", "[\"noise-xx/2\"]");
        }
        drop((a, b, pull, rep));
    });
    // nothing the core logs about a pipe is outside its span
    let all = capture.events();
    let pipe_events: Vec<&Seen> = all
        .iter()
        .filter(|e| e.target == "spstack" && PIPE_MESSAGES.contains(&e.message()))
        .collect();
    assert!(pipe_events.len() >= 9, "{all:#?}");
    for e in pipe_events {
        assert!(e.pipe_span().is_some(), "outside a pipe span: {e:#?}");
    }
}

//! STAR, `xor/1` and `trace/1` end to end, through spstack's public API
//! only: members on two hubs joined by a device.

use std::sync::Arc;
use std::time::Duration;

use spstack::routing::{MemPipes, Pipes, Routed, Routing};
use spstack::wiretap::{Dir, Wiretap};
use spstack::{DropReason, Message, PipeEvent, RejectReason, Socket, Verdict};
use spstack_example_star::star::{self, StarControl, StarRaw};
use spstack_example_star::trace::Trace;
use spstack_example_star::xor;

const WAIT: Duration = Duration::from_secs(10);

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: timed out"))
}

async fn until(what: &str, cond: impl Fn() -> bool) {
    within(what, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
}

fn member(trace: &Trace) -> Socket {
    star::cooked()
        .pipe_layer(xor::layer())
        .message_layer(trace.clone())
        .options(spstack::Options::default().send_queue(1024))
        .build()
}

fn hub() -> Socket {
    // STAR never waits: a peer whose queue is full misses a message (counted).
    // Queues deep enough for the test's bursts keep that out of the way
    star::raw()
        .pipe_layer(xor::layer())
        .options(spstack::Options::default().send_queue(1024))
        .build()
}

#[test]
fn routing_fans_out_forwards_and_bounds_hops_in_memory() {
    let mut pipes = MemPipes::new(&[1, 2, 3], 2);
    // a raw send goes to every pipe but its origin
    let mut m = Message::from(&b"x"[..]);
    m.set_header(&[0, 0, 0, 3]);
    m.set_pipe(Some(2));
    assert!(matches!(StarRaw.send(m, &mut pipes), Routed::Queued(None)));
    assert_eq!(
        (
            pipes.queued(1).len(),
            pipes.queued(2).len(),
            pipes.queued(3).len()
        ),
        (1, 0, 1)
    );
    // without its hop count it is refused, counted
    assert!(matches!(
        StarRaw.send(Message::from(&b"x"[..]), &mut pipes),
        Routed::Dropped(DropReason::Malformed)
    ));
    // at the TTL a received message goes no further
    let mut pipes = MemPipes::new(&[1, 2], 2).with_ttl(4);
    let mut at_ttl = Message::from(vec![0, 0, 0, 4, b'z']);
    assert!(matches!(
        StarRaw.recv(1, &mut at_ttl, &mut pipes),
        Verdict::Drop(DropReason::TtlExceeded)
    ));
    assert!(pipes.queued(2).is_empty());
    let mut bad = Message::from(vec![1, 0, 0, 0, b'z']);
    assert!(matches!(
        StarRaw.recv(1, &mut bad, &mut pipes),
        Verdict::Drop(DropReason::Malformed)
    ));
    // a full peer misses a forwarded copy, counted on that pipe
    let mut pipes = MemPipes::new(&[1, 2], 0);
    let mut m = Message::from(vec![0, 0, 0, 0, b'y']);
    assert!(matches!(
        StarRaw.recv(1, &mut m, &mut pipes),
        Verdict::Deliver
    ));
    assert_eq!(pipes.drops(), &[(Some(2), DropReason::QueueFull)]);
    assert!(pipes.ids().contains(&2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_on_two_hubs_joined_by_a_device_all_hear_each_message_once() {
    let (hub_a, hub_b) = (hub(), hub());
    let ep_a = hub_a.listen("tcp://127.0.0.1:0").await.unwrap();
    let path = format!("ipc:///tmp/spstack-star-example-{}.ipc", std::process::id());
    let ep_b = hub_b.listen(&path).await.unwrap();
    let device = tokio::spawn({
        let (a, b) = (hub_a.clone(), hub_b.clone());
        async move { spstack::device(&a, &b).await }
    });
    let traces: Vec<Trace> = (0..3).map(|_| Trace::new()).collect();
    let m1 = member(&traces[0]);
    let m2 = member(&traces[1]);
    let m3 = member(&traces[2]);
    within("dial", m1.dial(ep_a.url())).await.unwrap();
    within("dial", m2.dial(ep_a.url())).await.unwrap();
    within("dial", m3.dial(ep_b.url())).await.unwrap();
    until("three members", || {
        hub_a.pipes().len() == 2 && hub_b.pipes().len() == 1
    })
    .await;
    let ctl = m1.control::<StarControl>().expect("STAR's control");
    until("m1 counts its hub", || ctl.peers() == 1).await;

    const N: u32 = 200;
    for i in 0..N {
        within("send", m1.send(format!("star {i}"))).await.unwrap();
    }
    for (who, m) in [("m2", &m2), ("m3", &m3)] {
        for i in 0..N {
            let got = within(who, m.recv()).await.unwrap();
            assert_eq!(
                got.body(),
                format!("star {i}").as_bytes(),
                "{who}, message {i}"
            );
        }
    }
    // the trace numbers crossed the device untouched: the sender's own count
    assert_eq!(traces[1].last_seen(), N);
    assert_eq!(traces[2].last_seen(), N);
    // once each: nothing more arrives, and the sender got nothing back
    for m in [&m1, &m2, &m3] {
        let extra = tokio::time::timeout(Duration::from_millis(200), m.recv()).await;
        assert!(extra.is_err(), "a duplicate arrived: {extra:?}");
    }
    for s in [&m1, &hub_a, &hub_b] {
        assert_eq!(s.stats().total_drops(), 0, "{}", s.stats());
    }
    hub_a.close();
    hub_b.close();
    let _ = within("device ends", device).await;
}

#[tokio::test]
async fn the_xor_layer_scrambles_frames_and_describe_shows_them_opaque() {
    let h = hub();
    let ep = h.listen("tcp://127.0.0.1:0").await.unwrap();
    let tap = Wiretap::start(ep.url(), None).await.unwrap();
    let (t1, t2) = (Trace::new(), Trace::new());
    let a = member(&t1);
    let b = member(&t2);
    within("dial", a.dial(&tap.url)).await.unwrap();
    within("dial", b.dial(ep.url())).await.unwrap();
    until("two members", || h.pipes().len() == 2).await;
    let secret = b"a message nobody on the wire may read";
    within("send", a.send(&secret[..])).await.unwrap();
    assert_eq!(within("recv", b.recv()).await.unwrap().body(), secret);
    // frame 0 is the key exchange; frame 1 carries the message
    let frames = within("tap", tap.wait_frames(0, Dir::Up, 2)).await.unwrap();
    let wire = &frames[1];
    assert_eq!(wire.len(), 4 + 4 + secret.len(), "hops, trace number, body");
    assert!(
        !wire.windows(8).any(|w| secret.windows(8).any(|s| s == w)),
        "the body crossed the wire in clear"
    );
    let mut framed = (wire.len() as u64).to_be_bytes().to_vec();
    framed.extend_from_slice(wire);
    let d = a.describe("tcp", &framed).unwrap();
    let opaque = d
        .opaque
        .as_ref()
        .expect("the xor layer's payload is opaque");
    assert_eq!(opaque.component, xor::NAME);
    assert_eq!(opaque.len, wire.len());
    assert!(
        d.field("hops").is_none(),
        "ciphertext was decoded as STAR's header: {d}"
    );
}

#[tokio::test]
async fn trace_counts_what_it_refuses_in_the_socket_stats() {
    // a raw STAR sender (no trace layer) sends a body too short to carry a
    // trace number: the member's trace layer refuses it, and the socket's
    // own counters say so
    let t = Trace::new();
    let m = star::cooked().message_layer(t.clone()).build();
    let ep = m.listen("inproc://star-trace-refusal").await.unwrap();
    let raw = star::raw().build();
    within("dial", raw.dial(ep.url())).await.unwrap();
    let mut short = Message::from(&b"ab"[..]);
    short.set_header(&[0, 0, 0, 0]);
    within("send", raw.send(short)).await.unwrap();
    let mut ok = Message::from(&[0, 0, 0, 7, b'o', b'k'][..]);
    ok.set_header(&[0, 0, 0, 0]);
    within("send", raw.send(ok)).await.unwrap();
    let got = within("recv", m.recv()).await.unwrap();
    assert_eq!(got.body(), b"ok");
    assert_eq!(t.last_seen(), 7);
    assert_eq!(m.stats().drops(DropReason::Rejected), 1, "{}", m.stats());
}

#[tokio::test]
async fn a_member_without_the_layer_is_refused_and_the_event_names_it() {
    let h = hub();
    let events = Arc::new(std::sync::Mutex::new(Vec::new()));
    let e = events.clone();
    h.on_pipe_event(move |ev| {
        if let PipeEvent::Refused(r) = ev {
            e.lock().unwrap().push((**r).clone());
        }
        true
    });
    let ep = h.listen("tcp://127.0.0.1:0").await.unwrap();
    let plain = star::cooked().build();
    let err = within("dial", plain.dial(ep.url())).await.unwrap_err();
    assert!(
        matches!(&err, spstack::Error::Mismatch { index: Some(0), ours: None, theirs: Some(t) } if t == xor::NAME),
        "{err:?}"
    );
    until("the hub's refusal", || !events.lock().unwrap().is_empty()).await;
    let r = events.lock().unwrap()[0].clone();
    assert_eq!(r.reason, RejectReason::LayerMismatch);
    assert_eq!(r.layer.as_deref(), Some(xor::NAME));
    assert_eq!(h.stats().rejects(RejectReason::LayerMismatch), 1);
    assert_eq!(
        spstack::ProtocolId(0xa0).name(),
        "star",
        "the protocol is registered by name"
    );
}

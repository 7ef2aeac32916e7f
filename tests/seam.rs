//! The public seam a cooked protocol is written on (`RawSocket`), and the
//! events and errors a program matches on.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use spstack::{DropReason, Error, Handover, Message, PipeEvent, RejectReason, Socket};

const WAIT: Duration = Duration::from_secs(10);

async fn until(what: &str, cond: impl Fn() -> bool) {
    tokio::time::timeout(WAIT, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

async fn two_pulls() -> (Socket, Socket, Socket) {
    let (a, b) = (spstack::pull0().build(), spstack::pull0().build());
    let ea = a.listen("tcp://127.0.0.1:0").await.unwrap();
    let eb = b.listen("tcp://127.0.0.1:0").await.unwrap();
    let push = spstack::push0().build();
    push.dial(ea.url()).await.unwrap();
    push.dial(eb.url()).await.unwrap();
    until("two pipes", || push.pipes().len() == 2).await;
    (push, a, b)
}

#[tokio::test]
async fn send_now_says_which_pipe_took_it_and_send_to_picks_one() {
    let (push, a, b) = two_pulls().await;
    let raw = push.raw();
    let mut seen = Vec::new();
    for i in 0..4u8 {
        match raw.send_now(Message::from(vec![i])).unwrap() {
            Handover::Queued(Some(p)) => seen.push(p),
            other => panic!("{other:?}"),
        }
    }
    // round robin over both pipes
    assert_eq!(seen[0], seen[2]);
    assert_eq!(seen[1], seen[3]);
    assert_ne!(seen[0], seen[1]);
    for _ in 0..2 {
        tokio::time::timeout(WAIT, a.recv()).await.unwrap().unwrap();
        tokio::time::timeout(WAIT, b.recv()).await.unwrap().unwrap();
    }
    // to one chosen pipe, past the routing
    let target = raw.pipes()[1];
    for _ in 0..3 {
        raw.send_to(target, Message::from("chosen")).unwrap();
    }
    let (to_a, to_b) = (a.stats().msgs_in, b.stats().msgs_in);
    until("three more at one pull", || {
        a.stats().msgs_in + b.stats().msgs_in == to_a + to_b + 3
    })
    .await;
    assert!(
        a.stats().msgs_in == to_a || b.stats().msgs_in == to_b,
        "send_to spread its messages"
    );
    // a pipe that is gone gives the message back, with why
    let refused = raw
        .send_to(0x7fff_fff0, Message::from("nobody"))
        .unwrap_err();
    assert_eq!(refused.reason, DropReason::UnknownPipe);
    assert_eq!(refused.msg.body(), b"nobody");
}

#[tokio::test]
async fn pipe_death_notices_reach_a_protocol_through_the_seam() {
    let (push, a, _b) = two_pulls().await;
    let gone = Arc::new(Mutex::new(Vec::new()));
    let g = gone.clone();
    push.raw().on_pipe_event(move |ev| {
        if let PipeEvent::RemovePost(id, _) = ev {
            g.lock().unwrap().push(*id);
        }
        true
    });
    let before = push.pipes();
    a.close();
    until("a pipe death notice", || !gone.lock().unwrap().is_empty()).await;
    let id = gone.lock().unwrap()[0];
    assert!(before.contains(&id));
    assert!(!push.raw().has_pipe(id));
    // and the protocol's own drops go to the socket's counters
    push.raw().counters().dropped(DropReason::Late);
    assert_eq!(push.stats().drops(DropReason::Late), 1);
}

#[tokio::test]
async fn refusals_are_pipe_events_with_their_reason_and_layer() {
    let rep = spstack::rep0().build();
    let refused = Arc::new(Mutex::new(Vec::new()));
    let r = refused.clone();
    rep.on_pipe_event(move |ev| {
        if let PipeEvent::Refused(x) = ev {
            r.lock().unwrap().push((**x).clone());
        }
        true
    });
    let mut events = rep.pipe_events();
    let ep = rep.listen("tcp://127.0.0.1:0").await.unwrap();
    // the wrong protocol
    let push = spstack::push0().build();
    let e = push.dial(ep.url()).await.unwrap_err();
    assert!(
        matches!(&e, Error::Mismatch { index: None, ours: Some(o), theirs: Some(t) } if o.starts_with("pull") && t.starts_with("rep")),
        "{e:?}"
    );
    // the right protocol, a pipe layer the listener does not have
    let layered = spstack::req0()
        .pipe_layer(spstack::layer::PipeLayer::new(
            sp_crypto::noise::Noise::new(
                sp_crypto::noise::NoiseConfig::new(sp_crypto::noise::StaticKeypair::generate())
                    .accept_any_key(),
            ),
        ))
        .build();
    let e = layered.dial(ep.url()).await.unwrap_err();
    assert!(
        matches!(&e, Error::Mismatch { index: Some(0), ours: Some(o), theirs: None } if o == "noise-xx/2"),
        "{e:?}"
    );
    until("two refusals", || refused.lock().unwrap().len() == 2).await;
    let r = refused.lock().unwrap().clone();
    assert_eq!(r[0].reason, RejectReason::ProtocolMismatch);
    assert_eq!(r[0].layer, None);
    assert!(r[0].error.contains("peer speaks push"), "{}", r[0].error);
    assert_eq!(r[1].reason, RejectReason::LayerMismatch);
    assert_eq!(r[1].layer.as_deref(), Some("noise-xx/2"));
    // the stream of events carries them too
    let mut streamed = 0;
    while let Ok(Ok(ev)) = tokio::time::timeout(Duration::from_millis(500), events.recv()).await {
        if matches!(ev, PipeEvent::Refused(_)) {
            streamed += 1;
        }
    }
    assert_eq!(streamed, 2);
    assert_eq!(rep.stats().rejects(RejectReason::ProtocolMismatch), 1);
    assert_eq!(rep.stats().rejects(RejectReason::LayerMismatch), 1);
}

/// A message layer that changes nothing and remembers what its socket told
/// it when attached: what a third-party layer binding itself to the
/// protocol (as integrity does) relies on.
struct SeesProtocol(Arc<Mutex<Vec<Seen>>>);

/// What a layer was told: the protocol, and REQ's resend option.
type Seen = (Option<spstack::ProtocolSpec>, Option<Duration>);

impl tower::Layer<spstack::layer::MessageIo> for SeesProtocol {
    type Service = spstack::layer::MessageIo;
    fn layer(&self, io: spstack::layer::MessageIo) -> spstack::layer::MessageIo {
        io
    }
}

impl spstack::layer::MessageLayer for SeesProtocol {
    fn info(&self) -> spstack::layer::ComponentInfo {
        spstack::layer::ComponentInfo::new("sees/1", spstack::Overhead::NONE)
    }
    fn attach(&self, handle: &spstack::layer::LayerHandle) {
        let resend = handle.options().and_then(|o| o.req_resend);
        self.0.lock().unwrap().push((handle.protocol(), resend));
    }
}

#[test]
fn a_message_layer_learns_its_sockets_protocol_peer_and_options_when_attached() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let _req = spstack::req0()
        .with_options(|o| o.req_resend(Some(Duration::from_millis(1500))))
        .message_layer(SeesProtocol(seen.clone()))
        .build();
    let _raw_rep = spstack::raw(spstack::Protocol::Rep0)
        .message_layer(SeesProtocol(seen.clone()))
        .build();
    let _push = spstack::push0()
        .message_layer(SeesProtocol(seen.clone()))
        .build();
    let seen = seen.lock().unwrap().clone();
    let got: Vec<(String, String)> = seen
        .iter()
        .map(|(p, _)| {
            let p = p.expect("a socket names its protocol");
            (p.name.to_string(), p.peer.name().to_string())
        })
        .collect();
    // and the options it was built with
    assert_eq!(seen[0].1, Some(Duration::from_millis(1500)));
    let want = [("req", "rep"), ("rep", "req"), ("push", "pull")]
        .map(|(a, b)| (a.to_string(), b.to_string()));
    assert_eq!(got, want);
    // a layer attached by hand (a tool, a unit test) names none unless told
    let h = spstack::layer::LayerHandle::detached("x/1");
    assert_eq!(h.protocol(), None);
    assert!(h.options().is_none());
    let spec = spstack::ProtocolId::PULL0.spec().unwrap();
    assert_eq!(h.with_protocol(spec).protocol(), Some(spec));
}

// ---- a pipe layer's line back to its socket (`SocketLink`) ----

mod link {
    use std::pin::Pin;
    use std::sync::{Arc, Mutex};
    use std::task::{Context, Poll};

    use futures::Sink;
    use spstack::layer::{ComponentInfo, Handshake, Overhead, PipeLayer};
    use spstack::{BoxFuture, BoxSink, Connection, Error, Message, Receipts, Result, SocketLink};

    /// Records the frames the socket says it is done with.
    pub struct Watch(pub Arc<Mutex<Vec<u64>>>);
    struct Log(Arc<Mutex<Vec<u64>>>);
    impl Receipts for Log {
        fn settled(&self, frame: u64) {
            self.0.lock().unwrap().push(frame);
        }
    }
    impl Handshake for Watch {
        fn info(&self) -> ComponentInfo {
            ComponentInfo::new("watch/1", Overhead::NONE)
        }
        fn handshake(&self, conn: Connection) -> BoxFuture<'static, Result<Connection>> {
            assert!(conn.info.link.watch_settled(Arc::new(Log(self.0.clone()))));
            assert!(
                !conn.info.link.watch_settled(Arc::new(Log(self.0.clone()))),
                "once per pipe"
            );
            Box::pin(async move { Ok(conn) })
        }
    }

    /// Keeps every frame it sent and hands all of them back when the pipe
    /// goes (no acknowledgements: the bluntest user of the seam).
    pub struct Keep;
    struct KeepSink {
        inner: BoxSink,
        kept: Vec<Message>,
        link: SocketLink,
    }
    impl Handshake for Keep {
        fn info(&self) -> ComponentInfo {
            ComponentInfo::new("keep/1", Overhead::NONE)
        }
        fn handshake(&self, mut conn: Connection) -> BoxFuture<'static, Result<Connection>> {
            Box::pin(async move {
                let link = conn.info.link.clone();
                assert!(link.socket_id().is_some() && link.pipe_id().is_none());
                link.retain_frames();
                conn.tx = Box::pin(KeepSink {
                    inner: conn.tx,
                    kept: Vec::new(),
                    link,
                });
                Ok(conn)
            })
        }
    }
    impl Sink<Message> for KeepSink {
        type Error = Error;
        fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
            self.inner.as_mut().poll_ready(cx)
        }
        fn start_send(mut self: Pin<&mut Self>, m: Message) -> Result<()> {
            self.kept.push(m.clone());
            self.inner.as_mut().start_send(m)
        }
        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
            self.inner.as_mut().poll_flush(cx)
        }
        fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
            self.inner.as_mut().poll_close(cx)
        }
    }
    impl Drop for KeepSink {
        fn drop(&mut self) {
            assert!(self.link.pipe_id().is_some(), "it joined");
            for m in self.kept.drain(..) {
                let _ = self.link.requeue(m);
            }
        }
    }

    pub fn watch(log: &Arc<Mutex<Vec<u64>>>) -> PipeLayer<Watch> {
        PipeLayer::new(Watch(log.clone()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layer_hears_which_frames_the_socket_took_and_not_what_close_discarded() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let pull = spstack::pull0().pipe_layer(link::watch(&log)).build();
    let ep = pull.listen("tcp://127.0.0.1:0").await.unwrap();
    let push = spstack::push0()
        .pipe_layer(link::watch(&Arc::default()))
        .build();
    push.dial(ep.url()).await.unwrap();
    for i in 0..5u8 {
        push.send(vec![i]).await.unwrap();
    }
    until("five queued", || pull.stats().msgs_in == 5).await;
    assert!(log.lock().unwrap().is_empty(), "queued is not taken");
    for i in 0..2u8 {
        let m = tokio::time::timeout(WAIT, pull.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(m.body(), [i]);
    }
    assert_eq!(*log.lock().unwrap(), vec![0, 1]);
    let st = pull.shutdown().await;
    assert_eq!(st.drops(DropReason::Closed), 3, "{st}");
    assert_eq!(*log.lock().unwrap(), vec![0, 1], "discarded is not taken");

    // what the protocol drops (a SUB with no matching subscription) is
    // done with at once; what it queues, when taken
    let log = Arc::new(Mutex::new(Vec::new()));
    let sub = spstack::sub0().pipe_layer(link::watch(&log)).build();
    sub.control::<spstack::SubControl>()
        .unwrap()
        .subscribe("a")
        .unwrap();
    let ep = sub.listen("tcp://127.0.0.1:0").await.unwrap();
    let publ = spstack::pub0()
        .pipe_layer(link::watch(&Arc::default()))
        .build();
    publ.dial(ep.url()).await.unwrap();
    until("the subscriber's pipe", || !sub.pipes().is_empty()).await;
    for t in ["b0", "a1", "b2"] {
        publ.send(t).await.unwrap();
    }
    until("three in", || sub.stats().msgs_in == 3).await;
    until("two settled", || log.lock().unwrap().len() == 2).await;
    assert_eq!(*log.lock().unwrap(), vec![0, 2]);
    let m = tokio::time::timeout(WAIT, sub.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.body(), b"a1");
    assert_eq!(*log.lock().unwrap(), vec![0, 2, 1]);

    // a full queue that drops the oldest (SUB) is done with what it drops
    let log = Arc::new(Mutex::new(Vec::new()));
    let sub = spstack::sub0()
        .pipe_layer(link::watch(&log))
        .options(spstack::Options::default().recv_queue(2))
        .build();
    sub.control::<spstack::SubControl>()
        .unwrap()
        .subscribe("")
        .unwrap();
    let ep = sub.listen("tcp://127.0.0.1:0").await.unwrap();
    publ.dial(ep.url()).await.unwrap();
    until("the second subscriber's pipe", || !sub.pipes().is_empty()).await;
    for i in 0..5u8 {
        publ.send(vec![i]).await.unwrap();
    }
    until("five in", || sub.stats().msgs_in == 5).await;
    until("three evicted and settled", || {
        log.lock().unwrap().len() == 3
    })
    .await;
    assert_eq!(sub.stats().drops(DropReason::QueueFull), 3);
    for i in 3..5u8 {
        let m = tokio::time::timeout(WAIT, sub.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(m.body(), [i]);
    }
    assert_eq!(*log.lock().unwrap(), vec![0, 1, 2, 3, 4]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layer_hands_back_what_its_pipe_held_through_the_routing() {
    let keep = || spstack::layer::PipeLayer::new(link::Keep);
    let (a, b) = (
        spstack::pull0().pipe_layer(keep()).build(),
        spstack::pull0().pipe_layer(keep()).build(),
    );
    let ea = a.listen("tcp://127.0.0.1:0").await.unwrap();
    let eb = b.listen("tcp://127.0.0.1:0").await.unwrap();
    let push = spstack::push0().pipe_layer(keep()).build();
    push.dial(ea.url()).await.unwrap();
    let to_a = push.pipes()[0];
    push.dial(eb.url()).await.unwrap();
    until("two pipes", || push.pipes().len() == 2).await;
    for i in 0..4u8 {
        push.send(vec![i]).await.unwrap();
    }
    until("two each", || {
        a.stats().msgs_in == 2 && b.stats().msgs_in == 2
    })
    .await;
    // the pipe to `a` goes: the layer hands back the two it kept, and the
    // routing sends them to `b` (where they arrive a second time: telling
    // copies apart is the layer's business, see sp-reliable's ack/1)
    push.raw().close_pipe(to_a);
    until("four at b", || b.stats().msgs_in == 4).await;
    let st = push.stats();
    assert_eq!(st.returned, 2, "{st}");
    assert!(st.requeued >= 2, "{st}");
    assert_eq!(st.msgs_out, 6, "{st}");
    assert_eq!(st.msgs_out - st.returned + st.total_drops(), 4, "{st}");
}

//! The end-to-end integrity layer on every protocol family beyond REQ/REP
//! and PUSH/PULL (those are in `crates/sp-crypto/tests/integrity.rs`), over
//! tcp: PUB/SUB (topic filtering still works: the signature is a trailer),
//! SURVEYOR/RESPONDENT (responses bound to their survey), BUS and PAIR1,
//! with raw middle hops and raw peers that inject, replay and alter.

use std::future::Future;
use std::time::{Duration, Instant};

use sp_crypto::integrity::{Integrity, IntegrityConfig, IntegrityCounts, IntegrityStats};
use sp_crypto::keys::SigningKeypair;
use spstack::{Error, Message, Protocol, Socket, SubControl, SurveyorControl};

/// Bound on one step (a send, a receive, a dial).
const STEP: Duration = Duration::from_secs(10);
/// Bound on a whole test.
const TEST: Duration = Duration::from_secs(30);
const AUDIENCE: &str = "family";

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(STEP, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

async fn bounded(test: impl Future<Output = ()>) {
    tokio::time::timeout(TEST, test)
        .await
        .expect("the test did not finish in time");
}

async fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        assert!(t0.elapsed() < STEP, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Keys that all trust one another (and nobody else).
struct Keys(Vec<SigningKeypair>);

impl Keys {
    fn new(n: usize) -> Keys {
        Keys((0..n).map(|_| SigningKeypair::generate()).collect())
    }
    fn cfg(&self, me: usize) -> IntegrityConfig {
        IntegrityConfig::new(
            self.0[me].clone(),
            self.0.iter().map(|k| k.verifying_key()),
            AUDIENCE,
        )
        .unwrap()
    }
}

async fn listen(s: &Socket) -> String {
    within("listen", s.listen("tcp://127.0.0.1:0"))
        .await
        .unwrap()
        .url()
        .to_string()
}

async fn recv_body(s: &Socket) -> Vec<u8> {
    within("recv", s.recv()).await.unwrap().body().to_vec()
}

/// Polls `s` (which runs the verification) until `done`, failing if any
/// message is delivered meanwhile.
async fn drain_refused(s: &Socket, what: &str, done: impl Fn() -> bool) {
    within(what, async {
        while !done() {
            let r = tokio::time::timeout(Duration::from_millis(50), s.recv()).await;
            assert!(r.is_err(), "{what}: a message was delivered: {r:?}");
        }
    })
    .await;
}

fn only_verified(n: u64) -> IntegrityCounts {
    IntegrityCounts {
        verified: n,
        ..IntegrityCounts::default()
    }
}

// ---------------------------------------------------------------------------
// PUB/SUB
// ---------------------------------------------------------------------------

#[tokio::test]
async fn pub_sub_topics_filter_signed_messages_and_unsigned_ones_are_dropped() {
    bounded(async {
        let keys = Keys::new(1);
        let publisher = Integrity::new(keys.cfg(0));
        let pub_stats = publisher.stats();
        let signed_pub = spstack::pub0().message_layer(publisher).build();
        let signed_url = listen(&signed_pub).await;
        // a PUB with no integrity layer, on the same SUBs
        let raw_pub = spstack::raw(Protocol::Pub0).build();
        let raw_url = listen(&raw_pub).await;

        let mut subs: Vec<(Socket, IntegrityStats)> = Vec::new();
        for topic in ["weather/", "sport/"] {
            let layer = Integrity::new(keys.cfg(0));
            let stats = layer.stats();
            let s = spstack::sub0().message_layer(layer).build();
            s.control::<SubControl>()
                .unwrap()
                .subscribe(topic.as_bytes())
                .unwrap();
            within("sub dials the signed pub", s.dial(&signed_url))
                .await
                .unwrap();
            within("sub dials the raw pub", s.dial(&raw_url))
                .await
                .unwrap();
            subs.push((s, stats));
        }
        wait_until("both SUBs at the signed PUB", || {
            signed_pub.pipes().len() == 2
        })
        .await;
        wait_until("both SUBs at the raw PUB", || raw_pub.pipes().len() == 2).await;

        // unsigned, on topics both SUBs subscribe to: past SUB's filter,
        // refused by the layer
        for forged in ["weather/forged storm", "sport/forged result"] {
            within("raw pub sends", raw_pub.raw().send(Message::from(forged)))
                .await
                .unwrap();
        }
        let sent = [
            "weather/paris 21C",
            "sport/ski open",
            "news/nobody listens",
            "weather/oslo -3C",
            "sport/f1 starts",
        ];
        for (i, body) in sent.iter().enumerate() {
            if i % 2 == 0 {
                // new_message reserves the trailer: signed without a copy
                let mut m = signed_pub.new_message(body.len());
                m.body_mut().copy_from_slice(body.as_bytes());
                within("signed pub sends", signed_pub.send(m))
                    .await
                    .unwrap();
            } else {
                within("signed pub sends", signed_pub.send(*body))
                    .await
                    .unwrap();
            }
        }
        assert_eq!(pub_stats.signed(), 5);

        let (weather, weather_stats) = &subs[0];
        let (sport, sport_stats) = &subs[1];
        // one pipe keeps its order; the forged message is never delivered
        assert_eq!(recv_body(weather).await, b"weather/paris 21C");
        assert_eq!(recv_body(weather).await, b"weather/oslo -3C");
        assert_eq!(recv_body(sport).await, b"sport/ski open");
        assert_eq!(recv_body(sport).await, b"sport/f1 starts");
        drain_refused(weather, "weather SUB refuses the forged", || {
            weather_stats.unsigned() == 1
        })
        .await;
        drain_refused(sport, "sport SUB refuses the forged", || {
            sport_stats.unsigned() == 1
        })
        .await;
        for (name, stats) in [("weather", weather_stats), ("sport", sport_stats)] {
            let s = stats.snapshot();
            assert_eq!(
                (s.verified, s.unsigned, s.total_dropped()),
                (2, 1, 1),
                "{name}: {s:?}"
            );
        }
    })
    .await;
}

// ---------------------------------------------------------------------------
// SURVEYOR/RESPONDENT
// ---------------------------------------------------------------------------

/// The survey id: the last word of a response's backtrace.
fn survey_id(m: &Message) -> Vec<u8> {
    let h = m.header();
    h[h.len().saturating_sub(4)..].to_vec()
}

#[tokio::test]
async fn survey_responses_verify_and_a_replayed_response_is_refused() {
    bounded(async {
        // key 0 surveys, keys 1..=3 respond
        let keys = Keys::new(4);
        // surveyor -> [raw RESPONDENT | raw SURVEYOR] -> respondents; the
        // hop keeps the first response it sees and, in the next survey,
        // sends it again (under the new survey's routing words) before the
        // first real response
        let front = spstack::raw(Protocol::Respondent0).build();
        let back = spstack::raw(Protocol::Surveyor0).build();
        let front_url = listen(&front).await;
        let back_url = listen(&back).await;

        let mut resp_stats = Vec::new();
        for i in 1..=3 {
            let layer = Integrity::replier(keys.cfg(i));
            resp_stats.push(layer.stats());
            let r = spstack::respondent0().message_layer(layer).build();
            within("respondent dials", r.dial(&back_url)).await.unwrap();
            tokio::spawn(async move {
                while let Ok(q) = r.recv().await {
                    let mut a = format!("r{i}:").into_bytes();
                    a.extend_from_slice(q.body());
                    if r.send(a).await.is_err() {
                        return;
                    }
                }
            });
        }
        wait_until("three respondents at the hop", || back.pipes().len() == 3).await;

        let (f, b) = (front.clone(), back.clone());
        tokio::spawn(async move {
            while let Ok(mut m) = f.raw().recv().await {
                m.set_pipe(None);
                if b.raw().send(m).await.is_err() {
                    return;
                }
            }
        });
        let (f, b) = (front.clone(), back.clone());
        tokio::spawn(async move {
            let mut captured: Option<(Vec<u8>, Vec<u8>)> = None; // (survey id, body)
            let mut replayed = false;
            while let Ok(m) = b.raw().recv().await {
                let id = survey_id(&m);
                match &captured {
                    None => captured = Some((id.clone(), m.body().to_vec())),
                    Some((old_id, old_body)) if !replayed && *old_id != id => {
                        let mut old = Message::from(old_body.clone());
                        old.push_header(m.header());
                        if f.raw().send(old).await.is_err() {
                            return;
                        }
                        replayed = true;
                    }
                    _ => {}
                }
                let mut out = Message::from(m.body().to_vec());
                out.push_header(m.header());
                if f.raw().send(out).await.is_err() {
                    return;
                }
            }
        });

        let layer = Integrity::requester(keys.cfg(0));
        let stats = layer.stats();
        let surveyor = spstack::surveyor0().message_layer(layer).build();
        surveyor
            .control::<SurveyorControl>()
            .unwrap()
            .set_deadline(Duration::from_millis(500));
        within("surveyor dials", surveyor.dial(&front_url))
            .await
            .unwrap();
        wait_until("the surveyor at the hop", || front.pipes().len() == 1).await;

        for (n, question) in ["who is there?", "still there?"].iter().enumerate() {
            within("survey", surveyor.send(*question)).await.unwrap();
            let mut got = Vec::new();
            loop {
                match within("response", surveyor.recv()).await {
                    Ok(m) => got.push(String::from_utf8(m.body().to_vec()).unwrap()),
                    Err(Error::TimedOut(_)) => break,
                    Err(e) => panic!("survey {n}: {e}"),
                }
            }
            got.sort();
            let want: Vec<String> = (1..=3).map(|i| format!("r{i}:{question}")).collect();
            assert_eq!(got, want, "survey {n}: exactly the three fresh responses");
            let s = stats.snapshot();
            if n == 0 {
                assert_eq!(
                    s,
                    IntegrityCounts {
                        signed: 1,
                        ..only_verified(3)
                    }
                );
            } else {
                // the old response names the first survey: not bound to this one
                assert_eq!(
                    (s.verified, s.unbound_reply, s.total_dropped()),
                    (6, 1, 1),
                    "{s:?}"
                );
            }
        }
        for (i, r) in resp_stats.iter().enumerate() {
            let s = r.snapshot();
            assert_eq!(
                (s.verified, s.signed, s.total_dropped()),
                (2, 2, 0),
                "r{}",
                i + 1
            );
        }
    })
    .await;
}

// ---------------------------------------------------------------------------
// BUS
// ---------------------------------------------------------------------------

#[tokio::test]
async fn bus_of_three_every_message_verified_at_the_others() {
    bounded(async {
        let keys = Keys::new(3);
        let mut nodes = Vec::new();
        for i in 0..3 {
            let layer = Integrity::new(keys.cfg(i));
            let stats = layer.stats();
            let s = spstack::bus0().message_layer(layer).build();
            let url = listen(&s).await;
            nodes.push((s, stats, url));
        }
        // a full mesh: 1 dials 0; 2 dials 0 and 1
        within("dial", nodes[1].0.dial(&nodes[0].2)).await.unwrap();
        within("dial", nodes[2].0.dial(&nodes[0].2)).await.unwrap();
        within("dial", nodes[2].0.dial(&nodes[1].2)).await.unwrap();
        for (i, (s, _, _)) in nodes.iter().enumerate() {
            wait_until(&format!("node {i} has two peers"), || s.pipes().len() == 2).await;
        }
        for (i, (s, _, _)) in nodes.iter().enumerate() {
            within("bus send", s.send(format!("from node {i}").into_bytes()))
                .await
                .unwrap();
        }
        for (i, (s, _, _)) in nodes.iter().enumerate() {
            let mut got = vec![recv_body(s).await, recv_body(s).await];
            got.sort();
            let want: Vec<Vec<u8>> = (0..3)
                .filter(|&j| j != i)
                .map(|j| format!("from node {j}").into_bytes())
                .collect();
            assert_eq!(got, want, "node {i}");
        }
        for (i, (_, stats, _)) in nodes.iter().enumerate() {
            assert_eq!(
                stats.snapshot(),
                IntegrityCounts {
                    signed: 1,
                    ..only_verified(2)
                },
                "node {i}"
            );
        }
    })
    .await;
}

// ---------------------------------------------------------------------------
// PAIR1
// ---------------------------------------------------------------------------

/// What `from` receives goes to `to`, its body passed through `edit` with
/// the message's index; the header (PAIR1's hop count) is kept.
fn hop(
    from: Socket,
    to: Socket,
    edit: impl Fn(usize, &mut Vec<u8>) + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut i = 0;
        while let Ok(m) = from.raw().recv().await {
            let mut body = m.body().to_vec();
            edit(i, &mut body);
            let mut out = Message::from(body);
            out.push_header(m.header());
            if to.raw().send(out).await.is_err() {
                return;
            }
            i += 1;
        }
    })
}

#[tokio::test]
async fn pair1_round_trip_verifies_and_a_flipped_byte_is_dropped() {
    bounded(async {
        let keys = Keys::new(2);
        // a <-> [raw PAIR1 | raw PAIR1] <-> b
        let la = Integrity::new(keys.cfg(0));
        let a_stats = la.stats();
        let a = spstack::pair1().message_layer(la).build();
        let lb = Integrity::new(keys.cfg(1));
        let b_stats = lb.stats();
        let b = spstack::pair1().message_layer(lb).build();
        let b_url = listen(&b).await;
        let front = spstack::raw(Protocol::Pair1).build();
        let back = spstack::raw(Protocol::Pair1).build();
        let front_url = listen(&front).await;
        within("hop dials b", back.dial(&b_url)).await.unwrap();
        within("a dials the hop", a.dial(&front_url)).await.unwrap();
        wait_until("the hop joined", || {
            front.pipes().len() == 1 && back.pipes().len() == 1 && b.pipes().len() == 1
        })
        .await;
        // a -> b: the first message gets its first payload byte flipped
        let _there = hop(front.clone(), back.clone(), |i, body| {
            if i == 0 {
                body[0] ^= 0x01;
            }
        });
        let _back = hop(back.clone(), front.clone(), |_, _| {});

        within("send", a.send("ping 1")).await.unwrap();
        within("send", a.send("ping 2")).await.unwrap();
        // the altered one was refused; the next on the same pipe arrives
        assert_eq!(recv_body(&b).await, b"ping 2");
        within("reply", b.send("pong 2")).await.unwrap();
        assert_eq!(recv_body(&a).await, b"pong 2");

        let s = b_stats.snapshot();
        assert_eq!(
            (s.bad_signature, s.verified, s.total_dropped()),
            (1, 1, 1),
            "{s:?}"
        );
        assert_eq!(
            a_stats.snapshot(),
            IntegrityCounts {
                signed: 2,
                ..only_verified(1)
            }
        );
    })
    .await;
}

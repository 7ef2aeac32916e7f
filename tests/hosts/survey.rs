//! SURVEYOR with three respondents on three hosts, over links that fail:
//!
//! * r3 answers through a fault proxy: 100 ms delay, up to 300 ms jitter,
//!   10 % loss stalling 400 ms (its answers often miss the 500 ms deadline);
//! * r2 is partitioned for five surveys, then healed: TCP delivers the
//!   surveys it missed, it answers them, all late;
//! * r1 receives a survey and dies before answering (killed), then comes
//!   back.
//!
//! Expected: every survey ends with `TimedOut(deadline)`, never before its
//! deadline; only answers to the current survey reach the application;
//! every answer a respondent wrote reaches the surveyor and is either
//! delivered or counted `Late` (the surveyor files answers as its
//! application polls, so a last survey files the stragglers); the one
//! answer never written is the killed respondent's.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use spstack::{DropReason, Error, Socket, SurveyorControl};

use crate::net::{Host, Net, Node, Seg};
use crate::proxy::{Faults, Proxy, Spec};
use crate::{eventually, opts, serial};

const PORT: u16 = 7400;
const DEADLINE: Duration = Duration::from_millis(500);
const SURVEYS: u32 = 30;
/// r2 is cut off for these surveys.
const PARTITION: std::ops::Range<u32> = 10..15;
/// r1 receives this one and dies before answering.
const DIES_AT: u32 = 20;

struct Respondent {
    node: Node,
    sock: Socket,
    proxy: Option<Proxy>,
}

/// Respondent `i` on `host`: answers "r<i> <n>" to "survey <n>", except
/// that it never answers survey `hold` (it is about to die).
async fn respondent(
    host: &Host,
    i: u32,
    to: SocketAddr,
    faults: Option<Spec>,
    hold: Option<u32>,
) -> Respondent {
    let node = Node::start(host, &format!("r{i}"));
    let (sock, proxy) = node
        .run(async move {
            let (url, proxy) = match faults {
                Some(spec) => {
                    let p = Proxy::start("127.0.0.1:0".parse().unwrap(), to, spec)
                        .await
                        .expect("proxy");
                    (p.url(), Some(p))
                }
                None => (format!("tcp://{to}"), None),
            };
            let r = spstack::respondent0().options(opts()).build();
            r.dial_background(&url).unwrap();
            let r2 = r.clone();
            tokio::spawn(async move {
                while let Ok(m) = r2.recv().await {
                    let text = String::from_utf8_lossy(m.body()).into_owned();
                    let n: u32 = text
                        .strip_prefix("survey ")
                        .and_then(|n| n.parse().ok())
                        .unwrap_or_else(|| panic!("r{i} got {text:?}"));
                    if Some(n) == hold {
                        std::future::pending::<()>().await;
                    }
                    if r2.send(format!("r{i} {n}")).await.is_err() {
                        break;
                    }
                }
            });
            (r, proxy)
        })
        .await;
    Respondent { node, sock, proxy }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn surveys_hold_their_deadline_and_count_late_and_lost_answers() {
    let _g = serial().await;
    let net = Net::new("survey");
    let s: Seg = net.segment();
    let sh = net.host("surveyor", &[s]);
    let rh: Vec<Host> = (1..=3).map(|i| net.host(&format!("r{i}"), &[s])).collect();
    let node = Node::start(&sh, "surveyor");
    let at = SocketAddr::from((sh.addr(s), PORT));
    let surveyor = node
        .run(async move {
            let sv = spstack::surveyor0().options(opts()).build();
            sv.control::<SurveyorControl>()
                .unwrap()
                .set_deadline(DEADLINE);
            sv.listen(&format!("tcp://{at}")).await.expect("listen");
            sv
        })
        .await;
    let mut lossy = Faults::delay(100, 300).loss(0.1);
    lossy.rto = Duration::from_millis(400);
    let mut r = vec![
        respondent(&rh[0], 1, at, None, Some(DIES_AT)).await,
        respondent(&rh[1], 2, at, None, None).await,
        respondent(&rh[2], 3, at, Some(Spec::sp(7, lossy.clone(), lossy)), None).await,
    ];
    let sv = surveyor.clone();
    eventually(30, "three respondents", || sv.pipes().len(), |n| *n == 3).await;

    // every socket any respondent ever had (their counters outlive them)
    let mut all_respondents: Vec<Socket> = r.iter().map(|x| x.sock.clone()).collect();
    let mut delivered = 0u64;
    let mut per_survey = Vec::new();
    for n in 0..SURVEYS {
        if n == PARTITION.start {
            net.cut(&rh[1], s);
        }
        if n == PARTITION.end {
            net.heal(&rh[1], s);
        }
        if n == DIES_AT + 1 {
            // r1 got survey DIES_AT and never answered it: kill it, bring a
            // new one up (it answers everything)
            let old = r.remove(0);
            old.node.kill();
            let fresh = respondent(&rh[0], 1, at, None, None).await;
            all_respondents.push(fresh.sock.clone());
            r.insert(0, fresh);
            let sv = surveyor.clone();
            eventually(30, "r1 back", || sv.pipes().len(), |n| *n == 3).await;
        }
        let sv = surveyor.clone();
        let (got, elapsed) = node
            .run(async move {
                let t0 = Instant::now();
                sv.send(format!("survey {n}")).await.expect("survey");
                let mut got = 0u64;
                loop {
                    match sv.recv().await {
                        Ok(m) => {
                            let text = String::from_utf8_lossy(m.body()).into_owned();
                            assert!(
                                text.ends_with(&format!(" {n}")),
                                "survey {n} delivered {text:?}"
                            );
                            got += 1;
                        }
                        Err(Error::TimedOut(d)) => {
                            assert_eq!(d, DEADLINE);
                            break;
                        }
                        Err(e) => panic!("survey {n}: {e}"),
                    }
                }
                (got, t0.elapsed())
            })
            .await;
        assert!(
            elapsed >= DEADLINE,
            "survey {n} ended before its deadline ({elapsed:?})"
        );
        assert!(
            elapsed < DEADLINE + Duration::from_secs(5),
            "survey {n} outlived its deadline ({elapsed:?})"
        );
        delivered += got;
        per_survey.push(got);
    }

    // everything written reaches the surveyor: nothing lost on the way
    let written = |all: &[Socket]| all.iter().map(|s| s.stats().msgs_out).sum::<u64>();
    let (sv, all) = (surveyor.clone(), all_respondents.clone());
    eventually(
        60,
        "every answer written reaches the surveyor",
        || (sv.stats().msgs_in, written(&all)),
        |(got, wrote)| got == wrote,
    )
    .await;
    // the surveyor files answers when its application polls: one more survey
    // (with time for all three) files the stragglers still queued as late
    let sv = surveyor.clone();
    let last = node
        .run(async move {
            let ctl = sv.control::<SurveyorControl>().unwrap();
            ctl.set_deadline(Duration::from_secs(30));
            sv.send(format!("survey {SURVEYS}")).await.expect("survey");
            let mut got = 0u64;
            while got < 3 {
                let m = sv.recv().await.expect("an answer to the last survey");
                let text = String::from_utf8_lossy(m.body()).into_owned();
                assert!(text.ends_with(&format!(" {SURVEYS}")), "{text:?}");
                got += 1;
            }
            ctl.set_deadline(DEADLINE);
            got
        })
        .await;
    delivered += last;
    let (late, wrote) = (
        surveyor.stats().drops(DropReason::Late),
        written(&all_respondents),
    );
    assert_eq!(
        delivered + late,
        wrote,
        "every answer written was delivered or counted late: {}",
        surveyor.stats()
    );
    let received: u64 = all_respondents.iter().map(|s| s.stats().msgs_in).sum();
    assert_eq!(
        received - wrote,
        1,
        "one survey was never answered: the one r1 died with"
    );
    assert!(
        late >= PARTITION.len() as u64,
        "r2's answers from behind the partition came late: {late}"
    );
    let r3proxy = r[2].proxy.as_ref().expect("r3 has a proxy").stats();
    assert!(r3proxy.lost > 0, "{r3proxy:?}");
    eprintln!(
        "figures: survey ({SURVEYS} surveys, 3 respondents, deadline {DEADLINE:?}): {delivered} \
         answers in time, {late} late (counted), 1 lost with a killed respondent; answers per \
         survey {per_survey:?}"
    );
}

//! The protocol headers a peer puts in front of a message body: REQ/REP and
//! SURVEYOR/RESPONDENT backtraces (request and survey ids), PAIR1's hop
//! count, and the raw protocols that take no header. Parsed by each
//! protocol's `Routing::recv` (sp-protocols), then by the cooked state
//! machines (`ReqState::on_reply`, `SurveyState::on_response`).

use std::time::Duration;

use sp_core::routing::{MemPipes, Routed, Routing};
use sp_core::{Message, Verdict};
use sp_protocols::req::ReplyOutcome;
use sp_protocols::survey::{Next, ResponseOutcome, SurveyState};
use sp_protocols::{raw, Bus0Raw, Pair1Raw, Pub0Raw, ReqState, Sub0Raw};
use sp_protocols::{Respondent0Raw, Surveyor0Raw};
use tokio::time::Instant;

use crate::input::Input;

const PIPE: u32 = 7;

fn word(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// A delivered answer (raw REQ, raw SURVEYOR) has the whole backtrace in
/// its header: pipe words, then one word with the top bit, at most ttl + 1.
fn check_answer(frame: &[u8], m: &Message, ttl: u8) {
    let h = m.header();
    assert!(h.len() >= 4 && h.len() % 4 == 0, "header {h:02x?}");
    let words: Vec<u32> = h.chunks(4).map(word).collect();
    let (last, hops) = words.split_last().expect("at least one word");
    assert!(last & 0x8000_0000 != 0);
    assert!(hops.iter().all(|w| w & 0x8000_0000 == 0));
    assert!(words.len() <= ttl as usize + 1);
    assert_eq!(
        [h, m.body()].concat(),
        frame,
        "header and body are the frame"
    );
}

/// A delivered question (raw REP, raw RESPONDENT): the arriving pipe's id,
/// then the backtrace; sending it routes back to that pipe with exactly the
/// backtrace it came with.
fn check_question(r: &dyn Routing, frame: &[u8], m: &Message, ttl: u8) {
    let h = m.header();
    assert_eq!(word(h), PIPE);
    let bt = &h[4..];
    assert!(!bt.is_empty() && bt.len() % 4 == 0);
    assert!(bt.len() / 4 <= ttl as usize);
    assert_eq!([bt, m.body()].concat(), frame);
    let mut pipes = MemPipes::new(&[PIPE], 1);
    assert!(matches!(
        r.send(m.clone(), &mut pipes),
        Routed::Queued(Some(PIPE))
    ));
    let sent = &pipes.queued(PIPE)[0];
    assert_eq!(sent.header(), bt);
    assert_eq!(sent.body(), m.body());
}

/// Fuzz target `protocol_headers`: frames from a peer through one raw
/// protocol's receive, and the delivered ones through the cooked REQ or
/// SURVEYOR state that waits for an answer.
pub fn protocol_headers(data: &[u8]) {
    let mut inp = Input::new(data);
    let which = inp.u8() % 13;
    let ttl = inp.u8();
    let sub = Sub0Raw::new();
    if which == 12 {
        // raw SUB narrowed to the topics the input names
        if let Some(ctl) = sub.control() {
            let _ = ctl.unsubscribe(b"");
            for _ in 0..inp.u8() % 4 {
                let _ = ctl.subscribe(inp.short());
            }
        }
    }
    let r: &dyn Routing = match which {
        0 => &raw::Pair0Raw,
        1 => &raw::Push0Raw,
        2 => &raw::Pull0Raw,
        3 => &raw::Req0Raw,
        4 => &raw::Rep0Raw,
        5 => &Surveyor0Raw,
        6 => &Respondent0Raw,
        7 => &Bus0Raw,
        8 => &Pair1Raw::MONO,
        9 => &Pair1Raw::POLY,
        10 => &Pub0Raw,
        _ => &sub,
    };
    // the cooked side waits on one request (REQ) or survey (SURVEYOR)
    // whose id the input may guess: it is the first word it gives
    let t0 = Instant::now();
    let mut req = ReqState::new(None);
    let mut survey = SurveyState::new(4);
    let wire = req.start(1, Message::from(&b"q"[..]));
    req.sent(1, Some(PIPE), t0);
    let survey_id = word(
        survey
            .start(1, Message::from(&b"q"[..]), t0, Duration::from_secs(1))
            .header(),
    );
    let mut req_id = word(wire.header());

    let mut frames = 0;
    while !inp.is_empty() && frames < 64 {
        frames += 1;
        let frame = inp.chunk();
        let mut m = Message::with_headroom(r.recv_headroom(), frame);
        let mut pipes = MemPipes::new(&[PIPE, PIPE + 1], 2).with_ttl(ttl);
        match r.recv(PIPE, &mut m, &mut pipes) {
            Verdict::Deliver => match which {
                3 => {
                    check_answer(frame, &m, ttl);
                    let direct = m.header().len() == 4 && word(m.header()) == req_id;
                    match req.on_reply(Some(PIPE), m.clone()) {
                        ReplyOutcome::Matched(1, _) => {
                            assert!(direct, "matched a reply that is not to our request");
                            let reply = req.take_reply(1).expect("the matched reply");
                            assert_eq!(reply.body(), m.body());
                            assert!(reply.header().is_empty());
                            // the next request on the context
                            let w = req.start(1, Message::from(&b"q"[..]));
                            req.sent(1, Some(PIPE), t0);
                            let id = word(w.header());
                            assert_ne!(id, req_id, "a new request has a new id");
                            req_id = id;
                        }
                        ReplyOutcome::Matched(c, _) => panic!("matched context {c}"),
                        ReplyOutcome::Late | ReplyOutcome::Malformed => {}
                        ReplyOutcome::WrongPipe => panic!("it came from the request's pipe"),
                    }
                }
                5 => {
                    check_answer(frame, &m, ttl);
                    let direct = m.header().len() == 4 && word(m.header()) == survey_id;
                    match survey.on_response(m.clone(), t0) {
                        ResponseOutcome::Matched(1, _) => {
                            assert!(direct, "matched a response to another survey");
                            match survey.next(1, t0) {
                                Next::Response(r) => assert_eq!(r.body(), m.body()),
                                other => panic!("the matched response is not next: {other:?}"),
                            }
                        }
                        ResponseOutcome::Matched(c, _) => panic!("matched context {c}"),
                        ResponseOutcome::Full => panic!("one response at a time fills no queue"),
                        ResponseOutcome::Late | ResponseOutcome::Malformed => {
                            assert!(!direct, "refused a response to the open survey")
                        }
                    }
                }
                4 | 6 => check_question(r, frame, &m, ttl),
                8 | 9 => {
                    let hops = word(m.header());
                    assert_eq!(m.header().len(), 4);
                    assert!(hops <= u32::from(ttl));
                    // a device forwards it with one hop more
                    let mut out = MemPipes::new(&[PIPE + 1], 1);
                    if let Routed::Queued(Some(_)) = r.send(m.clone(), &mut out) {
                        assert_eq!(word(out.queued(PIPE + 1)[0].header()), hops + 1);
                    }
                }
                _ => {
                    assert!(m.header().is_empty());
                    assert_eq!(m.body(), frame);
                }
            },
            Verdict::Drop(_) | Verdict::Consumed => {}
            Verdict::Close(why) => assert!(!why.is_empty()),
        }
    }
}

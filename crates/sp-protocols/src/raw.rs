//! Raw (device-level) protocols: routing and header parsing, no I/O, no state.

use sp_core::layer::Field;
use sp_core::{
    backtrace_field, DropReason, Message, PipeId, ProtocolId, RawProtocol, SendMode, Verdict,
};

/// Moves the backtrace (u32 BE words up to the first with the top bit set)
/// from the body into the header. Counts words; `None` when the body ends
/// before a terminating word.
pub(crate) fn take_backtrace(msg: &mut Message) -> Option<usize> {
    let mut words = 0;
    loop {
        let b = msg.body();
        if b.len() < 4 {
            return None;
        }
        let top = b[0] & 0x80 != 0;
        msg.body_to_header(4);
        words += 1;
        if top {
            return Some(words);
        }
        // bounded by the body length: no allocation, no recursion; more than
        // 256 words exceeds any TTL (at most 255) plus the replying hop
        if words > 256 {
            return None;
        }
    }
}

/// The answering side's receive (raw REQ, raw SURVEYOR): the whole
/// backtrace of a reply goes into the header. `what` and `id` name the
/// message and its id in errors ("reply"/"request id", "response"/"survey id"). A reply carries one word more than its
/// request did at the REP that accepted it (that REP's own pipe id), so the
/// limit is the TTL plus one.
pub(crate) fn recv_answer(msg: &mut Message, ttl: u8, what: &str, id: &str) -> Verdict {
    if msg.body().len() < 4 {
        return Verdict::Close(format!("{what} shorter than its 4-byte {id}"));
    }
    match take_backtrace(msg) {
        None => Verdict::Close(format!("{what} backtrace with no terminating word")),
        Some(n) if n > ttl as usize + 1 => Verdict::Drop(DropReason::TtlExceeded),
        Some(_) => Verdict::Deliver,
    }
}

/// The asked side's receive (raw REP, raw RESPONDENT): checks the backtrace
/// against the TTL (dropping, not closing, as nng) and prepends the arriving
/// pipe's id, which a send then routes by.
pub(crate) fn recv_question(pipe: PipeId, msg: &mut Message, ttl: u8, what: &str) -> Verdict {
    match take_backtrace(msg) {
        None => Verdict::Close(format!("{what} backtrace with no terminating word")),
        Some(n) if n > ttl as usize => Verdict::Drop(DropReason::TtlExceeded),
        Some(_) => {
            msg.push_header_u32(pipe);
            Verdict::Deliver
        }
    }
}

/// PAIR v0, raw: one peer, no header.
#[derive(Clone, Copy, Debug, Default)]
pub struct Pair0Raw;

impl RawProtocol for Pair0Raw {
    fn protocol(&self) -> ProtocolId {
        ProtocolId::PAIR0
    }
    fn peer(&self) -> ProtocolId {
        ProtocolId::PAIR0
    }
    fn send_mode(&self) -> SendMode {
        SendMode::LoadBalance
    }
    fn max_pipes(&self) -> usize {
        1
    }
    fn on_recv(&self, _: PipeId, _: &mut Message, _: u8) -> Verdict {
        Verdict::Deliver
    }
}

/// PUSH v0, raw: round-robin to pipes with room, back-pressure when none.
#[derive(Clone, Copy, Debug, Default)]
pub struct Push0Raw;

impl RawProtocol for Push0Raw {
    fn protocol(&self) -> ProtocolId {
        ProtocolId::PUSH0
    }
    fn peer(&self) -> ProtocolId {
        ProtocolId::PULL0
    }
    fn send_mode(&self) -> SendMode {
        SendMode::LoadBalance
    }
    fn on_recv(&self, _: PipeId, _: &mut Message, _: u8) -> Verdict {
        // a PULL never sends; whatever arrives is a protocol violation
        Verdict::Drop(DropReason::Malformed)
    }
}

/// PULL v0, raw: fair-queues everything its pushers send.
#[derive(Clone, Copy, Debug, Default)]
pub struct Pull0Raw;

impl RawProtocol for Pull0Raw {
    fn protocol(&self) -> ProtocolId {
        ProtocolId::PULL0
    }
    fn peer(&self) -> ProtocolId {
        ProtocolId::PUSH0
    }
    fn send_mode(&self) -> SendMode {
        SendMode::Never
    }
    fn on_recv(&self, _: PipeId, _: &mut Message, _: u8) -> Verdict {
        Verdict::Deliver
    }
}

/// REQ v0, raw (nng's xreq): load-balances requests; on receive moves the
/// whole backtrace into the header.
#[derive(Clone, Copy, Debug, Default)]
pub struct Req0Raw;

impl RawProtocol for Req0Raw {
    fn protocol(&self) -> ProtocolId {
        ProtocolId::REQ0
    }
    fn peer(&self) -> ProtocolId {
        ProtocolId::REP0
    }
    fn send_mode(&self) -> SendMode {
        SendMode::LoadBalance
    }
    fn on_recv(&self, _: PipeId, msg: &mut Message, ttl: u8) -> Verdict {
        recv_answer(msg, ttl, "reply", "request id")
    }
    fn header_format(&self) -> Vec<Field> {
        vec![backtrace_field("backtrace")]
    }
}

/// REP v0, raw (nng's xrep): on receive, checks the backtrace against the
/// TTL and prepends the arriving pipe's id; on send, routes by that id.
#[derive(Clone, Copy, Debug, Default)]
pub struct Rep0Raw;

impl RawProtocol for Rep0Raw {
    fn protocol(&self) -> ProtocolId {
        ProtocolId::REP0
    }
    fn peer(&self) -> ProtocolId {
        ProtocolId::REQ0
    }
    fn send_mode(&self) -> SendMode {
        SendMode::ToHeaderPipe
    }
    fn on_recv(&self, pipe: PipeId, msg: &mut Message, ttl: u8) -> Verdict {
        recv_question(pipe, msg, ttl, "request")
    }
    fn header_format(&self) -> Vec<Field> {
        vec![backtrace_field("backtrace")]
    }
}

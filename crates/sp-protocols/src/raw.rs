//! Raw (device-level) protocols: routing and header parsing, no I/O, no
//! state. Each is a [`Routing`]; the patterns they share (load balancing,
//! fan-out, routing by a header word) are the provided methods of
//! [`Pipes`], written once in sp-core.

use sp_core::layer::Field;
use sp_core::protocol::{ProtocolId, ProtocolSpec};
use sp_core::routing::{Pipes, RecvContext, Routed};
use sp_core::{backtrace_field, DropReason, Error, Message, PipeId, Routing, Verdict};

/// The spec of a built-in protocol, from the registry's table.
pub(crate) fn builtin(id: ProtocolId) -> ProtocolSpec {
    sp_core::protocol::BUILTIN
        .iter()
        .copied()
        .find(|s| s.id == id)
        .unwrap_or(ProtocolSpec::new(id, "unknown", id))
}

/// Load balancing with back-pressure: the next pipe with room, or wait.
pub(crate) fn send_balanced(msg: Message, pipes: &mut dyn Pipes) -> Routed {
    match pipes.balance(msg) {
        Ok(id) => Routed::Queued(Some(id)),
        Err(m) => Routed::Wait(m),
    }
}

/// Moves a message off a dying pipe to another, or counts it.
pub(crate) fn requeue_balanced(msg: Message, pipes: &mut dyn Pipes) -> Routed {
    match pipes.requeue_balanced(msg) {
        Ok(id) => Routed::Queued(Some(id)),
        Err(_) => Routed::Dropped(DropReason::PipeClosed),
    }
}

/// Routes by the first header word, the pipe id a raw receive put there
/// (REP, RESPONDENT): never waits; a gone or full pipe drops it, counted.
pub(crate) fn send_by_header(mut msg: Message, pipes: &mut dyn Pipes) -> Routed {
    let Some(id) = msg.pop_header_u32() else {
        return Routed::Dropped(DropReason::Malformed);
    };
    if pipes.deliver(id, msg) {
        Routed::Queued(Some(id))
    } else {
        Routed::Queued(None)
    }
}

/// The half a protocol does not have.
pub(crate) fn cannot_send(what: &'static str) -> Routed {
    Routed::Refused(Error::NotSupported(what))
}

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

impl Routing for Pair0Raw {
    fn spec(&self) -> ProtocolSpec {
        builtin(ProtocolId::PAIR0)
    }
    fn recv_headroom(&self) -> usize {
        // nothing is written in front of a received frame: small frames may
        // stay views of the chunk they were read into
        0
    }
    fn send(&self, msg: Message, pipes: &mut dyn Pipes) -> Routed {
        send_balanced(msg, pipes)
    }
    fn send_ready(&self, pipes: &dyn Pipes) -> bool {
        pipes.any_room()
    }
    fn max_pipes(&self) -> usize {
        1
    }
    fn recv(&self, _: PipeId, _: &mut Message, _: &mut dyn RecvContext) -> Verdict {
        Verdict::Deliver
    }
}

/// PUSH v0, raw: round-robin to pipes with room, back-pressure when none;
/// what a dying pipe had queued moves to another.
#[derive(Clone, Copy, Debug, Default)]
pub struct Push0Raw;

impl Routing for Push0Raw {
    fn spec(&self) -> ProtocolSpec {
        builtin(ProtocolId::PUSH0)
    }
    fn recv_headroom(&self) -> usize {
        // nothing is written in front of a received frame: small frames may
        // stay views of the chunk they were read into
        0
    }
    fn send(&self, msg: Message, pipes: &mut dyn Pipes) -> Routed {
        send_balanced(msg, pipes)
    }
    fn send_ready(&self, pipes: &dyn Pipes) -> bool {
        pipes.any_room()
    }
    fn requeue(&self, msg: Message, pipes: &mut dyn Pipes) -> Routed {
        requeue_balanced(msg, pipes)
    }
    fn recv(&self, _: PipeId, _: &mut Message, _: &mut dyn RecvContext) -> Verdict {
        // a PULL never sends; whatever arrives is a protocol violation
        Verdict::Drop(DropReason::Malformed)
    }
}

/// PULL v0, raw: fair-queues everything its pushers send.
#[derive(Clone, Copy, Debug, Default)]
pub struct Pull0Raw;

impl Routing for Pull0Raw {
    fn spec(&self) -> ProtocolSpec {
        builtin(ProtocolId::PULL0)
    }
    fn recv_headroom(&self) -> usize {
        // nothing is written in front of a received frame: small frames may
        // stay views of the chunk they were read into
        0
    }
    fn send(&self, _: Message, _: &mut dyn Pipes) -> Routed {
        cannot_send("PULL cannot send")
    }
    fn recv(&self, _: PipeId, _: &mut Message, _: &mut dyn RecvContext) -> Verdict {
        Verdict::Deliver
    }
}

/// REQ v0, raw (nng's xreq): load-balances requests; on receive moves the
/// whole backtrace into the header.
#[derive(Clone, Copy, Debug, Default)]
pub struct Req0Raw;

impl Routing for Req0Raw {
    fn spec(&self) -> ProtocolSpec {
        builtin(ProtocolId::REQ0)
    }
    fn write_through(&self) -> bool {
        // request/reply: a lone message someone waits for
        true
    }
    fn recv_headroom(&self) -> usize {
        // nothing is written in front of a received frame: small frames may
        // stay views of the chunk they were read into
        0
    }
    fn send(&self, msg: Message, pipes: &mut dyn Pipes) -> Routed {
        send_balanced(msg, pipes)
    }
    fn send_ready(&self, pipes: &dyn Pipes) -> bool {
        pipes.any_room()
    }
    fn requeue(&self, msg: Message, pipes: &mut dyn Pipes) -> Routed {
        requeue_balanced(msg, pipes)
    }
    fn recv(&self, _: PipeId, msg: &mut Message, cx: &mut dyn RecvContext) -> Verdict {
        recv_answer(msg, cx.ttl(), "reply", "request id")
    }
    fn header_format(&self) -> Vec<Field> {
        vec![backtrace_field("backtrace")]
    }
}

/// REP v0, raw (nng's xrep): on receive, checks the backtrace against the
/// TTL and prepends the arriving pipe's id; on send, routes by that id.
#[derive(Clone, Copy, Debug, Default)]
pub struct Rep0Raw;

impl Routing for Rep0Raw {
    fn spec(&self) -> ProtocolSpec {
        builtin(ProtocolId::REP0)
    }
    fn write_through(&self) -> bool {
        // request/reply: a lone message someone waits for
        true
    }
    fn send(&self, msg: Message, pipes: &mut dyn Pipes) -> Routed {
        send_by_header(msg, pipes)
    }
    fn recv(&self, pipe: PipeId, msg: &mut Message, cx: &mut dyn RecvContext) -> Verdict {
        recv_question(pipe, msg, cx.ttl(), "request")
    }
    fn header_format(&self) -> Vec<Field> {
        vec![backtrace_field("backtrace")]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sp_core::routing::MemPipes;

    #[test]
    fn rep_routes_by_its_pipe_word_and_counts_what_it_cannot() {
        let mut pipes = MemPipes::new(&[5, 6], 1);
        let mut q = Message::from(&[0x80, 0, 0, 1, b'q'][..]);
        assert!(matches!(
            Rep0Raw.recv(6, &mut q, &mut pipes),
            Verdict::Deliver
        ));
        assert_eq!(q.header(), &[0, 0, 0, 6, 0x80, 0, 0, 1]);
        let reply = q.clone();
        assert!(matches!(
            Rep0Raw.send(reply, &mut pipes),
            Routed::Queued(Some(6))
        ));
        assert_eq!(pipes.queued(6)[0].header(), &[0x80, 0, 0, 1]);
        // pipe 6 is full now, pipe 9 never existed
        assert!(matches!(
            Rep0Raw.send(q.clone(), &mut pipes),
            Routed::Queued(None)
        ));
        let mut gone = q;
        gone.set_header(&[0, 0, 0, 9, 0x80, 0, 0, 1]);
        assert!(matches!(
            Rep0Raw.send(gone, &mut pipes),
            Routed::Queued(None)
        ));
        assert_eq!(
            pipes.drops(),
            &[
                (Some(6), DropReason::QueueFull),
                (None, DropReason::UnknownPipe)
            ]
        );
        assert!(matches!(
            Rep0Raw.send(Message::from("no header"), &mut pipes),
            Routed::Dropped(DropReason::Malformed)
        ));
    }

    #[test]
    fn push_waits_when_every_pipe_is_full_and_requeues_off_a_dying_one() {
        let mut pipes = MemPipes::new(&[1, 2], 1);
        assert!(matches!(
            Push0Raw.send(Message::from("a"), &mut pipes),
            Routed::Queued(Some(1))
        ));
        assert!(matches!(
            Push0Raw.send(Message::from("b"), &mut pipes),
            Routed::Queued(Some(2))
        ));
        assert!(!Push0Raw.send_ready(&pipes));
        assert!(matches!(
            Push0Raw.send(Message::from("c"), &mut pipes),
            Routed::Wait(_)
        ));
        let left = pipes.remove(1);
        for m in left {
            assert!(matches!(
                Push0Raw.requeue(m, &mut pipes),
                Routed::Queued(Some(2))
            ));
        }
        assert_eq!(
            pipes.queued(2).len(),
            2,
            "nothing lost, past the bound once"
        );
        pipes.remove(2);
        assert!(matches!(
            Push0Raw.requeue(Message::from("d"), &mut pipes),
            Routed::Dropped(DropReason::PipeClosed)
        ));
    }

    #[test]
    fn req_reply_over_the_ttl_is_dropped_not_fatal() {
        let mut pipes = MemPipes::new(&[1], 1).with_ttl(1);
        let mut r = Message::from(&[0, 0, 0, 7, 0, 0, 0, 8, 0x80, 0, 0, 1][..]);
        assert!(matches!(
            Req0Raw.recv(1, &mut r, &mut pipes),
            Verdict::Drop(DropReason::TtlExceeded)
        ));
        let mut ok = Message::from(&[0, 0, 0, 7, 0x80, 0, 0, 1, b'x'][..]);
        assert!(matches!(
            Req0Raw.recv(1, &mut ok, &mut pipes),
            Verdict::Deliver
        ));
        assert_eq!(ok.body(), b"x");
    }
}

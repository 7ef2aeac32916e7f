//! Routing: how a raw protocol picks pipes. No I/O.
//!
//! Every scalability protocol, built in or not, is a [`Routing`]: it says who
//! it is ([`ProtocolSpec`]), parses what arrives from a pipe, and chooses the
//! pipes a message goes to, through a [`Pipes`] view of the socket's pipes
//! and their send queues. The socket owns the pipes, the queues and the
//! waiting; the routing owns the decisions. Because the view is a trait, a
//! routing is tested in memory with [`MemPipes`], deterministically, with no
//! runtime and no sockets.
//!
//! ```
//! use sp_core::routing::{MemPipes, Pipes, Routed, Routing, RecvContext};
//! use sp_core::protocol::{ProtocolId, ProtocolSpec};
//! use sp_core::{Message, PipeId, Verdict};
//!
//! /// Sends every message to the pipe with the lowest id that has room.
//! struct Lowest;
//! impl Routing for Lowest {
//!     fn spec(&self) -> ProtocolSpec {
//!         ProtocolSpec::new(ProtocolId(0xf0), "lowest", ProtocolId(0xf1))
//!     }
//!     fn send(&self, msg: Message, pipes: &mut dyn Pipes) -> Routed {
//!         let mut ids = pipes.ids().to_vec();
//!         ids.sort();
//!         match ids.into_iter().find(|&id| pipes.has_room(id)) {
//!             Some(id) => match pipes.try_push(id, msg) {
//!                 Ok(()) => Routed::Queued(Some(id)),
//!                 Err(refused) => Routed::Wait(refused.msg),
//!             },
//!             None => Routed::Wait(msg),
//!         }
//!     }
//!     fn send_ready(&self, pipes: &dyn Pipes) -> bool {
//!         pipes.any_room()
//!     }
//!     fn recv(&self, _: PipeId, _: &mut Message, _: &mut dyn RecvContext) -> Verdict {
//!         Verdict::Deliver
//!     }
//! }
//!
//! let mut pipes = MemPipes::new(&[7, 3], 1); // two pipes, one message of room each
//! assert!(matches!(Lowest.send(Message::from("a"), &mut pipes), Routed::Queued(Some(3))));
//! assert!(matches!(Lowest.send(Message::from("b"), &mut pipes), Routed::Queued(Some(7))));
//! assert!(matches!(Lowest.send(Message::from("c"), &mut pipes), Routed::Wait(_)));
//! assert_eq!(pipes.queued(3).len(), 1);
//! ```

use crate::layer::{Control, Field, PipeInfo};
use crate::protocol::ProtocolSpec;
use crate::stats::{DropReason, RejectReason};
use crate::{Error, Message, PipeId};

/// What happened to a message handed to [`Routing::send`].
#[derive(Debug)]
#[must_use]
pub enum Routed {
    /// Accepted: queued on this pipe, or (`None`) fanned out, with any
    /// per-pipe drops already counted through [`Pipes::dropped`].
    Queued(Option<PipeId>),
    /// Nothing was queued and nothing counted; the message is handed back
    /// unchanged. The socket waits until a pipe has room (or joins) and
    /// offers it again: back-pressure.
    Wait(Message),
    /// Accepted and dropped; the socket counts it under this reason.
    Dropped(DropReason),
    /// Not accepted: the sender gets this error (e.g. sending on PULL).
    Refused(Error),
}

/// What to do with a received frame.
#[derive(Debug)]
pub enum Verdict {
    /// Queue it for the application.
    Deliver,
    /// Drop it and count why.
    Drop(DropReason),
    /// The protocol used it itself (a control message): neither delivered
    /// nor a loss.
    Consumed,
    /// The peer broke the protocol: close the pipe.
    Close(String),
}

/// What a full receive queue does to the next message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecvPolicy {
    /// Stop reading the pipe until there is room (back-pressure to the peer).
    Wait,
    /// Drop the oldest queued messages until the new one fits, counted as
    /// `QueueFull` (SUB).
    DropOldest,
}

/// A message a pipe's queue did not take.
#[derive(Debug)]
pub struct Refused {
    /// The message, unchanged.
    pub msg: Message,
    /// `QueueFull`, or `UnknownPipe` when the pipe is gone or closing.
    pub reason: DropReason,
}

/// The socket's pipes as a routing sees them: ids, room, send queues.
///
/// The required methods are what the socket (or [`MemPipes`]) provides; the
/// provided ones are the routing patterns of the SP family, written once.
pub trait Pipes {
    /// The open pipes, in the order they joined.
    fn ids(&self) -> &[PipeId];
    /// True when the pipe exists and its send queue has room.
    fn has_room(&self, id: PipeId) -> bool;
    /// Queues a message on a pipe, or gives it back.
    fn try_push(&mut self, id: PipeId, msg: Message) -> Result<(), Refused>;
    /// Queues even past the queue's bound (a message that lost a race for
    /// room it was promised, or moves off a dying pipe); fails only when the
    /// pipe is gone or closing.
    fn force_push(&mut self, id: PipeId, msg: Message) -> Result<(), Refused>;
    /// Counts a drop, on the pipe (if any) and on the socket.
    fn dropped(&mut self, pipe: Option<PipeId>, reason: DropReason);
    /// The round-robin position, kept across calls by the socket.
    fn cursor(&self) -> usize;
    /// Moves the round-robin position.
    fn set_cursor(&mut self, at: usize);

    /// [`Pipes::has_room`] of the pipe at position `i` of [`Pipes::ids`]:
    /// what a routing that walks the pipes calls (the socket answers without
    /// looking the id up).
    fn has_room_at(&self, i: usize) -> bool {
        self.has_room(self.ids()[i])
    }

    /// [`Pipes::try_push`] to the pipe at position `i` of [`Pipes::ids`].
    fn try_push_at(&mut self, i: usize, msg: Message) -> Result<(), Refused> {
        let id = self.ids()[i];
        self.try_push(id, msg)
    }

    /// True when some pipe has room.
    fn any_room(&self) -> bool {
        (0..self.ids().len()).any(|i| self.has_room_at(i))
    }

    /// True when there is a pipe and every pipe has room (a fan-out that
    /// must not lose a copy).
    fn all_room(&self) -> bool {
        let n = self.ids().len();
        n > 0 && (0..n).all(|i| self.has_room_at(i))
    }

    /// Round robin: the next pipe with room, starting after the last one
    /// chosen; moves the cursor past it.
    fn next_with_room(&mut self) -> Option<PipeId> {
        self.next_index_with_room().map(|i| self.ids()[i])
    }

    /// [`Pipes::next_with_room`] as a position in [`Pipes::ids`].
    fn next_index_with_room(&mut self) -> Option<usize> {
        let n = self.ids().len();
        let start = self.cursor();
        for i in 0..n {
            let at = (start + i) % n;
            if self.has_room_at(at) {
                self.set_cursor(at + 1);
                return Some(at);
            }
        }
        None
    }

    /// Load balancing: queues on the next pipe with room and returns it, or
    /// gives the message back (unchanged) when none has room.
    fn balance(&mut self, msg: Message) -> Result<PipeId, Message> {
        let n = self.ids().len();
        if n == 1 {
            // one pipe: no position to keep
            return match self.try_push_at(0, msg) {
                Ok(()) => Ok(self.ids()[0]),
                Err(r) => Err(r.msg),
            };
        }
        let start = self.cursor();
        let mut msg = msg;
        // a push that finds no room is the look: one queue lock per pipe
        for i in 0..n {
            let at = (start + i) % n;
            match self.try_push_at(at, msg) {
                Ok(()) => {
                    self.set_cursor(at + 1);
                    return Ok(self.ids()[at]);
                }
                Err(r) => msg = r.msg,
            }
        }
        Err(msg)
    }

    /// To one pipe: queued, or dropped and counted (`UnknownPipe` when it
    /// is gone, `QueueFull` when full). True when queued.
    fn deliver(&mut self, id: PipeId, msg: Message) -> bool {
        match self.try_push(id, msg) {
            Ok(()) => true,
            Err(r) => {
                let pipe = (r.reason != DropReason::UnknownPipe).then_some(id);
                self.dropped(pipe, r.reason);
                false
            }
        }
    }

    /// Fan-out: a copy (a reference count, not a copy of the bytes) to every
    /// pipe but `except`; a full pipe misses it, counted on that pipe. With
    /// no pipe to send to at all the message is counted `NoPeer`. Returns the
    /// pipes reached.
    fn broadcast(&mut self, msg: Message, except: Option<PipeId>) -> usize {
        let targets: Vec<PipeId> = self
            .ids()
            .iter()
            .copied()
            .filter(|&id| Some(id) != except)
            .collect();
        if targets.is_empty() {
            self.dropped(None, DropReason::NoPeer);
            return 0;
        }
        let mut reached = 0;
        let last = targets.len() - 1;
        let mut msg = Some(msg);
        for (i, id) in targets.into_iter().enumerate() {
            // the last pipe takes the message itself: one clone fewer
            let m = if i == last { msg.take() } else { msg.clone() };
            if let Some(m) = m {
                if self.deliver(id, m) {
                    reached += 1;
                }
            }
        }
        reached
    }

    /// Moves a message off a dying pipe to the next other pipe, past the
    /// queue bound if need be (the amount is bounded by the dying pipe's
    /// queue). Gives it back when no pipe is left.
    fn requeue_balanced(&mut self, msg: Message) -> Result<PipeId, Message> {
        let msg = match self.balance(msg) {
            Ok(id) => return Ok(id),
            Err(m) => m,
        };
        let n = self.ids().len();
        let start = self.cursor();
        let mut msg = msg;
        for i in 0..n {
            let at = (start + i) % n;
            let id = self.ids()[at];
            match self.force_push(id, msg) {
                Ok(()) => {
                    self.set_cursor(at + 1);
                    return Ok(id);
                }
                // that one is closing too: the next
                Err(r) => msg = r.msg,
            }
        }
        Err(msg)
    }
}

/// What a routing may use while it parses a received frame.
pub trait RecvContext {
    /// The socket's hop limit (`Options::ttl`).
    fn ttl(&self) -> u8;
    /// The socket's pipes, for a protocol that forwards what it receives
    /// (mangos' STAR, a flooding bus).
    fn pipes(&mut self) -> &mut dyn Pipes;
}

/// The routing half of a scalability protocol: no I/O, no waiting.
///
/// The socket calls it under its pipe table's read lock, so it must not
/// block. Per-pipe state (a group membership learned from a control
/// message, a PAIR peer) lives in the routing, kept current through
/// [`Routing::pipe_added`] and [`Routing::pipe_removed`].
pub trait Routing: Send + Sync + 'static {
    /// This protocol's identity (registered in [`crate::protocol`] when a
    /// socket is built with it).
    fn spec(&self) -> ProtocolSpec;

    /// Routes a message the socket is asked to send.
    fn send(&self, msg: Message, pipes: &mut dyn Pipes) -> Routed;

    /// True when [`Routing::send`] would not answer [`Routed::Wait`] now: a
    /// sender's `poll_ready`. A routing that never waits keeps the default.
    fn send_ready(&self, pipes: &dyn Pipes) -> bool {
        let _ = pipes;
        true
    }

    /// A message that was queued on a pipe which closed before writing it.
    /// The default drops it (counted `PipeClosed`); a load-balancing
    /// protocol moves it to another pipe ([`Pipes::requeue_balanced`]).
    /// Called with the dying pipe already gone from `pipes`.
    fn requeue(&self, msg: Message, pipes: &mut dyn Pipes) -> Routed {
        let _ = (msg, pipes);
        Routed::Dropped(DropReason::PipeClosed)
    }

    /// Parses a received flat frame: moves the protocol header from the body
    /// into the header and checks it.
    fn recv(&self, pipe: PipeId, msg: &mut Message, cx: &mut dyn RecvContext) -> Verdict;

    /// Pipes this protocol takes at most (PAIR: 1). Checked as a pipe joins,
    /// atomically with the join.
    fn max_pipes(&self) -> usize {
        usize::MAX
    }

    /// Whether a pipe that finished its handshake may join (checked with the
    /// pipe table locked, after [`Routing::max_pipes`]).
    fn admit(&self, pipes: &dyn Pipes, info: &PipeInfo) -> Result<(), RejectReason> {
        let _ = (pipes, info);
        Ok(())
    }

    /// A pipe joined.
    fn pipe_added(&self, id: PipeId) {
        let _ = id;
    }

    /// A pipe left (before its unsent messages are offered to `requeue`).
    fn pipe_removed(&self, id: PipeId) {
        let _ = id;
    }

    /// True for a request/reply protocol: a send right after a receive (a
    /// reply, or the next request after an answer) is written by the
    /// sender itself when its pipe is idle, instead of being handed to the
    /// pipe's writer task (saving a wake-up of another thread per message,
    /// the latency of a lone request or reply). Streams keep the default,
    /// `false`: their messages are batched many per system call.
    fn write_through(&self) -> bool {
        false
    }

    /// What a full receive queue does.
    fn recv_policy(&self) -> RecvPolicy {
        RecvPolicy::Wait
    }

    /// Header bytes the protocol adds on receive (REP's pipe id), reserved
    /// in front of every received frame. A protocol that adds none should
    /// say 0: a stream transport then hands small frames over as views of
    /// the chunk they were read into, without an allocation or a copy (a
    /// header pushed onto such a message anyway goes beside it, in the
    /// message's inline area).
    fn recv_headroom(&self) -> usize {
        8
    }

    /// The header this protocol puts on the wire, for `describe`.
    fn header_format(&self) -> Vec<Field> {
        Vec::new()
    }

    /// Settings of the raw socket itself (raw SUB's subscriptions), reached
    /// with `Socket::control` when no cooked protocol sits above.
    fn control(&self) -> Option<Control> {
        None
    }
}

/// An in-memory [`Pipes`] and [`RecvContext`], for testing a routing
/// without a socket: pipes with bounded queues you can look into.
#[derive(Debug, Default)]
pub struct MemPipes {
    ids: Vec<PipeId>,
    queues: std::collections::HashMap<PipeId, Vec<Message>>,
    cap: usize,
    cursor: usize,
    drops: Vec<(Option<PipeId>, DropReason)>,
    ttl: u8,
}

impl MemPipes {
    /// Pipes with these ids, each with room for `cap` messages; TTL 8.
    pub fn new(ids: &[PipeId], cap: usize) -> MemPipes {
        MemPipes {
            ids: ids.to_vec(),
            queues: ids.iter().map(|&id| (id, Vec::new())).collect(),
            cap,
            cursor: 0,
            drops: Vec::new(),
            ttl: 8,
        }
    }
    /// Sets the TTL a [`RecvContext`] reports.
    pub fn with_ttl(mut self, ttl: u8) -> MemPipes {
        self.ttl = ttl;
        self
    }
    /// Adds a pipe.
    pub fn add(&mut self, id: PipeId) {
        self.ids.push(id);
        self.queues.insert(id, Vec::new());
    }
    /// Removes a pipe, returning what was queued on it.
    pub fn remove(&mut self, id: PipeId) -> Vec<Message> {
        self.ids.retain(|&p| p != id);
        self.queues.remove(&id).unwrap_or_default()
    }
    /// What is queued on a pipe, oldest first.
    pub fn queued(&self, id: PipeId) -> &[Message] {
        self.queues.get(&id).map_or(&[], |q| q.as_slice())
    }
    /// Takes what is queued on a pipe (as its writer would).
    pub fn drain(&mut self, id: PipeId) -> Vec<Message> {
        self.queues
            .get_mut(&id)
            .map(std::mem::take)
            .unwrap_or_default()
    }
    /// Every drop counted so far: the pipe (if any) and the reason.
    pub fn drops(&self) -> &[(Option<PipeId>, DropReason)] {
        &self.drops
    }
}

impl Pipes for MemPipes {
    fn ids(&self) -> &[PipeId] {
        &self.ids
    }
    fn has_room(&self, id: PipeId) -> bool {
        self.queues.get(&id).is_some_and(|q| q.len() < self.cap)
    }
    fn try_push(&mut self, id: PipeId, msg: Message) -> Result<(), Refused> {
        let cap = self.cap;
        match self.queues.get_mut(&id) {
            None => Err(Refused {
                msg,
                reason: DropReason::UnknownPipe,
            }),
            Some(q) if q.len() >= cap => Err(Refused {
                msg,
                reason: DropReason::QueueFull,
            }),
            Some(q) => {
                q.push(msg);
                Ok(())
            }
        }
    }
    fn force_push(&mut self, id: PipeId, msg: Message) -> Result<(), Refused> {
        match self.queues.get_mut(&id) {
            None => Err(Refused {
                msg,
                reason: DropReason::UnknownPipe,
            }),
            Some(q) => {
                q.push(msg);
                Ok(())
            }
        }
    }
    fn dropped(&mut self, pipe: Option<PipeId>, reason: DropReason) {
        self.drops.push((pipe, reason));
    }
    fn cursor(&self) -> usize {
        self.cursor
    }
    fn set_cursor(&mut self, at: usize) {
        self.cursor = at;
    }
}

impl RecvContext for MemPipes {
    fn ttl(&self) -> u8 {
        self.ttl
    }
    fn pipes(&mut self) -> &mut dyn Pipes {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn balance_is_round_robin_over_pipes_with_room() {
        let mut p = MemPipes::new(&[1, 2, 3], 2);
        let got: Vec<_> = (0..6)
            .map(|_| p.balance(Message::from("m")).unwrap())
            .collect();
        assert_eq!(got, vec![1, 2, 3, 1, 2, 3]);
        assert!(p.balance(Message::from("m")).is_err(), "all full");
        p.drain(2);
        assert_eq!(p.balance(Message::from("m")).unwrap(), 2);
    }

    #[test]
    fn broadcast_counts_each_miss_and_no_peer() {
        let mut p = MemPipes::new(&[1, 2], 1);
        assert_eq!(p.broadcast(Message::from("a"), None), 2);
        assert_eq!(p.broadcast(Message::from("b"), Some(1)), 0);
        assert_eq!(p.drops(), &[(Some(2), DropReason::QueueFull)]);
        let mut none = MemPipes::new(&[], 1);
        assert_eq!(none.broadcast(Message::from("c"), None), 0);
        assert_eq!(none.drops(), &[(None, DropReason::NoPeer)]);
    }

    #[test]
    fn requeue_goes_past_the_bound_but_never_nowhere() {
        let mut p = MemPipes::new(&[1], 1);
        p.balance(Message::from("x")).unwrap();
        assert_eq!(p.requeue_balanced(Message::from("y")).unwrap(), 1);
        assert_eq!(p.queued(1).len(), 2);
        p.remove(1);
        assert!(p.requeue_balanced(Message::from("z")).is_err());
    }

    #[test]
    fn deliver_to_a_gone_pipe_is_unknown_pipe_not_charged_to_a_pipe() {
        let mut p = MemPipes::new(&[1], 1);
        assert!(!p.deliver(9, Message::from("x")));
        assert_eq!(p.drops(), &[(None, DropReason::UnknownPipe)]);
    }
}

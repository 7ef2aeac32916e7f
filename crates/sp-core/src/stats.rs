//! Counters: what came in, what went out, what was dropped and why.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Why a message was dropped. Every drop is counted and traced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DropReason {
    /// A queue was full and the protocol drops rather than waits (REP reply, PUB).
    QueueFull,
    /// Larger than `recv_max_size`.
    TooLarge,
    /// More hops than the TTL allows.
    TtlExceeded,
    /// The protocol header could not be parsed.
    Malformed,
    /// A reply or response to a request/survey nobody waits for any more.
    Late,
    /// No subscription matched (SUB).
    NoSubscription,
    /// Queued on a pipe that closed before it was written.
    PipeClosed,
    /// Addressed to a pipe that does not exist (any more).
    UnknownPipe,
    /// A message layer refused it (signature, checksum, opcode...).
    Rejected,
    /// Discarded by closing: left in the receive queue, read from a pipe
    /// while the socket drained it on close, or still queued when the
    /// linger deadline passed.
    Closed,
    /// Sent while the protocol had no pipe to send it to and does not wait
    /// for one (PUB, SURVEYOR and BUS with no peer connected).
    NoPeer,
    /// A reply from a pipe its request never went out on (REQ): a peer
    /// guessing ids to answer another peer's request.
    WrongPipe,
}

impl DropReason {
    /// Every reason, in counter order.
    pub const ALL: [DropReason; 12] = [
        DropReason::QueueFull,
        DropReason::TooLarge,
        DropReason::TtlExceeded,
        DropReason::Malformed,
        DropReason::Late,
        DropReason::NoSubscription,
        DropReason::PipeClosed,
        DropReason::UnknownPipe,
        DropReason::Rejected,
        DropReason::Closed,
        DropReason::NoPeer,
        DropReason::WrongPipe,
    ];
    fn index(self) -> usize {
        DropReason::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }
    /// The reason in snake case (`no_peer`), as metrics label it.
    pub fn label(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::TooLarge => "too_large",
            DropReason::TtlExceeded => "ttl_exceeded",
            DropReason::Malformed => "malformed",
            DropReason::Late => "late",
            DropReason::NoSubscription => "no_subscription",
            DropReason::PipeClosed => "pipe_closed",
            DropReason::UnknownPipe => "unknown_pipe",
            DropReason::Rejected => "rejected",
            DropReason::Closed => "closed",
            DropReason::NoPeer => "no_peer",
            DropReason::WrongPipe => "wrong_pipe",
        }
    }
}

/// Why a pipe was refused or closed early.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RejectReason {
    /// The SP header was malformed (magic, version, reserved bytes, truncated).
    BadHeader,
    /// The peer speaks an incompatible protocol.
    ProtocolMismatch,
    /// The peer's pipe layers differ from ours.
    LayerMismatch,
    /// A pipe layer's handshake failed.
    LayerFailed,
    /// The handshake did not finish in time.
    HandshakeTimeout,
    /// Dropped to make room for newer handshakes (`max_half_open`).
    Evicted,
    /// The protocol takes no more pipes (PAIR).
    PipeLimit,
    /// A pipe event hook refused it.
    Hook,
    /// The peer broke the protocol after the handshake (malformed frame, oversize).
    ProtocolError,
    /// An I/O error.
    Io,
    /// The listener holds `Options::max_pipes_per_listener` pipes already.
    ListenerFull,
    /// The pipe received nothing for `Options::idle_timeout`.
    IdleTimeout,
    /// The peer went silent: a keepalive (the `heartbeat/1` pipe layer, a
    /// WebSocket ping) heard nothing from it in time, so it vanished without
    /// closing, froze, or the link is down (`Error::PeerSilent`).
    Unresponsive,
    /// A dialer whose pipe layers are all optional met a plain peer (nng,
    /// nanomsg): the layered attempt failed and it redials plain.
    PlainPeer,
}

impl RejectReason {
    /// Every reason, in counter order.
    pub const ALL: [RejectReason; 14] = [
        RejectReason::BadHeader,
        RejectReason::ProtocolMismatch,
        RejectReason::LayerMismatch,
        RejectReason::LayerFailed,
        RejectReason::HandshakeTimeout,
        RejectReason::Evicted,
        RejectReason::PipeLimit,
        RejectReason::Hook,
        RejectReason::ProtocolError,
        RejectReason::Io,
        RejectReason::ListenerFull,
        RejectReason::IdleTimeout,
        RejectReason::Unresponsive,
        RejectReason::PlainPeer,
    ];
    fn index(self) -> usize {
        RejectReason::ALL
            .iter()
            .position(|r| *r == self)
            .unwrap_or(0)
    }
    /// The reason in snake case (`layer_mismatch`), as metrics label it.
    pub fn label(self) -> &'static str {
        match self {
            RejectReason::BadHeader => "bad_header",
            RejectReason::ProtocolMismatch => "protocol_mismatch",
            RejectReason::LayerMismatch => "layer_mismatch",
            RejectReason::LayerFailed => "layer_failed",
            RejectReason::HandshakeTimeout => "handshake_timeout",
            RejectReason::Evicted => "evicted",
            RejectReason::PipeLimit => "pipe_limit",
            RejectReason::Hook => "hook",
            RejectReason::ProtocolError => "protocol_error",
            RejectReason::Io => "io",
            RejectReason::ListenerFull => "listener_full",
            RejectReason::IdleTimeout => "idle_timeout",
            RejectReason::Unresponsive => "unresponsive",
            RejectReason::PlainPeer => "plain_peer",
        }
    }
}

/// Live counters (atomics), shared by a socket or a pipe and its tasks.
#[derive(Debug, Default)]
pub struct Counters {
    msgs_in: AtomicU64,
    msgs_out: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    bytes_copied: AtomicU64,
    bytes_copied_in: AtomicU64,
    pipes_opened: AtomicU64,
    pipes_closed: AtomicU64,
    requeued: AtomicU64,
    returned: AtomicU64,
    drops: [AtomicU64; DropReason::ALL.len()],
    rejects: [AtomicU64; RejectReason::ALL.len()],
}

impl Counters {
    /// Counts a message received.
    pub fn received(&self, bytes: usize) {
        self.msgs_in.fetch_add(1, Relaxed);
        self.bytes_in.fetch_add(bytes as u64, Relaxed);
    }
    /// Messages received so far.
    pub(crate) fn msgs_in(&self) -> u64 {
        self.msgs_in.load(Relaxed)
    }
    /// Counts `msgs` messages of `bytes` bytes in all received.
    pub fn received_many(&self, msgs: usize, bytes: usize) {
        if msgs > 0 {
            self.msgs_in.fetch_add(msgs as u64, Relaxed);
            self.bytes_in.fetch_add(bytes as u64, Relaxed);
        }
    }
    /// Counts `msgs` messages of `bytes` bytes in all sent.
    pub fn sent_many(&self, msgs: usize, bytes: usize) {
        self.msgs_out.fetch_add(msgs as u64, Relaxed);
        self.bytes_out.fetch_add(bytes as u64, Relaxed);
    }
    /// Counts a message sent.
    pub fn sent(&self, bytes: usize) {
        self.msgs_out.fetch_add(1, Relaxed);
        self.bytes_out.fetch_add(bytes as u64, Relaxed);
    }
    /// Counts bytes of message data copied on the way `dir`.
    pub fn copied(&self, dir: crate::Direction, bytes: usize) {
        match dir {
            crate::Direction::Send => &self.bytes_copied,
            crate::Direction::Recv => &self.bytes_copied_in,
        }
        .fetch_add(bytes as u64, Relaxed);
    }
    /// Counts a drop.
    pub fn dropped(&self, r: DropReason) {
        self.drops[r.index()].fetch_add(1, Relaxed);
    }
    /// Counts a refused or broken pipe.
    pub fn rejected(&self, r: RejectReason) {
        self.rejects[r.index()].fetch_add(1, Relaxed);
    }
    /// Counts a message moved off a dying pipe to another one.
    pub fn requeued(&self) {
        self.requeued.fetch_add(1, Relaxed);
    }
    /// Counts a message a pipe layer handed back after the pipe's writer
    /// counted it as sent (see `Stats::returned`).
    pub(crate) fn returned(&self) {
        self.returned.fetch_add(1, Relaxed);
    }
    pub(crate) fn pipe_opened(&self) {
        self.pipes_opened.fetch_add(1, Relaxed);
    }
    pub(crate) fn pipe_closed(&self) {
        self.pipes_closed.fetch_add(1, Relaxed);
    }
    /// A consistent-enough copy of every counter.
    pub fn snapshot(&self) -> Stats {
        Stats {
            msgs_in: self.msgs_in.load(Relaxed),
            msgs_out: self.msgs_out.load(Relaxed),
            bytes_in: self.bytes_in.load(Relaxed),
            bytes_out: self.bytes_out.load(Relaxed),
            bytes_copied: self.bytes_copied.load(Relaxed),
            bytes_copied_in: self.bytes_copied_in.load(Relaxed),
            pipes_opened: self.pipes_opened.load(Relaxed),
            pipes_closed: self.pipes_closed.load(Relaxed),
            requeued: self.requeued.load(Relaxed),
            returned: self.returned.load(Relaxed),
            drops: std::array::from_fn(|i| self.drops[i].load(Relaxed)),
            rejects: std::array::from_fn(|i| self.rejects[i].load(Relaxed)),
        }
    }
}

/// A snapshot of counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Messages received.
    pub msgs_in: u64,
    /// Messages sent.
    pub msgs_out: u64,
    /// Bytes received (SP header and body).
    pub bytes_in: u64,
    /// Bytes sent.
    pub bytes_out: u64,
    /// Bytes of message data copied on the send path: a message flattened for
    /// a layer that needs contiguity and lacked the room, a TLS record, copy
    /// on write, a small frame gathered into a stream writer's batch buffer
    /// (under 1 KiB with its prefix; larger frames are never copied on a
    /// plain stack).
    pub bytes_copied: u64,
    /// Bytes of message data copied on the receive path (TLS records; the
    /// staging copy of frames small enough to be read many per system call,
    /// where the protocol wants room in front of them or a layer writes them
    /// in place; elsewhere such frames share the chunk they were read into).
    pub bytes_copied_in: u64,
    /// Pipes attached.
    pub pipes_opened: u64,
    /// Pipes detached.
    pub pipes_closed: u64,
    /// Messages that left a dying pipe for another: unsent ones the socket
    /// moved, and written ones a pipe layer handed back unacknowledged.
    pub requeued: u64,
    /// Messages a pipe layer handed back after they were counted in
    /// `msgs_out` (an acknowledging layer's unacknowledged frames of a pipe
    /// that died): each is counted again where it ends (written once more, or
    /// dropped). Once everything has settled, every message `send` accepted
    /// is `msgs_out - returned + total_drops()`.
    pub returned: u64,
    drops: [u64; DropReason::ALL.len()],
    rejects: [u64; RejectReason::ALL.len()],
}

impl Stats {
    /// Messages dropped for `r`.
    pub fn drops(&self, r: DropReason) -> u64 {
        self.drops[r.index()]
    }
    /// All drops.
    pub fn total_drops(&self) -> u64 {
        self.drops.iter().sum()
    }
    /// Pipes refused or closed for `r`.
    pub fn rejects(&self, r: RejectReason) -> u64 {
        self.rejects[r.index()]
    }
    /// All refused pipes.
    pub fn total_rejects(&self) -> u64 {
        self.rejects.iter().sum()
    }
}

impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "msgs_in {} msgs_out {} bytes_in {} bytes_out {} bytes_copied {} bytes_copied_in {}",
            self.msgs_in,
            self.msgs_out,
            self.bytes_in,
            self.bytes_out,
            self.bytes_copied,
            self.bytes_copied_in
        )?;
        writeln!(
            f,
            "pipes_opened {} pipes_closed {}",
            self.pipes_opened, self.pipes_closed
        )?;
        if self.requeued > 0 || self.returned > 0 {
            writeln!(f, "requeued {} returned {}", self.requeued, self.returned)?;
        }
        for r in DropReason::ALL {
            if self.drops(r) > 0 {
                writeln!(f, "dropped {:?} {}", r, self.drops(r))?;
            }
        }
        for r in RejectReason::ALL {
            if self.rejects(r) > 0 {
                writeln!(f, "rejected {:?} {}", r, self.rejects(r))?;
            }
        }
        Ok(())
    }
}

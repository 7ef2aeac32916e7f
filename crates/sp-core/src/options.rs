//! Socket options. Every limit is finite by default.

use std::time::Duration;

/// Options of a socket. Build with `Options::default()` and the setters.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Options {
    /// Largest message accepted from a peer, checked before any allocation.
    /// A larger one closes the pipe and is counted. Default 1 MiB (as nanomsg).
    pub recv_max_size: usize,
    /// How long `send` may wait for room. `None` waits until the future is
    /// dropped: in async Rust cancelling is the caller's tool. Default `None`.
    pub send_timeout: Option<Duration>,
    /// How long `recv` may wait. Default `None` (see `send_timeout`).
    pub recv_timeout: Option<Duration>,
    /// Messages queued per pipe on the way out. Default 1024 (as libzmq's
    /// high-water mark): a writer that finds many queued writes them in one
    /// system call, and a sender fills a deep queue without a wake-up per
    /// message; `send_queue_bytes` bounds it too.
    pub send_queue: usize,
    /// Messages queued per socket on the way in. Default 1024. A small
    /// message read from a stream transport may share the read chunk (at most
    /// 64 KiB) it arrived in with its neighbours until the last of them is
    /// dropped, so what the queue keeps alive is bounded by this count times
    /// that chunk as well as by `recv_queue_bytes`.
    pub recv_queue: usize,
    /// Bytes queued per pipe on the way out (one larger message still fits
    /// alone). Default 4 MiB.
    pub send_queue_bytes: usize,
    /// Bytes queued per socket on the way in. A cooked SURVEYOR holds each
    /// survey's unread responses to the same budget (and `recv_queue` in
    /// count), dropping what exceeds it as `QueueFull`. It also bounds what
    /// the socket's transports allocate for frames on the peers' word, all
    /// pipes together ([`crate::transport::AllocBudget`]): a frame of 16 KiB
    /// or more is allocated whole when its length arrives (its body then read
    /// straight into the message) only while this covers the bytes still to
    /// come; otherwise its buffer grows as they arrive, so a frame larger
    /// than this always takes that slower path. Default 4 MiB.
    pub recv_queue_bytes: usize,
    /// First reconnect delay of a dialer. Default 100 ms.
    pub reconnect_min: Duration,
    /// Largest reconnect delay; the delay doubles up to it, jittered. Default 10 s.
    pub reconnect_max: Duration,
    /// Deadline for the whole pipe handshake (SP header and pipe layers). Default 10 s (as nng).
    pub handshake_timeout: Duration,
    /// Handshakes a listener runs at once; beyond it one of the source
    /// holding the most is dropped at random (see [`crate::admission`]).
    /// Default 128.
    pub max_half_open: usize,
    /// Pipes a listener holds at once. When it holds this many, a new
    /// connection is refused before its handshake (and one whose handshake
    /// finishes when the last place was taken, after it), counted as
    /// `RejectReason::ListenerFull` and raised as a `PipeEvent::Refused`;
    /// its place comes back when one of the listener's pipes goes. Each pipe
    /// holds a file descriptor, a read buffer and queues bounded by
    /// `send_queue_bytes`, so some bound must exist, and nng (which has
    /// none) leaves it to the process's file limit, where running out also
    /// stops the listener accepting. Default 10,000: beyond what a server
    /// usually needs by surprise, low enough for one process's memory and
    /// file descriptors (lower it on small machines; `ulimit -n` may be
    /// lower still). Dialed pipes do not count.
    pub max_pipes_per_listener: usize,
    /// Closes a pipe that receives nothing for this long: no complete
    /// message (a frame trickled slower than this ends it too), measured
    /// while the socket waits for the peer, not while a full receive queue
    /// holds the pipe back. Counted as `RejectReason::IdleTimeout`; a dialed
    /// pipe is redialed. `None` (the default) keeps idle pipes open: SP has
    /// no heartbeat, so a quiet peer is a legitimate one (a SUB on a quiet
    /// topic, a REP between requests); set it where peers are expected to
    /// talk, or under a layer that sends heartbeats.
    pub idle_timeout: Option<Duration>,
    /// Hops a message may take through devices (REQ/REP, SURVEY). Default 8, at most 255.
    pub ttl: u8,
    /// REQ: resend a request without reply after this long. `None` disables. Default 60 s.
    pub req_resend: Option<Duration>,
    /// Messages a pipe writer gathers into one write (what was queued when it
    /// woke and what was queued while it prepared those). Default 1024.
    pub write_batch: usize,
    /// How long closing may take (as nng's and nanomsg's `LINGER`). When a
    /// socket closes, its pipes keep writing what is queued and read (and
    /// count as dropped, `DropReason::Closed`) what their peers still send,
    /// until each peer hangs up or this deadline passes; what is still queued
    /// then is counted `Closed`. `Socket::shutdown` waits for it. The same
    /// bound applies to the write in flight on a pipe whose peer hung up.
    /// Default 1 s; zero closes at once.
    pub linger: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            recv_max_size: 1 << 20,
            send_timeout: None,
            recv_timeout: None,
            send_queue: 1024,
            recv_queue: 1024,
            send_queue_bytes: 4 << 20,
            recv_queue_bytes: 4 << 20,
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            max_half_open: 128,
            max_pipes_per_listener: 10_000,
            idle_timeout: None,
            ttl: 8,
            req_resend: Some(Duration::from_secs(60)),
            write_batch: 1024,
            linger: Duration::from_secs(1),
        }
    }
}

macro_rules! setter {
    ($(#[$m:meta])* $name:ident : $ty:ty) => {
        $(#[$m])*
        pub fn $name(mut self, v: $ty) -> Self { self.$name = v; self }
    };
}

impl Options {
    setter!(/// Sets `recv_max_size`.
        recv_max_size: usize);
    setter!(/// Sets `send_queue_bytes`.
        send_queue_bytes: usize);
    setter!(/// Sets `recv_queue_bytes`.
        recv_queue_bytes: usize);
    setter!(/// Sets `send_timeout`.
        send_timeout: Option<Duration>);
    setter!(/// Sets `recv_timeout`.
        recv_timeout: Option<Duration>);
    setter!(/// Sets `reconnect_min`.
        reconnect_min: Duration);
    setter!(/// Sets `reconnect_max`.
        reconnect_max: Duration);
    setter!(/// Sets `handshake_timeout`.
        handshake_timeout: Duration);
    setter!(/// Sets `max_half_open`.
        max_half_open: usize);
    setter!(/// Sets `idle_timeout`.
        idle_timeout: Option<Duration>);
    setter!(/// Sets `ttl`.
        ttl: u8);
    setter!(/// Sets `req_resend`.
        req_resend: Option<Duration>);
    setter!(/// Sets `linger`.
        linger: Duration);
    /// Sets the per-pipe send queue depth (at least 1).
    pub fn send_queue(mut self, v: usize) -> Self {
        self.send_queue = v.max(1);
        self
    }
    /// Sets the socket receive queue depth (at least 1).
    pub fn recv_queue(mut self, v: usize) -> Self {
        self.recv_queue = v.max(1);
        self
    }
    /// Sets `max_pipes_per_listener` (at least 1).
    pub fn max_pipes_per_listener(mut self, v: usize) -> Self {
        self.max_pipes_per_listener = v.max(1);
        self
    }
    /// Sets the write batch (at least 1).
    pub fn write_batch(mut self, v: usize) -> Self {
        self.write_batch = v.max(1);
        self
    }
}

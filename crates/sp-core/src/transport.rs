//! What a transport provides: connections that announce themselves and then
//! carry frames. A transport knows nothing of the protocol above it.

use crate::layer::{BoxFuture, ComponentInfo, Connection, PipeInfo, RecvLimit};
use crate::{Announcement, Result};

/// Per-pipe settings a transport needs.
#[derive(Clone, Debug)]
pub struct PipeConfig {
    /// Largest frame accepted, checked before allocating.
    pub recv_max_size: usize,
    /// Free bytes to leave in front of each received frame.
    pub recv_headroom: usize,
    /// What this side announces.
    pub local: Announcement,
    /// The frame limit the transport's reader checks, shared with the pipe
    /// layers (see [`RecvLimit`]).
    pub recv_limit: RecvLimit,
    /// The socket's counters, for a transport that moves frames in a task of
    /// its own: it counts the copies made there with
    /// `CopyScope::socket(&cfg.counters, ..)`.
    pub counters: std::sync::Arc<crate::stats::Counters>,
    /// What the socket lets its transports allocate for frames whose bytes
    /// have not arrived yet, shared by all its pipes (see [`AllocBudget`]).
    pub alloc_budget: AllocBudget,
    /// Every pipe layer of the stack is optional
    /// ([`crate::layer::Handshake::plain_peer_ok`]): a listener reads the
    /// dialer's header before it sends its own and answers a plain one
    /// plain (see [`PipeConfig::reads_first`], [`PipeConfig::answer`]).
    /// A transport that cannot read first keeps the strict exchange.
    pub plain_peer_ok: bool,
}

/// Bytes a socket's transports may allocate for frames on a peer's word (the
/// length a frame announces) before those bytes arrive, shared by all the
/// socket's pipes; `Options::recv_queue_bytes` of them.
///
/// A reader that allocates a frame whole when its length arrives, the fast
/// way (one allocation, the body read straight into it), takes the bytes
/// still to come from here and gives them back as they arrive. When the
/// budget cannot cover a frame, the reader grows its buffer as the bytes
/// come instead. So peers that announce large frames and stall cost the
/// socket at most this budget, not the announced size per connection, while
/// frames that arrive promptly keep the fast path.
///
/// ```
/// use sp_core::transport::AllocBudget;
/// let budget = AllocBudget::new(1000);
/// let mut ahead = budget.try_take(600).expect("room");
/// assert!(budget.try_take(600).is_none(), "taken already");
/// ahead.arrived(200);                      // those bytes are the peer's now
/// assert_eq!(budget.available(), 600);
/// drop(ahead);                             // the frame is done (or the pipe)
/// assert_eq!(budget.available(), 1000);
/// ```
#[derive(Clone, Debug)]
pub struct AllocBudget(std::sync::Arc<Budget>);

#[derive(Debug)]
struct Budget {
    left: std::sync::atomic::AtomicUsize,
    /// The socket's large buffers, kept for reuse (see [`AllocBudget::recv_buf`]).
    pool: crate::message::pool::BufPool,
}

impl AllocBudget {
    /// A budget of `bytes`; the pool of large buffers beside it keeps at
    /// most as many.
    pub fn new(bytes: usize) -> AllocBudget {
        AllocBudget::with_pool(bytes, bytes)
    }

    /// A budget of `bytes` whose pool of large buffers keeps at most
    /// `keep` bytes (a socket: what its send and receive queues may hold
    /// together, so its idle buffers never exceed what its queues could
    /// hold anyway; they are freed with the socket).
    pub(crate) fn with_pool(bytes: usize, keep: usize) -> AllocBudget {
        AllocBudget(std::sync::Arc::new(Budget {
            left: std::sync::atomic::AtomicUsize::new(bytes),
            pool: crate::message::pool::BufPool::new(keep),
        }))
    }

    /// Bytes not taken.
    pub fn available(&self) -> usize {
        self.0.left.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Takes `n` bytes, or nothing when fewer are left.
    pub fn try_take(&self, n: usize) -> Option<AllocAhead> {
        use std::sync::atomic::Ordering::Relaxed;
        self.0
            .left
            .fetch_update(Relaxed, Relaxed, |left| left.checked_sub(n))
            .ok()?;
        Some(AllocAhead {
            budget: self.clone(),
            held: n,
        })
    }

    fn give_back(&self, n: usize) {
        self.0
            .left
            .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    }

    /// A receive buffer for a frame of `len` bytes with `headroom` in front
    /// ([`RecvBuf::new`](crate::RecvBuf::new)), reusing one of the socket's
    /// large buffers when it keeps one of the size: a large frame read into
    /// it faults in no fresh pages, and its message gives the buffer back
    /// when dropped.
    pub fn recv_buf(&self, headroom: usize, len: usize) -> crate::RecvBuf {
        crate::RecvBuf::in_pool(&self.0.pool, headroom, len)
    }

    pub(crate) fn pool(&self) -> &crate::message::pool::BufPool {
        &self.0.pool
    }
}

/// Bytes taken from an [`AllocBudget`] for a frame still arriving; what is
/// still held goes back when this is dropped.
#[derive(Debug)]
pub struct AllocAhead {
    budget: AllocBudget,
    held: usize,
}

impl AllocAhead {
    /// `n` bytes of the frame arrived: they no longer count against the
    /// budget.
    pub fn arrived(&mut self, n: usize) {
        let n = n.min(self.held);
        self.held -= n;
        self.budget.give_back(n);
    }

    /// Bytes still held.
    pub fn held(&self) -> usize {
        self.held
    }
}

impl Drop for AllocAhead {
    fn drop(&mut self) {
        self.budget.give_back(self.held);
    }
}

impl PipeConfig {
    /// True when this side should read the peer's announcement before it
    /// sends its own: a listener of a stack whose layers are all optional.
    /// Every dialer (nng, nanomsg, spstack) sends its header without
    /// waiting for the listener's, so this cannot deadlock.
    pub fn reads_first(&self, dialer: bool) -> bool {
        !dialer && self.plain_peer_ok && !self.local.layers.is_empty()
    }

    /// What a listener that read first answers to `peer`: the plain header
    /// to a plain peer (the pipe then runs without pipe layers), our
    /// announcement to anyone else. Records it as `local`, so that the
    /// pipe's [`PipeInfo::local`] says what was sent.
    pub fn answer(&mut self, peer: &Announcement) -> Announcement {
        if self.plain_peer_ok && peer.layers.is_empty() {
            self.local.layers.clear();
        }
        self.local.clone()
    }

    /// What a transport knows about a pipe it just announced.
    pub fn pipe_info(
        &self,
        transport: &'static str,
        local_addr: String,
        peer_addr: String,
        peer: Announcement,
        dialer: bool,
    ) -> PipeInfo {
        PipeInfo {
            transport,
            local_addr,
            peer_addr,
            local: self.local.clone(),
            peer,
            peer_identity: None,
            recv_max_size: self.recv_max_size,
            recv_limit: self.recv_limit.clone(),
            dialer,
            link: crate::SocketLink::detached(),
        }
    }
}

/// A transport: `tcp`, `ipc`, `inproc`...
pub trait Transport: Send + Sync + 'static {
    /// URL schemes it serves, e.g. `["tcp", "tcp4", "tcp6"]`.
    fn schemes(&self) -> &'static [&'static str];
    /// Its framing, for `describe` (e.g. the u64 BE length of TCP).
    fn info(&self) -> ComponentInfo;
    /// Connects; the announcement exchange is left to [`Unannounced::announce`].
    fn dial(&self, url: &str) -> BoxFuture<'static, Result<Box<dyn Unannounced>>>;
    /// Binds.
    fn listen(&self, url: &str) -> BoxFuture<'static, Result<Box<dyn Listener>>>;
}

/// A bound listener.
pub trait Listener: Send + Sync {
    /// The bound address as a URL (a port of 0 is resolved).
    fn url(&self) -> String;
    /// Waits for the next connection.
    fn accept(&self) -> BoxFuture<'_, Result<Box<dyn Unannounced>>>;
    /// The counters of the socket that accepts from this listener, given
    /// once before its first `accept`: for connections the listener itself
    /// refuses or drops before they reach the socket (a WebSocket port
    /// reading request heads), so that they show in the socket's stats
    /// beside its own refusals. The default ignores them.
    fn count_on(&self, _counters: std::sync::Arc<crate::stats::Counters>) {}
}

/// A connected transport stream before the announcement exchange.
pub trait Unannounced: Send {
    /// The peer's address, known before any handshake (`tcp://ip:port`,
    /// `ip:port`...): what logs and refusals name, and where the half-open
    /// cap's source comes from.
    fn peer_addr(&self) -> String;
    /// The source a listener's half-open cap counts this peer against (see
    /// [`crate::admission`]): by default what
    /// [`crate::admission::source_of`] makes of [`Unannounced::peer_addr`]
    /// (the IP address, an IPv6 /64). A transport without IP addresses
    /// says what a source is for it (ipc: the peer's user id).
    fn source(&self) -> String {
        crate::admission::source_of(&self.peer_addr())
    }
    /// The listener refuses this connection before its handshake (it
    /// holds `Options::max_pipes_per_listener` pipes). The default just
    /// closes it. A transport whose peer waits for an answer it can read
    /// returns the work that sends one (a WebSocket listener: HTTP 503 to
    /// the upgrade request), which the listener runs in the background,
    /// bounded in time and in number.
    fn refuse(self: Box<Self>) -> Option<BoxFuture<'static, ()>> {
        None
    }
    /// Exchanges announcements (for TCP and IPC: the 8-byte SP header) and
    /// returns a framed connection. Runs under the socket's handshake deadline.
    fn announce(
        self: Box<Self>,
        cfg: PipeConfig,
        dialer: bool,
    ) -> BoxFuture<'static, Result<Connection>>;
}

/// Splits `scheme://rest`.
pub fn split_url(url: &str) -> Option<(&str, &str)> {
    let i = url.find("://")?;
    Some((&url[..i], &url[i + 3..]))
}

/// A connected byte stream: a TCP socket, a TLS session over one...
pub trait ByteStream:
    tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static
{
}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static> ByteStream for T {}

/// A byte stream and what its layers learned about it.
pub struct StreamConn {
    /// The bytes.
    pub io: Box<dyn ByteStream>,
    /// Local address, as text.
    pub local_addr: String,
    /// Peer address, as text.
    pub peer_addr: String,
    /// Identity a stream layer verified (e.g. a TLS client certificate, DER).
    pub peer_identity: Option<Vec<u8>>,
}

impl std::fmt::Debug for StreamConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamConn")
            .field("local_addr", &self.local_addr)
            .field("peer_addr", &self.peer_addr)
            .finish_non_exhaustive()
    }
}

/// The part of opening a stream that talks to the peer (a TLS handshake),
/// and the peer's address, known before it. Framings run it (`.await` it)
/// inside [`Unannounced::announce`], so it counts against the socket's
/// handshake deadline and half-open cap and never blocks an accept loop;
/// the address is what that cap counts the peer against meanwhile.
pub struct StreamUpgrade {
    peer_addr: String,
    handshake: BoxFuture<'static, Result<StreamConn>>,
}

impl StreamUpgrade {
    /// A handshake still to run with the peer at `peer_addr` (`ip:port`).
    pub fn new(
        peer_addr: impl Into<String>,
        handshake: impl std::future::Future<Output = Result<StreamConn>> + Send + 'static,
    ) -> StreamUpgrade {
        StreamUpgrade {
            peer_addr: peer_addr.into(),
            handshake: Box::pin(handshake),
        }
    }
    /// A stream with no handshake of its own (plain TCP).
    pub fn ready(conn: StreamConn) -> StreamUpgrade {
        StreamUpgrade::new(conn.peer_addr.clone(), std::future::ready(Ok(conn)))
    }
    /// The peer's address (`ip:port`), before the handshake.
    pub fn peer_addr(&self) -> &str {
        &self.peer_addr
    }
}

impl std::future::Future for StreamUpgrade {
    type Output = Result<StreamConn>;
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<StreamConn>> {
        self.handshake.as_mut().poll(cx)
    }
}

impl std::fmt::Debug for StreamUpgrade {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamUpgrade")
            .field("peer_addr", &self.peer_addr)
            .finish_non_exhaustive()
    }
}

/// Byte streams to `host:port`: what a framing (SP's length prefix,
/// WebSocket) runs over. TCP is one; TLS over any stream transport is another.
/// A stream transport knows nothing of framing; a framing never opens a
/// socket itself.
pub trait StreamTransport: Send + Sync + 'static {
    /// Short name for addresses and logs: `tcp`, `tls+tcp`.
    fn name(&self) -> &'static str;
    /// True when the bytes on the wire are not the framing's own (TLS
    /// encrypts them, copying every byte into its records): a capture is
    /// opaque, and the copies are declared and counted (see [`Copying`]).
    fn transforms(&self) -> bool {
        false
    }
    /// Connects to `host:port` (a `[v6]:port` literal works too). The
    /// returned upgrade finishes the stream's own handshake.
    fn connect(&self, addr: &str) -> BoxFuture<'static, Result<StreamUpgrade>>;
    /// Binds `host:port` (`*` or an empty host: every address).
    fn bind(&self, addr: &str) -> BoxFuture<'static, Result<Box<dyn StreamListener>>>;
}

/// A bound stream listener.
pub trait StreamListener: Send + Sync {
    /// The bound `host:port` (a port of 0 is resolved).
    fn local_addr(&self) -> String;
    /// Waits for the next connection; its handshake is left to the upgrade.
    fn accept(&self) -> BoxFuture<'_, Result<StreamUpgrade>>;
}

/// A byte stream whose every byte read and written is counted as a copy of
/// message data ([`crate::record_copy`]): for stream layers that copy what
/// they carry (a TLS session encrypts the plaintext into its own records and
/// decrypts into the reader's buffer).
pub struct Copying<T>(pub T);

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Copying<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = std::pin::Pin::new(&mut self.0).poll_read(cx, buf);
        crate::record_copy(buf.filled().len() - before);
        r
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Copying<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.0).poll_write(cx, buf);
        if let std::task::Poll::Ready(Ok(n)) = &r {
            crate::record_copy(*n);
        }
        r
    }
    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.0).poll_write_vectored(cx, bufs);
        if let std::task::Poll::Ready(Ok(n)) = &r {
            crate::record_copy(*n);
        }
        r
    }
    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

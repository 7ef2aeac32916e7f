//! SP framing over a byte stream (TCP, IPC): the 8-byte announcement, then
//! `[0x01 (ipc only)] [u64 BE length] [frame]` per message.
//!
//! The writer gathers queued frames into vectored writes. A frame below
//! [`COPY_BELOW`] is copied, with its length prefix, into the writer's batch
//! buffer (counted as a copy) and its message freed at once, so hundreds of
//! small messages go out in one contiguous `write`; a larger frame goes to
//! the kernel from its own buffer, never copied, its prefix in the batch
//! buffer beside it.
//!
//! The reader reads many frames per system call into a staging chunk. A
//! frame below [`STAGED_BELOW`] becomes a message that *shares* that chunk
//! (no allocation, no copy) when the protocol reserves no room in front of
//! received frames ([`PipeConfig::recv_headroom`] 0); otherwise it is copied
//! into a buffer of its own with that room. Every length is checked against
//! the receive limit before anything is allocated; large frames are read
//! straight into their message's own buffer when the socket's
//! [`AllocBudget`] covers the bytes still to come, else into a buffer that
//! grows as they arrive (see [`FrameReader`]).

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use futures::{Sink, Stream};
use sp_core::transport::{AllocAhead, AllocBudget, PipeConfig};
use sp_core::{Announcement, Error, Message, RecvBuf, Result, MAX_LAYER_LIST};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

/// Frames at least this large are read straight into their own buffer;
/// smaller ones are read many per system call into a staging chunk, and
/// become messages sharing it (or, where the protocol wants room in front of
/// them, are copied out once, counted).
pub const STAGED_BELOW: usize = 16 << 10;
const DIRECT_READ: usize = STAGED_BELOW;
/// The largest staging chunk: one read takes up to this much.
const READ_CHUNK: usize = 64 << 10;
/// The first staging chunk of a pipe, and what a pipe that only trickles
/// keeps; a pipe that fills its chunk gets one twice as large next time, up
/// to [`READ_CHUNK`]. A pipe that never receives holds none.
pub const CHUNK_MIN: usize = 2 << 10;
/// Frames (prefix included) below this many bytes are copied into the
/// writer's batch buffer; larger ones are written from their own buffers.
pub const COPY_BELOW: usize = 1 << 10;
/// Bytes in the writer's batch buffer before `poll_ready` writes them out.
const OUT_MAX: usize = 64 << 10;
/// Frames queued in the writer before `poll_ready` forces a flush.
const MAX_PENDING: usize = 1024;
/// iovecs per `writev` (Linux allows 1024; frames under `COPY_BELOW` share
/// one, and larger ones fill a write with a few each).
const MAX_IOV: usize = 64;
/// What a writer that sends little keeps of its batch buffer.
const OUT_KEEP: usize = 4 << 10;
/// Small flushes in a row after which a writer gives back what a burst made
/// its buffers take.
const SHRINK_AFTER: u8 = 64;

/// Whether frames carry IPC's leading type byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// `[u64 len][frame]`.
    Tcp,
    /// `[0x01][u64 len][frame]`.
    Ipc,
}

impl Framing {
    fn prefix_len(self) -> usize {
        match self {
            Framing::Tcp => 8,
            Framing::Ipc => 9,
        }
    }
}

/// Exchanges announcements on a fresh stream `s`, then splits it into a
/// framed connection (the part TCP and IPC share).
pub async fn open<S, R, W>(
    mut s: S,
    split: impl FnOnce(S) -> (R, W),
    framing: Framing,
    mut cfg: PipeConfig,
    dialer: bool,
    addrs: (&'static str, String, String),
) -> Result<sp_core::Connection>
where
    S: AsyncRead + AsyncWrite + Unpin,
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let peer = exchange_as(&mut s, &mut cfg, dialer).await?;
    let (r, w) = split(s);
    let (transport, local_addr, peer_addr) = addrs;
    Ok(sp_core::Connection {
        tx: Box::pin(FrameWriter::new(w, framing)),
        rx: Box::pin(FrameReader::new(r, framing, &cfg)),
        info: cfg.pipe_info(transport, local_addr, peer_addr, peer, dialer),
    })
}

/// Exchanges announcements on a fresh stream as `cfg` says: both sides send
/// first, then read, except a listener whose pipe layers are all optional
/// ([`PipeConfig::reads_first`]), which reads the dialer's header first and
/// answers a plain one plain ([`PipeConfig::answer`], recorded in
/// `cfg.local`).
pub async fn exchange_as<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    cfg: &mut PipeConfig,
    dialer: bool,
) -> Result<Announcement> {
    if !cfg.reads_first(dialer) {
        return exchange(s, &cfg.local).await;
    }
    let peer = read_announcement(s).await?;
    s.write_all(&cfg.answer(&peer).encode()).await?;
    s.flush().await?;
    Ok(peer)
}

/// Exchanges announcements on a fresh stream. Both sides send first, then read.
pub async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    local: &Announcement,
) -> Result<Announcement> {
    s.write_all(&local.encode()).await?;
    s.flush().await?;
    read_announcement(s).await
}

/// Reads the peer's announcement, its size checked before allocation.
async fn read_announcement<S: AsyncRead + Unpin>(s: &mut S) -> Result<Announcement> {
    let mut fixed = [0u8; 8];
    read_exact(s, &mut fixed).await?;
    let (protocol, extended) = Announcement::parse_fixed(&fixed)?;
    let mut layers = Vec::new();
    if extended {
        let mut l = [0u8; 2];
        read_exact(s, &mut l).await?;
        let n = u16::from_be_bytes(l) as usize;
        if n > MAX_LAYER_LIST {
            return Err(Error::protocol(format!(
                "layer list of {n} bytes exceeds {MAX_LAYER_LIST}"
            )));
        }
        let mut list = vec![0u8; n];
        read_exact(s, &mut list).await?;
        layers = Announcement::parse_layers(&list)?;
    }
    Ok(Announcement { protocol, layers })
}

async fn read_exact<S: AsyncRead + Unpin>(s: &mut S, b: &mut [u8]) -> Result<()> {
    match s.read_exact(b).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(Error::protocol(
            "connection closed during the SP header (truncated header)",
        )),
        Err(e) => Err(e.into()),
    }
}

/// A run of the writer's output: bytes of its batch buffer, or a frame
/// written from its own buffer.
enum Seg {
    /// The next `n` bytes of the batch buffer (length prefixes and small
    /// frames).
    Copied(usize),
    /// A frame written where it lies.
    Frame(Message),
}

/// The sending half: `Sink<Message>` with vectored, batched writes.
pub struct FrameWriter<W> {
    io: W,
    framing: Framing,
    /// Length prefixes and small frames, in order.
    out: Vec<u8>,
    /// Where the front segment's bytes start in `out`.
    out_head: usize,
    segs: VecDeque<Seg>,
    /// Frames fed since the last complete flush.
    frames: usize,
    /// Bytes of the front segment already written.
    written: usize,
    /// Flushes in a row that were small.
    small: u8,
    /// Bytes gathered into `out` not yet counted as copied.
    uncounted: usize,
}

impl<W: AsyncWrite + Unpin> FrameWriter<W> {
    /// Wraps a write half.
    pub fn new(io: W, framing: Framing) -> Self {
        FrameWriter {
            io,
            framing,
            out: Vec::new(),
            out_head: 0,
            segs: VecDeque::new(),
            frames: 0,
            written: 0,
            small: 0,
            uncounted: 0,
        }
    }

    fn copied(&mut self, n: usize) {
        match self.segs.back_mut() {
            Some(Seg::Copied(len)) => *len += n,
            _ => self.segs.push_back(Seg::Copied(n)),
        }
    }

    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.uncounted > 0 {
            sp_core::record_copy(std::mem::take(&mut self.uncounted));
        }
        while !self.segs.is_empty() {
            if let (1, Some(Seg::Copied(n))) = (self.segs.len(), self.segs.front()) {
                // the usual case: everything in the batch buffer, one write
                let at = self.out_head + self.written;
                let end = self.out_head + n;
                let k = match Pin::new(&mut self.io).poll_write(cx, &self.out[at..end]) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                    Poll::Ready(Ok(k)) => k,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => return Poll::Pending,
                };
                self.written += k;
                if self.written == *n {
                    self.segs.clear();
                    self.written = 0;
                }
                continue;
            }
            let mut iov: [IoSlice<'_>; MAX_IOV] = [IoSlice::new(&[]); MAX_IOV];
            let mut n_iov = 0;
            let mut skip = self.written;
            let mut at = self.out_head;
            'segs: for seg in self.segs.iter() {
                let parts = match seg {
                    Seg::Copied(n) => {
                        at += n;
                        [&self.out[at - n..at], &[][..], &[][..]]
                    }
                    Seg::Frame(m) => m.frame_parts(),
                };
                for part in parts {
                    if skip >= part.len() {
                        skip -= part.len();
                        continue;
                    }
                    if n_iov == MAX_IOV {
                        break 'segs;
                    }
                    iov[n_iov] = IoSlice::new(&part[skip..]);
                    skip = 0;
                    n_iov += 1;
                }
            }
            let n = match Pin::new(&mut self.io).poll_write_vectored(cx, &iov[..n_iov]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            };
            let mut left = self.written + n;
            while let Some(seg) = self.segs.front() {
                let len = match seg {
                    Seg::Copied(n) => *n,
                    Seg::Frame(m) => m.frame_len(),
                };
                if left < len {
                    break;
                }
                left -= len;
                if let Some(Seg::Copied(n)) = self.segs.pop_front() {
                    self.out_head += n;
                }
            }
            self.written = left;
        }
        // all out: the buffer starts again from its beginning; a writer that
        // has sent little for a while gives back what a burst made it take
        self.small = if self.out.len() < OUT_KEEP / 4 && self.frames < 16 {
            self.small.saturating_add(1)
        } else {
            0
        };
        self.out.clear();
        if self.small == SHRINK_AFTER {
            self.out.shrink_to(OUT_KEEP);
            self.segs.shrink_to(16);
        }
        self.out_head = 0;
        self.frames = 0;
        Pin::new(&mut self.io).poll_flush(cx)
    }
}

impl<W: AsyncWrite + Unpin> Sink<Message> for FrameWriter<W> {
    type Error = Error;
    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let this = self.get_mut();
        if this.out.len() - this.out_head >= OUT_MAX || this.segs.len() >= MAX_PENDING {
            return this.poll_drain(cx).map_err(Error::from);
        }
        Poll::Ready(Ok(()))
    }
    fn start_send(self: Pin<&mut Self>, m: Message) -> Result<()> {
        let this = self.get_mut();
        let flen = m.frame_len();
        let len = (flen as u64).to_be_bytes();
        let plen = match this.framing {
            Framing::Tcp => {
                this.out.extend_from_slice(&len);
                8
            }
            Framing::Ipc => {
                this.out.push(1);
                this.out.extend_from_slice(&len);
                9
            }
        };
        this.frames += 1;
        if plen + flen < COPY_BELOW {
            // a small frame travels in the batch buffer: one copy (counted),
            // and its message is freed now
            for p in m.frame_parts() {
                this.out.extend_from_slice(p);
            }
            // counted once per write, not per frame
            this.uncounted += flen;
            this.copied(plen + flen);
        } else {
            this.copied(plen);
            this.segs.push_back(Seg::Frame(m));
        }
        Ok(())
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.get_mut().poll_drain(cx).map_err(Error::from)
    }
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let this = self.get_mut();
        match this.poll_drain(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.io)
                .poll_shutdown(cx)
                .map_err(Error::from),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e.into())),
            Poll::Pending => Poll::Pending,
        }
    }
}

enum ReadState {
    Prefix,
    /// Reading a frame straight into its buffer, allocated whole; `ahead`
    /// holds the budget for the bytes not yet read.
    Direct {
        buf: RecvBuf,
        ahead: AllocAhead,
    },
    /// Reading a frame the budget could not cover into a buffer that grows
    /// as bytes arrive (empty until the first ones do).
    Growing {
        buf: Vec<u8>,
        len: usize,
    },
}

/// The capacity a growing frame buffer holding `have` of `len` bytes takes
/// next: twice what arrived (at least one read's worth), never more than the
/// frame. So it never holds more than twice what the peer actually sent.
fn grow_to(have: usize, len: usize) -> usize {
    have.saturating_mul(2).max(READ_CHUNK).min(len)
}

/// The receiving half: `Stream<Item = Result<Message>>`.
///
/// A frame below [`STAGED_BELOW`] is read with others into a staging chunk
/// (of [`CHUNK_MIN`] to 64 KiB, as the pipe's traffic needs; none while it
/// receives nothing). Where the protocol reserves no headroom on receive,
/// the frame's message is a view of that chunk: no allocation, no copy, and
/// the chunk is freed with the last message that uses it (so a small message
/// kept long keeps its chunk). Otherwise the frame is copied into a buffer of
/// its own with the headroom (counted).
///
/// A larger frame is allocated whole when its length arrives only if the
/// socket's [`AllocBudget`] covers the bytes still to come: then its body is
/// read straight into the message (one allocation, no copy). Otherwise the
/// buffer grows as the bytes arrive, at most doubling what was received,
/// and the frame is copied into its message at the end: a peer announcing
/// large frames and sending nothing costs the budget at most, shared by all
/// the socket's pipes, instead of the announced size per connection.
pub struct FrameReader<R> {
    io: R,
    framing: Framing,
    buf: BytesMut,
    state: ReadState,
    max: sp_core::layer::RecvLimit,
    budget: AllocBudget,
    headroom: usize,
    done: bool,
    /// The last frame was read straight into its buffer.
    large: bool,
    /// Size of the next staging chunk.
    chunk: usize,
    /// Bytes the last read returned.
    last_read: usize,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Wraps a read half with the pipe's limits.
    pub fn new(io: R, framing: Framing, cfg: &PipeConfig) -> Self {
        FrameReader {
            io,
            framing,
            buf: BytesMut::new(),
            state: ReadState::Prefix,
            max: cfg.recv_limit.clone(),
            budget: cfg.alloc_budget.clone(),
            headroom: cfg.recv_headroom,
            done: false,
            large: false,
            chunk: CHUNK_MIN,
            last_read: 0,
        }
    }

    /// Makes room in the staging chunk: the same one when nothing shares it
    /// any more, else a fresh one.
    fn room(&mut self) {
        if self.buf.capacity() - self.buf.len() < self.chunk / 4 {
            self.buf.reserve(self.chunk);
        }
    }

    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        self.room();
        let free = self.buf.capacity() - self.buf.len();
        let r = if self.large && self.buf.is_empty() {
            // the last frame was large: the next is likely too. Read only its
            // prefix, so that its body goes straight into its own buffer
            // rather than through this one (one more system call per large
            // frame, against a copy of it)
            let plen = self.framing.prefix_len();
            let mut limited = bytes::BufMut::limit(&mut self.buf, plen);
            tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut limited)
        } else {
            tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.buf)
        };
        match &r {
            Poll::Ready(Ok(n)) => {
                if *n == free && self.chunk < READ_CHUNK {
                    // the peer sends faster than one chunk per read
                    self.chunk *= 2;
                }
                self.last_read = *n;
            }
            Poll::Pending if self.buf.is_empty() && self.last_read < CHUNK_MIN / 2 => {
                // a pipe that trickles (or went quiet) keeps a small chunk
                self.chunk = CHUNK_MIN;
                if self.buf.capacity() > 2 * CHUNK_MIN {
                    self.buf = BytesMut::new();
                }
            }
            _ => {}
        }
        r
    }

    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Message>>> {
        loop {
            match &mut self.state {
                ReadState::Prefix => {
                    let plen = self.framing.prefix_len();
                    if self.buf.len() >= plen {
                        let p = &self.buf[..plen];
                        let lb = match self.framing {
                            Framing::Tcp => &p[..8],
                            Framing::Ipc => {
                                if p[0] != 1 {
                                    let t = p[0];
                                    return Poll::Ready(Some(Err(Error::protocol(format!(
                                        "ipc message type {t:#04x}, expected 0x01"
                                    )))));
                                }
                                &p[1..9]
                            }
                        };
                        let len64 = u64::from_be_bytes(lb.try_into().unwrap_or([0xff; 8]));
                        let max = self.max.get();
                        if len64 > max as u64 {
                            return Poll::Ready(Some(Err(Error::TooLarge {
                                size: len64,
                                limit: max,
                            })));
                        }
                        let len = len64 as usize;
                        self.large = len >= DIRECT_READ;
                        if self.buf.len() - plen >= len {
                            if self.headroom == 0 {
                                // a view of the chunk: no allocation, no copy
                                let mut b = self.buf.split_to(plen + len).freeze();
                                b.advance(plen);
                                return Poll::Ready(Some(Ok(Message::from(b))));
                            }
                            self.buf.advance(plen);
                            let mut rb = RecvBuf::new(self.headroom, len);
                            rb.extend_from(&self.buf[..len]);
                            self.buf.advance(len);
                            return Poll::Ready(Some(Ok(rb.into_message())));
                        }
                        if len >= DIRECT_READ {
                            self.buf.advance(plen);
                            let have = self.buf.len();
                            self.state = match self.budget.try_take(len - have) {
                                Some(ahead) => {
                                    let mut rb = self.budget.recv_buf(self.headroom, len);
                                    rb.extend_from(&self.buf);
                                    ReadState::Direct { buf: rb, ahead }
                                }
                                None => {
                                    let mut v = Vec::new();
                                    if have > 0 {
                                        v.reserve_exact(grow_to(have, len));
                                        v.extend_from_slice(&self.buf);
                                        sp_core::record_copy(have);
                                    }
                                    ReadState::Growing { buf: v, len }
                                }
                            };
                            self.buf.clear();
                            continue;
                        }
                        // a small frame, partly here: keep the prefix and read more
                        self.buf.reserve(plen + len);
                    }
                    match self.poll_fill(cx) {
                        Poll::Ready(Ok(0)) => {
                            if self.buf.is_empty() {
                                return Poll::Ready(None);
                            }
                            return Poll::Ready(Some(Err(Error::protocol(
                                "connection closed mid-frame",
                            ))));
                        }
                        Poll::Ready(Ok(_)) => {}
                        Poll::Ready(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
                        Poll::Pending => return Poll::Pending,
                    }
                }
                ReadState::Direct { buf, ahead } => {
                    while buf.remaining() > 0 {
                        let mut rb = ReadBuf::uninit(buf.unfilled());
                        match Pin::new(&mut self.io).poll_read(cx, &mut rb) {
                            Poll::Ready(Ok(())) => {
                                let n = rb.filled().len();
                                if n == 0 {
                                    return Poll::Ready(Some(Err(Error::protocol(
                                        "connection closed mid-frame",
                                    ))));
                                }
                                buf.advance(n);
                                ahead.arrived(n);
                            }
                            Poll::Ready(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
                            Poll::Pending => return Poll::Pending,
                        }
                    }
                    let ReadState::Direct { buf, .. } =
                        std::mem::replace(&mut self.state, ReadState::Prefix)
                    else {
                        unreachable!()
                    };
                    return Poll::Ready(Some(Ok(buf.into_message())));
                }
                ReadState::Growing { buf, len } => {
                    while buf.len() < *len {
                        if buf.capacity() == 0 {
                            // nothing arrived yet: wait for the first bytes in
                            // the staging chunk, which the pipe has anyway
                            if self.buf.capacity() - self.buf.len() < self.chunk / 4 {
                                self.buf.reserve(self.chunk);
                            }
                            let mut limited = bytes::BufMut::limit(&mut self.buf, *len);
                            match tokio_util::io::poll_read_buf(
                                Pin::new(&mut self.io),
                                cx,
                                &mut limited,
                            ) {
                                Poll::Ready(Ok(0)) => {
                                    return Poll::Ready(Some(Err(Error::protocol(
                                        "connection closed mid-frame",
                                    ))))
                                }
                                Poll::Ready(Ok(n)) => {
                                    buf.reserve_exact(grow_to(n, *len));
                                    buf.extend_from_slice(&self.buf);
                                    self.buf.clear();
                                    sp_core::record_copy(n);
                                    continue;
                                }
                                Poll::Ready(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
                                Poll::Pending => return Poll::Pending,
                            }
                        }
                        if buf.len() == buf.capacity() {
                            buf.reserve_exact(grow_to(buf.len(), *len) - buf.len());
                        }
                        // never past the frame: what follows is the next one's
                        let want = (buf.capacity() - buf.len()).min(*len - buf.len());
                        let mut limited = bytes::BufMut::limit(&mut *buf, want);
                        match tokio_util::io::poll_read_buf(
                            Pin::new(&mut self.io),
                            cx,
                            &mut limited,
                        ) {
                            Poll::Ready(Ok(0)) => {
                                return Poll::Ready(Some(Err(Error::protocol(
                                    "connection closed mid-frame",
                                ))))
                            }
                            Poll::Ready(Ok(_)) => {}
                            Poll::Ready(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
                            Poll::Pending => return Poll::Pending,
                        }
                    }
                    let mut rb = self.budget.recv_buf(self.headroom, *len);
                    rb.extend_from(buf);
                    self.state = ReadState::Prefix;
                    return Poll::Ready(Some(Ok(rb.into_message())));
                }
            }
        }
    }
}

impl<R: AsyncRead + Unpin> Stream for FrameReader<R> {
    type Item = Result<Message>;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Message>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        let r = this.poll_frame(cx);
        if let Poll::Ready(None | Some(Err(_))) = &r {
            this.done = true;
        }
        r
    }
}

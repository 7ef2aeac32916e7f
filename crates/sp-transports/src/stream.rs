//! SP framing over a byte stream (TCP, IPC): the 8-byte announcement, then
//! `[0x01 (ipc only)] [u64 BE length] [frame]` per message.
//!
//! The writer gathers queued frames into vectored writes: the length prefix
//! comes from a small per-frame array and the message bytes are referenced
//! where they lie, so the body is never copied and many small messages share
//! one system call. The reader checks every length against the receive limit
//! before it allocates, and reads large frames straight into the message's
//! own buffer when the socket's [`AllocBudget`] covers the bytes still to
//! come; otherwise it grows a buffer as they arrive (see [`FrameReader`]).

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
/// smaller ones are read many per system call into a staging buffer and
/// copied out once (counted).
pub const STAGED_BELOW: usize = 16 << 10;
const DIRECT_READ: usize = STAGED_BELOW;
const READ_CHUNK: usize = 64 << 10;
/// Frames queued in the writer before `poll_ready` forces a flush.
const MAX_PENDING: usize = 1024;
/// iovecs per `writev` (Linux allows 1024).
const MAX_IOV: usize = 512;

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

/// The sending half: `Sink<Message>` with vectored, batched writes.
pub struct FrameWriter<W> {
    io: W,
    framing: Framing,
    frames: VecDeque<(Message, [u8; 9])>,
    /// Bytes of the front frame (prefix included) already written.
    written: usize,
}

impl<W: AsyncWrite + Unpin> FrameWriter<W> {
    /// Wraps a write half.
    pub fn new(io: W, framing: Framing) -> Self {
        FrameWriter {
            io,
            framing,
            frames: VecDeque::new(),
            written: 0,
        }
    }

    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let plen = self.framing.prefix_len();
        while !self.frames.is_empty() {
            let mut iov: [IoSlice<'_>; MAX_IOV] = [IoSlice::new(&[]); MAX_IOV];
            let mut n_iov = 0;
            let mut skip = self.written;
            'frames: for (m, prefix) in self.frames.iter() {
                let parts = m.frame_parts();
                let all = std::iter::once(&prefix[..plen]).chain(parts);
                for part in all {
                    if skip >= part.len() {
                        skip -= part.len();
                        continue;
                    }
                    if n_iov == MAX_IOV {
                        break 'frames;
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
            while let Some((m, _)) = self.frames.front() {
                let total = plen + m.frame_len();
                if left >= total {
                    left -= total;
                    self.frames.pop_front();
                } else {
                    break;
                }
            }
            self.written = left;
        }
        Pin::new(&mut self.io).poll_flush(cx)
    }
}

impl<W: AsyncWrite + Unpin> Sink<Message> for FrameWriter<W> {
    type Error = Error;
    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let this = self.get_mut();
        if this.frames.len() >= MAX_PENDING {
            return this.poll_drain(cx).map_err(Error::from);
        }
        Poll::Ready(Ok(()))
    }
    fn start_send(self: Pin<&mut Self>, m: Message) -> Result<()> {
        let this = self.get_mut();
        let mut prefix = [0u8; 9];
        let len = (m.frame_len() as u64).to_be_bytes();
        match this.framing {
            Framing::Tcp => prefix[..8].copy_from_slice(&len),
            Framing::Ipc => {
                prefix[0] = 1;
                prefix[1..].copy_from_slice(&len);
            }
        }
        this.frames.push_back((m, prefix));
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
/// A frame below [`STAGED_BELOW`] is read with others into a staging buffer.
/// A larger one is allocated whole when its length arrives only if the
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
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Wraps a read half with the pipe's limits.
    pub fn new(io: R, framing: Framing, cfg: &PipeConfig) -> Self {
        FrameReader {
            io,
            framing,
            buf: BytesMut::with_capacity(READ_CHUNK),
            state: ReadState::Prefix,
            max: cfg.recv_limit.clone(),
            budget: cfg.alloc_budget.clone(),
            headroom: cfg.recv_headroom,
            done: false,
            large: false,
        }
    }

    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.buf.capacity() - self.buf.len() < READ_CHUNK / 4 {
            self.buf.reserve(READ_CHUNK);
        }
        if self.large && self.buf.is_empty() {
            // the last frame was large: the next is likely too. Read only its
            // prefix, so that its body goes straight into its own buffer
            // rather than through this one (one more system call per large
            // frame, against a copy of it)
            let plen = self.framing.prefix_len();
            let mut limited = bytes::BufMut::limit(&mut self.buf, plen);
            return tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut limited);
        }
        tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.buf)
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
                                    let mut rb = RecvBuf::new(self.headroom, len);
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
                            // the staging buffer, which every pipe has anyway
                            if self.buf.capacity() < READ_CHUNK / 4 {
                                self.buf.reserve(READ_CHUNK);
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
                    let mut rb = RecvBuf::new(self.headroom, *len);
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

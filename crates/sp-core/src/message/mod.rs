//! The message: the SP header, the body, and room for every declared header.
//!
//! ```
//! use sp_core::Message;
//! let mut m = Message::with_headroom(16, b"hello");
//! m.push_header(&[0x80, 0, 0, 1]);           // written into the headroom: no copy, no allocation
//! assert_eq!(m.header(), &[0x80, 0, 0, 1]);
//! assert_eq!(m.body(), b"hello");
//! assert_eq!(m.wire(), &[0x80, 0, 0, 1, b'h', b'e', b'l', b'l', b'o']);
//! let resend = m.clone();                     // a reference count, not a copy
//! assert_eq!(resend.body(), m.body());
//!
//! // a body the application already owns is taken over, not copied; its
//! // header then lives in a small area of its own and reaches the kernel
//! // beside the body in one vectored write
//! let before = sp_core::copied_bytes();
//! let mut v = Message::from(vec![7u8; 4096]);
//! v.push_header_u32(0x8000_0002);
//! assert_eq!(v.header(), &[0x80, 0, 0, 2]);
//! assert_eq!(v.frame_parts().iter().map(|p| p.len()).sum::<usize>(), 4100);
//! assert_eq!(sp_core::copied_bytes(), before);
//! ```
//!
//! # Layout
//!
//! A message is one buffer, `[headroom | header | body | tailroom]`, plus two
//! small inline areas in front of and behind it. The buffer is either the
//! library's own (one allocation sized for the whole stack by
//! `Socket::new_message`, or a received frame) or a `Vec<u8>`, `String` or
//! `bytes::Bytes` taken over from the application, which is never written.
//!
//! * The **SP header** lies in the buffer when there is headroom, otherwise
//!   in the inline head area (taken-over bodies, shared buffers).
//! * **Frame headers and trailers** that pipe layers add go into the headroom
//!   and tailroom when the buffer is unique and has room, otherwise into the
//!   inline areas, so a message shared with a resend queue still reaches the
//!   wire without a copy.
//! * [`Message::frame_parts`] gives the frame as three slices for a vectored
//!   write. A layer that needs the frame in one slice (an AEAD) calls
//!   [`Message::flatten_frame`] or [`Message::reserve_frame`]: at most one
//!   copy, counted. The socket does that once, before the pipe layers, when
//!   a layer of the pipe declares `Overhead::contiguous`.
//!
//! Cloning shares the buffer; a write to a shared or taken-over buffer copies
//! it first (copy on write). Every copy of message data is counted
//! ([`copied_bytes`], `Stats::bytes_copied`).

mod copies;
mod inline;
pub(crate) mod pool;
mod recv_buf;

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

pub use copies::{copied_bytes, record_copy, CopyScope, Direction};
use inline::Inline;
pub use recv_buf::RecvBuf;

use crate::PipeId;

/// Headroom a message copied from a slice gets when nobody said how much:
/// enough for a REQ id, a backtrace of eight hops and a little more.
pub const DEFAULT_HEADROOM: usize = 64;

/// Bytes of header an inline head area holds: a backtrace of eight hops and
/// a pipe layer's frame header.
const INLINE_HEAD: usize = 48;
/// Bytes of trailer the inline tail area holds: one AEAD tag and a checksum.
const INLINE_TAIL: usize = 24;

/// Allocates a zeroed shared buffer with a single allocation: `Arc<[u8]>`
/// built from an exact-size iterator puts the counts and the bytes together.
fn alloc_shared(len: usize) -> Arc<[u8]> {
    std::iter::repeat_n(0u8, len).collect()
}

/// Where the bytes live.
#[derive(Clone)]
enum Store {
    /// The library's own buffer: writable when unique.
    Own(Arc<[u8]>),
    /// The library's own large buffer, back to its socket's pool when the
    /// last message using it goes (see `pool.rs`): writable when unique.
    Pooled(Arc<pool::PoolBuf>),
    /// A body taken over from the application (or a library that hands out
    /// `Bytes`): never written, copied on the first write.
    Ext(Bytes),
}

impl Store {
    fn bytes(&self) -> &[u8] {
        match self {
            Store::Own(a) => a,
            Store::Pooled(p) => &p.buf,
            Store::Ext(b) => b,
        }
    }
    fn writable(&mut self) -> Option<&mut [u8]> {
        match self {
            Store::Own(a) => Arc::get_mut(a),
            Store::Pooled(p) => Arc::get_mut(p).map(|p| &mut p.buf[..]),
            Store::Ext(_) => None,
        }
    }
}

/// An SP message: header (protocol routing words), body (application data),
/// and the pipe it came from or goes to.
#[derive(Clone)]
pub struct Message {
    store: Store,
    start: usize,
    split: usize,
    end: usize,
    /// The inline areas, only for a message that needs them (a header with
    /// no headroom, frame parts on a shared buffer): a message stays small
    /// enough to move in registers.
    extra: Option<Box<Extra>>,
    pipe: Option<PipeId>,
}

/// What lies beside the buffer.
#[derive(Clone, Copy)]
struct Extra {
    /// Bytes in front of `store[start..]`: frame headers of pipe layers and,
    /// when the header could not go in the buffer, the SP header (its last
    /// `head_sp` bytes).
    head: Inline<INLINE_HEAD>,
    head_sp: u8,
    /// Frame trailers of pipe layers.
    tail: Inline<INLINE_TAIL>,
}

const NO_EXTRA: Extra = Extra {
    head: Inline::EMPTY,
    head_sp: 0,
    tail: Inline::EMPTY,
};

impl Default for Message {
    fn default() -> Self {
        Message::new()
    }
}

impl Message {
    /// An empty message with default headroom.
    pub fn new() -> Message {
        Message::with_capacity(DEFAULT_HEADROOM, 0, 0)
    }

    /// A message whose body is `body_len` zero bytes, with room for
    /// `headroom` header bytes in front and `tailroom` bytes behind. Exactly
    /// one allocation. Write the body with [`Message::body_mut`].
    pub fn with_capacity(headroom: usize, body_len: usize, tailroom: usize) -> Message {
        let total = headroom + body_len + tailroom;
        Message::from_parts(alloc_shared(total), headroom, headroom + body_len)
    }

    /// A message holding a copy of `body`, with `headroom` bytes free in front.
    pub fn with_headroom(headroom: usize, body: &[u8]) -> Message {
        let mut m = Message::with_capacity(headroom, body.len(), 0);
        if let Some(b) = m.store.writable() {
            b[headroom..].copy_from_slice(body);
        }
        m
    }

    /// Wraps a received frame: everything is body, `headroom` bytes are free.
    pub(crate) fn from_parts(buf: Arc<[u8]>, start: usize, end: usize) -> Message {
        Message {
            store: Store::Own(buf),
            start,
            split: start,
            end,
            extra: None,
            pipe: None,
        }
    }

    /// Wraps a pooled buffer: everything between `start` and `end` is body.
    pub(crate) fn from_pooled(buf: pool::PoolBuf, start: usize, end: usize) -> Message {
        Message {
            store: Store::Pooled(Arc::new(buf)),
            start,
            split: start,
            end,
            extra: None,
            pipe: None,
        }
    }

    /// A message like [`Message::with_capacity`], in a buffer from `pool`
    /// when it keeps one of the size. A reused buffer is zeroed whole, room
    /// in front and behind included: an earlier message's bytes must never
    /// reach a peer through a header or trailer a component sizes but does
    /// not fully write (the memset is the cost `with_capacity` pays too).
    pub(crate) fn with_capacity_in(
        pool: &pool::BufPool,
        headroom: usize,
        body_len: usize,
        tailroom: usize,
    ) -> Message {
        let total = headroom + body_len + tailroom;
        if total < pool::POOL_MIN {
            return Message::with_capacity(headroom, body_len, tailroom);
        }
        let buf = match pool.take(total) {
            pool::Taken::Kept(mut b) => {
                b.fill(0);
                b
            }
            pool::Taken::Fresh => vec![0u8; total].into_boxed_slice(),
            pool::Taken::Plain => return Message::with_capacity(headroom, body_len, tailroom),
        };
        // a larger kept buffer leaves more (zeroed) room behind
        let end = headroom + body_len;
        Message::from_pooled(pool::PoolBuf::new(buf, pool.home()), headroom, end)
    }

    fn from_ext(b: Bytes) -> Message {
        let end = b.len();
        Message {
            store: Store::Ext(b),
            start: 0,
            split: 0,
            end,
            extra: None,
            pipe: None,
        }
    }

    fn buf(&self) -> &[u8] {
        self.store.bytes()
    }

    fn ex(&self) -> &Extra {
        self.extra.as_deref().unwrap_or(&NO_EXTRA)
    }

    fn ex_mut(&mut self) -> &mut Extra {
        self.extra.get_or_insert_with(|| Box::new(NO_EXTRA))
    }

    fn head_sp(&self) -> usize {
        self.ex().head_sp as usize
    }

    fn detached(&self) -> bool {
        self.head_sp() > 0
    }

    /// The SP protocol header (backtrace, request id, hop count...).
    pub fn header(&self) -> &[u8] {
        if self.detached() {
            let h = self.ex().head.as_slice();
            &h[h.len() - self.head_sp()..]
        } else {
            &self.buf()[self.start..self.split]
        }
    }

    /// The application payload.
    pub fn body(&self) -> &[u8] {
        &self.buf()[self.split..self.end]
    }

    /// The part of the frame that lies in the buffer: header and body, except
    /// what sits in the inline areas (frame headers a pipe layer added to a
    /// shared buffer, or the header of a body taken over without headroom).
    /// Every received frame and every message made with room has everything
    /// here; [`Message::is_contiguous`] tells, [`Message::flatten_frame`]
    /// makes it so.
    pub fn wire(&self) -> &[u8] {
        &self.buf()[self.start..self.end]
    }

    /// True when the whole frame is [`Message::wire`]: nothing inline.
    pub fn is_contiguous(&self) -> bool {
        self.ex().head.is_empty() && self.ex().tail.is_empty()
    }

    /// Length of header plus body.
    pub fn len(&self) -> usize {
        self.head_sp() + self.end - self.start
    }

    /// True when header and body are both empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes free in front of the header (0 for a body taken over).
    pub fn headroom(&self) -> usize {
        match self.store {
            Store::Own(_) | Store::Pooled(_) => self.start,
            Store::Ext(_) => 0,
        }
    }

    /// Bytes free behind the body (0 for a body taken over).
    pub fn tailroom(&self) -> usize {
        match &self.store {
            Store::Own(a) => a.len() - self.end,
            Store::Pooled(p) => p.buf.len() - self.end,
            Store::Ext(_) => 0,
        }
    }

    /// True when no clone shares this buffer and it is the library's own, so
    /// writes happen in place.
    pub fn is_unique(&mut self) -> bool {
        self.store.writable().is_some()
    }

    /// The pipe this message arrived on, or is addressed to.
    pub fn pipe(&self) -> Option<PipeId> {
        self.pipe
    }

    /// Sets the pipe this message is addressed to.
    pub fn set_pipe(&mut self, pipe: Option<PipeId>) {
        self.pipe = pipe;
    }

    /// Makes the buffer the library's own and unique, with at least the given
    /// room, and the SP header in the buffer. Copies once if needed (counted);
    /// frame parts in the inline areas stay there.
    fn make_room(&mut self, headroom: usize, tailroom: usize) {
        let sp = self.head_sp();
        let fits = self.headroom() >= headroom && self.tailroom() >= tailroom && sp == 0;
        if fits && self.store.writable().is_some() {
            return;
        }
        let keep_head = if self.store.writable().is_some() {
            self.start
        } else {
            0
        };
        let new_head = headroom.max(keep_head);
        let len = self.end - self.start;
        let mut buf = alloc_shared(new_head + sp + len + tailroom.max(self.tailroom()));
        let hdr = self.split - self.start;
        if let Some(b) = Arc::get_mut(&mut buf) {
            let h = self.ex().head.as_slice();
            b[new_head..new_head + sp].copy_from_slice(&h[h.len() - sp..]);
            b[new_head + sp..new_head + sp + len].copy_from_slice(self.wire());
        }
        record_copy(len);
        if sp > 0 {
            let e = self.ex_mut();
            e.head.truncate(e.head.len() - sp);
            e.head_sp = 0;
        }
        self.store = Store::Own(buf);
        self.start = new_head;
        self.split = new_head + sp + hdr;
        self.end = new_head + sp + len;
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        self.make_room(0, 0);
        match self.store.writable() {
            Some(b) => b,
            // make_room just made the buffer unique
            None => unreachable!("buffer is unique after make_room"),
        }
    }

    /// The body, writable. Copies first if the buffer is shared or taken over.
    pub fn body_mut(&mut self) -> &mut [u8] {
        self.make_room(0, 0);
        let (s, e) = (self.split, self.end);
        &mut self.bytes_mut()[s..e]
    }

    /// Header and body, writable and contiguous (for in-place transforms).
    /// Frame parts a pipe layer left inline are not part of it: call
    /// [`Message::flatten_frame`] first for the whole frame.
    pub fn wire_mut(&mut self) -> &mut [u8] {
        self.make_room(0, 0);
        let (s, e) = (self.start, self.end);
        &mut self.bytes_mut()[s..e]
    }

    /// Prepends bytes to the header: into the headroom when the buffer is
    /// unique and has room, else into the inline head area (no copy of the
    /// body), else into a new buffer (one copy).
    pub fn push_header(&mut self, data: &[u8]) {
        let n = data.len();
        if self.detached() {
            let e = self.ex_mut();
            let at = e.head.len() - e.head_sp as usize;
            if e.head.try_prepend_at(at, data) {
                e.head_sp += n as u8;
                return;
            }
            self.make_room(n, 0);
        } else if self.start < n || self.store.writable().is_none() {
            // the header goes inline when nothing else is there yet
            let hdr = self.split - self.start;
            if self.ex().head.is_empty() && hdr + n <= INLINE_HEAD {
                let mut h = [0u8; INLINE_HEAD];
                h[..n].copy_from_slice(data);
                h[n..n + hdr].copy_from_slice(self.header());
                let e = self.ex_mut();
                e.head.set(&h[..n + hdr]);
                e.head_sp = (n + hdr) as u8;
                self.start = self.split;
                return;
            }
            self.make_room(n, 0);
        }
        let s = self.start - n;
        self.bytes_mut()[s..s + n].copy_from_slice(data);
        self.start = s;
    }

    /// Prepends a big-endian u32 to the header.
    pub fn push_header_u32(&mut self, v: u32) {
        self.push_header(&v.to_be_bytes());
    }

    /// Removes and returns the first header word (big-endian u32).
    pub fn pop_header_u32(&mut self) -> Option<u32> {
        let h = self.header();
        if h.len() < 4 {
            return None;
        }
        let v = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
        if self.detached() {
            let e = self.ex_mut();
            let at = e.head.len() - e.head_sp as usize;
            e.head.remove(at, 4);
            e.head_sp -= 4;
        } else {
            self.start += 4;
        }
        Some(v)
    }

    /// Drops the whole header (a cooked send must not carry a stale one).
    pub fn clear_header(&mut self) {
        if self.detached() {
            let e = self.ex_mut();
            e.head.truncate(e.head.len() - e.head_sp as usize);
            e.head_sp = 0;
        }
        self.start = self.split;
    }

    /// Moves the first `n` body bytes into the header (protocols parse their
    /// header out of a received flat body this way: no copy). Returns false if
    /// the body is shorter than `n`.
    pub fn body_to_header(&mut self, n: usize) -> bool {
        if self.end - self.split < n {
            return false;
        }
        if self.detached() {
            // the header stays in one place: the words follow it inline
            let words = &self.buf()[self.split..self.split + n];
            let mut tmp = [0u8; INLINE_HEAD];
            if n <= INLINE_HEAD {
                tmp[..n].copy_from_slice(words);
            }
            let e = self.ex_mut();
            if n <= INLINE_HEAD && e.head.try_append(&tmp[..n]) {
                e.head_sp += n as u8;
                self.split += n;
                self.start = self.split;
                return true;
            }
            self.make_room(0, 0);
        }
        self.split += n;
        true
    }

    /// Makes the header part of the body again (what a transport delivers).
    pub fn header_to_body(&mut self) {
        if self.detached() {
            self.make_room(0, 0);
        }
        self.split = self.start;
    }

    /// Prepends bytes to the body (what a message layer above the protocol
    /// does), in the headroom when there is room. A header, if any, stays in
    /// front.
    pub fn prepend_body(&mut self, data: &[u8]) {
        let n = data.len();
        if self.detached() {
            // the header is inline: the body's own headroom takes the bytes
            if self.start >= n && self.store.writable().is_some() {
                let s = self.start - n;
                self.bytes_mut()[s..s + n].copy_from_slice(data);
                self.start = s;
                self.split = s;
                return;
            }
        }
        self.make_room(n, 0);
        let (s, sp) = (self.start, self.split);
        let bytes = self.bytes_mut();
        bytes.copy_within(s..sp, s - n);
        bytes[sp - n..sp].copy_from_slice(data);
        self.start -= n;
        self.split -= n;
    }

    /// Removes `n` bytes from the front of the body. False if too short.
    pub fn trim_body_front(&mut self, n: usize) -> bool {
        if self.end - self.split < n {
            return false;
        }
        if self.start == self.split {
            // no header in the buffer: only offsets move
            self.start += n;
            self.split += n;
            return true;
        }
        // the header stays adjacent to the body
        let hdr = self.split - self.start;
        let (s, sp) = (self.start, self.split);
        self.bytes_mut().copy_within(s..sp, s + n);
        self.start += n;
        self.split = self.start + hdr;
        true
    }

    /// Removes `n` bytes from the end of the body. False if too short.
    pub fn trim_body_back(&mut self, n: usize) -> bool {
        if self.end - self.split < n {
            return false;
        }
        self.end -= n;
        true
    }

    /// Appends bytes to the body (in the tailroom when there is room).
    pub fn extend_body(&mut self, data: &[u8]) {
        self.make_room(0, data.len());
        let e = self.end;
        self.bytes_mut()[e..e + data.len()].copy_from_slice(data);
        self.end += data.len();
    }

    /// Prepends a frame header (used by pipe layers): into the headroom when
    /// the buffer is unique and has room, else inline so that the body is not
    /// copied, else into a flattened buffer (one copy).
    pub fn push_frame_header(&mut self, data: &[u8]) {
        let n = data.len();
        if self.ex().head.is_empty() && self.start >= n && self.store.writable().is_some() {
            // frame bytes count as header from here on: the SP split no
            // longer matters below the protocol
            let s = self.start - n;
            self.bytes_mut()[s..s + n].copy_from_slice(data);
            self.start = s;
            return;
        }
        if !self.ex_mut().head.try_prepend_at(0, data) {
            self.reserve_frame(n, 0);
            let s = self.start - n;
            self.bytes_mut()[s..s + n].copy_from_slice(data);
            self.start = s;
        }
    }

    /// Appends a frame trailer (used by pipe layers).
    pub fn push_frame_trailer(&mut self, data: &[u8]) {
        if self.ex().tail.is_empty() && self.tailroom() >= data.len() && self.is_unique() {
            self.extend_body(data);
            return;
        }
        if !self.ex_mut().tail.try_append(data) {
            self.reserve_frame(0, data.len());
            self.extend_body(data);
        }
    }

    /// Grows the frame by `n` bytes at its end (in the tailroom when the
    /// buffer is unique and has room, else after one copy) and returns them,
    /// zeroed, for the caller to fill: an AEAD writes its tags here.
    pub fn extend_frame(&mut self, n: usize) -> &mut [u8] {
        if !self.ex().tail.is_empty() {
            self.reserve_frame(0, n);
        }
        self.make_room(0, n);
        let e = self.end;
        self.end += n;
        let b = &mut self.bytes_mut()[e..e + n];
        b.fill(0);
        b
    }

    /// The frame as up to three slices: inline head, the buffer's part,
    /// inline tail. A vectored write sends them without a copy.
    pub fn frame_parts(&self) -> [&[u8]; 3] {
        let e = self.ex();
        [e.head.as_slice(), self.wire(), e.tail.as_slice()]
    }

    /// Total length of the frame, frame headers and trailers included.
    pub fn frame_len(&self) -> usize {
        let e = self.ex();
        e.head.len() + (self.end - self.start) + e.tail.len()
    }

    /// Folds the inline head and tail into the buffer so that the frame is one
    /// contiguous, unique slice (`wire()`). At most one copy. Returns the
    /// number of bytes copied (0 when nothing had to move).
    pub fn flatten_frame(&mut self) -> usize {
        self.reserve_frame(0, 0)
    }

    /// Makes the frame one unique, contiguous slice with at least `headroom`
    /// bytes free in front and `tailroom` behind, for layers that transform
    /// it in place. At most one copy of the frame (counted); returns the
    /// bytes copied, 0 when the message already had the room.
    pub fn reserve_frame(&mut self, headroom: usize, tailroom: usize) -> usize {
        let (head, tail) = (self.ex().head.len(), self.ex().tail.len());
        let unique = self.store.writable().is_some();
        if unique && head == 0 && tail == 0 && self.start >= headroom && self.tailroom() >= tailroom
        {
            return 0;
        }
        let copied = self.frame_len();
        let in_hdr = self.split - self.start;
        let mut buf = alloc_shared(headroom + copied + tailroom);
        if let Some(b) = Arc::get_mut(&mut buf) {
            let mut at = headroom;
            for p in self.frame_parts() {
                b[at..at + p.len()].copy_from_slice(p);
                at += p.len();
            }
        }
        record_copy(copied);
        // frame headers and the SP header lead the buffer now, all "header"
        self.store = Store::Own(buf);
        self.start = headroom;
        self.split = headroom + head + in_hdr;
        self.end = headroom + copied;
        self.extra = None;
        copied
    }

    /// The whole wire frame as a fresh `Vec` (copies).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.frame_len());
        for p in self.frame_parts() {
            v.extend_from_slice(p);
        }
        v
    }

    /// The whole frame as `Bytes`, for libraries that take their payload that
    /// way (a WebSocket). No copy when the frame is contiguous (one small
    /// allocation ties the buffer to the `Bytes`); otherwise flattened first.
    pub fn into_frame_bytes(mut self) -> Bytes {
        if !self.is_contiguous() {
            self.flatten_frame();
        }
        let (s, e) = (self.start, self.end);
        match self.store {
            Store::Ext(b) => b.slice(s..e),
            Store::Own(a) => Bytes::from_owner(Owned(a, s, e)),
            Store::Pooled(p) => Bytes::from_owner(PooledOwned(p, s, e)),
        }
    }

    /// Replaces the header with `hdr`.
    pub fn set_header(&mut self, hdr: &[u8]) {
        self.clear_header();
        self.push_header(hdr);
    }
}

/// A message buffer lent to `Bytes`.
struct Owned(Arc<[u8]>, usize, usize);

/// A pooled message buffer lent to `Bytes` (back to its pool after).
struct PooledOwned(Arc<pool::PoolBuf>, usize, usize);

impl AsRef<[u8]> for PooledOwned {
    fn as_ref(&self) -> &[u8] {
        &self.0.buf[self.1..self.2]
    }
}

impl AsRef<[u8]> for Owned {
    fn as_ref(&self) -> &[u8] {
        &self.0[self.1..self.2]
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("header", &Hex(self.header()))
            .field("body_len", &(self.end - self.split))
            .field("pipe", &self.pipe)
            .finish()
    }
}

struct Hex<'a>(&'a [u8]);
impl fmt::Debug for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl PartialEq for Message {
    fn eq(&self, other: &Self) -> bool {
        self.header() == other.header() && self.body() == other.body()
    }
}
impl Eq for Message {}

impl From<&[u8]> for Message {
    fn from(b: &[u8]) -> Self {
        Message::with_headroom(DEFAULT_HEADROOM, b)
    }
}
impl<const N: usize> From<&[u8; N]> for Message {
    fn from(b: &[u8; N]) -> Self {
        Message::with_headroom(DEFAULT_HEADROOM, b)
    }
}
impl From<&str> for Message {
    fn from(b: &str) -> Self {
        Message::with_headroom(DEFAULT_HEADROOM, b.as_bytes())
    }
}
/// Takes the vector over: no copy (its header, if any, goes inline).
impl From<Vec<u8>> for Message {
    fn from(b: Vec<u8>) -> Self {
        Message::from_ext(Bytes::from(b))
    }
}
/// Takes the string over: no copy.
impl From<String> for Message {
    fn from(s: String) -> Self {
        Message::from(s.into_bytes())
    }
}
/// Shares the bytes: no copy.
impl From<Bytes> for Message {
    fn from(b: Bytes) -> Self {
        Message::from_ext(b)
    }
}

#[cfg(test)]
mod tests;

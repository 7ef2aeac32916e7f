//! The message: one buffer holding headroom, the SP header and the body.
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
//! ```
//!
//! Layout of the one allocation: `[headroom | header | body | tailroom]`. The
//! header and body are always adjacent, so a layer that needs them contiguous
//! (an AEAD) gets that for free, and a transport can hand them to the kernel as
//! one slice. Cloning shares the buffer; a write to a shared buffer copies it
//! first (copy on write), except for *frame* headers and trailers that pipe
//! layers add, which go to small inline areas instead so that a message shared
//! with a resend queue still reaches the wire without a copy.

use std::fmt;
use std::sync::Arc;

use crate::PipeId;

/// Headroom a message gets when nobody said how much: enough for a REQ id,
/// a backtrace of eight hops and a little more.
pub const DEFAULT_HEADROOM: usize = 64;

const INLINE_FRAME: usize = 32;

static COPIED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Bytes of message data the library has copied (copy-on-write of a shared
/// buffer, headroom too small, folding frame parts into one buffer) since
/// the process started. A diagnostic: with no layer that needs contiguity,
/// the send path adds nothing here.
pub fn copied_bytes() -> u64 {
    COPIED.load(std::sync::atomic::Ordering::Relaxed)
}

/// Adds to [`copied_bytes`]: for layers that copy message data on purpose
/// (an AEAD gathering a frame into its output), so the counter stays the
/// whole story.
pub fn record_copy(bytes: usize) {
    COPIED.fetch_add(bytes as u64, std::sync::atomic::Ordering::Relaxed);
}

/// Allocates a zeroed shared buffer with a single allocation: `Arc<[u8]>`
/// built from an exact-size iterator puts the counts and the bytes together.
fn alloc_shared(len: usize) -> Arc<[u8]> {
    std::iter::repeat_n(0u8, len).collect()
}

/// A small inline byte area for frame headers/trailers added by pipe layers.
#[derive(Clone, Copy)]
struct Inline {
    len: u8,
    bytes: [u8; INLINE_FRAME],
}

impl Inline {
    const EMPTY: Inline = Inline {
        len: 0,
        bytes: [0; INLINE_FRAME],
    };
    fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
    fn try_prepend(&mut self, data: &[u8]) -> bool {
        let len = self.len as usize;
        if len + data.len() > INLINE_FRAME {
            return false;
        }
        self.bytes.copy_within(0..len, data.len());
        self.bytes[..data.len()].copy_from_slice(data);
        self.len = (len + data.len()) as u8;
        true
    }
    fn try_append(&mut self, data: &[u8]) -> bool {
        let len = self.len as usize;
        if len + data.len() > INLINE_FRAME {
            return false;
        }
        self.bytes[len..len + data.len()].copy_from_slice(data);
        self.len = (len + data.len()) as u8;
        true
    }
}

/// An SP message: header (protocol routing words), body (application data),
/// and the pipe it came from or goes to.
#[derive(Clone)]
pub struct Message {
    buf: Arc<[u8]>,
    start: usize,
    split: usize,
    end: usize,
    frame_head: Inline,
    frame_tail: Inline,
    pipe: Option<PipeId>,
}

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
        Message {
            buf: alloc_shared(total),
            start: headroom,
            split: headroom,
            end: headroom + body_len,
            frame_head: Inline::EMPTY,
            frame_tail: Inline::EMPTY,
            pipe: None,
        }
    }

    /// A message holding a copy of `body`, with `headroom` bytes free in front.
    pub fn with_headroom(headroom: usize, body: &[u8]) -> Message {
        let mut m = Message::with_capacity(headroom, body.len(), 0);
        m.body_mut().copy_from_slice(body);
        m
    }

    /// Wraps a received frame: everything is body, `headroom` bytes are free.
    pub(crate) fn from_parts(buf: Arc<[u8]>, start: usize, end: usize) -> Message {
        Message {
            buf,
            start,
            split: start,
            end,
            frame_head: Inline::EMPTY,
            frame_tail: Inline::EMPTY,
            pipe: None,
        }
    }

    /// The SP protocol header (backtrace, request id, hop count...).
    pub fn header(&self) -> &[u8] {
        &self.buf[self.start..self.split]
    }

    /// The application payload.
    pub fn body(&self) -> &[u8] {
        &self.buf[self.split..self.end]
    }

    /// Header and body as they go on the wire (without frame headers added by
    /// pipe layers; see [`Message::frame_parts`]).
    pub fn wire(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Length of header plus body.
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// True when header and body are both empty.
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Bytes free in front of the header.
    pub fn headroom(&self) -> usize {
        self.start
    }

    /// Bytes free behind the body.
    pub fn tailroom(&self) -> usize {
        self.buf.len() - self.end
    }

    /// True when no clone shares this buffer, so writes happen in place.
    pub fn is_unique(&mut self) -> bool {
        Arc::get_mut(&mut self.buf).is_some()
    }

    /// The pipe this message arrived on, or is addressed to.
    pub fn pipe(&self) -> Option<PipeId> {
        self.pipe
    }

    /// Sets the pipe this message is addressed to.
    pub fn set_pipe(&mut self, pipe: Option<PipeId>) {
        self.pipe = pipe;
    }

    /// Makes the buffer unique with at least the given room, copying once if needed.
    fn make_room(&mut self, headroom: usize, tailroom: usize) {
        let unique = Arc::get_mut(&mut self.buf).is_some();
        if unique && self.start >= headroom && self.tailroom() >= tailroom {
            return;
        }
        let new_head = headroom
            .max(if unique { self.start } else { 0 })
            .max(headroom);
        let len = self.end - self.start;
        let mut buf = alloc_shared(new_head + len + tailroom.max(self.tailroom()));
        COPIED.fetch_add(len as u64, std::sync::atomic::Ordering::Relaxed);
        let hdr = self.split - self.start;
        if let Some(b) = Arc::get_mut(&mut buf) {
            b[new_head..new_head + len].copy_from_slice(&self.buf[self.start..self.end]);
        }
        self.buf = buf;
        self.start = new_head;
        self.split = new_head + hdr;
        self.end = new_head + len;
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        self.make_room(0, 0);
        match Arc::get_mut(&mut self.buf) {
            Some(b) => b,
            // make_room just made the buffer unique
            None => unreachable!("buffer is unique after make_room"),
        }
    }

    /// The body, writable. Copies first if the buffer is shared.
    pub fn body_mut(&mut self) -> &mut [u8] {
        let (s, e) = (self.split, self.end);
        &mut self.bytes_mut()[s..e]
    }

    /// Header and body, writable and contiguous (for in-place transforms).
    pub fn wire_mut(&mut self) -> &mut [u8] {
        let (s, e) = (self.start, self.end);
        &mut self.bytes_mut()[s..e]
    }

    /// Prepends bytes to the header, in the headroom when there is room.
    pub fn push_header(&mut self, data: &[u8]) {
        self.make_room(data.len(), 0);
        let s = self.start - data.len();
        self.bytes_mut()[s..s + data.len()].copy_from_slice(data);
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
        self.start += 4;
        Some(v)
    }

    /// Drops the whole header (a cooked send must not carry a stale one).
    pub fn clear_header(&mut self) {
        self.start = self.split;
    }

    /// Moves the first `n` body bytes into the header (protocols parse their
    /// header out of a received flat body this way: no copy). Returns false if
    /// the body is shorter than `n`.
    pub fn body_to_header(&mut self, n: usize) -> bool {
        if self.end - self.split < n {
            return false;
        }
        self.split += n;
        true
    }

    /// Makes the header part of the body again (what a transport delivers).
    pub fn header_to_body(&mut self) {
        self.split = self.start;
    }

    /// Prepends bytes to the body (what a message layer above the protocol
    /// does), in the headroom when there is room. A header, if any, stays in
    /// front.
    pub fn prepend_body(&mut self, data: &[u8]) {
        let n = data.len();
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
        // the header stays adjacent: only valid with an empty header
        if self.start == self.split {
            self.start += n;
        } else {
            let hdr = self.split - self.start;
            let (s, sp) = (self.start, self.split);
            self.bytes_mut().copy_within(s..sp, s + n);
            self.start += n;
            self.split = self.start + hdr;
        }
        self.split = self.split.max(self.start);
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

    /// Prepends a frame header (used by pipe layers). Kept inline when the
    /// buffer is shared so the body is not copied; otherwise in the headroom.
    pub fn push_frame_header(&mut self, data: &[u8]) {
        if self.frame_head.len == 0 && self.is_unique() && self.start >= data.len() {
            // in place, and the header region becomes part of the frame
            self.push_header(data);
            self.split = self.split.max(self.start);
            // frame bytes are outside the SP header: treat them as header so
            // that header() of the SP layer is not disturbed on the way down
            return;
        }
        if !self.frame_head.try_prepend(data) {
            self.flatten_frame();
            self.push_header(data);
        }
    }

    /// Appends a frame trailer (used by pipe layers).
    pub fn push_frame_trailer(&mut self, data: &[u8]) {
        if self.frame_tail.len == 0 && self.is_unique() && self.tailroom() >= data.len() {
            self.extend_body(data);
            return;
        }
        if !self.frame_tail.try_append(data) {
            self.flatten_frame();
            self.extend_body(data);
        }
    }

    /// The frame as up to three slices: inline frame header, header+body,
    /// inline frame trailer. A vectored write sends them without a copy.
    pub fn frame_parts(&self) -> [&[u8]; 3] {
        [
            self.frame_head.as_slice(),
            self.wire(),
            self.frame_tail.as_slice(),
        ]
    }

    /// Total length of the frame, frame headers and trailers included.
    pub fn frame_len(&self) -> usize {
        self.frame_head.len as usize + self.len() + self.frame_tail.len as usize
    }

    /// Folds inline frame headers/trailers into the buffer so that the frame
    /// is one contiguous, unique slice (`wire()`). At most one copy. Returns
    /// the number of bytes copied (0 when nothing had to move).
    pub fn flatten_frame(&mut self) -> usize {
        let head = self.frame_head;
        let tail = self.frame_tail;
        let unique = self.is_unique();
        let need_copy =
            !unique || self.start < head.len as usize || self.tailroom() < tail.len as usize;
        let copied = if need_copy { self.len() } else { 0 };
        self.frame_head = Inline::EMPTY;
        self.frame_tail = Inline::EMPTY;
        let hdr = self.split - self.start;
        self.make_room(head.len as usize, tail.len as usize);
        if head.len > 0 {
            self.push_header(head.as_slice());
        }
        if tail.len > 0 {
            self.extend_body(tail.as_slice());
        }
        // everything is one flat frame now; the SP split no longer matters
        self.split = self.start + hdr.min(self.end - self.start);
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

    /// Replaces the header with `hdr`.
    pub fn set_header(&mut self, hdr: &[u8]) {
        self.clear_header();
        self.push_header(hdr);
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
impl From<Vec<u8>> for Message {
    fn from(b: Vec<u8>) -> Self {
        Message::with_headroom(DEFAULT_HEADROOM, &b)
    }
}
impl From<&str> for Message {
    fn from(b: &str) -> Self {
        Message::with_headroom(DEFAULT_HEADROOM, b.as_bytes())
    }
}
impl From<bytes::Bytes> for Message {
    fn from(b: bytes::Bytes) -> Self {
        Message::with_headroom(DEFAULT_HEADROOM, &b)
    }
}

/// The buffer a transport reads one frame of `len` bytes into, with
/// `headroom` free bytes in front (for headers a protocol adds on receive,
/// such as a raw REP's pipe id). One allocation, and no zeroing of what the
/// frame's bytes overwrite anyway: the buffer tracks how far it has been
/// written and becomes a message only when all of it has.
pub struct RecvBuf {
    buf: Arc<[std::mem::MaybeUninit<u8>]>,
    headroom: usize,
    len: usize,
    /// Bytes of the frame written so far, always a prefix.
    filled: usize,
}

impl RecvBuf {
    /// One allocation of `headroom + len` bytes.
    pub fn new(headroom: usize, len: usize) -> RecvBuf {
        RecvBuf {
            buf: Arc::new_uninit_slice(headroom + len),
            headroom,
            len,
            filled: 0,
        }
    }

    fn slots(&mut self) -> &mut [std::mem::MaybeUninit<u8>] {
        match Arc::get_mut(&mut self.buf) {
            Some(b) => b,
            None => unreachable!("RecvBuf is never shared before into_message"),
        }
    }

    /// Bytes of the frame still to be written.
    pub fn remaining(&self) -> usize {
        self.len - self.filled
    }

    /// Appends `src` (at most `remaining()` bytes are taken). Returns how many.
    pub fn extend_from(&mut self, src: &[u8]) -> usize {
        let n = src.len().min(self.remaining());
        let at = self.headroom + self.filled;
        for (d, s) in self.slots()[at..at + n].iter_mut().zip(src) {
            d.write(*s);
        }
        self.filled += n;
        n
    }

    /// The unwritten rest of the frame, for a read that fills it (e.g. with
    /// `tokio::io::ReadBuf::uninit`); report what was written with `advance`.
    pub fn unfilled(&mut self) -> &mut [std::mem::MaybeUninit<u8>] {
        let at = self.headroom + self.filled;
        let end = self.headroom + self.len;
        &mut self.slots()[at..end]
    }

    /// Records that the first `n` bytes of `unfilled()` were written.
    ///
    /// # Panics
    /// If `n` exceeds what remains (a reader reporting more than it read).
    pub fn advance(&mut self, n: usize) {
        assert!(n <= self.remaining(), "advance past the end of the frame");
        self.filled += n;
    }

    /// The filled frame as a message whose body is the whole frame. Bytes
    /// never written (a frame cut short) and the headroom are zeroed.
    pub fn into_message(mut self) -> Message {
        let (h, l, f) = (self.headroom, self.len, self.filled);
        let (head, frame) = self.slots().split_at_mut(h);
        for d in head.iter_mut().chain(frame[f..l].iter_mut()) {
            d.write(0);
        }
        // SAFETY: every byte of the buffer has now been written: the headroom
        // and the unfilled tail just above, the frame's first `filled` bytes by
        // `extend_from` or by a reader that reported them through `advance`
        // (which cannot exceed the frame).
        let buf = unsafe { self.buf.assume_init() };
        Message::from_parts(buf, h, h + l)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_push_pop_at_every_boundary() {
        for headroom in 0..10 {
            for body in 0..6usize {
                let data: Vec<u8> = (0..body as u8).collect();
                let mut m = Message::with_headroom(headroom, &data);
                m.push_header_u32(0x8000_0001);
                m.push_header_u32(7);
                assert_eq!(m.header().len(), 8);
                assert_eq!(m.body(), &data[..]);
                assert_eq!(m.pop_header_u32(), Some(7));
                assert_eq!(m.pop_header_u32(), Some(0x8000_0001));
                assert_eq!(m.pop_header_u32(), None);
                assert_eq!(m.body(), &data[..]);
            }
        }
    }

    #[test]
    fn write_to_shared_copies_and_leaves_clone_intact() {
        let mut a = Message::with_headroom(8, b"abc");
        let b = a.clone();
        a.push_header(&[1, 2]);
        a.body_mut()[0] = b'X';
        assert_eq!(b.header(), b"");
        assert_eq!(b.body(), b"abc");
        assert_eq!(a.wire(), &[1, 2, b'X', b'b', b'c']);
    }

    #[test]
    fn frame_header_on_shared_message_stays_inline() {
        let mut a = Message::with_headroom(8, b"body");
        let keep = a.clone();
        a.push_frame_header(&[9, 9]);
        a.push_frame_trailer(&[7]);
        assert_eq!(a.to_vec(), vec![9, 9, b'b', b'o', b'd', b'y', 7]);
        assert_eq!(keep.wire(), b"body");
        let copied = a.flatten_frame();
        assert_eq!(copied, 4);
        assert_eq!(a.wire(), &[9, 9, b'b', b'o', b'd', b'y', 7]);
    }

    #[test]
    fn prepend_body_keeps_header_in_front() {
        let mut m = Message::with_headroom(8, b"xy");
        m.prepend_body(b"ab");
        assert_eq!(m.body(), b"abxy");
        m.push_header(&[1]);
        m.prepend_body(b"0");
        assert_eq!(m.header(), &[1]);
        assert_eq!(m.body(), b"0abxy");
        assert!(m.trim_body_front(1));
        assert_eq!(m.header(), &[1]);
        assert_eq!(m.body(), b"abxy");
    }

    #[test]
    fn recv_buf_fills_in_pieces_and_zeroes_what_was_not_written() {
        let mut rb = RecvBuf::new(4, 6);
        assert_eq!(rb.extend_from(b"abc"), 3);
        rb.unfilled()[0].write(b'd');
        rb.advance(1);
        assert_eq!(rb.remaining(), 2);
        assert_eq!(rb.extend_from(b"efgh"), 2, "never past the frame");
        let mut m = rb.into_message();
        assert_eq!(m.body(), b"abcdef");
        m.push_header_u32(9);
        assert_eq!(m.header(), &[0, 0, 0, 9]);
        let short = RecvBuf::new(0, 3);
        assert_eq!(short.into_message().body(), &[0, 0, 0]);
    }

    #[test]
    fn body_to_header_moves_no_bytes() {
        let mut m = Message::with_headroom(0, &[0x80, 0, 0, 5, b'h', b'i']);
        assert!(m.body_to_header(4));
        assert_eq!(m.pop_header_u32(), Some(0x8000_0005));
        assert_eq!(m.body(), b"hi");
        assert!(!m.body_to_header(3));
    }
}

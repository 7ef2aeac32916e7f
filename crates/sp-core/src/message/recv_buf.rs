//! The buffer a transport reads one frame into.

use std::mem::MaybeUninit;
use std::sync::{Arc, Weak};

use super::pool::{self, BufPool, PoolBuf, PoolInner, POOL_MIN};
use super::Message;

/// The buffer a transport reads one frame of `len` bytes into, with
/// `headroom` free bytes in front (for headers a protocol adds on receive,
/// such as a raw REP's pipe id). One allocation, and no zeroing of what the
/// frame's bytes overwrite anyway: the buffer tracks how far it has been
/// written and becomes a message only when all of it has.
pub struct RecvBuf {
    buf: Slots,
    headroom: usize,
    len: usize,
    /// Bytes of the frame written so far, always a prefix.
    filled: usize,
}

/// Where a receive buffer's bytes are.
enum Slots {
    /// Allocated for this frame.
    Fresh(Arc<[MaybeUninit<u8>]>),
    /// One of the socket's kept buffers (its old bytes treated as unwritten).
    Kept(Box<[MaybeUninit<u8>]>, Weak<PoolInner>),
}

impl RecvBuf {
    /// One allocation of `headroom + len` bytes.
    pub fn new(headroom: usize, len: usize) -> RecvBuf {
        RecvBuf {
            buf: Slots::Fresh(Arc::new_uninit_slice(headroom + len)),
            headroom,
            len,
            filled: 0,
        }
    }

    /// A buffer from `pool` when it keeps one of the size (then no
    /// allocation), else a fresh one that goes to the pool when its message
    /// is dropped (for frames of at least `POOL_MIN` bytes).
    pub(crate) fn in_pool(pool: &BufPool, headroom: usize, len: usize) -> RecvBuf {
        let total = headroom + len;
        if total < POOL_MIN {
            return RecvBuf::new(headroom, len);
        }
        let buf = match pool.take(total) {
            pool::Taken::Kept(b) => pool::as_uninit(b),
            pool::Taken::Fresh => Box::new_uninit_slice(total),
            pool::Taken::Plain => return RecvBuf::new(headroom, len),
        };
        RecvBuf {
            buf: Slots::Kept(buf, pool.home()),
            headroom,
            len,
            filled: 0,
        }
    }

    fn slots(&mut self) -> &mut [MaybeUninit<u8>] {
        match &mut self.buf {
            Slots::Fresh(a) => match Arc::get_mut(a) {
                Some(b) => b,
                None => unreachable!("RecvBuf is never shared before into_message"),
            },
            Slots::Kept(b, _) => b,
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
        // a staging copy: the bytes were read elsewhere first
        super::record_copy(n);
        self.filled += n;
        n
    }

    /// The unwritten rest of the frame, for a read that fills it (e.g. with
    /// `tokio::io::ReadBuf::uninit`); report what was written with `advance`.
    pub fn unfilled(&mut self) -> &mut [MaybeUninit<u8>] {
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
        match self.buf {
            Slots::Fresh(buf) => {
                // SAFETY: every byte of the buffer has now been written: the
                // headroom and the unfilled tail just above, the frame's first
                // `filled` bytes by `extend_from` or by a reader that reported
                // them through `advance` (which cannot exceed the frame).
                let buf = unsafe { buf.assume_init() };
                Message::from_parts(buf, h, h + l)
            }
            Slots::Kept(mut buf, home) => {
                // what lies behind the frame in a larger kept buffer
                for d in buf[h + l..].iter_mut() {
                    d.write(0);
                }
                // SAFETY: as above, and the bytes behind the frame too
                let buf = unsafe { buf.assume_init() };
                Message::from_pooled(PoolBuf::new(buf, home), h, h + l)
            }
        }
    }
}

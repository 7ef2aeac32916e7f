//! Large message buffers kept for reuse, one pool per socket.
//!
//! A buffer of 16 KiB or more that a socket allocated (a message made by
//! `Socket::new_message`, a large frame read from a stream transport) goes
//! back to its socket's pool when its last message is dropped, and the next
//! one of about its size reuses it: no allocation, and above all no fresh
//! pages to fault in (glibc returns large freed blocks to the kernel, so a
//! stream of 1 MiB messages cost about a hundred page faults each). The pool
//! keeps at most [`KEEP_BUFS`] buffers and a byte budget the socket sets; a
//! buffer beyond that, or one whose socket is gone, is freed as usual.

use std::mem::MaybeUninit;
use std::sync::{Arc, Mutex, Weak};

/// Buffers at least this large are pooled.
pub(crate) const POOL_MIN: usize = 16 << 10;
/// Buffers a pool keeps at most.
const KEEP_BUFS: usize = 256;

/// A socket's pool of large buffers (cheap to clone).
#[derive(Clone, Debug)]
pub(crate) struct BufPool(Arc<PoolInner>);

#[derive(Debug)]
pub(crate) struct PoolInner {
    bufs: Mutex<Vec<Box<[u8]>>>,
    /// Bytes the pool may keep.
    keep_bytes: usize,
}

impl BufPool {
    /// A pool keeping at most `keep_bytes` bytes of buffers.
    pub(crate) fn new(keep_bytes: usize) -> BufPool {
        BufPool(Arc::new(PoolInner {
            bufs: Mutex::new(Vec::new()),
            keep_bytes,
        }))
    }

    /// A kept buffer of at least `len` bytes and at most twice that (so a
    /// small request does not hold a huge buffer), if there is one: the
    /// most recently returned that fits best, as its bytes are the likeliest
    /// to be in cache still (as a malloc free list would hand out).
    pub(crate) fn take(&self, len: usize) -> Option<Box<[u8]>> {
        if len < POOL_MIN {
            return None;
        }
        let mut bufs = self.0.bufs.lock().unwrap_or_else(|e| e.into_inner());
        let mut best: Option<usize> = None;
        for (i, b) in bufs.iter().enumerate().rev() {
            let fits = b.len() >= len && b.len() / 2 <= len;
            if fits && best.is_none_or(|j| b.len() < bufs[j].len()) {
                best = Some(i);
                if b.len() == len {
                    break;
                }
            }
        }
        best.map(|i| bufs.swap_remove(i))
    }

    /// Where a pooled buffer goes back to.
    pub(crate) fn home(&self) -> Weak<PoolInner> {
        Arc::downgrade(&self.0)
    }
}

impl PoolInner {
    fn put(&self, buf: Box<[u8]>) {
        let mut bufs = self.bufs.lock().unwrap_or_else(|e| e.into_inner());
        let held: usize = bufs.iter().map(|b| b.len()).sum();
        if bufs.len() < KEEP_BUFS && held + buf.len() <= self.keep_bytes {
            bufs.push(buf);
        }
    }
}

/// A message buffer that returns to its pool when its last message goes.
pub(crate) struct PoolBuf {
    pub(crate) buf: Box<[u8]>,
    home: Weak<PoolInner>,
}

impl PoolBuf {
    pub(crate) fn new(buf: Box<[u8]>, home: Weak<PoolInner>) -> PoolBuf {
        PoolBuf { buf, home }
    }
}

impl Drop for PoolBuf {
    fn drop(&mut self) {
        if let Some(pool) = self.home.upgrade() {
            pool.put(std::mem::take(&mut self.buf));
        }
    }
}

/// A kept buffer, seen as memory to be written (what a receive buffer
/// reads into).
pub(crate) fn as_uninit(buf: Box<[u8]>) -> Box<[MaybeUninit<u8>]> {
    let raw = Box::into_raw(buf) as *mut [MaybeUninit<u8>];
    // SAFETY: `MaybeUninit<u8>` has the size, alignment and validity of
    // `u8` (every byte is a valid `MaybeUninit<u8>`), so the allocation and
    // its layout are unchanged; the box is rebuilt from the pointer it gave
    // up, once.
    unsafe { Box::from_raw(raw) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_a_close_fit_keeps_a_bounded_amount_and_lets_go_with_its_socket() {
        let pool = BufPool::new(3 << 20);
        assert!(pool.take(1 << 20).is_none(), "empty");
        assert!(pool.take(1024).is_none(), "small buffers are not pooled");
        for len in [1 << 20, 1 << 20, 64 << 10, 2 << 20] {
            drop(PoolBuf::new(vec![7u8; len].into_boxed_slice(), pool.home()));
        }
        // 1 + 1 + 1/16 MiB fit the 3 MiB budget; the 2 MiB one did not
        assert!(pool.take(2 << 20).is_none(), "over the budget: freed");
        assert_eq!(pool.take(40 << 10).map(|b| b.len()), Some(64 << 10));
        assert!(
            pool.take(20 << 10).is_none(),
            "64 KiB is too large for 20 KiB"
        );
        assert_eq!(pool.take(1 << 20).map(|b| b.len()), Some(1 << 20));
        let home = pool.home();
        drop(pool);
        assert!(home.upgrade().is_none(), "the kept buffers went with it");
        // the socket is gone: a buffer coming back is simply freed
        drop(PoolBuf::new(vec![0u8; 1 << 20].into_boxed_slice(), home));
    }
}

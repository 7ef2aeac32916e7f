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
    held: Mutex<Held>,
    /// Bytes the pool may keep (and lend out).
    keep_bytes: usize,
}

#[derive(Debug, Default)]
struct Held {
    bufs: Vec<Box<[u8]>>,
    /// Bytes of the pool's buffers alive, kept or lent to a message: never
    /// more than `keep_bytes`, so a message beyond it takes a plain buffer.
    lent: usize,
}

/// What [`BufPool::take`] found.
pub(crate) enum Taken {
    /// A kept buffer: no allocation but the message's handle.
    Kept(Box<[u8]>),
    /// None fits, but the pool may lend one more: allocate it for the pool
    /// (two allocations, once per buffer the pool comes to hold).
    Fresh,
    /// A plain buffer, one allocation: too small to pool, or the pool has
    /// lent all it may (a pooled miss costs one allocation more than a plain
    /// one, so steady state stays at one per message).
    Plain,
}

impl BufPool {
    /// A pool keeping at most `keep_bytes` bytes of buffers.
    pub(crate) fn new(keep_bytes: usize) -> BufPool {
        BufPool(Arc::new(PoolInner {
            held: Mutex::new(Held::default()),
            keep_bytes,
        }))
    }

    /// A kept buffer of at least `len` bytes and at most twice that (so a
    /// small request does not hold a huge buffer), if there is one: the
    /// most recently returned that fits best, as its bytes are the likeliest
    /// to be in cache still (as a malloc free list would hand out).
    /// Otherwise whether to allocate a buffer for the pool (`len` bytes)
    /// or a plain one.
    pub(crate) fn take(&self, len: usize) -> Taken {
        if len < POOL_MIN {
            return Taken::Plain;
        }
        let keep = self.0.keep_bytes;
        let mut h = self.0.held.lock().unwrap_or_else(|e| e.into_inner());
        let mut best: Option<usize> = None;
        for (i, b) in h.bufs.iter().enumerate().rev() {
            let fits = b.len() >= len && b.len() / 2 <= len;
            if fits && best.is_none_or(|j| b.len() < h.bufs[j].len()) {
                best = Some(i);
                if b.len() == len {
                    break;
                }
            }
        }
        if let Some(i) = best {
            return Taken::Kept(h.bufs.swap_remove(i));
        }
        // kept buffers of other sizes make room, the oldest first
        while h.lent + len > keep && !h.bufs.is_empty() {
            let old = h.bufs.remove(0);
            h.lent = h.lent.saturating_sub(old.len());
        }
        if h.lent + len <= keep {
            h.lent += len;
            Taken::Fresh
        } else {
            Taken::Plain
        }
    }

    /// Where a pooled buffer goes back to.
    pub(crate) fn home(&self) -> Weak<PoolInner> {
        Arc::downgrade(&self.0)
    }
}

impl PoolInner {
    fn put(&self, buf: Box<[u8]>) {
        let mut h = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let kept: usize = h.bufs.iter().map(|b| b.len()).sum();
        if h.bufs.len() < KEEP_BUFS && kept + buf.len() <= self.keep_bytes {
            h.bufs.push(buf);
        } else {
            // freed: no longer the pool's
            h.lent = h.lent.saturating_sub(buf.len());
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

    fn kept(t: Taken) -> Option<usize> {
        match t {
            Taken::Kept(b) => Some(b.len()),
            _ => None,
        }
    }

    #[test]
    fn takes_a_close_fit_lends_a_bounded_amount_and_lets_go_with_its_socket() {
        let pool = BufPool::new(3 << 20);
        assert!(matches!(pool.take(1024), Taken::Plain), "small: not pooled");
        // it lends up to its 3 MiB: 1 + 1 + 1/16 MiB, then not 1 MiB more
        for len in [1 << 20, 1 << 20, 64 << 10] {
            assert!(matches!(pool.take(len), Taken::Fresh));
        }
        assert!(matches!(pool.take(1 << 20), Taken::Plain), "all lent");
        for len in [1 << 20, 1 << 20, 64 << 10] {
            drop(PoolBuf::new(vec![7u8; len].into_boxed_slice(), pool.home()));
        }
        assert_eq!(kept(pool.take(1 << 20)), Some(1 << 20));
        // 64 KiB is too large for 20 KiB: a fresh one (still within 3 MiB)
        assert!(matches!(pool.take(20 << 10), Taken::Fresh));
        // no room for 1.5 MiB more but by freeing the kept 1 MiB buffer
        assert!(matches!(pool.take(3 << 19), Taken::Fresh));
        assert_eq!(kept(pool.take(40 << 10)), Some(64 << 10));
        assert_eq!(kept(pool.take(1 << 20)), None, "freed for the 1.5 MiB one");
        let home = pool.home();
        drop(pool);
        assert!(home.upgrade().is_none(), "the kept buffers went with it");
        // the socket is gone: a buffer coming back is simply freed
        drop(PoolBuf::new(vec![0u8; 1 << 20].into_boxed_slice(), home));
    }
}

//! Counting copies of message data.
//!
//! Every copy the library makes of message bytes (copy on write of a shared
//! buffer, growing a buffer with too little room, folding frame parts into one
//! slice, a staging copy on receive, an AEAD or TLS record that cannot work in
//! place) goes through [`record_copy`]. It adds to one process-wide total
//! ([`copied_bytes`]) and, while a pipe task of a socket is running layer or
//! transport code, to that socket's and pipe's counters
//! (`Stats::bytes_copied` on the send path, `Stats::bytes_copied_in` on the
//! receive path): the task marks itself with [`CopyScope`] around each poll.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::stats::Counters;

static COPIED: AtomicU64 = AtomicU64::new(0);

/// Which way the bytes being copied travel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// From the application towards the transport.
    Send,
    /// From the transport towards the application.
    Recv,
}

/// Where copies on this thread go: a socket's counters, maybe one pipe's.
type Scope = (*const Counters, Option<*const Counters>, Direction);

thread_local! {
    static SCOPE: Cell<Option<Scope>> = const { Cell::new(None) };
}

/// Bytes of message data the library has copied since the process started
/// (see the module docs for what counts).
pub fn copied_bytes() -> u64 {
    COPIED.load(Ordering::Relaxed)
}

/// Counts `bytes` of message data copied. Layers and transports that copy on
/// purpose (an AEAD gathering a frame, a TLS record) call this, so the
/// counters stay the whole story.
pub fn record_copy(bytes: usize) {
    if bytes == 0 {
        return;
    }
    COPIED.fetch_add(bytes as u64, Ordering::Relaxed);
    let _ = SCOPE.try_with(|s| {
        if let Some((socket, pipe, dir)) = s.get() {
            // SAFETY: the pointers come from a live `CopyScope`, which borrows
            // both counters for as long as it is installed on this thread and
            // restores the previous scope when dropped.
            unsafe {
                (*socket).copied(dir, bytes);
                if let Some(pipe) = pipe {
                    (*pipe).copied(dir, bytes);
                }
            }
        }
    });
}

/// While alive, copies recorded on this thread are also counted on a socket
/// and one of its pipes. Install it around synchronous work only (one poll):
/// a task may move to another thread between polls.
pub struct CopyScope<'a> {
    prev: Option<Scope>,
    _borrow: std::marker::PhantomData<&'a Counters>,
}

impl<'a> CopyScope<'a> {
    /// Attributes copies on this thread to `socket` and `pipe` until dropped.
    pub fn enter(socket: &'a Counters, pipe: &'a Counters, dir: Direction) -> CopyScope<'a> {
        CopyScope::install((socket as *const _, Some(pipe as *const _), dir))
    }

    /// Attributes copies on this thread to `socket` alone (a transport's own
    /// task, before or beside any pipe: see `PipeConfig::counters`).
    pub fn socket(socket: &'a Counters, dir: Direction) -> CopyScope<'a> {
        CopyScope::install((socket as *const _, None, dir))
    }

    fn install(scope: Scope) -> CopyScope<'a> {
        let prev = SCOPE.try_with(|s| s.replace(Some(scope))).unwrap_or(None);
        CopyScope {
            prev,
            _borrow: std::marker::PhantomData,
        }
    }
}

impl Drop for CopyScope<'_> {
    fn drop(&mut self) {
        let prev = self.prev.take();
        let _ = SCOPE.try_with(|s| s.set(prev));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scoped_copies_reach_the_counters_and_nested_scopes_restore() {
        let (a, pa, b, pb) = (
            Counters::default(),
            Counters::default(),
            Counters::default(),
            Counters::default(),
        );
        record_copy(5);
        {
            let _s = CopyScope::enter(&a, &pa, Direction::Send);
            record_copy(10);
            {
                let _t = CopyScope::enter(&b, &pb, Direction::Recv);
                record_copy(3);
            }
            record_copy(1);
        }
        record_copy(7);
        assert_eq!(a.snapshot().bytes_copied, 11);
        assert_eq!(pa.snapshot().bytes_copied, 11);
        assert_eq!(b.snapshot().bytes_copied_in, 3);
        assert_eq!(b.snapshot().bytes_copied, 0);
    }
}

//! The socket's pipes: each with its send queue, counters and tokens, and
//! the view a routing decides through.

use std::collections::HashMap;
use std::ops::Deref;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::core::Core;
use crate::layer::PipeInfo;
use crate::queue::{Queue, TryPush};
use crate::routing::{Pipes, RecvContext, Refused};
use crate::stats::{Counters, DropReason};
use crate::Message;

/// A pipe's id: global, random start, in `1..=0x7fff_ffff` (as nng).
pub type PipeId = u32;

static NEXT_PIPE: AtomicU32 = AtomicU32::new(0);

pub(crate) fn next_pipe_id() -> PipeId {
    if NEXT_PIPE.load(Ordering::Relaxed) == 0 {
        let _ = NEXT_PIPE.compare_exchange(
            0,
            fastrand::u32(1..0x7fff_0000),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }
    loop {
        let id = NEXT_PIPE.fetch_add(1, Ordering::Relaxed) & 0x7fff_ffff;
        if id != 0 {
            return id;
        }
    }
}

/// One attached pipe.
pub(crate) struct PipeEntry {
    pub id: PipeId,
    pub queue: Queue<Message>,
    pub info: Arc<PipeInfo>,
    pub stats: Arc<Counters>,
    /// Stop now: the writer gives up what it holds (counted), the reader
    /// stops reading.
    pub abort: CancellationToken,
    /// The socket is closing (or the pipe aborted: a child of `abort`): the
    /// reader stops delivering and drains. One token for the reader to
    /// watch, polled once per batch.
    pub drain: CancellationToken,
    /// Fired once the pipe has left the table (a dialer redials then).
    pub gone: CancellationToken,
    /// Its place among its listener's pipes, given back when it leaves the
    /// table (not when its tasks end: the linger does not hold a place).
    pub slot: std::sync::Mutex<Option<crate::endpoint::ListenerSlot>>,
    /// The writer's half of the connection (see `pipe/writer.rs`); `None`
    /// before the writer starts and once it has finished.
    pub writer: std::sync::Mutex<Option<super::writer::WriterState>>,
}

/// Hashes a pipe id with one multiplication: ids are not chosen by peers,
/// and SipHash was a tenth of the send path.
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8 | b as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.0 = (n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

type IdMap = HashMap<PipeId, usize, std::hash::BuildHasherDefault<IdHasher>>;

/// The pipes in join order, and by id.
#[derive(Default)]
pub(crate) struct PipeTable {
    list: Vec<Arc<PipeEntry>>,
    ids: Vec<PipeId>,
    by_id: IdMap,
}

impl PipeTable {
    pub fn insert(&mut self, p: Arc<PipeEntry>) {
        self.by_id.insert(p.id, self.list.len());
        self.ids.push(p.id);
        self.list.push(p);
    }

    pub fn remove(&mut self, id: PipeId) -> Option<Arc<PipeEntry>> {
        let i = self.by_id.remove(&id)?;
        // keep join order: round robin and broadcast order stay fair
        let p = self.list.remove(i);
        self.ids.remove(i);
        for (j, q) in self.list.iter().enumerate().skip(i) {
            self.by_id.insert(q.id, j);
        }
        Some(p)
    }

    pub fn get(&self, id: PipeId) -> Option<&Arc<PipeEntry>> {
        self.by_id.get(&id).map(|&i| &self.list[i])
    }

    pub fn list(&self) -> &[Arc<PipeEntry>] {
        &self.list
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }
}

/// The live pipe table as a routing's [`Pipes`]: pushes go to the real send
/// queues, drops to the real counters.
pub(crate) struct LivePipes<'a, G> {
    pub table: G,
    pub core: &'a Core,
    /// A send that may write through an idle pipe (`pipe/writer.rs`).
    pub inline: bool,
}

impl<G: Deref<Target = PipeTable>> Pipes for LivePipes<'_, G> {
    fn ids(&self) -> &[PipeId] {
        &self.table.ids
    }
    fn has_room(&self, id: PipeId) -> bool {
        self.table.get(id).is_some_and(|p| p.queue.has_room())
    }
    fn has_room_at(&self, i: usize) -> bool {
        self.table.list[i].queue.has_room()
    }
    fn try_push_at(&mut self, i: usize, msg: Message) -> Result<(), Refused> {
        let p = &self.table.list[i];
        let msg = match self.inline {
            true => match self.core.write_through(p, msg) {
                Ok(()) => return Ok(()),
                Err(m) => m,
            },
            false => msg,
        };
        push(&p.queue, msg)
    }
    fn try_push(&mut self, id: PipeId, msg: Message) -> Result<(), Refused> {
        let Some(p) = self.table.get(id) else {
            return Err(Refused {
                msg,
                reason: DropReason::UnknownPipe,
            });
        };
        let msg = match self.inline {
            true => match self.core.write_through(p, msg) {
                Ok(()) => return Ok(()),
                Err(m) => m,
            },
            false => msg,
        };
        push(&p.queue, msg)
    }
    fn force_push(&mut self, id: PipeId, msg: Message) -> Result<(), Refused> {
        let Some(p) = self.table.get(id) else {
            return Err(Refused {
                msg,
                reason: DropReason::UnknownPipe,
            });
        };
        p.queue.force_push(msg).map_err(|msg| Refused {
            msg,
            reason: DropReason::UnknownPipe,
        })
    }
    fn dropped(&mut self, pipe: Option<PipeId>, reason: DropReason) {
        if let Some(p) = pipe.and_then(|id| self.table.get(id)) {
            p.stats.dropped(reason);
        }
        self.core
            .count_drop(reason, "dropped by the protocol's routing");
    }
    fn cursor(&self) -> usize {
        self.core.rr.load(Ordering::Relaxed)
    }
    fn set_cursor(&mut self, at: usize) {
        self.core.rr.store(at, Ordering::Relaxed);
    }
}

fn push(q: &Queue<Message>, msg: Message) -> Result<(), Refused> {
    q.try_push(msg).map_err(|e| match e {
        TryPush::Full(msg) => Refused {
            msg,
            reason: DropReason::QueueFull,
        },
        TryPush::Closed(msg) => Refused {
            msg,
            reason: DropReason::UnknownPipe,
        },
    })
}

/// What a routing's `recv` may use in a pipe reader: the TTL, and the pipe
/// table, locked only if the routing asks for it.
pub(crate) struct ReaderContext<'a> {
    pub core: &'a Core,
    pub live: Option<LivePipes<'a, std::sync::RwLockReadGuard<'a, PipeTable>>>,
}

impl RecvContext for ReaderContext<'_> {
    fn ttl(&self) -> u8 {
        self.core.options().ttl
    }
    fn pipes(&mut self) -> &mut dyn Pipes {
        let core = self.core;
        self.live.get_or_insert_with(|| core.live_pipes())
    }
}

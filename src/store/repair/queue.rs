//! The repair queue: any core pushes a chunk whose read needed a rebuild, the repair task
//! pops it.
//!
//! **Architecture invariant:** bounded ([`QUEUE_CAPACITY`]); pushing never waits.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::Ordering;

use tokio::sync::mpsc;

use crate::chunk::ChunkId;
use crate::store::health::StoreCounters;
use crate::store::state::lock;

/// Chunks waiting for repair, at most.
const QUEUE_CAPACITY: usize = 4096;

/// The repair queue: any core pushes, the repair task pops. A chunk is queued at most
/// once: concurrent reads of one bad window queue one repair.
pub(crate) struct Queue {
    sender: mpsc::Sender<ChunkId>,
    receiver: Mutex<Option<mpsc::Receiver<ChunkId>>>,
    /// The chunks queued and not yet taken up by the repair task.
    pending: Mutex<HashSet<ChunkId>>,
}

impl Queue {
    pub(crate) fn new() -> Queue {
        let (sender, receiver) = mpsc::channel(QUEUE_CAPACITY);
        Queue {
            sender,
            receiver: Mutex::new(Some(receiver)),
            pending: Mutex::new(HashSet::new()),
        }
    }

    /// Queues `id` unless it is queued already, or counts it as dropped when the queue
    /// is full.
    pub(crate) fn push(&self, id: ChunkId, counters: &StoreCounters) {
        let mut pending = lock(&self.pending);
        if !pending.insert(id) {
            return;
        }
        if self.sender.try_send(id).is_err() {
            pending.remove(&id);
            counters.repairs_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Notes that the repair of `id` is starting: a fault found from now on queues it
    /// again.
    pub(crate) fn taken(&self, id: &ChunkId) {
        lock(&self.pending).remove(id);
    }

    /// Chunks waiting now for which `counted` holds.
    pub(crate) fn count_where(&self, mut counted: impl FnMut(&ChunkId) -> bool) -> usize {
        lock(&self.pending).iter().filter(|id| counted(id)).count()
    }

    /// Distinct chunks waiting now.
    pub(crate) fn queued(&self) -> usize {
        lock(&self.pending).len()
    }

    /// The receiving end, for the one repair task; `None` once taken.
    pub(super) fn take_receiver(&self) -> Option<mpsc::Receiver<ChunkId>> {
        lock(&self.receiver).take()
    }
}

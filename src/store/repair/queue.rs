//! The repair queue: any core pushes a chunk whose read needed a rebuild, the repair task
//! pops it.
//!
//! **Architecture invariant:** bounded ([`QUEUE_CAPACITY`]); pushing never waits.

use std::sync::Mutex;
use std::sync::atomic::Ordering;

use tokio::sync::mpsc;

use crate::chunk::ChunkId;
use crate::store::health::StoreCounters;
use crate::store::state::lock;

/// Chunks waiting for repair, at most.
const QUEUE_CAPACITY: usize = 4096;

/// The repair queue: any core pushes, the repair task pops.
pub(crate) struct Queue {
    sender: mpsc::Sender<ChunkId>,
    receiver: Mutex<Option<mpsc::Receiver<ChunkId>>>,
}

impl Queue {
    pub(crate) fn new() -> Queue {
        let (sender, receiver) = mpsc::channel(QUEUE_CAPACITY);
        Queue {
            sender,
            receiver: Mutex::new(Some(receiver)),
        }
    }

    /// Queues `id`, or counts it as dropped when the queue is full.
    pub(crate) fn push(&self, id: ChunkId, counters: &StoreCounters) {
        if self.sender.try_send(id).is_err() {
            counters.repairs_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Chunks waiting now.
    pub(crate) fn queued(&self) -> usize {
        QUEUE_CAPACITY - self.sender.capacity()
    }

    /// The receiving end, for the one repair task; `None` once taken.
    pub(super) fn take_receiver(&self) -> Option<mpsc::Receiver<ChunkId>> {
        lock(&self.receiver).take()
    }
}

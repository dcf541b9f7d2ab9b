//! chunkd's own policy under simulation: the real [`S3Fifo`] behind a map of entry
//! states, used exactly as a tier uses it (a hit bumps the entry's count; a miss inserts,
//! then evicts until within capacity).

use hashbrown::HashMap;

use crate::cache::policy::{Entries, Key, Queue, S3Fifo, bumped};
use crate::sim::replay::Simulated;

/// The per-entry state a tier would keep: size, hit count, queue.
#[derive(Default)]
struct States(HashMap<Key, (u32, u8, Queue)>);

impl Entries for States {
    fn get(&mut self, key: Key) -> Option<(u32, u8, Queue)> {
        self.0.get(&key).copied()
    }

    fn set(&mut self, key: Key, freq: u8, queue: Queue) {
        if let Some(state) = self.0.get_mut(&key) {
            state.1 = freq;
            state.2 = queue;
        }
    }
}

/// A simulated tier running S3-FIFO.
pub struct ChunkdCache {
    policy: S3Fifo,
    states: States,
}

impl ChunkdCache {
    pub fn new(capacity_bytes: u64) -> ChunkdCache {
        ChunkdCache {
            policy: S3Fifo::new(capacity_bytes),
            states: States::default(),
        }
    }

    /// The policy, for its counters.
    pub fn policy(&self) -> &S3Fifo {
        &self.policy
    }
}

impl Simulated for ChunkdCache {
    fn name(&self) -> &'static str {
        "chunkd"
    }

    fn request(&mut self, key: u64, size: u32) -> bool {
        if let Some(state) = self.states.0.get_mut(&key) {
            state.1 = bumped(state.1);
            return true;
        }
        let queue = self.policy.insert(key, size);
        self.states.0.insert(key, (size, 0, queue));
        while self.policy.used_bytes() > self.policy.capacity_bytes() {
            let (victim, _) = self
                .policy
                .evict(&mut self.states, |_| false)
                .expect("nothing is pinned, so something is evictable");
            self.states.0.remove(&victim);
        }
        false
    }
}

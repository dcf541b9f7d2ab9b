//! Pacing: [`RateLimit`] spaces out repair and scrub I/O so it never takes more than its
//! configured bandwidth, and [`LocalStore::repair_limited`] repairs one chunk and pays for
//! its I/O.
//!
//! **Architecture invariant:** every repair of the background task goes through here, so
//! none exceeds its bandwidth.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::chunk::RepairOutcome;
use crate::chunk::ChunkId;
use crate::store::device::Engine;
use crate::store::handle::LocalStore;
use crate::store::index::key_of;

/// Spaces out repair I/O so it never takes more than its configured bandwidth.
pub(super) struct RateLimit {
    bytes_per_second: u64,
    started: Instant,
    bytes: u64,
}

impl RateLimit {
    pub(super) fn new(bytes_per_second: u64) -> RateLimit {
        RateLimit {
            bytes_per_second,
            started: Instant::now(),
            bytes: 0,
        }
    }

    /// Accounts for `bytes` of I/O, sleeping until they fit the rate.
    async fn spend(&mut self, bytes: u64) {
        self.bytes += bytes;
        let due = Duration::from_secs_f64(self.bytes as f64 / self.bytes_per_second.max(1) as f64);
        if let Some(wait) = due.checked_sub(self.started.elapsed()) {
            tokio::time::sleep(wait).await;
        }
        // Restart the window now and then so a long idle spell does not bank a burst.
        if self.started.elapsed() > Duration::from_secs(10) {
            (self.started, self.bytes) = (Instant::now(), 0);
        }
    }
}

impl<E: Engine> LocalStore<E> {
    /// Repairs `id` and waits as long as `limit` asks for the bytes it read and wrote.
    pub(super) async fn repair_limited(&self, id: &ChunkId, limit: &mut RateLimit) {
        let total_shards = self.shared.config.scheme.total_shards();
        let extent = self.store.stored_bytes(u64::from(self.entry_len(id))) / total_shards as u64;
        self.store.repairs().taken(id);
        match self.repair(id).await {
            Ok(outcome) => {
                // Every shard was read; repaired ones were written too.
                let written = if let RepairOutcome::Repaired(n) = outcome {
                    n
                } else {
                    0
                };
                let bytes = extent * (total_shards + written) as u64;
                self.shared
                    .counters
                    .repair_bytes
                    .fetch_add(bytes, Ordering::Relaxed);
                limit.spend(bytes).await;
            }
            Err(error) => tracing::warn!(chunk = %id, %error, "repair failed"),
        }
    }

    fn entry_len(&self, id: &ChunkId) -> u32 {
        self.shared.index.get(key_of(id)).map_or(0, |e| e.len_bytes)
    }
}

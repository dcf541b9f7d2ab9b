//! The scrub: repairs the next few chunks of the catalog at the scrub rate, wrapping around
//! at the end, so latent sector errors and corrupt parity, which reads never look at, are
//! found and fixed.
//!
//! **Architecture invariant:** reads the catalog in batches of [`SCRUB_BATCH`] and returns
//! to the repair task between them, so queued repairs never wait behind a whole pass.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::rate::RateLimit;
use crate::chunk::ChunkId;
use crate::store::device::Engine;
use crate::store::handle::LocalStore;

/// Chunks scrubbed per step, between looks at the repair queue.
const SCRUB_BATCH: usize = 16;

/// Where the scrub is in the catalog, and its own bandwidth.
pub(super) struct ScrubCursor {
    after: Option<ChunkId>,
    limit: RateLimit,
}

impl ScrubCursor {
    /// A scrub from the start of the catalog at `bytes_per_second`.
    pub(super) fn new(bytes_per_second: u64) -> ScrubCursor {
        ScrubCursor {
            after: None,
            limit: RateLimit::new(bytes_per_second),
        }
    }
}

impl<E: Engine> LocalStore<E> {
    /// Repairs the next [`SCRUB_BATCH`] chunks of the catalog at the scrub rate.
    pub(super) async fn scrub_step(&self, scrub: &mut ScrubCursor) {
        let mut batch = Vec::with_capacity(SCRUB_BATCH);
        match self
            .shared
            .catalog
            .for_each_after(scrub.after, SCRUB_BATCH, |id, _| batch.push(id))
        {
            Ok(last) => scrub.after = last,
            Err(error) => {
                tracing::error!(%error, "scrub paused: catalog unreadable");
                tokio::time::sleep(Duration::from_secs(10)).await;
                return;
            }
        }
        let counters = &self.shared.counters;
        if batch.is_empty() {
            // A pass is done (or the store is empty): start over after a breath.
            counters.scrub_passes.fetch_add(1, Ordering::Relaxed);
            counters.scrub_pass_chunks.store(0, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        for id in batch {
            self.repair_limited(&id, &mut scrub.limit).await;
            counters.scrub_pass_chunks.fetch_add(1, Ordering::Relaxed);
        }
    }
}

//! Room for a PUT: allocation in the chunk's group, waking the evictor below the low
//! watermark, and — when no free run fits — synchronous eviction (see `evict`).
//!
//! A PUT that finds no run evicts victims worth its own size, commits their removal, and
//! tries again, waiting briefly for freed space whose reads are still in flight (`grace`);
//! it keeps going while the group is fragmented, at most [`ROUNDS`] rounds. It answers
//! 507 only when nothing can be evicted (every chunk pinned or being evicted by others,
//! or eviction is off) or the rounds run out, with `Retry-After` from the pending space.
//!
//! **Architecture invariant:** space is taken only from free runs; a victim's space is
//! free only after its removal is committed and its readers are gone.

use std::time::Duration;

use super::catalog::Applied;
use super::device::Engine;
use super::error::StoreError;
use super::evict::send_evictions;
use super::flash::EvictReason;
use super::geometry::DEVICE_BLOCK_BYTES;
use super::handle::LocalStore;
use super::state::lock;

/// Most eviction rounds one PUT makes (each evicts at least its own size).
const ROUNDS: usize = 32;
/// Most victims one round evicts.
const ROUND_VICTIMS: usize = 64;
/// How long a PUT waits, at most, for freed space whose reads are in flight, in steps of
/// [`WAIT_STEP`]: reads take a fraction of a millisecond.
const WAITS: usize = 20;
const WAIT_STEP: Duration = Duration::from_millis(1);
/// How long a PUT waits, at most, for pending space that already covers it before it
/// gives up with a 507 (rather than evicting more): a read of a slow device.
const PENDING_WAITS: usize = 200;

impl<E: Engine> LocalStore<E> {
    /// Takes `blocks` in `group`, or `None` when no free run fits; wakes the evictor when
    /// the group's free space falls below the low watermark.
    pub(super) fn allocate(&self, group: usize, blocks: u32) -> Option<u32> {
        let shared = &*self.shared;
        let reusable = shared.grace.reusable_before();
        let (offset, free, total) = {
            let mut guard = lock(&shared.groups[group]);
            let offset = guard.space.allocate(blocks, reusable);
            (
                offset,
                guard.space.free_blocks(),
                guard.space.total_blocks(),
            )
        };
        let low = u64::from(shared.config.evict_low_watermark_percent);
        if shared.config.eviction && free * 100 < total * low {
            let _ = shared.evict_wake.try_send(());
        }
        offset
    }

    /// Makes room for `blocks` in `group` by evicting, then takes it; or says why not.
    pub(super) async fn make_room(
        &self,
        group: usize,
        blocks: u32,
        len_bytes: u64,
    ) -> Result<u32, StoreError> {
        let shared = &*self.shared;
        if shared.config.eviction {
            for _ in 0..ROUNDS {
                // Space already freed and waiting only for reads in flight covers this PUT:
                // wait for it (bounded) rather than evict more — a slow read would otherwise
                // make every PUT evict up to ROUNDS times its size. Still pending after the
                // wait (a read stuck on a device): answer 507 with `Retry-After`.
                if self.pending_blocks(group) >= u64::from(blocks) {
                    if let Some(offset) = self.allocate_waiting(group, blocks, PENDING_WAITS).await
                    {
                        return Ok(offset);
                    }
                    if self.pending_blocks(group) >= u64::from(blocks) {
                        break;
                    }
                }
                let victims = shared.pick_victims(group, u64::from(blocks), ROUND_VICTIMS);
                if victims.is_empty() {
                    break;
                }
                let answers = send_evictions(self.store.commits(), group, &victims);
                let mut evicted = 0;
                for (victim, answer) in victims.iter().zip(answers) {
                    let outcome = match answer {
                        Some(answer) => answer.await.ok(),
                        None => None,
                    };
                    match outcome {
                        Some(Ok(Applied::Removed(_))) => evicted += 1,
                        Some(Ok(_)) => {}
                        _ => shared.unpick(group, victim),
                    }
                }
                shared.count_evicted(EvictReason::Put, evicted);
                if let Some(offset) = self.allocate_waiting(group, blocks, WAITS).await {
                    return Ok(offset);
                }
            }
        }
        if let Some(offset) = self.allocate_waiting(group, blocks, WAITS).await {
            return Ok(offset);
        }
        shared
            .flash
            .refused
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let guard = lock(&shared.groups[group]);
        let space = &guard.space;
        let per_shard = shared.config.scheme.total_shards() as u64 * DEVICE_BLOCK_BYTES;
        Err(StoreError::NoSpace {
            len_bytes,
            largest_free_bytes: u64::from(space.largest_free_blocks()) * DEVICE_BLOCK_BYTES,
            quarantined_bytes: space.quarantined_blocks() * per_shard,
            retry_after: space.next_release(),
            pinned_chunks: guard.pinned.chunks,
            pinned_bytes: guard.pinned.len_bytes,
        })
    }

    /// Blocks of `group` freed and waiting for reads in flight.
    fn pending_blocks(&self, group: usize) -> u64 {
        lock(&self.shared.groups[group]).space.quarantined_blocks()
    }

    /// Allocates, waiting up to `waits` steps while freed space still has reads in flight.
    async fn allocate_waiting(&self, group: usize, blocks: u32, waits: usize) -> Option<u32> {
        for _ in 0..waits {
            if let Some(offset) = self.allocate(group, blocks) {
                return Some(offset);
            }
            if self.pending_blocks(group) == 0 {
                return None;
            }
            tokio::time::sleep(WAIT_STEP).await;
        }
        self.allocate(group, blocks)
    }
}

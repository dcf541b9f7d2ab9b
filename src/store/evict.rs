//! Eviction on flash: each group's free space is kept between a low and a high watermark by
//! evicting chunks the group's S3-FIFO policy chooses (`crate::cache::policy`).
//!
//! Per group, because a chunk's group is fixed by its id and space is per group: each group
//! has its own [`S3Fifo`] (capacity: the group's bytes) beside its free space, behind the
//! group's lock. The policy's per-chunk state (hit count, queue, pin) rides in the index
//! entry (`index::Flags`): a hit bumps it under an index shard's read lock and never takes
//! the group's lock. The queues cost one `u64` per chunk.
//!
//! Who evicts:
//! - the *evictor* (a thread of the store's own, `chunkd-evict`, never a core) wakes when a
//!   PUT leaves a group's free space below the low watermark (and once a second anyway),
//!   and evicts until it is at the high watermark again, committing removals in batches of
//!   up to [`BATCH`] through the commit thread (one catalog transaction for each batch);
//! - a PUT that finds no free run long enough evicts synchronously ([`LocalStore::make_room`]):
//!   victims' removals are committed *before* their space is freed, so a new chunk is
//!   never written where a committed record still points; it goes on (bounded) until a run
//!   fits, and answers 507 only when nothing can be evicted (every chunk pinned or already
//!   being evicted) or its bound is reached.
//!
//! Freed space then waits for the reads that may still use it (see `grace`), milliseconds.
//!
//! A victim is marked `evicting` in its index entry when the policy gives it up (under the
//! group lock), so a delete racing its eviction does not take it out of the policy's byte
//! count twice. If its removal fails, it goes back into the policy.
//!
//! Restart: the catalog holds no eviction state. At open every group's policy is refilled
//! in generation (write) order, all in the small queue with no hits, so the first chunks
//! evicted after a restart are the oldest written that are not hit again; hit counts build
//! up anew from the reads that follow.
//!
//! **Architecture invariant:** space is freed only after the removal of the record that
//! claims it is committed; the group lock is never held across an await or a commit.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crossbeam::channel::{Receiver, Sender};
use tokio::sync::oneshot;

use super::background::Background;
use super::catalog::Applied;
use super::commit::Request;
use super::device::Engine;
use super::flash::{EvictReason, FlashStats, IndexEntries, policy_size};
use super::shard::extent_blocks;
use super::state::{Shared, lock};
use crate::cache::policy::{Key, Queue};

/// Most removals committed in one catalog transaction by the evictor.
pub(super) const BATCH: usize = 256;

/// A chunk chosen for eviction, not yet removed.
#[derive(Clone, Copy, Debug)]
pub(super) struct Victim {
    pub(super) key: u64,
    pub(super) generation: u64,
}

impl<E: Engine> Shared<E> {
    /// Takes victims until they hold at least `blocks` blocks (at least one victim), at
    /// most `max`: expired chunks first (no manifest names them and a sweep will delete
    /// them), then what `group`'s policy gives up; marks each `evicting`. Returns none at
    /// once when every chunk the policy holds is pinned.
    pub(super) fn pick_victims(&self, group: usize, blocks: u64, max: usize) -> Vec<Victim> {
        let scheme = self.config.scheme;
        let mut victims = Vec::new();
        let mut picked = 0u64;
        let mut guard = lock(&self.groups[group]);
        let enough = |victims: &Vec<Victim>, picked: u64| {
            victims.len() >= max || (!victims.is_empty() && picked >= blocks)
        };
        // Expired chunks first; then ones a read used since they expired (the commit
        // thread is putting those back into the policy, as unreferenced chunks: evictable
        // all the same, so that a PUT never finds no room just because a cancellation is
        // still on its way).
        // (A bounded look: the set may hold many; used ones are few.)
        let expired: Vec<Key> = guard.expired.iter().copied().take(4 * max).collect();
        for used in [false, true] {
            for &key in &expired {
                if enough(&victims, picked) {
                    break;
                }
                let Some((entry, flags)) = self.index.get_with_flags(key) else {
                    guard.expired.remove(&key);
                    continue;
                };
                if flags.cancelled != used || !self.index.mark_evicting(key) {
                    continue;
                }
                guard.expired.remove(&key);
                picked += u64::from(extent_blocks(scheme, u64::from(entry.len_bytes)));
                victims.push(Victim {
                    key,
                    generation: entry.generation,
                });
            }
        }
        if guard.policy.used_bytes() <= guard.pinned.policy_bytes {
            return victims;
        }
        while !enough(&victims, picked) {
            let mut entries = IndexEntries {
                index: &self.index,
                scheme,
            };
            let index = &self.index;
            let keep = |key: Key| index.get_with_flags(key).is_some_and(|(_, f)| f.pinned);
            let Some((key, _)) = guard.policy.evict(&mut entries, keep) else {
                break;
            };
            let Some((entry, flags)) = self.index.get_with_flags(key) else {
                continue;
            };
            if !self.index.mark_evicting(key) {
                // Pinned since `keep` looked: it stays, back where a kept entry goes.
                guard
                    .policy
                    .restore(key, policy_size(scheme, entry.len_bytes), Queue::Main);
                self.index.set_policy(key, flags.freq, true);
                continue;
            }
            let victim_blocks = extent_blocks(scheme, u64::from(entry.len_bytes));
            picked += u64::from(victim_blocks);
            victims.push(Victim {
                key,
                generation: entry.generation,
            });
        }
        victims
    }

    /// Puts a victim whose removal did not happen back into its group's policy.
    pub(super) fn unpick(&self, group: usize, victim: &Victim) {
        let mut guard = lock(&self.groups[group]);
        let Some((entry, flags)) = self.index.get_with_flags(victim.key) else {
            return;
        };
        if entry.generation != victim.generation || !flags.evicting {
            return;
        }
        self.index.set_evicting(victim.key, false);
        if flags.expired {
            guard.expired.insert(victim.key);
            return;
        }
        // Back into the queue it left, not through `insert`: the policy has just put the
        // key in its ghost, and an insert would count that as a ghost hit and promote it.
        let queue = if flags.main {
            Queue::Main
        } else {
            Queue::Small
        };
        guard.policy.restore(
            victim.key,
            policy_size(self.config.scheme, entry.len_bytes),
            queue,
        );
        self.index.set_policy(victim.key, 0, flags.main);
    }

    /// Counts evictions.
    pub(super) fn count_evicted(&self, reason: EvictReason, chunks: u64) {
        let counter = match reason {
            EvictReason::Watermark => &self.flash.evicted_watermark,
            EvictReason::Put => &self.flash.evicted_put,
        };
        counter.fetch_add(chunks, Ordering::Relaxed);
    }

    /// Free blocks of `group` (pending included) and the low and high watermarks, in blocks.
    pub(super) fn watermarks(&self, group: usize) -> (u64, u64, u64) {
        let guard = lock(&self.groups[group]);
        let total = guard.space.total_blocks();
        let config = &self.config;
        let low = total * u64::from(config.evict_low_watermark_percent) / 100;
        let high = total * u64::from(config.evict_high_watermark_percent) / 100;
        (guard.space.free_blocks(), low, high.max(low))
    }

    /// A snapshot of the flash counters.
    pub(super) fn flash_stats(&self) -> FlashStats {
        let (mut ghost_hits, mut policy_memory) = (0u64, 0u64);
        for group in &self.groups {
            let guard = lock(group);
            ghost_hits += guard.policy.ghost_hits();
            policy_memory += guard.policy.memory_bytes() as u64;
        }
        let flash = &self.flash;
        FlashStats {
            hits: flash.hits.sum(),
            misses: flash.misses.sum(),
            evicted_watermark: flash.evicted_watermark.load(Ordering::Relaxed),
            evicted_put: flash.evicted_put.load(Ordering::Relaxed),
            admissions_refused: flash.refused.load(Ordering::Relaxed),
            chunks: self.index.len() as u64,
            bytes: flash.bytes.load(Ordering::Relaxed),
            ghost_hits,
            policy_memory_bytes: policy_memory,
        }
    }
}

/// Sends the removal of `victims` of `group` to the commit thread; returns the receivers of
/// the answers, in order.
pub(super) fn send_evictions(
    commits: &Sender<Request>,
    group: usize,
    victims: &[Victim],
) -> Vec<Option<oneshot::Receiver<Result<Applied, super::error::StoreError>>>> {
    victims
        .iter()
        .map(|victim| {
            let (reply, answer) = oneshot::channel();
            commits
                .send(Request::Evict {
                    group,
                    key: victim.key,
                    generation: victim.generation,
                    reply,
                })
                .ok()
                .map(|()| answer)
        })
        .collect()
}

/// How often the evictor looks at the groups when no PUT wakes it.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// Starts the evictor (`chunkd-evict`), a thread that keeps every group above its low
/// watermark; `wakes` is the receiving end of `Shared::evict_wake`.
pub(super) fn spawn_evictor<E: Engine>(
    shared: Arc<Shared<E>>,
    commits: Sender<Request>,
    wakes: Receiver<()>,
    wake: Sender<()>,
) -> Background {
    Background::spawn("chunkd-evict", IDLE_CHECK, wake, wakes, move |stop| {
        for group in 0..shared.groups.len() {
            evict_to_high_watermark(&shared, &commits, group, stop);
        }
    })
}

/// When `group`'s free space is below the low watermark, evicts in batches until it is at
/// the high one (or nothing more can be evicted).
fn evict_to_high_watermark<E: Engine>(
    shared: &Shared<E>,
    commits: &Sender<Request>,
    group: usize,
    stop: &AtomicBool,
) {
    let (free, low, high) = shared.watermarks(group);
    if free >= low || !shared.config.eviction {
        return;
    }
    let mut free = free;
    while free < high && !stop.load(Ordering::Acquire) {
        let victims = shared.pick_victims(group, high - free, BATCH);
        if victims.is_empty() {
            return;
        }
        let answers = send_evictions(commits, group, &victims);
        let mut evicted = 0;
        for (victim, answer) in victims.iter().zip(answers) {
            match answer.map(|a| a.blocking_recv()) {
                Some(Ok(Ok(Applied::Removed(_)))) => evicted += 1,
                Some(Ok(Ok(_))) => {}
                // The commit thread failed or stopped: leave the chunk to the policy.
                _ => shared.unpick(group, victim),
            }
        }
        shared.count_evicted(EvictReason::Watermark, evicted);
        if evicted == 0 {
            return;
        }
        free = shared.watermarks(group).0;
    }
}

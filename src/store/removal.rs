//! Applying a committed removal of a chunk to memory — the index, its group's policy,
//! expired set and pinned counts, and its free space — for every way a chunk leaves: a
//! DELETE, a loss, an eviction and a sweep (`commit`, `commit_refs`).
//!
//! **Architecture invariant:** space is freed only here, after the index removal, so
//! `grace` covers every read that found the record.

use std::sync::atomic::Ordering;

use super::catalog::Record;
use super::device::Engine;
use super::flash::policy_size;
use super::index::{Entry, key_of};
use super::shard::extent_blocks;
use super::state::{Shared, lock};
use crate::cache::policy::Queue;
use crate::chunk::ChunkId;

/// Applies a committed removal of `entry` from `group` to memory: the index, the policy
/// (unless the chunk was not in it: pinned ones are, expired and evicting ones are not),
/// the expired set, the pinned counts, and the free space, freed after the index removal
/// so that `grace` covers every read of it. `evicted`: the caller took it out of the
/// policy itself.
pub(super) fn removed<E: Engine>(shared: &Shared<E>, group: usize, entry: &Entry, evicted: bool) {
    let scheme = shared.config.scheme;
    shared.chunks_per_group[group].fetch_sub(1, Ordering::Relaxed);
    shared
        .flash
        .bytes
        .fetch_sub(u64::from(entry.len_bytes), Ordering::Relaxed);
    let mut guard = lock(&shared.groups[group]);
    if let Some(flags) = shared.index.remove_if(entry.key, entry) {
        if flags.pinned {
            guard.pinned.add(scheme, entry.len_bytes, -1);
        }
        if flags.expired {
            guard.expired.remove(&entry.key);
        } else if !evicted && !flags.evicting {
            let queue = if flags.main {
                Queue::Main
            } else {
                Queue::Small
            };
            guard
                .policy
                .removed(entry.key, policy_size(scheme, entry.len_bytes), queue);
        }
    }
    let blocks = extent_blocks(scheme, u64::from(entry.len_bytes));
    guard
        .space
        .free(entry.offset_blocks, blocks, shared.grace.stamp());
}

pub(super) fn entry_of(id: &ChunkId, record: &Record) -> Entry {
    Entry {
        key: key_of(id),
        generation: record.generation,
        offset_blocks: record.offset_blocks,
        len_bytes: record.len_bytes,
    }
}

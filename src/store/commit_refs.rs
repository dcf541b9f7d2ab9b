//! The commit thread's side of manifests and GC: manifest puts and deletes, sweeps and
//! cancelled expiries, each committed in the catalog and then followed in memory — index
//! flags, each group's policy, expired set and pinned counts — under the group's lock.
//!
//! Where a stored chunk is, for eviction, follows from its flags:
//! - neither expired nor being evicted: in its group's policy (pinned ones too: skipped);
//! - expired: in its group's `expired` set, out of the policy (evicted first);
//! - being evicted or swept: in neither.
//!
//! **Architecture invariant:** only the commit thread runs this, so a catalog change and
//! the memory that follows it are never interleaved with another catalog change.

use std::sync::atomic::Ordering;

use tokio::sync::oneshot;

use super::catalog::{Applied, RefRules};
use super::catalog_refs::{Changed, Inserted, Transition};
use super::device::Engine;
use super::error::StoreError;
use super::flash::{Group, policy_size};
use super::index::{Entry, Flags, key_of};
use super::refs::ManifestPut;
use super::removal::{entry_of, removed};
use super::state::{Shared, lock};
use crate::cache::policy::Queue;
use crate::chunk::ChunkId;

/// Most expiries one sweep transaction ends.
pub(super) const SWEEP_BATCH: usize = 1024;

/// A request about manifests and GC.
pub(super) enum RefsRequest {
    PutManifest {
        name: String,
        ids: Vec<ChunkId>,
        reply: oneshot::Sender<Result<ManifestPut, StoreError>>,
    },
    DeleteManifest {
        name: String,
        reply: oneshot::Sender<Result<bool, StoreError>>,
    },
    /// One batch of a sweep: expiries due by the GC clock now, minus `gc_grace`.
    Sweep {
        reply: oneshot::Sender<Result<SweepBatch, StoreError>>,
    },
    /// A read used an expired chunk (its index entry is marked `cancelled`).
    Unexpire { id: ChunkId },
}

/// What one sweep batch did.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct SweepBatch {
    /// Expiries due found, and ended (deleted, or cancelled by a read, or forgotten since
    /// the chunk was gone); a sweep goes on while a full batch ended some.
    pub(super) found: usize,
    pub(super) ended: usize,
    pub(super) swept_chunks: u64,
    pub(super) swept_bytes: u64,
    pub(super) cancelled: u64,
}

impl<E: Engine> Shared<E> {
    /// The rules the catalog applies to chunk inserts and evictions now.
    pub(super) fn ref_rules(&self) -> RefRules {
        RefRules {
            now_ms: self.config.gc_clock.now_ms(),
            expire_unreferenced: self.config.gc_unreferenced,
            pin_referenced: self.config.pin_referenced,
        }
    }
}

/// Handles a batch of requests in order: each run of cancelled expiries in one
/// transaction, the rest one transaction each.
///
/// A run of cancellations is recorded before the request that follows it, not at the end
/// of the batch: a manifest put behind it may name the chunk and the next one drop it
/// again, expiring it anew, and a cancellation recorded after that would end the newer
/// expiry (the chunk would never be swept).
pub(super) fn handle<E: Engine>(shared: &Shared<E>, requests: Vec<RefsRequest>) {
    let mut unexpire = Vec::new();
    for request in requests {
        if !matches!(request, RefsRequest::Unexpire { .. }) {
            record_cancelled(shared, &mut unexpire);
        }
        match request {
            RefsRequest::Unexpire { id } => unexpire.push(id),
            RefsRequest::PutManifest { name, ids, reply } => {
                if let Some(refusal) = over_manifest_limit(shared, &name) {
                    let _ = reply.send(Err(refusal));
                    continue;
                }
                let now = shared.config.gc_clock.now_ms();
                let done = shared
                    .catalog
                    .put_manifest(&name, &ids, now)
                    .map_err(StoreError::from)
                    .map(|(put, changed)| {
                        if put.created {
                            shared.gc.manifests.fetch_add(1, Ordering::Relaxed);
                        }
                        follow(shared, &changed);
                        put
                    });
                let _ = reply.send(done);
            }
            RefsRequest::DeleteManifest { name, reply } => {
                let now = shared.config.gc_clock.now_ms();
                let done = shared
                    .catalog
                    .delete_manifest(&name, now)
                    .map_err(StoreError::from)
                    .map(|changed| {
                        changed.is_some_and(|changed| {
                            shared.gc.manifests.fetch_sub(1, Ordering::Relaxed);
                            follow(shared, &changed);
                            true
                        })
                    });
                let _ = reply.send(done);
            }
            RefsRequest::Sweep { reply } => {
                let _ = reply.send(sweep_batch(shared));
            }
        }
    }
    record_cancelled(shared, &mut unexpire);
}

/// Records the expiries reads cancelled (`unexpire`, emptied) in one transaction.
///
/// Only cancellations still pending in the index (expired and marked used) are recorded: a
/// cancellation that arrives after a manifest named the chunk again (and perhaps dropped
/// it again, expiring it anew) is stale, and must not end the newer expiry.
fn record_cancelled<E: Engine>(shared: &Shared<E>, unexpire: &mut Vec<ChunkId>) {
    unexpire.retain(|id| {
        shared
            .index
            .get_with_flags(key_of(id))
            .is_some_and(|(_, flags)| flags.expired && flags.cancelled)
    });
    if unexpire.is_empty() {
        return;
    }
    if let Err(error) = shared.catalog.unexpire(unexpire) {
        // The index still says `cancelled`, so no sweep deletes these; a restart
        // forgets the cancellation (the catalog still has the expiry).
        tracing::error!(%error, "recording cancelled expiries failed");
        unexpire.clear();
        return;
    }
    for id in unexpire.drain(..) {
        uncancel(shared, &id);
    }
}

/// A refusal when `name` would be a new manifest beyond `max_manifests`. The count is
/// exact here: only this thread changes it.
fn over_manifest_limit<E: Engine>(shared: &Shared<E>, name: &str) -> Option<StoreError> {
    let max = shared.config.max_manifests;
    if shared.gc.manifests.load(Ordering::Relaxed) < max {
        return None;
    }
    match shared.catalog.manifest(name) {
        Ok(Some(_)) => None,
        Ok(None) => Some(StoreError::TooManyManifests { max }),
        Err(error) => Some(error.into()),
    }
}

/// Applies committed count changes to memory.
fn follow<E: Engine>(shared: &Shared<E>, changed: &Changed) {
    let referenced = &shared.gc.referenced;
    if changed.referenced_delta >= 0 {
        referenced.fetch_add(changed.referenced_delta as u64, Ordering::Relaxed);
    } else {
        referenced.fetch_sub(changed.referenced_delta.unsigned_abs(), Ordering::Relaxed);
    }
    for transition in &changed.transitions {
        match transition {
            Transition::Referenced(id) => referenced_now(shared, id),
            Transition::Expired(id) => expired_now(shared, id),
        }
    }
}

/// Runs `change` on `id`'s group and index entry under the group's lock.
fn with_group<E: Engine>(
    shared: &Shared<E>,
    id: &ChunkId,
    change: impl FnOnce(&mut Group, Entry, Flags),
) {
    let group = shared.geometry.placement(id).group;
    let mut guard = lock(&shared.groups[group]);
    if let Some((entry, flags)) = shared.index.get_with_flags(key_of(id)) {
        change(&mut guard, entry, flags);
    }
}

/// A stored chunk a manifest now names: its expiry (if any) ends, and it is pinned unless
/// it is being evicted (that eviction's commit is refused: see [`kept`]).
fn referenced_now<E: Engine>(shared: &Shared<E>, id: &ChunkId) {
    let scheme = shared.config.scheme;
    let pin = shared.config.pin_referenced;
    with_group(shared, id, |group, entry, flags| {
        let size = policy_size(scheme, entry.len_bytes);
        let pinned = pin && !flags.evicting;
        if flags.expired {
            group.expired.remove(&entry.key);
            if !flags.evicting {
                group.policy.restore(entry.key, size, Queue::Small);
            }
        }
        if pinned && !flags.pinned {
            group.pinned.add(scheme, entry.len_bytes, 1);
        }
        shared.index.modify(entry.key, |f| Flags {
            referenced: true,
            pinned: f.pinned || pinned,
            expired: false,
            cancelled: false,
            main: if flags.expired { false } else { f.main },
            freq: if flags.expired { 0 } else { f.freq },
            ..f
        });
    });
}

/// A stored chunk no manifest names any more: unpinned, out of the policy, expired.
fn expired_now<E: Engine>(shared: &Shared<E>, id: &ChunkId) {
    let scheme = shared.config.scheme;
    with_group(shared, id, |group, entry, flags| {
        if flags.pinned {
            group.pinned.add(scheme, entry.len_bytes, -1);
        }
        if !flags.evicting && !flags.expired {
            let queue = if flags.main {
                Queue::Main
            } else {
                Queue::Small
            };
            let size = policy_size(scheme, entry.len_bytes);
            group.policy.removed(entry.key, size, queue);
        }
        // One being evicted goes to the set if its eviction fails (`unpick`).
        if !flags.evicting {
            group.expired.insert(entry.key);
        }
        shared.index.modify(entry.key, |f| Flags {
            referenced: false,
            pinned: false,
            expired: true,
            cancelled: false,
            ..f
        });
    });
}

/// A chunk whose expiry a read cancelled, now ended in the catalog: back in the policy.
fn uncancel<E: Engine>(shared: &Shared<E>, id: &ChunkId) {
    let scheme = shared.config.scheme;
    with_group(shared, id, |group, entry, flags| {
        if !(flags.expired && flags.cancelled) {
            return;
        }
        group.expired.remove(&entry.key);
        if !flags.evicting {
            let size = policy_size(scheme, entry.len_bytes);
            group.policy.restore(entry.key, size, Queue::Small);
        }
        shared.index.modify(entry.key, |f| Flags {
            expired: false,
            cancelled: false,
            main: false,
            freq: 0,
            ..f
        });
    });
}

/// An eviction the catalog refused because a manifest names the chunk: it stops being
/// evicted, is pinned and goes back into the policy (as a kept entry does).
pub(super) fn kept<E: Engine>(shared: &Shared<E>, group: usize, key: u64) {
    let scheme = shared.config.scheme;
    let mut guard = lock(&shared.groups[group]);
    let Some((entry, flags)) = shared.index.get_with_flags(key) else {
        return;
    };
    if !flags.evicting {
        return;
    }
    if !flags.pinned {
        guard.pinned.add(scheme, entry.len_bytes, 1);
    }
    if flags.expired {
        guard.expired.remove(&key);
    }
    guard
        .policy
        .restore(key, policy_size(scheme, entry.len_bytes), Queue::Main);
    shared.index.modify(key, |_| Flags {
        evicting: false,
        pinned: true,
        referenced: true,
        expired: false,
        cancelled: false,
        main: true,
        freq: 0,
    });
}

/// The flags a newly inserted chunk starts with, and its place for eviction: called under
/// its group's lock, after the index insert, instead of the policy insert.
pub(super) fn place_inserted<E: Engine>(
    shared: &Shared<E>,
    group: &mut Group,
    entry: &Entry,
    refs: Inserted,
) {
    let scheme = shared.config.scheme;
    let size = policy_size(scheme, entry.len_bytes);
    if refs.expired {
        group.expired.insert(entry.key);
        shared
            .index
            .modify(entry.key, |f| Flags { expired: true, ..f });
        return;
    }
    let pinned = refs.referenced && shared.config.pin_referenced;
    if pinned {
        group.pinned.add(scheme, entry.len_bytes, 1);
    }
    let main = group.policy.insert(entry.key, size) == Queue::Main;
    shared.index.modify(entry.key, |f| Flags {
        referenced: refs.referenced,
        pinned,
        main,
        freq: 0,
        ..f
    });
}

/// One sweep transaction: up to [`SWEEP_BATCH`] expiries due; each stored chunk among them
/// is claimed in the index (expired, unused since, not being evicted) and deleted, or its
/// expiry is ended because a read used it.
fn sweep_batch<E: Engine>(shared: &Shared<E>) -> Result<SweepBatch, StoreError> {
    let cutoff = shared
        .config
        .gc_clock
        .now_ms()
        .saturating_sub(shared.config.gc_grace.as_millis() as u64);
    let mut claimed = Vec::new();
    let mut used = Vec::new();
    let swept = shared.catalog.sweep(cutoff, SWEEP_BATCH, |due| {
        let record = due.record.expect("asked only for stored chunks");
        let key = key_of(&due.id);
        if shared.index.claim_expired(key, record.generation) {
            claimed.push(due.id);
            return Some(true);
        }
        match shared.index.get_with_flags(key) {
            // The evictor has it: its removal ends the chunk; the expiry is ended by a
            // later sweep, which finds the chunk gone.
            Some((_, flags)) if flags.evicting => None,
            // A read used it since it expired: it stays, unreferenced.
            _ => {
                used.push(due.id);
                Some(false)
            }
        }
    });
    let swept = match swept {
        Ok(swept) => swept,
        Err(error) => {
            for id in &claimed {
                shared.index.modify(key_of(id), |f| Flags {
                    evicting: false,
                    ..f
                });
            }
            return Err(error.into());
        }
    };
    for id in &used {
        // Its Unexpire may still be queued; it will find nothing left to do.
        shared.index.modify(key_of(id), |f| Flags {
            cancelled: f.expired,
            ..f
        });
        uncancel(shared, id);
    }
    let mut batch = SweepBatch {
        found: swept.found,
        ended: swept.ended,
        cancelled: swept.cancelled,
        ..SweepBatch::default()
    };
    for (id, record) in &swept.deleted {
        let group = shared.geometry.placement(id).group;
        removed(shared, group, &entry_of(id, record), true);
        if let Some(listener) = shared.swept.get() {
            listener(id);
        }
        batch.swept_chunks += 1;
        batch.swept_bytes += u64::from(record.len_bytes);
    }
    Ok(batch)
}

/// Whether an insert's outcome is a new chunk, with what the refs said of it.
pub(super) fn inserted(outcome: &Result<Applied, StoreError>) -> Option<Inserted> {
    match outcome {
        Ok(Applied::Inserted(refs)) => Some(*refs),
        _ => None,
    }
}

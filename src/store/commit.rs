//! The commit thread: makes shard writes durable and records them in the catalog, many
//! chunks at a time.
//!
//! Write order for a chunk: (1) its shards are written and the writes complete; (2) this
//! thread flushes every device written since the last flush (fdatasync, devices in
//! parallel); (3) it commits the chunk's record to the catalog (one redb fsync); (4) it puts
//! the chunk in the index, and only then (5) the PUT is answered. A crash before (3) leaves
//! shards no record claims (free space at the next start); after (3) every shard is durable.
//! A chunk filled from an origin skips (2) unless another insert in its batch needs it:
//! its record may then outlive its shards in a power loss, and those shards fail
//! verification when read (a lost chunk: a miss the origin fills again).
//!
//! Group commit: the thread takes every request waiting when it wakes (up to
//! [`BATCH_MAX`]), so under load one flush and one catalog fsync serve many PUTs, and with
//! one PUT in flight the latency is one flush plus one fsync.
//!
//! Removals are committed the same way; their space is pending until the reads that may
//! still use it end (see `grace`).
//!
//! Devices that went offline after errors are recorded in the catalog as needing a refill
//! here too, before the batch's records (see `Shared::device_failed`): that commit is
//! durable and blocks, and the cores must not.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::Instant;

use crossbeam::channel::Receiver;
use tokio::sync::oneshot;

use super::catalog::{Applied, Change, Record};
use super::commit_refs::{self, RefsRequest};
use super::device::{DeviceHandle, Engine};
use super::error::StoreError;
use super::index::{Entry, Flags};
use super::removal::{entry_of, removed};
use super::state::{Failure, Shared, lock};
use crate::chunk::ChunkId;

/// Most requests committed in one transaction: bounds the latency one batch adds.
const BATCH_MAX: usize = 256;

/// Where the commit thread answers a request.
pub(super) type Reply = oneshot::Sender<Result<Applied, StoreError>>;

/// A request to the commit thread.
pub(super) enum Request {
    Insert {
        id: ChunkId,
        record: Record,
        blocks: u32,
        /// Whether the devices must be flushed before the record is committed (not for a
        /// chunk filled from an origin: `LocalStore::put_filled`).
        flush: bool,
        reply: Reply,
    },
    Remove {
        id: ChunkId,
        /// Only the copy this generation wrote (see [`Change::Remove`]).
        generation: Option<u64>,
        reply: Reply,
    },
    /// Evict the chunk indexed under `key` in `group`, if it is still the copy
    /// `generation` wrote (see `evict`).
    Evict {
        group: usize,
        key: u64,
        generation: u64,
        reply: Reply,
    },
    /// Record the devices that went offline for refill (no reply: every batch does it
    /// first; this only wakes the thread).
    RecordRefills,
    /// Flush every device written since its last flush (`LocalStore::flush_written`).
    Flush {
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    /// Manifests and GC (see `commit_refs`): after the batch's chunk changes, in order.
    Refs(RefsRequest),
}

/// Starts the commit thread; it ends when every sender is dropped.
pub(super) fn spawn<E: Engine>(
    shared: Arc<Shared<E>>,
    requests: Receiver<Request>,
) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name("chunkd-commit".into())
        .spawn(move || {
            while let Ok(first) = requests.recv() {
                let mut batch = vec![first];
                batch.extend(requests.try_iter().take(BATCH_MAX - 1));
                commit_batch(&shared, batch);
            }
        })
        .expect("the commit thread starts")
}

/// Flushes the devices, records devices that went offline for refill, then commits the
/// batch's inserts and removals in one catalog transaction and answers each request.
fn commit_batch<E: Engine>(shared: &Shared<E>, batch: Vec<Request>) {
    let now = Instant::now();
    let mut refs = Vec::new();
    let mut flushes = Vec::new();
    let mut chunks = Vec::with_capacity(batch.len());
    for request in batch {
        match request {
            Request::RecordRefills => {}
            Request::Refs(request) => refs.push(request),
            Request::Flush { reply } => flushes.push(reply),
            other => chunks.push(other),
        }
    }
    let batch = chunks;
    if batch.is_empty() {
        if !flushes.is_empty() {
            answer_flushes(flushes, flush_devices(shared).err());
        }
        shared.record_refills();
        commit_refs::handle(shared, refs);
        return;
    }
    let counters = &shared.counters;
    counters.commit_batches.fetch_add(1, Ordering::Relaxed);
    counters
        .commit_requests
        .fetch_add(batch.len() as u64, Ordering::Relaxed);
    let flush = !flushes.is_empty()
        || batch
            .iter()
            .any(|r| matches!(r, Request::Insert { flush: true, .. }));
    let flush_error = if flush {
        flush_devices(shared).err()
    } else {
        None
    };
    answer_flushes(flushes, flush_error.clone());
    let flushed = Instant::now();
    counters
        .commit_flush_us
        .fetch_add(micros(flushed - now), Ordering::Relaxed);
    // Before any record that may lack a shard on a device now offline (see
    // `Shared::device_failed`).
    shared.record_refills();
    let mut committing = Vec::with_capacity(batch.len());
    for request in batch {
        match (&request, &flush_error) {
            // Without the flush the new shards may not be durable: refuse the inserts.
            (Request::Insert { flush: true, .. }, Some(error)) => {
                finish(shared, request, Err(StoreError::Io(error.clone())))
            }
            _ => committing.push(request),
        }
    }
    let changes: Vec<Change> = committing
        .iter()
        .filter_map(|request| match request {
            Request::Insert { id, record, .. } => Some(Change::Insert(*id, *record)),
            Request::Remove { id, generation, .. } => Some(Change::Remove(*id, *generation)),
            Request::Evict {
                key, generation, ..
            } => Some(Change::Evict(*key, *generation)),
            Request::RecordRefills | Request::Refs(_) | Request::Flush { .. } => None,
        })
        .collect();
    let committed = shared.catalog.commit(&changes, shared.ref_rules());
    counters
        .commit_catalog_us
        .fetch_add(micros(flushed.elapsed()), Ordering::Relaxed);
    match committed {
        Ok(outcomes) => {
            for (request, outcome) in committing.into_iter().zip(outcomes) {
                finish(shared, request, Ok(outcome));
            }
        }
        Err(error) => {
            let message = error.to_string();
            for request in committing {
                finish(shared, request, Err(StoreError::Catalog(message.clone())));
            }
        }
    }
    commit_refs::handle(shared, refs);
}

/// Applies a committed outcome to memory and answers the request.
fn finish<E: Engine>(shared: &Shared<E>, request: Request, outcome: Result<Applied, StoreError>) {
    match request {
        Request::Insert {
            id,
            record,
            blocks,
            reply,
            ..
        } => {
            let group = shared.geometry.placement(&id).group;
            if let Some(refs) = commit_refs::inserted(&outcome) {
                let entry = entry_of(&id, &record);
                shared.chunks_per_group[group].fetch_add(1, Ordering::Relaxed);
                shared
                    .flash
                    .bytes
                    .fetch_add(u64::from(record.len_bytes), Ordering::Relaxed);
                let mut guard = lock(&shared.groups[group]);
                shared.index.insert(entry, Flags::default());
                commit_refs::place_inserted(shared, &mut guard, &entry, refs);
            } else {
                // The chunk never became visible: its space can be reused at once.
                lock(&shared.groups[group])
                    .space
                    .free_now(record.offset_blocks, blocks);
            }
            let _ = reply.send(outcome);
        }
        Request::Remove { id, reply, .. } => {
            if let Ok(Applied::Removed(record)) = &outcome {
                let group = shared.geometry.placement(&id).group;
                removed(shared, group, &entry_of(&id, record), false);
            }
            let _ = reply.send(outcome);
        }
        Request::Evict {
            group, key, reply, ..
        } => {
            if let Ok(Applied::Kept) = &outcome {
                commit_refs::kept(shared, group, key);
            }
            if let Ok(Applied::Removed(record)) = &outcome {
                let entry = Entry {
                    key,
                    generation: record.generation,
                    offset_blocks: record.offset_blocks,
                    len_bytes: record.len_bytes,
                };
                removed(shared, group, &entry, true);
            }
            let _ = reply.send(outcome);
        }
        Request::RecordRefills | Request::Refs(_) | Request::Flush { .. } => {}
    }
}

/// Answers the batch's flush requests with the flush's outcome.
fn answer_flushes(flushes: Vec<oneshot::Sender<Result<(), StoreError>>>, error: Option<String>) {
    for reply in flushes {
        let _ = reply.send(match &error {
            Some(error) => Err(StoreError::Io(error.clone())),
            None => Ok(()),
        });
    }
}

fn micros(duration: std::time::Duration) -> u64 {
    duration.as_micros().min(u128::from(u64::MAX)) as u64
}

/// Flushes every usable device written since its last flush, all at once.
pub(super) fn flush_devices<E: Engine>(shared: &Shared<E>) -> Result<(), String> {
    let dirty: Vec<usize> = (0..shared.devices.len())
        .filter(|&d| {
            let slot = &shared.devices[d];
            slot.counters.usable() && slot.dirty.swap(false, Ordering::AcqRel)
        })
        .collect();
    let results: Vec<_> = std::thread::scope(|scope| {
        let flushes: Vec<_> = dirty
            .iter()
            .map(|&d| scope.spawn(move || shared.devices[d].handle.sync_data()))
            .collect();
        flushes
            .into_iter()
            .map(|f| f.join().expect("a flush does not panic"))
            .collect()
    });
    let mut first_error = None;
    for (&index, result) in dirty.iter().zip(results) {
        let device = &shared.devices[index];
        match result {
            Ok(()) => device.counters.succeeded(),
            Err(error) => {
                device.dirty.store(true, Ordering::Release);
                shared.device_failed(index, Failure::Write, None, &error);
                first_error.get_or_insert(format!("flushing {}: {error}", device.spec));
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

//! Background repair and refill, at a bounded rate.
//!
//! *Repair*: a read that had to rebuild a shard (it failed with EIO or a checksum) queues the
//! chunk; the repair task reads all its shards, rebuilds the bad ones and writes them back
//! in place. In place is safe: the space belongs to this chunk's record, and the shard is
//! rewritten with the very bytes and header it should hold. Before writing, the task checks
//! the chunk is still indexed with the same generation and that it started less than half a
//! quarantine ago, so a chunk deleted meanwhile is never written over a successor.
//!
//! *Refill*: a device that was new or replaced at start-up is walked chunk by chunk through
//! the catalog and every shard it should hold is repaired the same way; then it is flushed
//! and online, and the catalog stops listing it as refilling. Until then its bad shards
//! are expected, so they do not count towards taking it offline, and a restart resumes
//! the refill.
//!
//! The queue is bounded; a full queue drops the request and counts it (the chunk is
//! rebuilt again on its next read, and queued again).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use tokio::sync::mpsc;

use super::aligned::{AlignedBuf, SharedSlice};
use super::device::{DeviceHandle, submit_together};
use super::health::{DeviceHealth, DeviceState, Health, StoreCounters};
use super::index::key_of;
use super::read::{HeaderSource, Target, Window};
use super::shard::{self, HEADER_BYTES, ShardIdentity};
use super::space::QUARANTINE;
use super::{Core, Engine, Failure, LocalStore, StoreError, lock};
use crate::chunk::ChunkId;
use crate::erasure::{Layout, ShardSet};

/// Chunks waiting for repair, at most.
const QUEUE_CAPACITY: usize = 4096;
/// Catalog records read per step of a refill walk.
const WALK_BATCH: usize = 256;
/// Chunks scrubbed per step, between looks at the repair queue.
const SCRUB_BATCH: usize = 16;

/// Where the scrub is in the catalog, and its own bandwidth.
struct ScrubCursor {
    after: Option<ChunkId>,
    limit: RateLimit,
}

/// The repair queue: any core pushes, the repair task pops.
pub(super) struct Queue {
    sender: mpsc::Sender<ChunkId>,
    receiver: std::sync::Mutex<Option<mpsc::Receiver<ChunkId>>>,
}

impl Queue {
    pub(super) fn new() -> Queue {
        let (sender, receiver) = mpsc::channel(QUEUE_CAPACITY);
        Queue {
            sender,
            receiver: std::sync::Mutex::new(Some(receiver)),
        }
    }

    /// Queues `id`, or counts it as dropped when the queue is full.
    pub(super) fn push(&self, id: ChunkId, counters: &StoreCounters) {
        if self.sender.try_send(id).is_err() {
            counters.repairs_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn queued(&self) -> usize {
        QUEUE_CAPACITY - self.sender.capacity()
    }
}

/// A snapshot of the store's health.
pub(super) fn health<E: Engine>(core: &Core<E>, queue: &Queue) -> Health {
    let devices: Vec<DeviceHealth> = core
        .devices
        .iter()
        .map(|d| DeviceHealth {
            path: d.spec.path.display().to_string(),
            state: d.counters.state(),
            read_errors: d.counters.read_errors.load(Ordering::Relaxed),
            write_errors: d.counters.write_errors.load(Ordering::Relaxed),
            checksum_errors: d.counters.checksum_errors.load(Ordering::Relaxed),
        })
        .collect();
    let degraded_groups = (0..core.geometry.groups()).filter(|&g| {
        core.geometry
            .group_devices(g)
            .any(|d| devices[d].state != DeviceState::Online)
    });
    let at_risk_in_groups: u64 = degraded_groups
        .map(|g| core.chunks_per_group[g].load(Ordering::Relaxed))
        .sum();
    let c = &core.counters;
    Health {
        devices,
        shards_rebuilt: c.shards_rebuilt.load(Ordering::Relaxed),
        shards_repaired: c.shards_repaired.load(Ordering::Relaxed),
        chunks_unreadable: c.chunks_unreadable.load(Ordering::Relaxed),
        repairs_dropped: c.repairs_dropped.load(Ordering::Relaxed),
        repairs_queued: queue.queued() as u64,
        commit_batches: c.commit_batches.load(Ordering::Relaxed),
        commit_requests: c.commit_requests.load(Ordering::Relaxed),
        commit_flush_us: c.commit_flush_us.load(Ordering::Relaxed),
        commit_catalog_us: c.commit_catalog_us.load(Ordering::Relaxed),
        io_in_flight: c.io_in_flight.load(Ordering::Relaxed),
        chunks_at_risk: at_risk_in_groups + queue.queued() as u64,
    }
}

/// Ends the refill of `refilled`. Online means whole, after a crash too, so for each
/// device: its refilled shards are flushed, then it goes online unless it failed meanwhile
/// (an offline device stays offline), and only then does the catalog stop listing it as
/// refilling. A crash anywhere in between leaves it listed, and the next start refills it
/// again.
fn finish_refill<E: Engine>(core: &Core<E>, refilled: Vec<usize>) {
    let online: Vec<u32> = refilled
        .into_iter()
        .filter(|&d| {
            let slot = &core.devices[d];
            match slot.handle.sync_data() {
                Ok(()) => slot
                    .counters
                    .replace_state(DeviceState::Refilling, DeviceState::Online),
                Err(error) => {
                    tracing::error!(device = %slot.spec, %error, "refill not flushed: the device stays refilling");
                    false
                }
            }
        })
        .map(|d| d as u32)
        .collect();
    let recorded = core.catalog.remove_refilling(&online);
    if let Err(error) = recorded {
        tracing::error!(%error, "refill not recorded in the catalog: the next start runs it again");
    }
}

/// Spaces out repair I/O so it never takes more than its configured bandwidth.
struct RateLimit {
    bytes_per_second: u64,
    started: Instant,
    bytes: u64,
}

impl RateLimit {
    fn new(bytes_per_second: u64) -> RateLimit {
        RateLimit {
            bytes_per_second,
            started: Instant::now(),
            bytes: 0,
        }
    }

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

/// What a repair of one chunk found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RepairOutcome {
    /// Not stored any more (deleted meanwhile).
    Gone,
    /// Every shard on a usable device verified.
    Healthy,
    /// This many shards were rebuilt and written back.
    Repaired(usize),
    /// Fewer than `k` shards verified: nothing could be done.
    Unrecoverable,
}

/// What reading every shard of a chunk found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShardHealth {
    pub len_bytes: u64,
    pub data_shards: usize,
    pub parity_shards: usize,
    /// Shards whose header and every block verified.
    pub healthy: usize,
}

impl<E: Engine> LocalStore<E> {
    /// Reads and verifies every shard of `id`; `None` when it is not stored.
    pub async fn shard_health(&self, id: &ChunkId) -> Result<Option<ShardHealth>, StoreError> {
        let core = &self.store.inner.core;
        let Some(entry) = core.index.get(key_of(id)) else {
            return Ok(None);
        };
        let scheme = core.config.scheme;
        let layout = Layout::new(scheme, u64::from(entry.len_bytes));
        let target = Target {
            id,
            entry,
            layout,
            placement: core.geometry.placement(id),
        };
        let results = submit_together(join_all((0..scheme.total_shards()).map(|s| {
            self.fetch_with(
                &target,
                s,
                0..layout.shard_len_bytes(),
                HeaderSource::Device,
            )
        })))
        .await;
        if results
            .iter()
            .any(|r| matches!(r, Err(super::read::Fault::OtherChunk)))
        {
            return Ok(None);
        }
        Ok(Some(ShardHealth {
            len_bytes: u64::from(entry.len_bytes),
            data_shards: scheme.data_shards(),
            parity_shards: scheme.parity_shards(),
            healthy: results.iter().filter(|r| r.is_ok()).count(),
        }))
    }

    /// Runs refill, then queued repairs and (between them, when enabled) a slow scrub of
    /// every chunk, until the store is closed. Spawn on one core only; a second call
    /// returns at once.
    pub async fn run_repairs(&self) {
        let Some(mut queue) = lock(&self.store.inner.repairs.receiver).take() else {
            return;
        };
        let config = &self.store.inner.core.config;
        let mut limit = RateLimit::new(config.repair_bytes_per_second);
        self.refill(&mut queue, &mut limit).await;
        let mut scrub = ScrubCursor {
            after: None,
            limit: RateLimit::new(config.scrub_bytes_per_second),
        };
        loop {
            let queued = match queue.try_recv() {
                Ok(id) => Some(id),
                Err(mpsc::error::TryRecvError::Disconnected) => return,
                Err(mpsc::error::TryRecvError::Empty) => None,
            };
            if let Some(id) = queued {
                self.repair_limited(&id, &mut limit).await;
                continue;
            }
            // Nothing queued: make what was repaired durable, then scrub or wait.
            self.flush_repairs().await;
            if config.scrub_bytes_per_second > 0 {
                self.scrub_step(&mut scrub).await;
            } else {
                match queue.recv().await {
                    Some(id) => self.repair_limited(&id, &mut limit).await,
                    None => return,
                }
            }
        }
    }

    /// Flushes devices that repairs wrote to (the commit thread only flushes for PUTs).
    async fn flush_repairs(&self) {
        let core = self.store.inner.core.clone();
        if !core.devices.iter().any(|d| d.dirty.load(Ordering::Acquire)) {
            return;
        }
        let flushed =
            tokio::task::spawn_blocking(move || super::commit::flush_devices(&core)).await;
        if let Ok(Err(error)) = flushed {
            tracing::warn!(%error, "flushing repaired shards failed");
        }
    }

    /// Repairs the next few chunks of the catalog at the scrub rate, wrapping around at the
    /// end: latent sector errors and corrupt parity, which reads never look at, are found
    /// and fixed this way.
    async fn scrub_step(&self, scrub: &mut ScrubCursor) {
        let core = &self.store.inner.core;
        let mut batch = Vec::with_capacity(SCRUB_BATCH);
        match core
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
        if batch.is_empty() {
            // A pass is done (or the store is empty): start over after a breath.
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        for id in batch {
            self.repair_limited(&id, &mut scrub.limit).await;
        }
    }

    async fn repair_limited(&self, id: &ChunkId, limit: &mut RateLimit) {
        let extent = self.store.stored_bytes(u64::from(self.entry_len(id)))
            / self.store.config().scheme.total_shards() as u64;
        match self.repair(id).await {
            Ok(outcome) => {
                // Every shard was read; repaired ones were written too.
                let written = if let RepairOutcome::Repaired(n) = outcome {
                    n
                } else {
                    0
                };
                let bytes = extent * (self.store.config().scheme.total_shards() + written) as u64;
                self.store
                    .inner
                    .core
                    .counters
                    .repair_bytes
                    .fetch_add(bytes, Ordering::Relaxed);
                limit.spend(bytes).await;
            }
            Err(error) => tracing::warn!(chunk = %id, %error, "repair failed"),
        }
    }

    fn entry_len(&self, id: &ChunkId) -> u32 {
        self.store
            .inner
            .core
            .index
            .get(key_of(id))
            .map_or(0, |e| e.len_bytes)
    }

    /// Walks the catalog and repairs every chunk with a shard on a refilling device, then
    /// marks those devices online. Serves queued repairs between steps.
    async fn refill(&self, queue: &mut mpsc::Receiver<ChunkId>, limit: &mut RateLimit) {
        let core = &self.store.inner.core;
        let refilling: Vec<usize> = (0..core.devices.len())
            .filter(|&d| core.devices[d].counters.state() == DeviceState::Refilling)
            .collect();
        if refilling.is_empty() {
            return;
        }
        tracing::info!(devices = ?refilling, "refilling replaced devices");
        let mut after = None;
        loop {
            let mut batch = Vec::new();
            let walked = core.catalog.for_each_after(after, WALK_BATCH, |id, _| {
                let group = core.geometry.placement(&id).group;
                if core
                    .geometry
                    .group_devices(group)
                    .any(|d| refilling.contains(&d))
                {
                    batch.push(id);
                }
            });
            match walked {
                Ok(Some(last)) => after = Some(last),
                Ok(None) => break,
                Err(error) => {
                    tracing::error!(%error, "refill stopped: catalog unreadable");
                    return;
                }
            }
            for id in batch {
                self.repair_limited(&id, limit).await;
            }
            while let Ok(id) = queue.try_recv() {
                self.repair_limited(&id, limit).await;
            }
        }
        let finish = {
            let core = core.clone();
            move || finish_refill(&core, refilling)
        };
        // Flushing and committing block: off this core.
        tokio::task::spawn_blocking(finish)
            .await
            .expect("finishing a refill does not panic");
        tracing::info!("refill done");
    }

    /// Reads every shard of `id` and rewrites the ones that do not verify.
    pub async fn repair(&self, id: &ChunkId) -> Result<RepairOutcome, StoreError> {
        let started = Instant::now();
        let core = &self.store.inner.core;
        let Some(entry) = core.index.get(key_of(id)) else {
            return Ok(RepairOutcome::Gone);
        };
        let scheme = core.config.scheme;
        let (k, w) = (scheme.data_shards(), scheme.total_shards());
        let layout = Layout::new(scheme, u64::from(entry.len_bytes));
        let shard_len = layout.shard_len_bytes();
        let placement = core.geometry.placement(id);
        let target = Target {
            id,
            entry,
            layout,
            placement,
        };
        let results =
            submit_together(join_all((0..w).map(|s| {
                self.fetch_with(&target, s, 0..shard_len, HeaderSource::Device)
            })))
            .await;
        let usable = |s: usize| {
            core.devices[core.geometry.shard_address(placement, s, 0).0]
                .counters
                .usable()
        };
        let mut windows: Vec<Window> = Vec::with_capacity(w);
        let (mut present, mut bad) = (ShardSet::empty(), ShardSet::empty());
        for (s, result) in results.into_iter().enumerate() {
            match result {
                Ok(window) => {
                    present = present.with(s);
                    windows.push(window);
                }
                Err(_) => {
                    if usable(s) {
                        bad = bad.with(s);
                    }
                    windows.push(Window::scratch(0..shard_len));
                }
            }
        }
        if bad.is_empty() {
            return Ok(RepairOutcome::Healthy);
        }
        if present.len() < k {
            core.counters
                .chunks_unreadable
                .fetch_add(1, Ordering::Relaxed);
            if present.len() + bad.len() == w {
                // Every device answered and too few shards verified: the chunk is lost.
                tracing::error!(chunk = %id, healthy = present.len(), "chunk lost: too few sound shards; a PUT will store it again");
                let mut lost = lock(&core.unrecoverable);
                if lost.len() < super::UNRECOVERABLE_MAX {
                    lost.insert(*id);
                }
            }
            return Ok(RepairOutcome::Unrecoverable);
        }
        {
            let mut views: Vec<&mut [u8]> = windows
                .iter_mut()
                .map(|w| w.bytes_mut(0..shard_len))
                .collect();
            self.codec
                .borrow_mut()
                .rebuild(&mut views, present, bad)
                .expect("k shards verified");
        }
        // Write only if the chunk is still the one we read, and soon enough that its space
        // cannot have been reused even if it was deleted a moment ago.
        if core.index.get(key_of(id)) != Some(entry) || started.elapsed() > QUARANTINE / 2 {
            return Ok(RepairOutcome::Gone);
        }
        let writes = bad
            .iter()
            .map(|s| {
                let window = std::mem::replace(&mut windows[s], Window::scratch(0..0));
                let identity = ShardIdentity {
                    id: *id,
                    chunk_len_bytes: entry.len_bytes,
                    generation: entry.generation,
                    shard_index: s as u8,
                    data_shards: k as u8,
                    parity_shards: scheme.parity_shards() as u8,
                    shard_len_bytes: shard_len as u32,
                };
                let mut header = AlignedBuf::scratch(HEADER_BYTES);
                let data_start = window.data_start;
                shard::encode_header(
                    &identity,
                    &window.buf[data_start..data_start + shard_len],
                    &mut header,
                );
                let mut parts = vec![SharedSlice::whole(Arc::new(header))];
                if shard_len > 0 {
                    parts.push(SharedSlice::new(
                        Arc::new(window.buf),
                        data_start..data_start + shard_len,
                    ));
                }
                let (device, offset) =
                    core.geometry
                        .shard_address(placement, s, entry.offset_blocks);
                async move { (device, self.write_at(device, parts, offset).await) }
            })
            .collect::<Vec<_>>();
        let mut repaired = 0;
        for (device, result) in submit_together(join_all(writes)).await {
            let slot = &core.devices[device];
            match result {
                Ok(()) => {
                    repaired += 1;
                    slot.counters.succeeded();
                    slot.dirty.store(true, Ordering::Release);
                }
                Err(error) => {
                    core.device_failed(device, Failure::Write, &error);
                    tracing::warn!(chunk = %id, device = %slot.spec, %error, "repair write failed");
                }
            }
        }
        core.counters
            .shards_repaired
            .fetch_add(repaired as u64, Ordering::Relaxed);
        Ok(RepairOutcome::Repaired(repaired))
    }
}

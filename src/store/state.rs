//! [`Shared`]: the state every core and the commit thread share — configuration, geometry,
//! devices with their health, the index, free space, the catalog and the store-wide
//! counters — and the accounting of device failures.
//!
//! **Architecture invariant:** no device data I/O here; what is behind a lock is held only
//! for single, complete updates (see [`lock`]).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use super::catalog::Catalog;
use super::config::StoreConfig;
use super::device::{DeviceSpec, Engine};
use super::flash::{FlashCounters, Group};
use super::geometry::Geometry;
use super::grace::Grace;
use super::health::{DeviceCounters, StoreCounters};
use super::index::Index;
use super::refs::{GcCounters, SweptListener};
use crate::chunk::ChunkId;

/// A device of the store: its handle and its health.
pub(super) struct DeviceSlot<H> {
    pub(super) spec: DeviceSpec,
    pub(super) handle: H,
    pub(super) counters: DeviceCounters,
    /// Set when a completed write has not been made durable yet.
    pub(super) dirty: AtomicBool,
    /// Set when the device went offline after errors and the commit thread has not yet
    /// recorded it in the catalog as needing a refill.
    pub(super) refill_unrecorded: AtomicBool,
    /// Set when the device went offline after errors (not by an operator): the repair
    /// thread probes it and, when it answers again, brings it back through a refill.
    pub(super) probe: AtomicBool,
    /// Extents (byte offsets of shard headers) that failed and have not been rewritten
    /// since: a second failure of one of them is the same fault seen again, not more
    /// evidence against the device. At most [`BAD_EXTENTS_MAX`].
    pub(super) bad_extents: Mutex<HashSet<u64>>,
    /// Whether `bad_extents` may hold any: lets every successful write skip its lock.
    pub(super) any_bad_extents: AtomicBool,
}

/// Most known-bad extents remembered per device. Beyond it every failure counts, which
/// only makes a device with that many bad extents go offline sooner.
pub(super) const BAD_EXTENTS_MAX: usize = 4096;

impl<H> DeviceSlot<H> {
    /// A device slot, online unless `counters` say otherwise, with no fault seen.
    pub(super) fn new(spec: DeviceSpec, handle: H, counters: DeviceCounters) -> DeviceSlot<H> {
        DeviceSlot {
            spec,
            handle,
            counters,
            dirty: AtomicBool::new(false),
            refill_unrecorded: AtomicBool::new(false),
            probe: AtomicBool::new(false),
            bad_extents: Mutex::new(HashSet::new()),
            any_bad_extents: AtomicBool::new(false),
        }
    }

    /// Notes that the extent at `extent` was written whole: a later failure there is news.
    pub(super) fn extent_rewritten(&self, extent: u64) {
        if !self.any_bad_extents.load(Ordering::Acquire) {
            return;
        }
        let mut bad = lock(&self.bad_extents);
        bad.remove(&extent);
        self.any_bad_extents
            .store(!bad.is_empty(), Ordering::Release);
    }

    /// Forgets every known-bad extent (the device is being refilled as a whole).
    pub(super) fn forget_bad_extents(&self) {
        let mut bad = lock(&self.bad_extents);
        bad.clear();
        self.any_bad_extents.store(false, Ordering::Release);
    }
}

/// What every core and the commit thread share.
pub(super) struct Shared<E: Engine> {
    pub(super) config: StoreConfig,
    pub(super) geometry: Geometry,
    pub(super) devices: Vec<DeviceSlot<E::Handle>>,
    pub(super) index: Index,
    /// Each group's free space and eviction policy (see `evict`).
    pub(super) groups: Vec<Mutex<Group>>,
    /// Chunks stored per group (for chunks-at-risk).
    pub(super) chunks_per_group: Vec<AtomicU64>,
    pub(super) catalog: Catalog,
    pub(super) generation: AtomicU64,
    /// When freed space may be reused (see `grace`).
    pub(super) grace: Grace,
    pub(super) counters: StoreCounters,
    pub(super) flash: FlashCounters,
    /// Manifests, references, expired reads and sweeps (see `refs`).
    pub(super) gc: GcCounters,
    /// Told of every chunk a sweep deletes.
    pub(super) swept: std::sync::OnceLock<SweptListener>,
    /// Wakes the evictor (a PUT left a group below its low watermark).
    pub(super) evict_wake: crossbeam::channel::Sender<()>,
    /// Chunks found with fewer than `k` sound shards while every device was usable: gone
    /// for good. A PUT of one of them stores it afresh instead of answering "already
    /// present". Bounded by [`UNRECOVERABLE_MAX`].
    pub(super) unrecoverable: Mutex<HashSet<ChunkId>>,
}

/// Most unrecoverable chunks remembered for replacement by a PUT.
pub(super) const UNRECOVERABLE_MAX: usize = 65_536;

/// Which counter a device failure goes to.
#[derive(Clone, Copy, Debug)]
pub(super) enum Failure {
    Read,
    Write,
    Checksum,
}

impl<E: Engine> Shared<E> {
    /// Counts a failure of `device` at `extent` (the byte offset of the shard's header;
    /// `None` for a failure of the whole device, such as a flush).
    ///
    /// **The rule for taking a device offline:** `device_error_limit` failures on
    /// *distinct* extents with no successful I/O of the device in between. A failure of an
    /// extent already known bad (not rewritten since it failed) is not counted at all:
    /// eight reads of one bad 4 KiB block are one fault, which repair rewrites, and the
    /// device stays online. A device that really fails (EIO everywhere, lost) fails on
    /// every extent it is asked for and goes offline after `device_error_limit` reads of
    /// different chunks.
    ///
    /// When the failure takes the device offline this returns true: chunks written while
    /// it is offline will lack its shards, so it must be recorded in the catalog as needing a refill. That commit
    /// is durable (it blocks), so it is left to the commit thread: the device is marked
    /// `refill_unrecorded` *before* it goes offline, and the commit thread records every
    /// marked device before it commits a batch. A PUT that skipped the device saw it
    /// offline, so its record reaches the commit thread after the mark and is committed
    /// after the refill record. When this returns true, the caller on a core wakes the
    /// commit thread with a `RecordRefills` request.
    pub(super) fn device_failed(
        &self,
        device: usize,
        failure: Failure,
        extent: Option<u64>,
        cause: &dyn std::fmt::Display,
    ) -> bool {
        let slot = &self.devices[device];
        if let Some(extent) = extent {
            let mut bad = lock(&slot.bad_extents);
            if bad.contains(&extent) {
                return false;
            }
            if bad.len() < BAD_EXTENTS_MAX {
                bad.insert(extent);
                slot.any_bad_extents.store(true, Ordering::Release);
            }
        }
        let counter = match failure {
            Failure::Read => &slot.counters.read_errors,
            Failure::Write => &slot.counters.write_errors,
            Failure::Checksum => &slot.counters.checksum_errors,
        };
        if !slot
            .counters
            .failed(counter, self.config.device_error_limit)
        {
            return false;
        }
        slot.refill_unrecorded.store(true, Ordering::Release);
        slot.probe.store(true, Ordering::Release);
        if slot.counters.take_offline() {
            tracing::error!(device = %slot.spec, %cause, "device taken offline after repeated errors");
        }
        true
    }

    /// Records in the catalog every device marked `refill_unrecorded` (durably, blocking
    /// for one catalog commit each: a rare event). For the commit thread, before it
    /// commits a batch.
    pub(super) fn record_refills(&self) {
        for (device, slot) in self.devices.iter().enumerate() {
            if !slot.refill_unrecorded.swap(false, Ordering::AcqRel) {
                continue;
            }
            if let Err(error) = self.catalog.add_refilling(device as u32) {
                tracing::error!(device = %slot.spec, %error, "could not record the device for refill");
            }
        }
    }
}

/// Locks a mutex, going on after a panic elsewhere: every structure behind these locks is
/// updated by single, complete operations, so none is left half-changed by a panic.
pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

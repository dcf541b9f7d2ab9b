//! The handles to a store: [`Store`], shared by all cores (cheap to clone), and
//! [`LocalStore`], one core's view with its own device handles, codec and header cache.
//! Also the store-wide questions answered from memory or the catalog (capacity, health,
//! shard locations, listing).
//!
//! **Architecture invariant:** a [`LocalStore`] belongs to the thread that made it (its
//! devices use that thread's ring); nothing here blocks but one catalog read in
//! [`Store::list`] and [`Store::shard_locations`], which are for tools.

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::thread::JoinHandle;

use super::aligned::{AlignedBuf, SharedSlice};
use super::background::Background;
use super::chunk_buffer::ChunkBuffer;
use super::commit::Request;
use super::config::StoreConfig;
use super::device::{Device, DeviceHandle, Engine};
use super::error::StoreError;
use super::flash::FlashStats;
use super::geometry::{self, Geometry};
use super::header_cache::HeaderCache;
use super::health::{DeviceState, Health};
use super::rebuilds::Rebuilds;
use super::repair::queue::Queue;
use super::repair::snapshot;
use super::shard;
use super::state::{Failure, Shared, lock};
use crate::chunk::ChunkId;
use crate::erasure::{Codec, Layout, Scheme};

/// The store, shared by all cores. Cloning is cheap.
pub struct Store<E: Engine> {
    inner: Arc<StoreInner<E>>,
}

/// What a [`Store`] owns: the shared state, the commit thread and the repair queue.
pub(super) struct StoreInner<E: Engine> {
    pub(super) shared: Arc<Shared<E>>,
    /// Stopped before the commit thread: they send to it.
    pub(super) evictor: Option<Background>,
    pub(super) sweeper: Option<Background>,
    pub(super) commits: Option<crossbeam::channel::Sender<Request>>,
    pub(super) committer: Option<JoinHandle<()>>,
    pub(super) repairs: Queue,
}

impl<E: Engine> Clone for Store<E> {
    fn clone(&self) -> Self {
        Store {
            inner: self.inner.clone(),
        }
    }
}

impl<E: Engine> Drop for StoreInner<E> {
    fn drop(&mut self) {
        // Closing the channel ends the commit thread once it has answered every request;
        // joining it releases the catalog file, so the store can be opened again. The
        // evictor holds a sender too: it stops first.
        drop(self.evictor.take());
        drop(self.sweeper.take());
        drop(self.commits.take());
        if let Some(committer) = self.committer.take() {
            let _ = committer.join();
        }
    }
}

/// One core's view of the store: its own device handles and codec.
pub struct LocalStore<E: Engine> {
    pub(super) store: Store<E>,
    /// The same as `store`'s, held directly: every path reads it.
    pub(super) shared: Arc<Shared<E>>,
    devices: Vec<<E::Handle as DeviceHandle>::Local>,
    /// Borrowed only between awaits, never across one.
    pub(super) codec: RefCell<Codec>,
    /// Borrowed only between awaits, never across one.
    pub(super) headers: RefCell<HeaderCache>,
    /// Windows being rebuilt on this core. Borrowed only between awaits.
    pub(super) rebuilds: RefCell<Rebuilds>,
}

impl<E: Engine> Store<E> {
    /// Wraps what `open` built.
    pub(super) fn from_inner(inner: StoreInner<E>) -> Store<E> {
        Store {
            inner: Arc::new(inner),
        }
    }

    /// The state shared by every core.
    pub(super) fn shared(&self) -> &Arc<Shared<E>> {
        &self.inner.shared
    }

    /// The queue of chunks waiting for repair.
    pub(super) fn repairs(&self) -> &Queue {
        &self.inner.repairs
    }

    /// Where requests to the commit thread go.
    pub(super) fn commits(&self) -> &crossbeam::channel::Sender<Request> {
        self.inner
            .commits
            .as_ref()
            .expect("the channel lives as long as the store")
    }

    /// Wakes the commit thread to record the devices that went offline for refill.
    pub(super) fn record_refills(&self) {
        // Fails only when the commit thread has stopped, which it does only once the
        // store is dropped: nothing is left to record for.
        let _ = self.commits().send(Request::RecordRefills);
    }

    /// This core's handle. Call on the thread that will use it.
    pub fn local(&self) -> std::io::Result<LocalStore<E>> {
        let shared = self.shared().clone();
        let devices = shared
            .devices
            .iter()
            .map(|d| d.handle.open_local())
            .collect::<Result<_, _>>()?;
        Ok(LocalStore {
            store: self.clone(),
            devices,
            codec: RefCell::new(Codec::new(shared.config.scheme)),
            headers: RefCell::new(HeaderCache::new(shared.config.header_cache_entries)),
            rebuilds: RefCell::new(Rebuilds::default()),
            shared,
        })
    }

    /// The store's configuration.
    pub fn config(&self) -> &StoreConfig {
        &self.shared().config
    }

    /// The store's geometry.
    pub fn geometry(&self) -> Geometry {
        self.shared().geometry
    }

    /// Number of chunks stored.
    pub fn chunk_count(&self) -> usize {
        self.shared().index.len()
    }

    /// Up to `limit` stored chunks with ids after `after` (all of them from `None`), in id
    /// order, with their lengths: for tools that walk the store.
    pub fn list(
        &self,
        after: Option<ChunkId>,
        limit: usize,
    ) -> Result<Vec<(ChunkId, u64)>, StoreError> {
        let mut chunks = Vec::with_capacity(limit.min(4096));
        self.shared()
            .catalog
            .for_each_after(after, limit, |id, record| {
                chunks.push((id, u64::from(record.len_bytes)))
            })?;
        Ok(chunks)
    }

    /// Where the shards of chunk `id` are on the devices, data shards first and parity
    /// after, or `None` when the chunk is not stored. For operators locating a damaged
    /// shard with other tools (and for tests that damage one on purpose).
    pub fn shard_locations(&self, id: &ChunkId) -> Result<Option<Vec<ShardLocation>>, StoreError> {
        let shared = self.shared();
        let Some(record) = shared.catalog.get(id)? else {
            return Ok(None);
        };
        let layout = Layout::new(shared.config.scheme, u64::from(record.len_bytes));
        let placement = shared.geometry.placement(id);
        let locations = (0..shared.config.scheme.total_shards())
            .map(|shard| {
                let (device, header_offset_bytes) =
                    shared
                        .geometry
                        .shard_address(placement, shard, record.offset_blocks);
                ShardLocation {
                    device,
                    header_offset_bytes,
                    data_len_bytes: layout.shard_len_bytes(),
                }
            })
            .collect();
        Ok(Some(locations))
    }

    /// Bytes the in-memory index has allocated.
    pub fn index_memory_bytes(&self) -> usize {
        self.shared().index.memory_bytes()
    }

    /// Bytes of shard space on all devices, and how many of them are free.
    pub fn capacity(&self) -> Capacity {
        let shared = self.shared();
        let w = shared.config.scheme.total_shards() as u64;
        let (mut total, mut free, mut quarantined, mut largest) = (0u64, 0u64, 0u64, 0u64);
        let mut release = None::<std::time::Duration>;
        // Pending space whose readers are gone is free: say so.
        let reusable = shared.grace.reusable_before();
        for group in &shared.groups {
            let mut group = lock(group);
            group.space.release(reusable);
            let space = &group.space;
            total += space.total_blocks();
            quarantined += space.quarantined_blocks();
            free += space.free_blocks() - space.quarantined_blocks();
            largest = largest.max(u64::from(space.largest_free_blocks()));
            if let Some(next) = space.next_release() {
                release = Some(release.map_or(next, |r| r.min(next)));
            }
        }
        let block = geometry::DEVICE_BLOCK_BYTES;
        Capacity {
            total_bytes: total * w * block,
            free_bytes: free * w * block,
            quarantined_bytes: quarantined * w * block,
            quarantine_release: release,
            largest_free_run_bytes: largest * block,
        }
    }

    /// A snapshot of the flash tier: hits, misses, evictions, chunks and bytes.
    pub fn flash_stats(&self) -> FlashStats {
        self.shared().flash_stats()
    }

    /// Pins chunk `id` (it is never evicted) or unpins it by hand; returns whether it is
    /// stored (and neither expired nor being evicted). Manifests pin what they name by themselves; this is
    /// for tests and tools, and a manifest change may undo it.
    pub fn set_pinned(&self, id: &ChunkId, pinned: bool) -> bool {
        let shared = self.shared();
        let key = super::index::key_of(id);
        let mut guard = lock(&shared.groups[shared.geometry.placement(id).group]);
        let Some((entry, before)) = shared.index.get_with_flags(key) else {
            return false;
        };
        // An expired chunk is out of the policy (a sweep will delete it): not pinnable.
        if pinned && before.expired {
            return false;
        }
        if !shared.index.set_pinned(key, pinned) {
            return false;
        }
        if before.pinned != pinned {
            let by = if pinned { 1 } else { -1 };
            guard.pinned.add(shared.config.scheme, entry.len_bytes, by);
        }
        true
    }

    /// A snapshot of device and repair health.
    pub fn health(&self) -> Health {
        snapshot::health(self.shared(), self.repairs())
    }

    /// Why the store cannot serve every read and take every write now (fewer than `k`
    /// usable devices for some chunks), or `None` when it can: for `/readyz`.
    pub fn unready_reason(&self) -> Option<String> {
        snapshot::unready_reason(self.shared())
    }

    /// Bytes a chunk of `len_bytes` takes on the devices: its shards with their headers.
    pub fn stored_bytes(&self, len_bytes: u64) -> u64 {
        Self::stored_bytes_for(self.shared().config.scheme, len_bytes)
    }

    /// Bytes a chunk of `len_bytes` takes on the devices under `scheme`.
    pub fn stored_bytes_for(scheme: Scheme, len_bytes: u64) -> u64 {
        let layout = Layout::new(scheme, len_bytes);
        (layout.shard_len_bytes() + shard::HEADER_BYTES) as u64 * scheme.total_shards() as u64
    }

    /// Sets a device's state: an operator taking a failing device out of service
    /// (`Offline`: no I/O is sent to it, its shards are rebuilt on read) or back.
    pub fn set_device_state(&self, device: usize, state: DeviceState) {
        let slot = &self.shared().devices[device];
        // An operator's decision: the repair thread no longer probes it.
        slot.probe.store(false, Ordering::Release);
        slot.counters.set_state(state);
    }
}

impl<E: Engine> LocalStore<E> {
    /// Largest chunk this store accepts.
    pub fn max_chunk_bytes(&self) -> u32 {
        self.shared.config.max_chunk_bytes
    }

    /// A buffer to receive a chunk of `len_bytes` into.
    pub fn chunk_buffer(&self, len_bytes: u64) -> Result<ChunkBuffer, StoreError> {
        let config = &self.shared.config;
        ChunkBuffer::new(len_bytes, config.scheme, config.max_chunk_bytes)
    }

    /// An I/O buffer from this thread's pool that can receive any chunk (see
    /// [`ChunkBuffer::in_buffer`]): for a fill, whose length is known only once the origin
    /// answers, on another thread.
    pub fn fill_buffer(&self) -> AlignedBuf {
        let config = &self.shared.config;
        AlignedBuf::scratch(ChunkBuffer::buffer_len_bytes(
            config.scheme,
            config.max_chunk_bytes,
        ))
    }

    /// Counts a failure of `device` on this core (see [`Shared::device_failed`]); when it
    /// takes the device offline, asks the commit thread to record it for refill (this
    /// core does not block on the catalog).
    pub(super) fn device_failed(
        &self,
        device: usize,
        failure: Failure,
        extent: Option<u64>,
        cause: &dyn std::fmt::Display,
    ) {
        if self.shared.device_failed(device, failure, extent, cause) {
            self.store.record_refills();
        }
    }

    /// Reads through this core's ring, counted in `io_in_flight` while it runs.
    pub(super) async fn read_at(
        &self,
        device: usize,
        buf: AlignedBuf,
        offset: u64,
    ) -> (std::io::Result<()>, AlignedBuf) {
        let _counted = InFlight::new(&self.shared.counters.io_in_flight);
        self.devices[device].read_at(buf, offset).await
    }

    /// Writes through this core's ring, counted in `io_in_flight` while it runs.
    pub(super) async fn write_at(
        &self,
        device: usize,
        parts: Vec<SharedSlice>,
        offset: u64,
    ) -> std::io::Result<()> {
        let _counted = InFlight::new(&self.shared.counters.io_in_flight);
        self.devices[device].write_at(parts, offset).await
    }
}

/// Counts one I/O in flight until dropped (also when the request waiting on it is
/// cancelled; the ring keeps the buffer until the kernel is done with it).
struct InFlight<'a>(&'a AtomicI64);

impl<'a> InFlight<'a> {
    fn new(counter: &'a AtomicI64) -> InFlight<'a> {
        counter.fetch_add(1, Ordering::Relaxed);
        InFlight(counter)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Where one shard of a stored chunk lies: `[header | data]`, contiguous on one device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShardLocation {
    /// Index of the device in [`StoreConfig::devices`].
    pub device: usize,
    /// Byte offset of the shard's 4 KiB header on the device.
    pub header_offset_bytes: u64,
    /// Bytes of shard data after the header (a multiple of 4096).
    pub data_len_bytes: usize,
}

impl ShardLocation {
    /// Byte offset of the shard's data: right after its header.
    pub fn data_offset_bytes(&self) -> u64 {
        self.header_offset_bytes + shard::HEADER_BYTES as u64
    }
}

/// Space on the devices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capacity {
    pub total_bytes: u64,
    /// Free and usable now.
    pub free_bytes: u64,
    /// Freed by deletes or evictions and pending: free, but not usable until the reads in
    /// flight that may still use it end (see `grace`; milliseconds).
    pub quarantined_bytes: u64,
    /// How long until the first pending space is usable again (zero: as soon as the reads
    /// in flight end); `None` when none is pending.
    pub quarantine_release: Option<std::time::Duration>,
    /// The longest free run in any group's partitions: the largest shard (with header) that
    /// could be placed right now.
    pub largest_free_run_bytes: u64,
}

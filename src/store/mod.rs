//! The flash store: chunk ids in, verified chunk bytes out, with every chunk erasure-coded
//! across the devices as `k` data and `m` parity shards.
//!
//! ```text
//!  put: ChunkBuffer ─▶ encode parity ─▶ k+m shard writes, in parallel ─▶ commit ─▶ index
//!  read: index ─▶ aligned windows of the shards holding the range ─▶ verify ─▶ (rebuild)
//! ```
//!
//! Files, by role: `geometry` (where shards go), `shard` (the self-checking shard header),
//! `space` (free space per group), `index` (id → location, in memory), `catalog` (the
//! durable record, in redb) and `commit` (the thread that writes it), `write` and `read`
//! (the data paths), `repair` (background repair and refill), `health`, `device` (the I/O
//! engines), `aligned` (O_DIRECT buffers), `open` (start-up and recovery).
//!
//! Threads: [`Store`] is shared by all cores; each core makes its own [`LocalStore`] with
//! its own device handles (one io_uring per core) and erasure codec. Reads take no lock but
//! one index shard's read lock; writes also lock their group's free space briefly.
//!
//! **Architecture invariants:** a chunk is stored exactly when its catalog record is
//! committed, and a record is committed only after all its shards are durable on the
//! devices; space a record claims is never written except to repair the same shard in
//! place; every byte returned was checked against its shard's checksums and header.

mod aligned;
mod catalog;
mod chunk_buffer;
mod commit;
pub mod device;
mod geometry;
mod header_cache;
mod health;
mod index;
mod open;
mod read;
mod repair;
mod shard;
mod space;
mod write;

use std::cell::RefCell;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

pub use aligned::{AlignedBuf, IO_ALIGN_BYTES, SharedSlice};
pub use chunk_buffer::{ChunkBuffer, VerifiedChunk};
pub use device::{DeviceSpec, Engine};
pub use geometry::Geometry;
pub use health::{DeviceHealth, DeviceState, Health};
pub use open::OpenReport;
pub use read::ChunkBytes;
pub use repair::{RepairOutcome, ShardHealth};
pub use write::PutOutcome;

use crate::chunk::ChunkId;
use crate::erasure::{Codec, Scheme};
use device::{Device, DeviceHandle};
use health::{DeviceCounters, StoreCounters};

/// Largest chunk accepted by default: 1 MiB, twice the 512 KiB image chunk.
pub const DEFAULT_MAX_CHUNK_BYTES: u32 = 1 << 20;

/// What the store is made of and how it behaves.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// Holds the catalog (`catalog.redb`).
    pub data_dir: PathBuf,
    pub devices: Vec<DeviceSpec>,
    pub scheme: Scheme,
    pub max_chunk_bytes: u32,
    /// Bytes per second that repair and refill may read and write.
    pub repair_bytes_per_second: u64,
    /// Bytes per second the background scrub reads (0: no scrub). It re-verifies every
    /// shard, parity included, and repairs what it finds.
    pub scrub_bytes_per_second: u64,
    /// I/O errors in a row after which a device is taken offline.
    pub device_error_limit: u32,
    /// Verified shard headers each core keeps, so range reads of hot shards skip the
    /// header read (about 200 bytes each for 128 KiB shards).
    pub header_cache_entries: usize,
}

impl StoreConfig {
    /// Five 1 GiB file devices under `data_dir/devices`, 4 + 1: the embedded default.
    pub fn embedded_default(data_dir: impl Into<PathBuf>) -> StoreConfig {
        let data_dir = data_dir.into();
        let devices = (0..5)
            .map(|i| DeviceSpec {
                path: data_dir.join("devices").join(format!("dev{i}")),
                size_bytes: Some(1 << 30),
            })
            .collect();
        StoreConfig {
            data_dir,
            devices,
            scheme: Scheme::DEFAULT,
            max_chunk_bytes: DEFAULT_MAX_CHUNK_BYTES,
            repair_bytes_per_second: 64 << 20,
            // Off for the library default, so tests see only the repairs they cause; the
            // server turns it on (`--scrub-rate`).
            scrub_bytes_per_second: 0,
            device_error_limit: 8,
            header_cache_entries: 65_536,
        }
    }
}

/// Why a store operation failed. Each variant maps to one HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("chunk not found")]
    NotFound,
    #[error("chunk of {len_bytes} bytes is larger than the {max_bytes}-byte limit")]
    TooLarge { len_bytes: u64, max_bytes: u32 },
    #[error(
        "no space for a chunk of {len_bytes} bytes (its group's largest free run is {largest_free_bytes} bytes)"
    )]
    NoSpace {
        len_bytes: u64,
        largest_free_bytes: u64,
    },
    #[error("byte range {start}..{end} is outside a chunk of {len_bytes} bytes")]
    BadRange {
        start: u64,
        end: u64,
        len_bytes: u64,
    },
    #[error("chunk cannot be read: {healthy} of {needed} shards needed are sound ({cause})")]
    Unreadable {
        healthy: usize,
        needed: usize,
        cause: String,
    },
    #[error("not enough devices online to store a chunk: {online} of {needed} needed")]
    Unavailable { online: usize, needed: usize },
    #[error("another chunk has the same 64-bit id prefix; this one cannot be stored")]
    PrefixTaken,
    #[error("device I/O failed: {0}")]
    Io(String),
    #[error("catalog: {0}")]
    Catalog(String),
    #[error("cannot open the store: {0}")]
    Setup(String),
}

impl From<redb::Error> for StoreError {
    fn from(error: redb::Error) -> StoreError {
        StoreError::Catalog(error.to_string())
    }
}

/// A device of the store: its handle and its health.
struct DeviceSlot<H> {
    spec: DeviceSpec,
    handle: H,
    counters: DeviceCounters,
    /// Set when a completed write has not been made durable yet.
    dirty: AtomicBool,
}

/// What every core and the commit thread share.
struct Core<E: Engine> {
    config: StoreConfig,
    geometry: Geometry,
    devices: Vec<DeviceSlot<E::Handle>>,
    index: index::Index,
    space: Vec<Mutex<space::GroupSpace>>,
    /// Chunks stored per group (for chunks-at-risk).
    chunks_per_group: Vec<AtomicU64>,
    catalog: catalog::Catalog,
    generation: AtomicU64,
    counters: StoreCounters,
    /// Chunks found with fewer than `k` sound shards while every device was usable: gone
    /// for good. A PUT of one of them stores it afresh instead of answering "already
    /// present". Bounded by [`UNRECOVERABLE_MAX`].
    unrecoverable: Mutex<std::collections::HashSet<ChunkId>>,
}

/// Most unrecoverable chunks remembered for replacement by a PUT.
const UNRECOVERABLE_MAX: usize = 65_536;

/// Which counter a device failure goes to.
#[derive(Clone, Copy, Debug)]
enum Failure {
    Read,
    Write,
    Checksum,
}

impl<E: Engine> Core<E> {
    /// Counts a failure of `device`; when it is the `device_error_limit`-th in a row the
    /// device goes offline, and is recorded (durably, blocking for one catalog commit: a
    /// rare event) as needing a refill, because chunks written while it is offline will
    /// lack its shards.
    fn device_failed(&self, device: usize, failure: Failure, cause: &dyn std::fmt::Display) {
        let slot = &self.devices[device];
        let counter = match failure {
            Failure::Read => &slot.counters.read_errors,
            Failure::Write => &slot.counters.write_errors,
            Failure::Checksum => &slot.counters.checksum_errors,
        };
        if slot
            .counters
            .failed(counter, self.config.device_error_limit)
        {
            tracing::error!(device = %slot.spec, %cause, "device taken offline after repeated errors");
            if let Err(error) = self.catalog.add_refilling(device as u32) {
                tracing::error!(device = %slot.spec, %error, "could not record the device for refill");
            }
        }
    }
}

/// The store, shared by all cores. Cloning is cheap.
pub struct Store<E: Engine> {
    inner: Arc<StoreInner<E>>,
}

struct StoreInner<E: Engine> {
    core: Arc<Core<E>>,
    commits: Option<crossbeam::channel::Sender<commit::Request>>,
    committer: Option<JoinHandle<()>>,
    repairs: repair::Queue,
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
        // joining it releases the catalog file, so the store can be opened again.
        drop(self.commits.take());
        if let Some(committer) = self.committer.take() {
            let _ = committer.join();
        }
    }
}

/// One core's view of the store: its own device handles and codec.
pub struct LocalStore<E: Engine> {
    store: Store<E>,
    devices: Vec<<E::Handle as DeviceHandle>::Local>,
    /// Borrowed only between awaits, never across one.
    codec: RefCell<Codec>,
    /// Borrowed only between awaits, never across one.
    headers: RefCell<header_cache::HeaderCache>,
}

impl<E: Engine> Store<E> {
    /// This core's handle. Call on the thread that will use it.
    pub fn local(&self) -> std::io::Result<LocalStore<E>> {
        let devices = self
            .inner
            .core
            .devices
            .iter()
            .map(|d| d.handle.open_local())
            .collect::<Result<_, _>>()?;
        Ok(LocalStore {
            store: self.clone(),
            devices,
            codec: RefCell::new(Codec::new(self.inner.core.config.scheme)),
            headers: RefCell::new(header_cache::HeaderCache::new(
                self.inner.core.config.header_cache_entries,
            )),
        })
    }

    /// The store's configuration.
    pub fn config(&self) -> &StoreConfig {
        &self.inner.core.config
    }

    /// The store's geometry.
    pub fn geometry(&self) -> Geometry {
        self.inner.core.geometry
    }

    /// Number of chunks stored.
    pub fn chunk_count(&self) -> usize {
        self.inner.core.index.len()
    }

    /// Up to `limit` stored chunks with ids after `after` (all of them from `None`), in id
    /// order, with their lengths: for tools that walk the store.
    pub fn list(
        &self,
        after: Option<ChunkId>,
        limit: usize,
    ) -> Result<Vec<(ChunkId, u64)>, StoreError> {
        let mut chunks = Vec::with_capacity(limit.min(4096));
        self.inner
            .core
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
        let core = &self.inner.core;
        let Some(record) = core.catalog.get(id)? else {
            return Ok(None);
        };
        let layout = crate::erasure::Layout::new(core.config.scheme, u64::from(record.len_bytes));
        let placement = core.geometry.placement(id);
        let locations = (0..core.config.scheme.total_shards())
            .map(|shard| {
                let (device, header_offset_bytes) =
                    core.geometry
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
        self.inner.core.index.memory_bytes()
    }

    /// Bytes of shard space on all devices, and how many of them are free.
    pub fn capacity(&self) -> Capacity {
        let core = &self.inner.core;
        let w = core.config.scheme.total_shards() as u64;
        let (mut total, mut free, mut largest) = (0u64, 0u64, 0u64);
        for space in &core.space {
            let space = lock(space);
            total += space.total_blocks();
            free += space.free_blocks();
            largest = largest.max(u64::from(space.largest_free_blocks()));
        }
        let block = geometry::BLOCK_BYTES;
        Capacity {
            total_bytes: total * w * block,
            free_bytes: free * w * block,
            largest_free_run_bytes: largest * block,
        }
    }

    /// A snapshot of device and repair health.
    pub fn health(&self) -> Health {
        repair::health(&self.inner.core, &self.inner.repairs)
    }

    /// Bytes a chunk of `len_bytes` takes on the devices: its shards with their headers.
    pub fn stored_bytes(&self, len_bytes: u64) -> u64 {
        Self::stored_bytes_for(self.inner.core.config.scheme, len_bytes)
    }

    /// Bytes a chunk of `len_bytes` takes on the devices under `scheme`.
    pub fn stored_bytes_for(scheme: Scheme, len_bytes: u64) -> u64 {
        let layout = crate::erasure::Layout::new(scheme, len_bytes);
        (layout.shard_len_bytes() + shard::HEADER_BYTES) as u64 * scheme.total_shards() as u64
    }

    /// Sets a device's state: an operator taking a failing device out of service
    /// (`Offline`: no I/O is sent to it, its shards are rebuilt on read) or back.
    pub fn set_device_state(&self, device: usize, state: DeviceState) {
        self.inner.core.devices[device].counters.set_state(state);
    }
}

impl<E: Engine> LocalStore<E> {
    /// Largest chunk this store accepts.
    pub fn max_chunk_bytes(&self) -> u32 {
        self.store.inner.core.config.max_chunk_bytes
    }

    /// A buffer to receive a chunk of `len_bytes` into.
    pub fn chunk_buffer(&self, len_bytes: u64) -> Result<ChunkBuffer, StoreError> {
        let config = &self.store.inner.core.config;
        ChunkBuffer::new(len_bytes, config.scheme, config.max_chunk_bytes)
    }

    /// Reads through this core's ring, counted in `io_in_flight` while it runs.
    async fn read_at(
        &self,
        device: usize,
        buf: AlignedBuf,
        offset: u64,
    ) -> (std::io::Result<()>, AlignedBuf) {
        let _counted = InFlight::new(&self.store.inner.core.counters.io_in_flight);
        self.devices[device].read_at(buf, offset).await
    }

    /// Writes through this core's ring, counted in `io_in_flight` while it runs.
    async fn write_at(
        &self,
        device: usize,
        parts: Vec<SharedSlice>,
        offset: u64,
    ) -> std::io::Result<()> {
        let _counted = InFlight::new(&self.store.inner.core.counters.io_in_flight);
        self.devices[device].write_at(parts, offset).await
    }
}

/// Counts one I/O in flight until dropped (also when the request waiting on it is
/// cancelled; the ring keeps the buffer until the kernel is done with it).
struct InFlight<'a>(&'a std::sync::atomic::AtomicI64);

impl<'a> InFlight<'a> {
    fn new(counter: &'a std::sync::atomic::AtomicI64) -> InFlight<'a> {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        InFlight(counter)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Locks a mutex, going on after a panic elsewhere: every structure behind these locks is
/// updated by single, complete operations, so none is left half-changed by a panic.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
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
    pub free_bytes: u64,
    /// The longest free run in any group's partitions: the largest shard (with header) that
    /// could be placed right now.
    pub largest_free_run_bytes: u64,
}

//! The flash store: chunk ids in, verified chunk bytes out, with every chunk erasure-coded
//! across the devices as `k` data and `m` parity shards.
//!
//! ```text
//!  put: ChunkBuffer ─▶ encode parity ─▶ k+m shard writes, in parallel ─▶ commit ─▶ index
//!  read: index ─▶ aligned windows of the shards holding the range ─▶ verify ─▶ (rebuild)
//! ```
//!
//! Files, by role: `config` and `error` (the settings and the failures), `state` (what all
//! cores share) and `handle` ([`Store`], [`LocalStore`]), `geometry` (where shards go),
//! `shard` (the self-checking shard header), `space` (free space per group), `grace` (when
//! freed space may be reused: once no read or repair that saw its record runs), `flash`,
//! `evict` and `room` (eviction: a per-group S3-FIFO, the background evictor, PUTs that
//! evict to make room), `index` (id → location and eviction state, in memory), `catalog`
//! (the durable record, in redb) and `commit` (the thread that writes it), `write` and
//! `read` (the data paths), `repair` (background repair,
//! scrub and refill), `health`, `device` (the I/O engines), `aligned` (O_DIRECT buffers),
//! `open` (start-up and recovery). This file only declares them and re-exports the public
//! names.
//!
//! Threads: [`Store`] is shared by all cores; each core makes its own [`LocalStore`] with
//! its own device handles (one io_uring per core) and erasure codec. Reads take no lock but
//! one index shard's read lock; writes also lock their group's free space briefly. The
//! commit thread makes writes durable and records them (and devices that failed) in the
//! catalog; [`Store::start_maintenance`] runs refill, repair and scrub on a thread of the
//! store's own ([`Maintenance`]), never on a core; the evictor (`chunkd-evict`) keeps each
//! group's free space between its watermarks, also off the cores.
//!
//! **Architecture invariants:** a chunk is stored exactly when its catalog record is
//! committed, and a record is committed only after all its shards are durable on the
//! devices; space a record claims is never written except to repair the same shard in
//! place, and freed space is reused only after every read and repair that could have seen
//! its old record has ended; every byte returned was checked against its shard's
//! checksums and header.

mod aligned;
mod background;
mod catalog;
mod catalog_refs;
mod catalog_tables;
mod chunk_buffer;
mod commit;
mod commit_refs;
mod config;
pub mod device;
mod error;
mod evict;
mod fetch;
mod flash;
mod gc;
mod geometry;
mod grace;
mod handle;
mod header_cache;
mod health;
mod index;
mod open;
mod read;
mod rebuilds;
mod refs;
mod removal;
mod repair;
mod room;
mod shard;
mod space;
mod state;
mod stripe;
mod sweeper;
mod write;

pub use aligned::{AlignedBuf, IO_ALIGN_BYTES, SharedSlice, release_idle_regions};
pub use chunk_buffer::{ChunkBuffer, VerifiedChunk};
pub use config::{
    DEFAULT_DEVICE_PROBE_INTERVAL, DEFAULT_EVICT_HIGH_WATERMARK_PERCENT,
    DEFAULT_EVICT_LOW_WATERMARK_PERCENT, DEFAULT_GC_GRACE, DEFAULT_GC_INTERVAL,
    DEFAULT_MAX_CHUNK_BYTES, DEFAULT_MAX_MANIFESTS, StoreConfig,
};
pub use device::{DeviceSpec, Engine};
pub use error::StoreError;
pub use flash::{EvictReason, FlashStats};
pub use geometry::Geometry;
pub use handle::{Capacity, LocalStore, ShardLocation, Store};
pub use health::{DeviceHealth, DeviceState, Health};
pub use open::OpenReport;
pub use read::ChunkBytes;
pub use refs::{
    GcClock, GcStats, MANIFEST_NAME_MAX, ManifestName, ManifestNameError, ManifestPut, RefState,
    SweepReport,
};
pub use repair::{Maintenance, RepairOutcome, ShardHealth};
pub use space::QUARANTINE;
pub use write::PutOutcome;

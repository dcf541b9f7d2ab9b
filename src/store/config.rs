//! [`StoreConfig`]: what a store is made of (devices, scheme, catalog directory) and how it
//! behaves (chunk limit, repair and scrub rates, error limit, header cache, eviction).
//!
//! **Architecture invariant:** plain data; no I/O.

use std::path::PathBuf;
use std::time::Duration;

use super::device::DeviceSpec;
use super::refs::GcClock;
use crate::erasure::Scheme;

/// Largest chunk accepted by default: 1 MiB, twice the 512 KiB image chunk.
pub const DEFAULT_MAX_CHUNK_BYTES: u32 = 1 << 20;

/// Default of [`StoreConfig::device_lock_wait`]: 5 s, ample for the kernel to finish
/// closing a killed node's rings (milliseconds here), short enough that a second node on
/// the same devices is told so at once. Like systemd's `RestartSec` default (100 ms) plus
/// margin; nginx has no counterpart.
pub const DEFAULT_DEVICE_LOCK_WAIT: Duration = Duration::from_secs(5);

/// How often a device that errors took offline is probed by default: 30 s. A probe is one
/// 4 KiB read, so its cost is nil; what the interval bounds is how long a device that came
/// back (a reseated cable, a controller reset) stays out, and how often a device that
/// answers and then fails again goes through a refill walk. nginx retries a failed
/// upstream after its `fail_timeout` of 10 s; a device's return costs a walk of the
/// catalog, so we wait three times as long.
pub const DEFAULT_DEVICE_PROBE_INTERVAL: Duration = Duration::from_secs(30);

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
    /// Failed I/Os on distinct extents, with no success between them, after which a
    /// device is taken offline (see `Shared::device_failed` for the rule).
    pub device_error_limit: u32,
    /// How often the repair thread probes a device that errors took offline (one 4 KiB
    /// superblock read), bringing it back through a refill when it answers; zero: never.
    pub device_probe_interval: Duration,
    /// Verified shard headers each core keeps, so range reads of hot shards skip the
    /// header read (about 200 bytes each for 128 KiB shards).
    pub header_cache_entries: usize,
    /// Format a device whose superblock names another store (its data is lost) instead of
    /// refusing to start. Off by default: a typo in a device list must not erase data.
    pub reformat_foreign_devices: bool,
    /// How long to wait for a device another process holds (locked, or open exclusively)
    /// before refusing it as in use. A node that just exited holds its devices for a moment
    /// longer: the kernel closes the files of its io_uring rings after the process is gone.
    pub device_lock_wait: Duration,
    /// Evict chunks to make room (a cache); off, a PUT into a full group is refused (507)
    /// as a store would.
    pub eviction: bool,
    /// A group's free space, in percent of the group, below which the evictor starts and
    /// up to which it evicts (see [`DEFAULT_EVICT_LOW_WATERMARK_PERCENT`]).
    pub evict_low_watermark_percent: u8,
    pub evict_high_watermark_percent: u8,
    /// How long an expired chunk (no live manifest names it any more) is kept before a
    /// sweep may delete it (see `refs`).
    pub gc_grace: Duration,
    /// How often the store sweeps by itself (zero: only when asked, `POST /v1/gc`).
    pub gc_interval: Duration,
    /// Sweep chunks that no manifest names too (they expire when stored, or at open), not
    /// only chunks whose count fell to zero; off, eviction handles them.
    pub gc_unreferenced: bool,
    /// Never evict a chunk a live manifest names (a node without an origin may hold its
    /// only copy). Off when an origin can fill it again: references then only drive GC.
    pub pin_referenced: bool,
    /// The clock of expiries and sweeps (tests use a manual one).
    pub gc_clock: GcClock,
    /// Most manifests kept: a new one beyond it is refused (`StoreError::TooManyManifests`).
    pub max_manifests: u64,
}

/// Default low watermark: the evictor starts when a group has less than 2 % free. Free
/// space is flash that caches nothing, so it is kept small; it only has to absorb the PUTs
/// that arrive while the evictor runs, and a PUT that finds no room evicts for itself
/// anyway. 2 % of even a 100 GiB group is 4,000 chunks of 512 KiB, seconds of ingest.
pub const DEFAULT_EVICT_LOW_WATERMARK_PERCENT: u8 = 2;
/// Default high watermark: the evictor stops at 5 % free, so one run evicts 3 % of a
/// group in batches of 256 removals a catalog commit, and runs are rare (CacheLib and
/// foyer likewise keep a few regions clean ahead of writes rather than one).
pub const DEFAULT_EVICT_HIGH_WATERMARK_PERCENT: u8 = 5;

/// Default of [`StoreConfig::gc_grace`]: 10 minutes, the API's default. Long enough for a
/// manifest being replaced to be put again with the same chunks (a re-push) and for reads
/// that started from the old manifest to finish; a read in that window cancels the deletion.
pub const DEFAULT_GC_GRACE: Duration = Duration::from_secs(600);
/// Default of [`StoreConfig::gc_interval`]: a sweep a minute, so a chunk is deleted at
/// most a minute after its grace ends; each sweep is a few catalog transactions of up to
/// 1024 removals.
pub const DEFAULT_GC_INTERVAL: Duration = Duration::from_secs(60);

/// Default of [`StoreConfig::max_manifests`]: 100,000 images a node — far more than a
/// cache node's working set of images, few enough that listing them all is a few MB.
pub const DEFAULT_MAX_MANIFESTS: u64 = 100_000;

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
            device_probe_interval: DEFAULT_DEVICE_PROBE_INTERVAL,
            header_cache_entries: 65_536,
            reformat_foreign_devices: false,
            device_lock_wait: DEFAULT_DEVICE_LOCK_WAIT,
            eviction: true,
            evict_low_watermark_percent: DEFAULT_EVICT_LOW_WATERMARK_PERCENT,
            evict_high_watermark_percent: DEFAULT_EVICT_HIGH_WATERMARK_PERCENT,
            gc_grace: DEFAULT_GC_GRACE,
            gc_interval: DEFAULT_GC_INTERVAL,
            gc_unreferenced: false,
            pin_referenced: true,
            gc_clock: GcClock::System,
            max_manifests: DEFAULT_MAX_MANIFESTS,
        }
    }
}

//! Health of the store: per-device state and error counts, rebuilds, repairs and chunks at
//! risk, kept in atomics so any core updates them without locks and metrics read them.

use std::sync::atomic::{AtomicI64, AtomicU8, AtomicU32, AtomicU64, Ordering};

/// State of one device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceState {
    /// Serving reads and writes.
    Online,
    /// Failed on too many distinct extents in a row (or taken out by an operator): no I/O
    /// is sent to it; its shards are rebuilt on read. The repair thread probes a device
    /// that errors took offline and brings it back through a refill when it answers.
    Offline,
    /// New or replaced: written to, and being refilled from the other devices.
    Refilling,
}

impl DeviceState {
    /// A metric-friendly name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceState::Online => "online",
            DeviceState::Offline => "offline",
            DeviceState::Refilling => "refilling",
        }
    }

    fn encode(self) -> u8 {
        self as u8
    }

    fn decode(value: u8) -> DeviceState {
        match value {
            0 => DeviceState::Online,
            1 => DeviceState::Offline,
            _ => DeviceState::Refilling,
        }
    }
}

/// Counters of one device.
#[derive(Default)]
pub struct DeviceCounters {
    state: AtomicU8,
    consecutive_errors: AtomicU32,
    pub read_errors: AtomicU64,
    pub write_errors: AtomicU64,
    pub checksum_errors: AtomicU64,
}

impl DeviceCounters {
    /// The device's state.
    pub fn state(&self) -> DeviceState {
        DeviceState::decode(self.state.load(Ordering::Acquire))
    }

    /// Sets the device's state.
    pub fn set_state(&self, state: DeviceState) {
        self.state.store(state.encode(), Ordering::Release);
    }

    /// Moves the device from state `from` to `to`, unless it has left `from` meanwhile;
    /// returns whether it did.
    pub fn replace_state(&self, from: DeviceState, to: DeviceState) -> bool {
        self.state
            .compare_exchange(
                from.encode(),
                to.encode(),
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }

    /// True unless the device is offline.
    pub fn usable(&self) -> bool {
        self.state() != DeviceState::Offline
    }

    /// Records a successful I/O.
    pub fn succeeded(&self) {
        self.consecutive_errors.store(0, Ordering::Relaxed);
    }

    /// Records a failed I/O; returns true when this failure should take the device
    /// offline (`limit` failures in a row, and it is not offline yet). The caller then
    /// calls [`DeviceCounters::take_offline`], after recording whatever must be known by
    /// anyone who sees the device offline.
    pub fn failed(&self, counter: &AtomicU64, limit: u32) -> bool {
        counter.fetch_add(1, Ordering::Relaxed);
        let in_a_row = self.consecutive_errors.fetch_add(1, Ordering::Relaxed) + 1;
        in_a_row >= limit && self.state() != DeviceState::Offline
    }

    /// Takes the device offline; returns whether it was not offline before. A thread that
    /// sees it offline ([`DeviceCounters::state`]) sees what was written before this.
    pub fn take_offline(&self) -> bool {
        let before = self
            .state
            .swap(DeviceState::Offline.encode(), Ordering::AcqRel);
        DeviceState::decode(before) != DeviceState::Offline
    }
}

/// Store-wide counters.
#[derive(Default)]
pub struct StoreCounters {
    /// Shards rebuilt from the others to answer a read.
    pub shards_rebuilt: AtomicU64,
    /// Shards rewritten by repair or refill.
    pub shards_repaired: AtomicU64,
    /// Chunks that had fewer than `k` sound shards when read or repaired.
    pub chunks_unreadable: AtomicU64,
    /// Chunks found lost (fewer than `k` sound shards with every device answering) and
    /// dropped from the catalog.
    pub chunks_lost: AtomicU64,
    /// Scrub passes completed over the whole catalog since the store opened, and the
    /// chunks verified so far in the pass under way: until a first pass completes after a
    /// start, damage done while the node was down may not be known yet.
    pub scrub_passes: AtomicU64,
    pub scrub_pass_chunks: AtomicU64,
    /// Chunks the scrub has checked in all.
    pub scrub_chunks: AtomicU64,
    /// Repairs dropped because the queue was full (a later scrub finds them again).
    pub repairs_dropped: AtomicU64,
    /// Bytes read and written by repair and refill.
    pub repair_bytes: AtomicU64,
    /// Commit batches, the requests in them, and the time spent flushing devices and
    /// committing the catalog (microseconds), for the group-commit figures.
    pub commit_batches: AtomicU64,
    pub commit_requests: AtomicU64,
    pub commit_flush_us: AtomicU64,
    pub commit_catalog_us: AtomicU64,
    /// Device reads and writes submitted and not yet complete, on all cores.
    pub io_in_flight: AtomicI64,
}

/// A snapshot for metrics and `/readyz`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    pub devices: Vec<DeviceHealth>,
    pub shards_rebuilt: u64,
    pub shards_repaired: u64,
    pub chunks_unreadable: u64,
    pub chunks_lost: u64,
    pub scrub_passes: u64,
    pub scrub_pass_chunks: u64,
    pub repairs_dropped: u64,
    pub repairs_queued: u64,
    pub commit_batches: u64,
    pub commit_requests: u64,
    pub commit_flush_us: u64,
    pub commit_catalog_us: u64,
    pub io_in_flight: i64,
    /// Chunks with a shard on a device that is offline or not yet refilled, plus chunks
    /// queued for repair: chunks one more fault away from being unreadable (for m = 1).
    /// Distinct chunks: never more than the chunks stored.
    pub chunks_at_risk: u64,
    /// Chunks the scrub has checked in all.
    pub scrub_chunks: u64,
    /// The flash tier: hits, misses, evictions, chunks and bytes (see `evict`).
    pub flash: super::flash::FlashStats,
}

/// One device in a [`Health`] snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceHealth {
    pub path: String,
    pub state: DeviceState,
    pub read_errors: u64,
    pub write_errors: u64,
    pub checksum_errors: u64,
}

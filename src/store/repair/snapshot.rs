//! The store's health as one snapshot: device states and counters, rebuilds, repairs, the
//! repair queue and the chunks at risk.
//!
//! **Architecture invariant:** reads atomics and the repair queue's set (one short lock);
//! no I/O.

use std::sync::atomic::Ordering;

use super::queue::Queue;
use crate::store::device::Engine;
use crate::store::health::{DeviceHealth, DeviceState, Health};
use crate::store::state::Shared;

/// A snapshot of the store's health.
pub(crate) fn health<E: Engine>(shared: &Shared<E>, queue: &Queue) -> Health {
    let devices: Vec<DeviceHealth> = shared
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
    let degraded: Vec<bool> = (0..shared.geometry.groups())
        .map(|g| {
            shared
                .geometry
                .group_devices(g)
                .any(|d| devices[d].state != DeviceState::Online)
        })
        .collect();
    let at_risk_in_groups: u64 = (0..degraded.len())
        .filter(|&g| degraded[g])
        .map(|g| shared.chunks_per_group[g].load(Ordering::Relaxed))
        .sum();
    let queued = queue.queued() as u64;
    // Queued chunks in a degraded group are counted with their group already.
    let queued_elsewhere =
        queue.count_where(|id| !degraded[shared.geometry.placement(id).group]) as u64;
    let c = &shared.counters;
    Health {
        flash: shared.flash_stats(),
        devices,
        shards_rebuilt: c.shards_rebuilt.load(Ordering::Relaxed),
        shards_repaired: c.shards_repaired.load(Ordering::Relaxed),
        chunks_unreadable: c.chunks_unreadable.load(Ordering::Relaxed),
        chunks_lost: c.chunks_lost.load(Ordering::Relaxed),
        scrub_passes: c.scrub_passes.load(Ordering::Relaxed),
        scrub_pass_chunks: c.scrub_pass_chunks.load(Ordering::Relaxed),
        repairs_dropped: c.repairs_dropped.load(Ordering::Relaxed),
        repairs_queued: queued,
        commit_batches: c.commit_batches.load(Ordering::Relaxed),
        commit_requests: c.commit_requests.load(Ordering::Relaxed),
        commit_flush_us: c.commit_flush_us.load(Ordering::Relaxed),
        commit_catalog_us: c.commit_catalog_us.load(Ordering::Relaxed),
        io_in_flight: c.io_in_flight.load(Ordering::Relaxed),
        // Distinct chunks; capped by the chunks stored, as the counts are read one after
        // the other while the store changes.
        chunks_at_risk: (at_risk_in_groups + queued_elsewhere).min(shared.index.len() as u64),
        scrub_chunks: c.scrub_chunks.load(Ordering::Relaxed),
    }
}

/// Why the store cannot serve every read and take every write now, or `None` when it can:
/// some group of partitions has fewer than `k` shards on usable devices, so its chunks can
/// be neither rebuilt nor stored.
pub(crate) fn unready_reason<E: Engine>(shared: &Shared<E>) -> Option<String> {
    let k = shared.config.scheme.data_shards();
    (0..shared.geometry.groups()).find_map(|g| {
        let usable = shared
            .geometry
            .group_devices(g)
            .filter(|&d| shared.devices[d].counters.usable())
            .count();
        (usable < k).then(|| {
            let offline: Vec<String> = shared
                .devices
                .iter()
                .filter(|d| !d.counters.usable())
                .map(|d| d.spec.to_string())
                .collect();
            format!(
                "fewer than k usable devices: {usable} of the {k} shards needed are on usable devices (offline: {})",
                offline.join(", ")
            )
        })
    })
}

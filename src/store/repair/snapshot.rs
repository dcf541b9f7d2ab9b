//! The store's health as one snapshot: device states and counters, rebuilds, repairs, the
//! repair queue and the chunks at risk.
//!
//! **Architecture invariant:** reads atomics only; no I/O, no lock.

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
    let degraded_groups = (0..shared.geometry.groups()).filter(|&g| {
        shared
            .geometry
            .group_devices(g)
            .any(|d| devices[d].state != DeviceState::Online)
    });
    let at_risk_in_groups: u64 = degraded_groups
        .map(|g| shared.chunks_per_group[g].load(Ordering::Relaxed))
        .sum();
    let c = &shared.counters;
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
        scrub_chunks: c.scrub_chunks.load(Ordering::Relaxed),
        scrub_passes: c.scrub_passes.load(Ordering::Relaxed),
        scrub_pass_chunks: c.scrub_pass_chunks.load(Ordering::Relaxed),
    }
}

//! Refill: a device that was new or replaced at start-up (or went offline and is listed as
//! refilling) is walked chunk by chunk through the catalog, and every shard it should hold
//! is repaired; then it is flushed, set online, and the catalog stops listing it.
//!
//! **Architecture invariant:** online means whole, after a crash too: a device is listed as
//! refilling in the catalog until its refilled shards are durable.

use tokio::sync::mpsc;

use super::rate::RateLimit;
use crate::chunk::ChunkId;
use crate::store::device::{DeviceHandle, Engine};
use crate::store::handle::LocalStore;
use crate::store::health::DeviceState;
use crate::store::state::Shared;

/// Catalog records read per step of a refill walk.
const WALK_BATCH: usize = 256;

impl<E: Engine> LocalStore<E> {
    /// Walks the catalog and repairs every chunk with a shard on a refilling device, then
    /// marks those devices online. Serves queued repairs between steps.
    pub(super) async fn refill(&self, queue: &mut mpsc::Receiver<ChunkId>, limit: &mut RateLimit) {
        let shared = &self.shared;
        let refilling: Vec<usize> = (0..shared.devices.len())
            .filter(|&d| shared.devices[d].counters.state() == DeviceState::Refilling)
            .collect();
        if refilling.is_empty() {
            return;
        }
        tracing::info!(devices = ?refilling, "refilling replaced devices");
        let mut after = None;
        loop {
            let mut batch = Vec::new();
            let walked = shared.catalog.for_each_after(after, WALK_BATCH, |id, _| {
                let group = shared.geometry.placement(&id).group;
                if shared
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
            let shared = shared.clone();
            move || finish_refill(&shared, refilling)
        };
        // Flushing and committing block: off this core.
        tokio::task::spawn_blocking(finish)
            .await
            .expect("finishing a refill does not panic");
        tracing::info!("refill done");
    }
}

/// Ends the refill of `refilled`. Online means whole, after a crash too, so for each
/// device: its refilled shards are flushed, then it goes online unless it failed meanwhile
/// (an offline device stays offline), and only then does the catalog stop listing it as
/// refilling. A crash anywhere in between leaves it listed, and the next start refills it
/// again.
fn finish_refill<E: Engine>(shared: &Shared<E>, refilled: Vec<usize>) {
    let online: Vec<u32> = refilled
        .into_iter()
        .filter(|&d| {
            let slot = &shared.devices[d];
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
    let recorded = shared.catalog.remove_refilling(&online);
    if let Err(error) = recorded {
        tracing::error!(%error, "refill not recorded in the catalog: the next start runs it again");
    }
}

//! Probing devices that errors took offline: every `device_probe_interval` the repair
//! thread reads each such device's superblock; when it answers with this store's
//! superblock again (a loose cable, a controller reset), the device is brought back as
//! refilling, and the refill that follows rewrites whatever changed while it was out.
//!
//! **Architecture invariant:** a device comes back only as refilling, listed in the
//! catalog, never straight to online; a device an operator took offline is never probed.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::store::aligned::AlignedBuf;
use crate::store::device::{DeviceHandle, Engine};
use crate::store::geometry::{SUPERBLOCK_BYTES, Superblock};
use crate::store::health::DeviceState;
use crate::store::state::Shared;

/// The longest the repair thread waits for a probe before going on without it: a
/// superblock read of a device that answers takes milliseconds; one that hangs (a
/// controller stuck in resets) may block its thread for minutes. The wait is the probe
/// interval, within 100 ms and this.
pub(super) const PROBE_WAIT_MAX: Duration = Duration::from_secs(10);

/// How long the repair thread waits for a probe, for a probe every `interval`.
pub(super) fn probe_wait(interval: Duration) -> Duration {
    interval.clamp(Duration::from_millis(100), PROBE_WAIT_MAX)
}

/// Probes every device errors took offline; returns the devices brought back (now
/// refilling). Blocking (a superblock read and a catalog commit each): for a blocking
/// thread.
pub(super) fn probe_offline<E: Engine>(shared: &Shared<E>) -> Vec<usize> {
    let waiting = shared.devices.iter().any(|slot| {
        slot.probe.load(Ordering::Acquire) && slot.counters.state() == DeviceState::Offline
    });
    if !waiting {
        return Vec::new();
    }
    let store_uuid = match shared.catalog.superblock() {
        Ok(Some(superblock)) => superblock.store_uuid,
        Ok(None) => return Vec::new(),
        Err(error) => {
            tracing::warn!(%error, "device probe skipped: catalog unreadable");
            return Vec::new();
        }
    };
    (0..shared.devices.len())
        .filter(|&device| probe_one(shared, device, store_uuid))
        .collect()
}

/// Probes `device` if errors took it offline; returns whether it is back (refilling).
fn probe_one<E: Engine>(shared: &Shared<E>, device: usize, store_uuid: [u8; 16]) -> bool {
    let slot = &shared.devices[device];
    if !slot.probe.load(Ordering::Acquire) || slot.counters.state() != DeviceState::Offline {
        return false;
    }
    let mut buf = AlignedBuf::zeroed(SUPERBLOCK_BYTES);
    if let Err(error) = slot.handle.read_sync(&mut buf, 0) {
        tracing::debug!(device = %slot.spec, %error, "offline device still failing");
        return false;
    }
    let ours = Superblock::decode(&buf)
        .is_some_and(|sb| sb.store_uuid == store_uuid && sb.device_index as usize == device);
    if !ours {
        tracing::warn!(device = %slot.spec, "offline device answers without this store's superblock; it stays offline until a restart");
        slot.probe.store(false, Ordering::Release);
        return false;
    }
    // Listed for refill before it takes any I/O: a crash during the refill resumes it.
    if let Err(error) = shared.catalog.add_refilling(device as u32) {
        tracing::error!(device = %slot.spec, %error, "offline device answers, but could not be recorded for refill; it stays offline");
        return false;
    }
    slot.forget_bad_extents();
    slot.counters.succeeded();
    slot.probe.store(false, Ordering::Release);
    let back = slot
        .counters
        .replace_state(DeviceState::Offline, DeviceState::Refilling);
    if back {
        tracing::info!(device = %slot.spec, "offline device answers again: refilling it");
    }
    back
}

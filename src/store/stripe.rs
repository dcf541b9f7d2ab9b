//! [`Stripe`]: one chunk's `k + m` shards as this core sees them — what each shard's header
//! must say (its [`ShardIdentity`]), where each lies (device and byte offset, from the
//! geometry), whether its device is usable, and the accounting of each shard's I/O result
//! (device errors towards taking a device offline; written devices marked for a flush).
//!
//! The read, write and repair paths all go through a stripe, so a shard's address and
//! identity, and what a failed shard I/O does to its device, are decided in one place.
//!
//! **Architecture invariant:** a stripe never decides what to read or write; it only names
//! the shards, runs the I/Os it is given through this core's ring and counts their results.

use std::sync::atomic::Ordering;

use futures_util::future::join_all;

use super::aligned::SharedSlice;
use super::device::{Engine, submit_together};
use super::geometry::Placement;
use super::handle::LocalStore;
use super::health::DeviceState;
use super::index::Entry;
use super::shard::ShardIdentity;
use super::state::{DeviceSlot, Failure};
use crate::chunk::ChunkId;
use crate::erasure::{Layout, Scheme, ShardSet};

/// One chunk's shards, on the core of `local`.
pub(super) struct Stripe<'a, E: Engine> {
    pub(super) local: &'a LocalStore<E>,
    pub(super) id: &'a ChunkId,
    /// Where the chunk is and which write stored it.
    pub(super) entry: Entry,
    pub(super) layout: Layout,
    placement: Placement,
}

impl<E: Engine> LocalStore<E> {
    /// The stripe of chunk `id`, stored (or about to be) as `entry` says.
    pub(super) fn stripe<'a>(&'a self, id: &'a ChunkId, entry: Entry) -> Stripe<'a, E> {
        Stripe {
            local: self,
            id,
            entry,
            layout: Layout::new(self.shared.config.scheme, u64::from(entry.len_bytes)),
            placement: self.shared.geometry.placement(id),
        }
    }
}

impl<E: Engine> Stripe<'_, E> {
    /// The store's scheme.
    pub(super) fn scheme(&self) -> Scheme {
        self.layout.scheme()
    }

    /// `k + m`.
    pub(super) fn width(&self) -> usize {
        self.scheme().total_shards()
    }

    /// What the header of shard `shard` says: this chunk, this write, this shard.
    pub(super) fn identity(&self, shard: usize) -> ShardIdentity {
        let scheme = self.scheme();
        ShardIdentity {
            id: *self.id,
            chunk_len_bytes: self.entry.len_bytes,
            generation: self.entry.generation,
            shard_index: shard as u8,
            data_shards: scheme.data_shards() as u8,
            parity_shards: scheme.parity_shards() as u8,
            shard_len_bytes: self.layout.shard_len_bytes() as u32,
        }
    }

    /// The device of shard `shard` and the byte offset of its header there.
    pub(super) fn address(&self, shard: usize) -> (usize, u64) {
        self.local
            .shared
            .geometry
            .shard_address(self.placement, shard, self.entry.offset_blocks)
    }

    /// The device holding shard `shard`.
    pub(super) fn device(&self, shard: usize) -> usize {
        self.address(shard).0
    }

    /// The device slot holding shard `shard`.
    pub(super) fn slot(&self, shard: usize) -> &DeviceSlot<E::Handle> {
        &self.local.shared.devices[self.device(shard)]
    }

    /// Whether shard `shard`'s device takes I/O (it is not offline).
    pub(super) fn usable(&self, shard: usize) -> bool {
        self.slot(shard).counters.usable()
    }

    /// The shards whose devices take I/O.
    pub(super) fn usable_shards(&self) -> ShardSet {
        (0..self.width())
            .filter(|&s| self.usable(s))
            .fold(ShardSet::empty(), ShardSet::with)
    }

    /// Counts a failed read of shard `shard`; returns the cause, naming the device.
    pub(super) fn read_failed(&self, shard: usize, error: &std::io::Error) -> String {
        let (device, extent) = self.address(shard);
        self.local
            .device_failed(device, Failure::Read, Some(extent), error);
        format!("{}: {error}", self.slot(shard).spec)
    }

    /// Counts the check of shard `shard`'s bytes: sound (`None`), or corrupt with `cause`.
    /// A refilling device holds nothing sound until the refill reaches each chunk: its
    /// bad shards are expected, not a sign of failure, and must not take it offline (the
    /// refill skips an offline device).
    pub(super) fn checked(&self, shard: usize, corrupt: Option<&dyn std::fmt::Display>) {
        let slot = self.slot(shard);
        match corrupt {
            None => slot.counters.succeeded(),
            Some(cause) => {
                if slot.counters.state() != DeviceState::Refilling {
                    let (device, extent) = self.address(shard);
                    self.local
                        .device_failed(device, Failure::Checksum, Some(extent), cause);
                }
            }
        }
    }

    /// Writes each `(shard, [header | data] parts)` at its shard's place, all submitted
    /// together; counts each result (a written device is flushed by the next commit or
    /// repair flush; a failed one counts towards going offline). Returns each shard with
    /// its result, the error naming the device.
    pub(super) async fn write(
        &self,
        writes: Vec<(usize, Vec<SharedSlice>)>,
    ) -> Vec<(usize, Result<(), String>)> {
        let writes = writes.into_iter().map(|(shard, parts)| {
            let (device, offset) = self.address(shard);
            async move { (shard, self.local.write_at(device, parts, offset).await) }
        });
        let results = submit_together(join_all(writes)).await;
        results
            .into_iter()
            .map(|(shard, result)| {
                let slot = self.slot(shard);
                let (device, extent) = self.address(shard);
                let result = match result {
                    Ok(()) => {
                        slot.counters.succeeded();
                        slot.extent_rewritten(extent);
                        slot.dirty.store(true, Ordering::Release);
                        Ok(())
                    }
                    Err(error) => {
                        self.local
                            .device_failed(device, Failure::Write, Some(extent), &error);
                        Err(format!("writing to {}: {error}", slot.spec))
                    }
                };
                (shard, result)
            })
            .collect()
    }
}

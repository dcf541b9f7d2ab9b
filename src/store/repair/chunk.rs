//! Repair of one chunk: read every shard, rebuild the ones that do not verify and write
//! them back in place; and [`LocalStore::shard_health`], which only reads and counts.
//!
//! **Architecture invariant:** a shard is written back only into its own chunk's space,
//! and only when the chunk is still indexed with the generation that was read; the repair
//! holds a `grace` pass from its lookup to its last write, so the space cannot have been
//! reused meanwhile.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures_util::future::join_all;

use crate::chunk::ChunkId;
use crate::erasure::ShardSet;
use crate::store::aligned::{AlignedBuf, SharedSlice};
use crate::store::device::{Engine, submit_together};
use crate::store::error::StoreError;
use crate::store::fetch::{Fault, HeaderSource, Window};
use crate::store::handle::LocalStore;
use crate::store::index::key_of;
use crate::store::shard::{self, HEADER_BYTES};
use crate::store::state::{UNRECOVERABLE_MAX, lock};
use crate::store::stripe::Stripe;

/// What a repair of one chunk found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RepairOutcome {
    /// Not stored any more (deleted meanwhile).
    Gone,
    /// Every shard on a usable device verified.
    Healthy,
    /// This many shards were rebuilt and written back.
    Repaired(usize),
    /// Fewer than `k` shards verified: nothing could be done.
    Unrecoverable,
}

/// What reading every shard of a chunk found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShardHealth {
    pub len_bytes: u64,
    pub data_shards: usize,
    pub parity_shards: usize,
    /// Shards whose header and every block verified.
    pub healthy: usize,
}

/// What reading every shard of a chunk found: the windows (scratch for the unsound ones),
/// the shards that verified, and the unsound shards on usable devices.
struct Reading {
    windows: Vec<Window>,
    present: ShardSet,
    /// Shards on usable devices that did not verify or could not be read.
    bad: ShardSet,
    /// Of `bad`, the shards whose device answered with bytes that failed verification (a
    /// checksum, or a header of another chunk or write) — evidence the shard is gone, as a
    /// read error is not: a device that failed a read may answer the next one.
    corrupt: ShardSet,
}

impl<E: Engine> LocalStore<E> {
    /// Reads and verifies every shard of `id`; `None` when it is not stored.
    pub async fn shard_health(&self, id: &ChunkId) -> Result<Option<ShardHealth>, StoreError> {
        let _pass = self.shared.grace.enter();
        let Some(entry) = self.shared.index.get(key_of(id)) else {
            return Ok(None);
        };
        let stripe = self.stripe(id, entry);
        let shard_len = stripe.layout.shard_len_bytes();
        let results = submit_together(join_all(
            (0..stripe.width()).map(|s| stripe.fetch_with(s, 0..shard_len, HeaderSource::Device)),
        ))
        .await;
        if results.iter().any(|r| matches!(r, Err(Fault::OtherChunk))) {
            return Ok(None);
        }
        let scheme = stripe.scheme();
        Ok(Some(ShardHealth {
            len_bytes: u64::from(entry.len_bytes),
            data_shards: scheme.data_shards(),
            parity_shards: scheme.parity_shards(),
            healthy: results.iter().filter(|r| r.is_ok()).count(),
        }))
    }

    /// Reads every shard of `id` and rewrites the ones that do not verify.
    pub async fn repair(&self, id: &ChunkId) -> Result<RepairOutcome, StoreError> {
        let shared = &*self.shared;
        // Held from the lookup to the last write: the record's space is not reused meanwhile.
        let _pass = shared.grace.enter();
        let Some(entry) = shared.index.get(key_of(id)) else {
            return Ok(RepairOutcome::Gone);
        };
        let stripe = self.stripe(id, entry);
        let (k, w) = (stripe.scheme().data_shards(), stripe.width());
        let shard_len = stripe.layout.shard_len_bytes();
        let Reading {
            mut windows,
            present,
            bad,
            corrupt,
        } = read_all(&stripe).await;
        if bad.is_empty() {
            return Ok(RepairOutcome::Healthy);
        }
        if present.len() < k {
            shared
                .counters
                .chunks_unreadable
                .fetch_add(1, Ordering::Relaxed);
            // Lost only on evidence: every shard was read, and those that did not verify
            // came back corrupt — a read error (EIO, a ring failure) is no evidence, since
            // the device may answer later, so such a chunk stays unreadable (503) rather
            // than dropped. A second look rules out a flip on the way.
            if present.len() + corrupt.len() == w {
                let again = read_all(&stripe).await;
                if again.present.len() < k && again.present.len() + again.corrupt.len() == w {
                    self.drop_lost(id, entry.generation, again.present.len())
                        .await?;
                }
            }
            return Ok(RepairOutcome::Unrecoverable);
        }
        {
            let mut views: Vec<&mut [u8]> = windows
                .iter_mut()
                .map(|w| w.bytes_mut(0..shard_len))
                .collect();
            self.codec
                .borrow_mut()
                .rebuild(&mut views, present, bad)
                .expect("k shards verified");
        }
        // Write only if the chunk is still the one we read (a chunk deleted meanwhile is not
        // rewritten; its space is still not reused, as this repair holds a pass).
        if shared.index.get(key_of(id)) != Some(entry) {
            return Ok(RepairOutcome::Gone);
        }
        let repaired = write_back(&stripe, bad, &mut windows).await;
        shared
            .counters
            .shards_repaired
            .fetch_add(repaired as u64, Ordering::Relaxed);
        Ok(RepairOutcome::Repaired(repaired))
    }
}

impl<E: Engine> LocalStore<E> {
    /// Every device answered and fewer than `k` shards of `id` (stored as `generation`)
    /// verified: the chunk is lost. It is dropped from the catalog, so it answers 404 from
    /// now on (a miss a client or an origin can fill) and no read of it touches a device
    /// again; counted and logged once, by whoever drops it. Until the drop is committed it
    /// is remembered as lost, so a PUT stores it afresh meanwhile; the drop removes only
    /// the copy `generation` wrote, never a fresh one.
    async fn drop_lost(
        &self,
        id: &ChunkId,
        generation: u64,
        healthy: usize,
    ) -> Result<(), StoreError> {
        let shared = &*self.shared;
        {
            let mut lost = lock(&shared.unrecoverable);
            if lost.len() < UNRECOVERABLE_MAX {
                lost.insert(*id);
            }
        }
        let dropped = self.remove(id, Some(generation)).await;
        lock(&shared.unrecoverable).remove(id);
        if dropped? {
            shared.counters.chunks_lost.fetch_add(1, Ordering::Relaxed);
            tracing::error!(chunk = %id, healthy, "chunk lost: too few sound shards; dropped from the catalog (404 until stored again)");
        }
        Ok(())
    }
}

/// Reads and verifies every shard of `stripe`, headers from the device.
async fn read_all<E: Engine>(stripe: &Stripe<'_, E>) -> Reading {
    let shard_len = stripe.layout.shard_len_bytes();
    let results = submit_together(join_all(
        (0..stripe.width()).map(|s| stripe.fetch_with(s, 0..shard_len, HeaderSource::Device)),
    ))
    .await;
    let mut reading = Reading {
        windows: Vec::with_capacity(stripe.width()),
        present: ShardSet::empty(),
        bad: ShardSet::empty(),
        corrupt: ShardSet::empty(),
    };
    for (s, result) in results.into_iter().enumerate() {
        match result {
            Ok(window) => {
                reading.present = reading.present.with(s);
                reading.windows.push(window);
            }
            Err(fault) => {
                if stripe.usable(s) {
                    reading.bad = reading.bad.with(s);
                    if matches!(fault, Fault::Corrupt(_) | Fault::OtherChunk) {
                        reading.corrupt = reading.corrupt.with(s);
                    }
                }
                reading.windows.push(Window::scratch(0..shard_len));
            }
        }
    }
    reading
}

/// Writes the rebuilt `bad` shards of `windows` back in place, with fresh headers; returns
/// how many were written.
async fn write_back<E: Engine>(
    stripe: &Stripe<'_, E>,
    bad: ShardSet,
    windows: &mut [Window],
) -> usize {
    let shard_len = stripe.layout.shard_len_bytes();
    let writes = bad
        .iter()
        .map(|s| {
            let window = std::mem::replace(&mut windows[s], Window::scratch(0..0));
            let mut header = AlignedBuf::scratch(HEADER_BYTES);
            let data_start = window.data_start;
            shard::encode_header(
                &stripe.identity(s),
                &window.buf[data_start..data_start + shard_len],
                &mut header,
            );
            let mut parts = vec![SharedSlice::whole(Arc::new(header))];
            if shard_len > 0 {
                parts.push(SharedSlice::new(
                    Arc::new(window.buf),
                    data_start..data_start + shard_len,
                ));
            }
            (s, parts)
        })
        .collect();
    let mut repaired = 0;
    for (shard, result) in stripe.write(writes).await {
        match result {
            Ok(()) => repaired += 1,
            Err(error) => {
                tracing::warn!(chunk = %stripe.id, shard, %error, "repair write failed");
            }
        }
    }
    repaired
}

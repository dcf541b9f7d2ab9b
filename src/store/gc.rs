//! The operations on manifests and GC that [`Store`] offers, what a read of an expired
//! chunk does, and the periodic sweeper.
//!
//! Each durable operation is a request to the commit thread (`commit_refs`), awaited on a
//! oneshot channel, so a core never blocks on a catalog commit; reads of manifests are one
//! short catalog read transaction. A sweep is a series of commit-thread transactions of up
//! to `SWEEP_BATCH` expiries each (the periodic ones run on the `sweeper` thread).
//!
//! **Architecture invariant:** manifests and counts change only on the commit thread.

use std::sync::atomic::Ordering;
use std::time::Instant;

use crossbeam::channel::Sender;
use tokio::sync::oneshot;

use super::commit::Request;
use super::commit_refs::RefsRequest;
use super::device::Engine;
use super::error::StoreError;
use super::handle::{LocalStore, Store};
use super::index::key_of;
use super::refs::{GcStats, ManifestName, ManifestPut, RefState, SweepReport};
use super::sweeper::finish_sweep;
use crate::chunk::ChunkId;

impl<E: Engine> Store<E> {
    /// Stores manifest `name` listing `chunks` (in order, repeats allowed), replacing any
    /// manifest of that name; counts change by the difference. Answers which distinct
    /// chunks the store does not hold.
    pub async fn put_manifest(
        &self,
        name: &ManifestName,
        chunks: Vec<ChunkId>,
    ) -> Result<ManifestPut, StoreError> {
        let name = name.as_str().to_owned();
        ask(self.commits(), |reply| RefsRequest::PutManifest {
            name,
            ids: chunks,
            reply,
        })
        .await
    }

    /// The chunks manifest `name` lists, in order, or `None` if there is no such manifest.
    pub fn manifest(&self, name: &ManifestName) -> Result<Option<Vec<ChunkId>>, StoreError> {
        Ok(self.shared().catalog.manifest(name.as_str())?)
    }

    /// Deletes manifest `name`: each distinct chunk it listed loses one reference. Returns
    /// whether it existed.
    pub async fn delete_manifest(&self, name: &ManifestName) -> Result<bool, StoreError> {
        let name = name.as_str().to_owned();
        ask(self.commits(), |reply| RefsRequest::DeleteManifest {
            name,
            reply,
        })
        .await
    }

    /// The names of every live manifest, sorted.
    pub fn manifest_names(&self) -> Result<Vec<ManifestName>, StoreError> {
        let names = self.shared().catalog.manifest_names()?;
        // Names were checked when their manifests were put.
        Ok(names
            .iter()
            .filter_map(|name| ManifestName::parse(name).ok())
            .collect())
    }

    /// Sweeps now: deletes every expired chunk whose grace has passed (by the GC clock).
    pub async fn sweep(&self) -> Result<SweepReport, StoreError> {
        let started = Instant::now();
        let mut report = SweepReport::default();
        loop {
            let batch = ask(self.commits(), |reply| RefsRequest::Sweep { reply }).await?;
            if !report.add(&batch) {
                break;
            }
        }
        finish_sweep(self.shared(), report, started)
    }

    /// Where chunk `id` stands with respect to the manifests (it need not be stored).
    pub fn chunk_refs(&self, id: &ChunkId) -> Result<RefState, StoreError> {
        let shared = self.shared();
        let Some(count) = shared.catalog.count(id)? else {
            return Ok(RefState::Unreferenced);
        };
        if count.refs > 0 {
            return Ok(RefState::Referenced { refs: count.refs });
        }
        let used = shared
            .index
            .get_with_flags(key_of(id))
            .is_some_and(|(_, flags)| flags.cancelled);
        Ok(if used {
            RefState::Unreferenced
        } else {
            RefState::Expired {
                since_ms: count.expired_at_ms,
            }
        })
    }

    /// Calls `listener` with every chunk a sweep deletes, after its removal is committed
    /// (the node drops it from its memory tier, so a deleted chunk is not served from
    /// there). Once per store; a second listener is refused (returns false).
    pub fn on_swept(&self, listener: impl Fn(&ChunkId) + Send + Sync + 'static) -> bool {
        self.shared().swept.set(Box::new(listener)).is_ok()
    }

    /// Counts of manifests, references, pins, expiries and sweeps.
    pub fn gc_stats(&self) -> GcStats {
        let shared = self.shared();
        let tally = shared.index.tally();
        let gc = &shared.gc;
        let load = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
        GcStats {
            manifests: load(&gc.manifests),
            referenced_chunks: load(&gc.referenced),
            referenced_stored_chunks: tally.referenced.chunks,
            referenced_stored_bytes: tally.referenced.bytes,
            pinned_chunks: tally.pinned.chunks,
            pinned_bytes: tally.pinned.bytes,
            expired_chunks: tally.expired.chunks,
            expired_bytes: tally.expired.bytes,
            expired_reads: load(&gc.expired_reads),
            sweeps: load(&gc.sweeps),
            swept_chunks: load(&gc.swept_chunks),
            swept_bytes: load(&gc.swept_bytes),
            sweep_micros: load(&gc.sweep_micros),
            last_sweep_micros: load(&gc.last_sweep_micros),
        }
    }
}

impl<E: Engine> LocalStore<E> {
    /// A read (or a PUT) used chunk `id`, which is expired: counted, logged, and its
    /// deletion cancelled — unless a sweep or an eviction is removing it right now.
    pub(super) fn expired_read(&self, id: &ChunkId) {
        let shared = &*self.shared;
        shared.gc.expired_reads.fetch_add(1, Ordering::Relaxed);
        if shared.index.cancel_expiry(key_of(id)) {
            tracing::warn!(
                chunk = %id,
                "a chunk no manifest names was read during its grace period; its deletion is \
                 cancelled (is a manifest missing?)"
            );
            let _ = self
                .store
                .commits()
                .send(Request::Refs(RefsRequest::Unexpire { id: *id }));
        } else {
            tracing::warn!(chunk = %id, "a chunk no manifest names was read while being removed");
        }
    }
}

/// Sends a request to the commit thread and waits for its answer.
async fn ask<T>(
    commits: &Sender<Request>,
    request: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> RefsRequest,
) -> Result<T, StoreError> {
    let (reply, answer) = oneshot::channel();
    commits
        .send(Request::Refs(request(reply)))
        .map_err(|_| StoreError::Catalog("the commit thread has stopped".into()))?;
    answer
        .await
        .map_err(|_| StoreError::Catalog("the commit thread dropped a request".into()))?
}

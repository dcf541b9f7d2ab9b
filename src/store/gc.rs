//! The operations on manifests and GC that [`Store`] offers, and the periodic sweeper.
//!
//! Each durable operation is a request to the commit thread (`commit_refs`), awaited on a
//! oneshot channel, so a core never blocks on a catalog commit; reads of manifests are one
//! short catalog read transaction.
//!
//! **Architecture invariant:** manifests and counts change only on the commit thread.

use super::device::Engine;
use super::error::StoreError;
use super::handle::Store;
use super::refs::{GcStats, ManifestName, ManifestPut, RefState, SweepReport};
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
        let _ = (name, chunks);
        todo!("issue 13: in progress")
    }

    /// The chunks manifest `name` lists, in order, or `None` if there is no such manifest.
    pub fn manifest(&self, name: &ManifestName) -> Result<Option<Vec<ChunkId>>, StoreError> {
        let _ = name;
        todo!("issue 13: in progress")
    }

    /// Deletes manifest `name`: each distinct chunk it listed loses one reference. Returns
    /// whether it existed.
    pub async fn delete_manifest(&self, name: &ManifestName) -> Result<bool, StoreError> {
        let _ = name;
        todo!("issue 13: in progress")
    }

    /// The names of every live manifest, sorted.
    pub fn manifest_names(&self) -> Result<Vec<ManifestName>, StoreError> {
        todo!("issue 13: in progress")
    }

    /// Sweeps now: deletes every expired chunk whose grace has passed (by the GC clock).
    pub async fn sweep(&self) -> Result<SweepReport, StoreError> {
        todo!("issue 13: in progress")
    }

    /// Where chunk `id` stands with respect to the manifests (it need not be stored).
    pub fn chunk_refs(&self, id: &ChunkId) -> Result<RefState, StoreError> {
        let _ = id;
        todo!("issue 13: in progress")
    }

    /// Counts of manifests, references, pins, expiries and sweeps.
    pub fn gc_stats(&self) -> GcStats {
        todo!("issue 13: in progress")
    }
}

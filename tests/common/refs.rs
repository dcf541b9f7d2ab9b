//! Helpers of the manifest and GC tests (issue 13): distinct test chunks, manifest names,
//! and the reference counts a store's manifests imply, to compare with what it reports.

use std::collections::{BTreeMap, BTreeSet};

use chunkd::chunk::ChunkId;
use chunkd::erasure::Scheme;
use chunkd::store::{
    DEFAULT_MAX_CHUNK_BYTES, Engine, LocalStore, ManifestName, PutOutcome, Store, StoreError,
    VerifiedChunk,
};

/// Test chunk `n` of the family `seed`: `len` bytes (at least 16), the first 16 being
/// `seed` and `n`, so no two chunks of any test are alike (a delete or sweep of one never
/// takes another with it).
pub fn distinct_chunk(seed: u64, n: u64, len: usize) -> (ChunkId, Vec<u8>) {
    let mut bytes = super::chunk_bytes(seed, n, len.max(16));
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    bytes[8..16].copy_from_slice(&n.to_le_bytes());
    (ChunkId::of(&bytes), bytes)
}

/// Puts `bytes` (a whole chunk) with the default scheme.
pub async fn put_bytes<E: Engine>(
    local: &LocalStore<E>,
    bytes: &[u8],
) -> Result<PutOutcome, StoreError> {
    let chunk = VerifiedChunk::from_slice(bytes, Scheme::DEFAULT, DEFAULT_MAX_CHUNK_BYTES)
        .expect("a test chunk is within the limit");
    local.put(chunk).await
}

/// Reads chunk `id` whole: `Ok(true)` when it is stored and reads back as exactly
/// `bytes`, `Ok(false)` when it reads back as other bytes, `Err(NotFound)` when absent.
pub async fn reads_back<E: Engine>(
    local: &LocalStore<E>,
    id: &ChunkId,
    bytes: &[u8],
) -> Result<bool, StoreError> {
    let read = local.read(id, 0..bytes.len() as u64).await?;
    Ok(read.chunk_len_bytes == bytes.len() as u64 && super::same_bytes(&read, bytes))
}

/// The manifest name `text`, which the test knows is valid.
pub fn name(text: &str) -> ManifestName {
    ManifestName::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

/// The distinct ids of `ids`, in order of first occurrence.
pub fn first_occurrences<T: Ord + Copy>(ids: &[T]) -> Vec<T> {
    let mut seen = BTreeSet::new();
    ids.iter().copied().filter(|id| seen.insert(*id)).collect()
}

/// Every live manifest of `store`, by name, as the store lists and returns them.
pub fn manifests<E: Engine>(store: &Store<E>) -> BTreeMap<ManifestName, Vec<ChunkId>> {
    let names = store.manifest_names().expect("manifest names");
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "manifest_names() is sorted");
    names
        .into_iter()
        .map(|name| {
            let chunks = store
                .manifest(&name)
                .expect("a manifest read")
                .unwrap_or_else(|| panic!("manifest {name} is listed but cannot be read"));
            (name, chunks)
        })
        .collect()
}

/// The reference count of every chunk the manifests name: one per manifest naming it,
/// however often it names it.
pub fn implied_counts<'a>(
    manifests: impl IntoIterator<Item = &'a Vec<ChunkId>>,
) -> BTreeMap<ChunkId, u32> {
    let mut counts = BTreeMap::new();
    for chunks in manifests {
        for id in chunks.iter().collect::<BTreeSet<_>>() {
            *counts.entry(*id).or_insert(0) += 1;
        }
    }
    counts
}

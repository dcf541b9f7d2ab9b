//! The catalog's chunk table, shared by `catalog` (chunk records) and `catalog_refs`
//! (manifests and reference counts, which look chunks up in the same transactions): its
//! definition, the 16-byte record, and the id ranges of an index key.
//!
//! **Architecture invariant:** plain data; only `catalog` and `catalog_refs` open tables.

use redb::TableDefinition;

use crate::chunk::ChunkId;

/// Full 32-byte id → [`Record`].
pub(super) const CHUNKS: TableDefinition<&[u8; 32], &[u8; 16]> = TableDefinition::new("chunks");

/// Where a stored chunk is, as the catalog keeps it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    pub generation: u64,
    pub offset_blocks: u32,
    pub len_bytes: u32,
}

impl Record {
    pub(super) fn encode(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[0..8].copy_from_slice(&self.generation.to_le_bytes());
        out[8..12].copy_from_slice(&self.offset_blocks.to_le_bytes());
        out[12..16].copy_from_slice(&self.len_bytes.to_le_bytes());
        out
    }

    pub(super) fn decode(bytes: &[u8; 16]) -> Record {
        Record {
            generation: u64::from_le_bytes(bytes[0..8].try_into().expect("8 bytes")),
            offset_blocks: u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes")),
            len_bytes: u32::from_le_bytes(bytes[12..16].try_into().expect("4 bytes")),
        }
    }
}

/// The smallest and largest ids that share `id`'s first 8 bytes (the index key).
pub(super) fn prefix_bounds(id: &ChunkId) -> ([u8; 32], [u8; 32]) {
    let key = u64::from_le_bytes(id.as_bytes()[..8].try_into().expect("8 bytes"));
    key_bounds(key)
}

/// The smallest and largest ids whose index key is `key`.
pub(super) fn key_bounds(key: u64) -> ([u8; 32], [u8; 32]) {
    let (mut low, mut high) = ([0u8; 32], [0xffu8; 32]);
    low[..8].copy_from_slice(&key.to_le_bytes());
    high[..8].copy_from_slice(&key.to_le_bytes());
    (low, high)
}

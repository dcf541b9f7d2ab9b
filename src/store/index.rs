//! The in-memory index: chunk id → where its shards are. 24 bytes an entry, sharded so that
//! every core reads it at once without a global lock.
//!
//! An entry keys on the first 64 bits of the chunk id, not all 256: the other bits would
//! triple the index's memory. That is safe because (1) the catalog holds full ids and
//! refuses to store a chunk whose 64-bit prefix is already taken by another id, so the index
//! never holds two entries for one key, and (2) every read checks the *full* id in the shard
//! header it fetched, so a request for an unknown id that happens to share a prefix with a
//! stored one is answered "not found", never with the other chunk's bytes. Operations that
//! answer without reading shards (HEAD, PUT of a present chunk, `/meta`) confirm the full id
//! in the catalog.
//!
//! Memory: 24 bytes of entry plus one control byte in hashbrown's table, whose load stays
//! between 7/16 and 7/8: 29–57 bytes a chunk ([`Index::memory_bytes`] measures it).
//!
//! **Architecture invariant:** no I/O; shared by all threads (sharded `RwLock`s; a lookup
//! takes one shard's read lock for a few nanoseconds).

use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use hashbrown::HashTable;

use crate::chunk::ChunkId;

/// Independent shards of the table; a power of two.
const SHARDS: usize = 64;

/// Where one chunk is: 24 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    /// First 64 bits of the chunk id.
    pub key: u64,
    /// The write that stored the chunk; shard headers must carry the same.
    pub generation: u64,
    /// Offset of the chunk's shards in its group's partitions, in 4 KiB blocks.
    pub offset_blocks: u32,
    /// Length of the chunk.
    pub len_bytes: u32,
}

const _: () = assert!(std::mem::size_of::<Entry>() == 24);

/// The index. Cheap to share behind an `Arc`.
pub struct Index {
    shards: Box<[RwLock<HashTable<Entry>>]>,
}

/// The key of a chunk id.
pub fn key_of(id: &ChunkId) -> u64 {
    u64::from_le_bytes(id.as_bytes()[0..8].try_into().expect("8 bytes"))
}

impl Default for Index {
    fn default() -> Index {
        Index {
            shards: (0..SHARDS).map(|_| RwLock::new(HashTable::new())).collect(),
        }
    }
}

impl Index {
    // Keys are uniform hash bits already: the key is its own hash. The shard comes from
    // bits 32..38, which hashbrown uses neither for the bucket (low bits) nor for the
    // control byte (top 7 bits), so shards do not skew either.
    fn shard(&self, key: u64) -> usize {
        (key >> 32) as usize % SHARDS
    }

    fn read(&self, key: u64) -> RwLockReadGuard<'_, HashTable<Entry>> {
        // A poisoned lock means a panic while inserting or removing one entry, which
        // cannot leave the table itself inconsistent; go on with it.
        self.shards[self.shard(key)]
            .read()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self, key: u64) -> RwLockWriteGuard<'_, HashTable<Entry>> {
        self.shards[self.shard(key)]
            .write()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// The entry with `key`.
    pub fn get(&self, key: u64) -> Option<Entry> {
        self.read(key).find(key, |e| e.key == key).copied()
    }

    /// Adds or replaces the entry with `entry.key`; returns the one it replaced.
    pub fn insert(&self, entry: Entry) -> Option<Entry> {
        let mut table = self.write(entry.key);
        match table.find_mut(entry.key, |e| e.key == entry.key) {
            Some(existing) => Some(std::mem::replace(existing, entry)),
            None => {
                table.insert_unique(entry.key, entry, |e| e.key);
                None
            }
        }
    }

    /// Removes the entry with `key` if it is `expected` (so a removal never takes out a
    /// newer entry); returns whether it did.
    pub fn remove_if(&self, key: u64, expected: &Entry) -> bool {
        let mut table = self.write(key);
        match table.find_entry(key, |e| e.key == key) {
            Ok(found) if found.get() == expected => {
                found.remove();
                true
            }
            _ => false,
        }
    }

    /// Number of chunks.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }

    /// Bytes the tables have allocated.
    pub fn memory_bytes(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                s.read()
                    .unwrap_or_else(|p| p.into_inner())
                    .allocation_size()
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u64) -> Entry {
        let key = key_of(&ChunkId::of(&n.to_le_bytes()));
        Entry {
            key,
            generation: n,
            offset_blocks: n as u32,
            len_bytes: 1000,
        }
    }

    #[test]
    fn insert_get_replace_remove() {
        let index = Index::default();
        assert_eq!(index.insert(entry(1)), None);
        assert_eq!(index.get(entry(1).key), Some(entry(1)));
        let newer = Entry {
            generation: 9,
            ..entry(1)
        };
        assert_eq!(index.insert(newer), Some(entry(1)));
        assert!(
            !index.remove_if(newer.key, &entry(1)),
            "an old entry does not remove a newer one"
        );
        assert!(index.remove_if(newer.key, &newer));
        assert_eq!(index.get(newer.key), None);
        assert_eq!(index.len(), 0);
    }

    #[test]
    fn memory_stays_under_64_bytes_a_chunk() {
        let index = Index::default();
        let mut worst = 0.0f64;
        for n in 0..200_000 {
            index.insert(entry(n));
            if n % 1000 == 999 {
                worst = worst.max(index.memory_bytes() as f64 / index.len() as f64);
            }
        }
        assert!(worst <= 64.0, "worst {worst:.1} bytes per chunk");
    }
}

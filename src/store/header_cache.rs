//! Each core's cache of verified shard headers: the block checksums of shards it has read,
//! so a later range read of the same shard fetches only its data window, not the header
//! too. Halves the I/Os of small range reads on hot chunks.
//!
//! Safe to trust: an entry was verified (header checksum, full chunk id, shard, generation)
//! when read, and is keyed by generation, so a chunk stored again in the same place is a
//! different key. A repair rewrites the same header. Bounded: the oldest entry goes first.
//!
//! **Architecture invariant:** per core, no locks; memory bounded by the entry limit.

use std::collections::VecDeque;

// hashbrown's default hasher (foldhash) rather than std's SipHash: the keys are not chosen
// by clients, and this lookup is on every range read.
use hashbrown::HashMap;
use std::rc::Rc;

use crate::chunk::ChunkId;

/// Which shard of which write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HeaderKey {
    pub key: u64,
    pub shard: u8,
    pub generation: u64,
}

/// What a verified header says that a read needs.
#[derive(Clone, Debug)]
pub struct CachedHeader {
    pub id: ChunkId,
    pub block_crcs: Rc<[u32]>,
}

/// First-in, first-out cache of headers.
pub struct HeaderCache {
    entries: HashMap<HeaderKey, CachedHeader>,
    order: VecDeque<HeaderKey>,
    capacity: usize,
}

impl HeaderCache {
    /// A cache of at most `capacity` headers (0 disables it).
    pub fn new(capacity: usize) -> HeaderCache {
        HeaderCache {
            entries: HashMap::new(),
            order: VecDeque::new(),
            capacity,
        }
    }

    /// The header of `key`, if cached.
    pub fn get(&mut self, key: &HeaderKey) -> Option<CachedHeader> {
        self.entries.get(key).cloned()
    }

    /// Caches a verified header, evicting the oldest entry when full.
    pub fn insert(&mut self, key: HeaderKey, header: CachedHeader) {
        if self.capacity == 0 {
            return;
        }
        if self.entries.insert(key, header).is_none() {
            self.order.push_back(key);
        }
        while self.entries.len() > self.capacity {
            let oldest = self
                .order
                .pop_front()
                .expect("every entry is in the order queue");
            self.entries.remove(&oldest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u64) -> HeaderKey {
        HeaderKey {
            key: n,
            shard: 0,
            generation: 1,
        }
    }

    fn header() -> CachedHeader {
        CachedHeader {
            id: ChunkId::of(b"x"),
            block_crcs: Rc::from(vec![1, 2, 3]),
        }
    }

    #[test]
    fn bounded_first_in_first_out() {
        let mut cache = HeaderCache::new(2);
        cache.insert(key(1), header());
        cache.insert(key(2), header());
        cache.insert(key(1), header());
        cache.insert(key(3), header());
        assert!(
            cache.get(&key(1)).is_none(),
            "the oldest insertion went first"
        );
        assert!(cache.get(&key(2)).is_some() && cache.get(&key(3)).is_some());
        let mut off = HeaderCache::new(0);
        off.insert(key(1), header());
        assert!(off.get(&key(1)).is_none());
    }
}

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
//! between 7/16 and 7/8: 29–57 bytes a chunk in one table. The shards are sized unequally
//! so that they are spread over that cycle, which keeps the whole index near the cycle's
//! mean, about 41 bytes a chunk, at every size ([`Index::memory_bytes`] measures it).
//!
//! The eviction policy's per-chunk state lives in the entry too, in the top byte of the
//! stored generation ([`Flags`]: hit count 0..=3, which queue, pinned), so it costs no
//! memory. Generations count writes from 1 and stay below 2^56 (a million PUTs a second
//! for two thousand years). The flags are an atomic word: a hit bumps its count under the
//! shard's *read* lock with a compare-and-swap, skipped when the count is already 3, so a
//! hot chunk's hits write nothing at all; the policy's own updates (on the evictor or a
//! PUT) use the same CAS, so neither loses the other's bits.
//!
//! **Architecture invariant:** no I/O; shared by all threads (sharded `RwLock`s; a lookup
//! takes one shard's read lock for a few nanoseconds).

use std::sync::atomic::{AtomicU64, Ordering};
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

/// Generations stay below this; the bits above hold [`Flags`].
pub const GENERATION_LIMIT: u64 = 1 << FLAGS_SHIFT;
const FLAGS_SHIFT: u32 = 56;
const FREQ_MASK: u8 = 0b11;
const MAIN: u8 = 1 << 2;
const PINNED: u8 = 1 << 3;
const EVICTING: u8 = 1 << 4;
const REFERENCED: u8 = 1 << 5;
const EXPIRED: u8 = 1 << 6;
const CANCELLED: u8 = 1 << 7;

/// The eviction policy's state of one chunk, kept in its index entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flags {
    /// Hits since it was last moved by the policy, 0..=3.
    pub freq: u8,
    /// In the policy's main queue (else the small one).
    pub main: bool,
    /// Not to be evicted: a live manifest names it on a node without an origin.
    pub pinned: bool,
    /// Given up by the policy and being removed (no longer in its queues).
    pub evicting: bool,
    /// A live manifest names it (pinned too unless an origin can fill it again).
    pub referenced: bool,
    /// No manifest names it any more and a sweep will delete it: out of the policy's
    /// queues, in its group's expired set, evicted before anything else.
    pub expired: bool,
    /// Expired, and a read has since used it: the commit thread is cancelling the expiry.
    pub cancelled: bool,
}

impl Flags {
    fn decode(tagged: u64) -> Flags {
        let bits = (tagged >> FLAGS_SHIFT) as u8;
        Flags {
            freq: bits & FREQ_MASK,
            main: bits & MAIN != 0,
            pinned: bits & PINNED != 0,
            evicting: bits & EVICTING != 0,
            referenced: bits & REFERENCED != 0,
            expired: bits & EXPIRED != 0,
            cancelled: bits & CANCELLED != 0,
        }
    }

    fn encode(self) -> u64 {
        let bits = (self.freq.min(3) & FREQ_MASK)
            | if self.main { MAIN } else { 0 }
            | if self.pinned { PINNED } else { 0 }
            | if self.evicting { EVICTING } else { 0 }
            | if self.referenced { REFERENCED } else { 0 }
            | if self.expired { EXPIRED } else { 0 }
            | if self.cancelled { CANCELLED } else { 0 };
        u64::from(bits) << FLAGS_SHIFT
    }
}

/// An entry as the table holds it: 24 bytes, the generation tagged with [`Flags`].
#[derive(Debug)]
struct Slot {
    key: u64,
    tagged: AtomicU64,
    offset_blocks: u32,
    len_bytes: u32,
}

const _: () = assert!(std::mem::size_of::<Slot>() == 24);

impl Slot {
    fn new(entry: Entry) -> Slot {
        debug_assert!(entry.generation < GENERATION_LIMIT);
        Slot {
            key: entry.key,
            tagged: AtomicU64::new(entry.generation),
            offset_blocks: entry.offset_blocks,
            len_bytes: entry.len_bytes,
        }
    }

    fn entry(&self) -> Entry {
        Entry {
            key: self.key,
            generation: self.tagged.load(Ordering::Relaxed) & (GENERATION_LIMIT - 1),
            offset_blocks: self.offset_blocks,
            len_bytes: self.len_bytes,
        }
    }

    fn flags(&self) -> Flags {
        Flags::decode(self.tagged.load(Ordering::Relaxed))
    }

    /// Changes the flags with `change` (a CAS loop; returns at once when nothing changes).
    /// As `update`, but `change` may refuse (`None`); returns whether the flags now are
    /// what it asked for.
    fn try_update(&self, mut change: impl FnMut(Flags) -> Option<Flags>) -> bool {
        self.tagged
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |tagged| {
                let after = change(Flags::decode(tagged))?;
                Some((tagged & (GENERATION_LIMIT - 1)) | after.encode())
            })
            .is_ok()
    }

    fn update(&self, change: impl Fn(Flags) -> Flags) {
        let _ = self
            .tagged
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |tagged| {
                let before = Flags::decode(tagged);
                let after = change(before);
                (after != before).then(|| (tagged & (GENERATION_LIMIT - 1)) | after.encode())
            });
    }
}

/// What a hit found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hit {
    Absent,
    Present,
    /// Present, expired, and not used since it expired.
    Expired,
}

/// Chunks and their bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Count {
    pub chunks: u64,
    pub bytes: u64,
}

impl Count {
    fn add(&mut self, bytes: u64) {
        self.chunks += 1;
        self.bytes += bytes;
    }
}

/// See [`Index::tally`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub referenced: Count,
    pub pinned: Count,
    pub expired: Count,
}

/// The index. Cheap to share behind an `Arc`.
pub struct Index {
    shards: Box<[RwLock<HashTable<Slot>>]>,
    /// Which shard each of [`SPREAD`] values of a key's bits 32.. goes to (see `Index::shard`).
    spread: Box<[u8]>,
}

/// Resolution of the shard weights.
const SPREAD: usize = 4096;

/// The key of a chunk id.
pub fn key_of(id: &ChunkId) -> u64 {
    u64::from_le_bytes(id.as_bytes()[0..8].try_into().expect("8 bytes"))
}

impl Default for Index {
    fn default() -> Index {
        // Shard `i` takes a share of keys proportional to 2^(i / SHARDS): the shards' sizes
        // spread evenly over one octave, so they double their tables at different times.
        let weights: Vec<f64> = (0..SHARDS)
            .map(|i| (i as f64 / SHARDS as f64).exp2())
            .collect();
        let total: f64 = weights.iter().sum();
        let mut spread = Vec::with_capacity(SPREAD);
        let mut below = 0.0;
        for (shard, weight) in weights.iter().enumerate() {
            below += weight / total;
            while spread.len() < SPREAD && (spread.len() as f64 + 0.5) / (SPREAD as f64) < below {
                spread.push(shard as u8);
            }
        }
        spread.resize(SPREAD, (SHARDS - 1) as u8);
        Index {
            shards: (0..SHARDS).map(|_| RwLock::new(HashTable::new())).collect(),
            spread: spread.into(),
        }
    }
}

impl Index {
    // Keys are uniform hash bits already: the key is its own hash. The shard comes from
    // bits 32..44, which hashbrown uses neither for the bucket (low bits) nor for the
    // control byte (top 7 bits), so shards do not skew either. Shards are deliberately
    // unequal (see `Index::default`): equal shards would all be at the same point of
    // hashbrown's load cycle (7/16 to 7/8 full), so the index would cost 57 bytes a chunk
    // just after they all doubled; spread over an octave, their average is about 41.
    fn shard(&self, key: u64) -> usize {
        usize::from(self.spread[(key >> 32) as usize % SPREAD])
    }

    fn read(&self, key: u64) -> RwLockReadGuard<'_, HashTable<Slot>> {
        // A poisoned lock means a panic while inserting or removing one entry, which
        // cannot leave the table itself inconsistent; go on with it.
        self.shards[self.shard(key)]
            .read()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self, key: u64) -> RwLockWriteGuard<'_, HashTable<Slot>> {
        self.shards[self.shard(key)]
            .write()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// The entry with `key`.
    pub fn get(&self, key: u64) -> Option<Entry> {
        self.read(key).find(key, |e| e.key == key).map(Slot::entry)
    }

    /// Adds or replaces the entry with `entry.key` (with `flags`); returns the one it
    /// replaced.
    pub fn insert(&self, entry: Entry, flags: Flags) -> Option<Entry> {
        let slot = Slot::new(entry);
        slot.update(|_| flags);
        let mut table = self.write(entry.key);
        match table.find_mut(entry.key, |e| e.key == entry.key) {
            Some(existing) => Some(std::mem::replace(existing, slot).entry()),
            None => {
                table.insert_unique(entry.key, slot, |e| e.key);
                None
            }
        }
    }

    /// Removes the entry with `key` if it is `expected` (so a removal never takes out a
    /// newer entry); returns its flags if it did.
    pub fn remove_if(&self, key: u64, expected: &Entry) -> Option<Flags> {
        let mut table = self.write(key);
        match table.find_entry(key, |e| e.key == key) {
            Ok(found) if found.get().entry() == *expected => {
                let flags = found.get().flags();
                found.remove();
                Some(flags)
            }
            _ => None,
        }
    }

    /// The entry with `key` and its flags.
    pub fn get_with_flags(&self, key: u64) -> Option<(Entry, Flags)> {
        self.read(key)
            .find(key, |e| e.key == key)
            .map(|slot| (slot.entry(), slot.flags()))
    }

    /// Counts a hit of the entry with `key` (its count goes up to 3) under the shard's read
    /// lock; says whether the entry is there and whether it is expired (and not yet
    /// cancelled), which the caller must handle (see `refs`).
    pub fn hit(&self, key: u64) -> Hit {
        let table = self.read(key);
        let Some(slot) = table.find(key, |e| e.key == key) else {
            return Hit::Absent;
        };
        let flags = slot.flags();
        if flags.freq < 3 {
            slot.update(|f| Flags {
                freq: (f.freq + 1).min(3),
                ..f
            });
        }
        if flags.expired && !flags.cancelled {
            Hit::Expired
        } else {
            Hit::Present
        }
    }

    /// Marks an expired entry as used (its expiry to be cancelled), unless it is being
    /// removed; returns whether it did. Atomic against [`Index::claim_expired`].
    pub fn cancel_expiry(&self, key: u64) -> bool {
        match self.read(key).find(key, |e| e.key == key) {
            Some(slot) => slot.try_update(|f| {
                (f.expired && !f.cancelled && !f.evicting).then_some(Flags {
                    cancelled: true,
                    ..f
                })
            }),
            None => false,
        }
    }

    /// Marks the entry with `key` and `generation`, expired and not used since, as being
    /// removed (by a sweep); returns whether it did.
    pub fn claim_expired(&self, key: u64, generation: u64) -> bool {
        match self.read(key).find(key, |e| e.key == key) {
            Some(slot) if slot.entry().generation == generation => slot.try_update(|f| {
                (f.expired && !f.cancelled && !f.evicting && !f.pinned).then_some(Flags {
                    evicting: true,
                    ..f
                })
            }),
            _ => false,
        }
    }

    /// Changes the entry's flags with `change`; returns them as they were, or `None` if
    /// the entry is not there.
    pub fn modify(&self, key: u64, change: impl Fn(Flags) -> Flags) -> Option<Flags> {
        let table = self.read(key);
        let slot = table.find(key, |e| e.key == key)?;
        let mut before = None;
        slot.try_update(|f| {
            before = Some(f);
            Some(change(f))
        });
        before
    }

    /// Chunks and bytes (lengths) referenced, pinned and expired, counted over the whole
    /// index (a few milliseconds a million chunks; for metrics).
    pub fn tally(&self) -> Tally {
        let mut tally = Tally::default();
        for shard in self.shards.iter() {
            let table = shard.read().unwrap_or_else(|p| p.into_inner());
            for slot in table.iter() {
                let flags = slot.flags();
                let len = u64::from(slot.len_bytes);
                if flags.referenced {
                    tally.referenced.add(len);
                }
                if flags.pinned {
                    tally.pinned.add(len);
                }
                if flags.expired && !flags.cancelled {
                    tally.expired.add(len);
                }
            }
        }
        tally
    }

    /// Sets the policy's part of the flags (count and queue), keeping the pin.
    pub fn set_policy(&self, key: u64, freq: u8, main: bool) {
        if let Some(slot) = self.read(key).find(key, |e| e.key == key) {
            slot.update(|f| Flags { freq, main, ..f });
        }
    }

    /// Marks the entry with `key` as being evicted (or not).
    pub fn set_evicting(&self, key: u64, evicting: bool) {
        if let Some(slot) = self.read(key).find(key, |e| e.key == key) {
            slot.update(|f| Flags { evicting, ..f });
        }
    }

    /// Pins the entry with `key` (or unpins it); returns whether it is there — a chunk
    /// already being evicted cannot be pinned and counts as gone. Atomic against
    /// [`Index::mark_evicting`]: a chunk is never both pinned and being evicted.
    pub fn set_pinned(&self, key: u64, pinned: bool) -> bool {
        match self.read(key).find(key, |e| e.key == key) {
            Some(slot) => {
                slot.try_update(|f| (!pinned || !f.evicting).then_some(Flags { pinned, ..f }))
            }
            None => false,
        }
    }

    /// Marks the entry with `key` as being evicted, unless it is pinned, already being
    /// removed (by an eviction or a sweep), or gone; returns whether it was marked.
    pub fn mark_evicting(&self, key: u64) -> bool {
        match self.read(key).find(key, |e| e.key == key) {
            Some(slot) => slot.try_update(|f| {
                (!f.pinned && !f.evicting).then_some(Flags {
                    evicting: true,
                    ..f
                })
            }),
            None => false,
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
        assert_eq!(index.insert(entry(1), Flags::default()), None);
        assert_eq!(index.get(entry(1).key), Some(entry(1)));
        let newer = Entry {
            generation: 9,
            ..entry(1)
        };
        assert_eq!(index.insert(newer, Flags::default()), Some(entry(1)));
        assert!(
            index.remove_if(newer.key, &entry(1)).is_none(),
            "an old entry does not remove a newer one"
        );
        assert!(index.remove_if(newer.key, &newer).is_some());
        assert_eq!(index.get(newer.key), None);
        assert_eq!(index.len(), 0);
    }

    #[test]
    fn flags_ride_in_the_generation_without_changing_it() {
        let index = Index::default();
        let big = Entry {
            generation: GENERATION_LIMIT - 1,
            ..entry(7)
        };
        index.insert(big, Flags::default());
        for hits in 1..=5u8 {
            assert_eq!(index.hit(big.key), Hit::Present);
            let (got, flags) = index.get_with_flags(big.key).unwrap();
            assert_eq!(got, big, "the generation is untouched");
            assert_eq!(flags.freq, hits.min(3));
        }
        index.set_policy(big.key, 0, true);
        assert!(index.set_pinned(big.key, true));
        let flags = index.get_with_flags(big.key).unwrap().1;
        assert_eq!(
            flags,
            Flags {
                freq: 0,
                main: true,
                pinned: true,
                ..Flags::default()
            }
        );
        index.set_policy(big.key, 2, false);
        assert!(index.get_with_flags(big.key).unwrap().1.pinned, "kept");
        assert_eq!(
            index.remove_if(big.key, &big).map(|f| (f.freq, f.main)),
            Some((2, false))
        );
        assert_eq!(index.hit(big.key), Hit::Absent);
        assert!(!index.set_pinned(big.key, true));
    }

    #[test]
    fn every_flag_survives_the_round_trip_alone_and_an_expired_hit_is_told() {
        let index = Index::default();
        let one = entry(9);
        let all = [
            Flags {
                freq: 3,
                ..Flags::default()
            },
            Flags {
                main: true,
                ..Flags::default()
            },
            Flags {
                pinned: true,
                ..Flags::default()
            },
            Flags {
                evicting: true,
                ..Flags::default()
            },
            Flags {
                referenced: true,
                ..Flags::default()
            },
            Flags {
                expired: true,
                ..Flags::default()
            },
            Flags {
                cancelled: true,
                ..Flags::default()
            },
        ];
        for flags in all {
            index.insert(one, flags);
            assert_eq!(index.get_with_flags(one.key), Some((one, flags)));
        }
        index.insert(
            one,
            Flags {
                expired: true,
                ..Flags::default()
            },
        );
        assert_eq!(index.hit(one.key), Hit::Expired);
        assert!(index.cancel_expiry(one.key));
        assert!(!index.cancel_expiry(one.key), "once");
        assert_eq!(index.hit(one.key), Hit::Present, "used: no longer told");
        assert!(
            !index.claim_expired(one.key, one.generation),
            "a used chunk is not swept"
        );
        index.insert(
            one,
            Flags {
                expired: true,
                ..Flags::default()
            },
        );
        assert!(
            !index.claim_expired(one.key, one.generation + 1),
            "another copy"
        );
        assert!(index.claim_expired(one.key, one.generation));
        assert!(!index.cancel_expiry(one.key), "too late once claimed");
    }

    #[test]
    fn memory_stays_under_64_bytes_a_chunk() {
        let index = Index::default();
        let mut worst = 0.0f64;
        for n in 0..200_000 {
            index.insert(entry(n), Flags::default());
            if n % 1000 == 999 {
                worst = worst.max(index.memory_bytes() as f64 / index.len() as f64);
            }
        }
        // 57 with equal shards, all doubling at once; about 42 with them spread.
        assert!(worst <= 46.0, "worst {worst:.1} bytes per chunk");
    }
}

//! The memory tier: verified chunk bytes kept in memory in front of flash, bounded in
//! bytes and in entries, evicted by S3-FIFO (`policy`).
//!
//! ```text
//! id ─▶ key (first 64 bits) ─▶ shard (key's top bits) ─▶ lock ─▶ full id confirmed
//!    ─▶ hit count bumped ─▶ Bytes cloned ─▶ unlock          (a hit: no policy call, no I/O)
//! ```
//!
//! The tier is cut into shards by key, each a `Mutex` over its own map and its own
//! [`S3Fifo`] with an equal share of the capacity, so the cores share it without one lock:
//! a hit locks one shard for a map lookup and a reference-count increment. Admission
//! copies the chunk into the tier's own memory (see `memory_bytes`) *outside* the lock,
//! then inserts it and evicts by S3-FIFO until the shard is within its bounds again — an
//! observer (which locks the shard) never sees it over them.
//!
//! Copies live in a memfd arena (`memory_bytes`): freed runs go back to the system at
//! once (punched out), and `--memory-send sendfile` can hand a hit's pages to the socket.
//!
//! **Bounds.** Each entry is charged its length rounded up to 4 KiB (at least 4 KiB), so
//! the byte bound also bounds entries: at most `capacity / 4096`. A response still sending
//! an evicted entry keeps its bytes alive until it is sent (bounded by the in-flight
//! budgets), so resident memory can exceed the bound by what is being sent.
//!
//! **Deletes.** `remove` drops the entry and advances the shard's epoch. An admission after
//! a flash read passes the epoch it saw before the read and is refused if it changed, so a
//! GET racing a DELETE cannot put the deleted chunk back.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;

use bytes::Bytes;

use super::memory_bytes::{Arena, TierBytes};
use super::policy::{Entries, Key, Queue, S3Fifo, bumped};
use crate::chunk::ChunkId;

/// Entries are charged in units of this many bytes (and at least one unit).
pub const CHARGE_UNIT_BYTES: u64 = 4096;

/// Capacity per shard the shard count aims at: large enough that S3-FIFO's small queue
/// (10 %) holds a dozen 512 KiB chunks and keys spread evenly, small enough for several
/// shards from a few hundred MiB.
const SHARD_TARGET_BYTES: u64 = 64 << 20;

/// The doorkeeper remembers one key per this many bytes of a shard's bound (a quarter of
/// a 512 KiB chunk): four times as many chunks as the shard holds.
const DOORKEEPER_BYTES_PER_KEY: u64 = 128 << 10;

/// Most shards (a power of two): more than the cores of any machine chunkd runs on
/// contend for one at a time.
const MAX_SHARDS: usize = 64;

/// What the memory tier counted; read at a `/metrics` scrape.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryStats {
    pub hits: u64,
    pub misses: u64,
    /// Entries evicted to make room (reason "capacity").
    pub evictions: u64,
    /// Admissions refused: larger than a shard, or nothing evictable.
    pub admissions_refused: u64,
    /// Bytes of chunk data held (not rounded).
    pub bytes: u64,
    /// Bytes charged against the bound (rounded up to 4 KiB each).
    pub charged_bytes: u64,
    pub chunks: u64,
    pub ghost_hits: u64,
}

/// What became of an admission.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Stored now.
    Admitted,
    /// Already held.
    Present,
    /// Refused for room (counted in `admissions_refused`).
    Refused,
    /// The chunk was deleted since the caller's read began (not counted).
    Stale,
}

/// A shard's delete epoch, taken before a flash read whose bytes may be admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Epoch(u64);

/// The memory tier, shared by every core.
pub struct MemoryTier {
    shards: Box<[Mutex<Shard>]>,
    /// log2 of the shard count.
    shard_bits: u32,
    capacity_bytes: u64,
    bytes: TierBytes,
}

struct Shard {
    entries: HashMap<Key, Entry>,
    policy: S3Fifo,
    max_entries: usize,
    /// The doorkeeper: keys read whole from flash once lately, oldest first.
    seen: HashSet<Key>,
    seen_order: VecDeque<Key>,
    max_seen: usize,
    deletes: u64,
    hits: u64,
    misses: u64,
    evictions: u64,
    refused: u64,
    data_bytes: u64,
}

struct Entry {
    id: ChunkId,
    bytes: Bytes,
    freq: u8,
    queue: Queue,
}

/// The map as the policy sees it.
struct Map<'a>(&'a mut HashMap<Key, Entry>);

impl Entries for Map<'_> {
    fn get(&mut self, key: Key) -> Option<(u32, u8, Queue)> {
        self.0
            .get(&key)
            .map(|e| (charge(e.bytes.len()), e.freq, e.queue))
    }

    fn set(&mut self, key: Key, freq: u8, queue: Queue) {
        if let Some(entry) = self.0.get_mut(&key) {
            entry.freq = freq;
            entry.queue = queue;
        }
    }
}

/// The policy key of `id`: its first 64 bits, as the store's index keys it.
pub fn key_of(id: &ChunkId) -> Key {
    u64::from_le_bytes(id.as_bytes()[0..8].try_into().expect("8 bytes"))
}

/// What an entry of `len` bytes is charged: rounded up to 4 KiB, at least 4 KiB.
pub fn charge(len: usize) -> u32 {
    let units = (len as u64).div_ceil(CHARGE_UNIT_BYTES).max(1);
    u32::try_from(units * CHARGE_UNIT_BYTES).unwrap_or(u32::MAX)
}

impl MemoryTier {
    /// A tier of at most `capacity_bytes` (0: holds nothing), with as many shards as
    /// [`SHARD_TARGET_BYTES`] suggests (a power of two, 1 to 64).
    pub fn new(capacity_bytes: u64) -> MemoryTier {
        let wanted = (capacity_bytes / SHARD_TARGET_BYTES).clamp(1, MAX_SHARDS as u64);
        let shard_bits = 63 - wanted.leading_zeros();
        Self::with_shards(capacity_bytes, shard_bits)
    }

    /// A tier of `2^shard_bits` shards (tests use this to force several small ones).
    pub fn with_shards(capacity_bytes: u64, shard_bits: u32) -> MemoryTier {
        let count = 1usize << shard_bits;
        let per_shard = capacity_bytes / count as u64;
        let shards = (0..count)
            .map(|_| {
                Mutex::new(Shard {
                    entries: HashMap::new(),
                    policy: S3Fifo::new(per_shard),
                    max_entries: (per_shard / CHARGE_UNIT_BYTES) as usize,
                    seen: HashSet::new(),
                    seen_order: VecDeque::new(),
                    max_seen: (per_shard / DOORKEEPER_BYTES_PER_KEY).max(64) as usize,
                    deletes: 0,
                    hits: 0,
                    misses: 0,
                    evictions: 0,
                    refused: 0,
                    data_bytes: 0,
                })
            })
            .collect();
        MemoryTier {
            shards,
            shard_bits,
            capacity_bytes: per_shard * count as u64,
            bytes: if capacity_bytes == 0 {
                TierBytes::heap()
            } else {
                TierBytes::new(capacity_bytes)
            },
        }
    }

    /// The bound on charged bytes (the configured capacity, rounded down to the shards).
    pub fn capacity_bytes(&self) -> u64 {
        self.capacity_bytes
    }

    /// The bound on entries.
    pub fn max_entries(&self) -> u64 {
        self.capacity_bytes / CHARGE_UNIT_BYTES
    }

    /// The memfd arena the tier's bytes live in (none: on the heap), for `sendfile`.
    pub fn arena(&self) -> Option<&std::sync::Arc<Arena>> {
        self.bytes.arena()
    }

    /// The shard count.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    fn shard(&self, key: Key) -> std::sync::MutexGuard<'_, Shard> {
        let index = if self.shard_bits == 0 {
            0
        } else {
            (key >> (64 - self.shard_bits)) as usize
        };
        self.shards[index]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The bytes of chunk `id` if the tier holds it (a hit, counted and bumped), else
    /// `None` (a miss, counted).
    pub fn get(&self, id: &ChunkId) -> Option<Bytes> {
        let key = key_of(id);
        let mut guard = self.shard(key);
        let shard = &mut *guard;
        match shard.entries.get_mut(&key) {
            Some(entry) if entry.id == *id => {
                entry.freq = bumped(entry.freq);
                shard.hits += 1;
                Some(entry.bytes.clone())
            }
            _ => {
                shard.misses += 1;
                None
            }
        }
    }

    /// True when the tier holds `id` (counts nothing, bumps nothing).
    pub fn contains(&self, id: &ChunkId) -> bool {
        self.peek_len(id).is_some()
    }

    /// The length of `id` if the tier holds it (counts nothing, bumps nothing).
    pub fn peek_len(&self, id: &ChunkId) -> Option<usize> {
        let key = key_of(id);
        let shard = self.shard(key);
        shard
            .entries
            .get(&key)
            .filter(|e| e.id == *id)
            .map(|e| e.bytes.len())
    }

    /// The doorkeeper of admission on a flash read: true when `id` was read whole from
    /// flash lately (it is forgotten then), else remembers it and says false. So a chunk
    /// enters memory from flash on its second whole read within the doorkeeper's window
    /// (one key per 128 KiB of the bound), and a stream of chunks read once — a scan, or a
    /// working set far larger than memory — costs no copy per read.
    pub fn second_look(&self, id: &ChunkId) -> bool {
        let key = key_of(id);
        let mut guard = self.shard(key);
        let shard = &mut *guard;
        if shard.seen.remove(&key) {
            return true;
        }
        if shard.seen_order.len() >= shard.max_seen {
            // Oldest first; a key taken out by a second look leaves a stale place here,
            // which costs one slot until it reaches the front.
            while let Some(old) = shard.seen_order.pop_front() {
                if shard.seen.remove(&old) || shard.seen_order.len() < shard.max_seen / 2 {
                    break;
                }
            }
        }
        shard.seen.insert(key);
        shard.seen_order.push_back(key);
        false
    }

    /// The delete epoch of `id`'s shard, to pass to [`MemoryTier::admit`] after a read.
    pub fn epoch(&self, id: &ChunkId) -> Epoch {
        Epoch(self.shard(key_of(id)).deletes)
    }

    /// Counts an admission of `id` refused before it was tried (no memory for its copy).
    pub fn count_refused(&self, id: &ChunkId) {
        self.shard(key_of(id)).refused += 1;
    }

    /// A copy of a chunk's bytes, given in `parts`, in the tier's own memory, for
    /// [`MemoryTier::admit`]. Made without holding any shard (512 KiB take tens of µs).
    pub fn copy(&self, parts: &[&[u8]]) -> Bytes {
        self.bytes.copy(parts)
    }

    /// Admits chunk `id` with its verified bytes (a [`MemoryTier::copy`]), evicting by
    /// S3-FIFO to make room. With `seen`, refused as stale if the chunk's shard saw a
    /// delete since that epoch was taken.
    pub fn admit(&self, id: &ChunkId, copy: Bytes, seen: Option<Epoch>) -> Admission {
        let key = key_of(id);
        let len = copy.len();
        let size = charge(len);
        let mut guard = self.shard(key);
        let shard = &mut *guard;
        if seen.is_some_and(|Epoch(e)| e != shard.deletes) {
            return Admission::Stale;
        }
        if shard.entries.contains_key(&key) {
            return Admission::Present;
        }
        if u64::from(size) > shard.policy.capacity_bytes() {
            shard.refused += 1;
            return Admission::Refused;
        }
        let queue = shard.policy.insert(key, size);
        shard.entries.insert(
            key,
            Entry {
                id: *id,
                bytes: copy,
                freq: 0,
                queue,
            },
        );
        shard.data_bytes += len as u64;
        while shard.policy.used_bytes() > shard.policy.capacity_bytes()
            || shard.entries.len() > shard.max_entries
        {
            let Some((victim, _)) = shard.policy.evict(&mut Map(&mut shard.entries), |_| false)
            else {
                break;
            };
            if let Some(gone) = shard.entries.remove(&victim) {
                shard.data_bytes -= gone.bytes.len() as u64;
                if victim != key {
                    shard.evictions += 1;
                }
            }
        }
        if shard.policy.used_bytes() > shard.policy.capacity_bytes()
            || shard.entries.len() > shard.max_entries
        {
            // Nothing more could be evicted: take the newcomer back out.
            if let Some(gone) = shard.entries.remove(&key) {
                shard.data_bytes -= gone.bytes.len() as u64;
                shard.policy.removed(key, size, gone.queue);
            }
        }
        if shard.entries.contains_key(&key) {
            Admission::Admitted
        } else {
            shard.refused += 1;
            Admission::Refused
        }
    }

    /// Drops chunk `id` (a DELETE); true if the tier held it.
    pub fn remove(&self, id: &ChunkId) -> bool {
        let key = key_of(id);
        let mut guard = self.shard(key);
        let shard = &mut *guard;
        shard.deletes += 1;
        match shard.entries.get(&key) {
            Some(entry) if entry.id == *id => {
                let gone = shard.entries.remove(&key).expect("just found");
                shard.data_bytes -= gone.bytes.len() as u64;
                shard
                    .policy
                    .removed(key, charge(gone.bytes.len()), gone.queue);
                true
            }
            _ => false,
        }
    }

    /// The counters and sizes of every shard, summed (each shard read under its lock, so
    /// each shard's part is within its bounds).
    pub fn stats(&self) -> MemoryStats {
        let mut total = MemoryStats::default();
        for shard in self.shards.iter() {
            let shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            total.hits += shard.hits;
            total.misses += shard.misses;
            total.evictions += shard.evictions;
            total.admissions_refused += shard.refused;
            total.bytes += shard.data_bytes;
            total.charged_bytes += shard.policy.used_bytes();
            total.chunks += shard.entries.len() as u64;
            total.ghost_hits += shard.policy.ghost_hits();
        }
        total
    }
}

#[cfg(test)]
#[path = "memory_tests.rs"]
mod tests;

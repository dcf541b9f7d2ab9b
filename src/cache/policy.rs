//! S3-FIFO (Yang et al., "FIFO queues are all you need for cache eviction", SOSP '23): the
//! replacement policy of every tier, over `u64` keys and byte sizes.
//!
//! Three queues. A new entry goes to the *small* FIFO (10 % of the capacity, by bytes).
//! When it reaches the small queue's head it moves to the *main* FIFO if it was read while
//! it waited (hit count ≥ 1), else it is evicted and its key remembered in the *ghost*. An
//! entry inserted while its key is in the ghost starts in main. At main's head an entry
//! with hits is reinserted at the tail with one hit fewer, else evicted. So a scan of
//! chunks read once passes through the small queue and never flushes main, and a hit
//! moves nothing: the tier bumps a 2-bit counter ([`bumped`]) in its own entry state.
//!
//! The policy owns only the queues, the byte accounting and the ghost. The per-entry state
//! (size, hit count, queue) lives with the tier behind [`Entries`], so the flash tier keeps
//! it in its index entry and the memory tier in its map. Removals are lazy: the tier drops
//! an entry and calls [`S3Fifo::removed`], and the key leaves its queue when it reaches the
//! head.
//!
//! Entries the tier cannot evict now (pinned, being read) are answered by `keep` in
//! [`S3Fifo::evict`] and treated like a hit: moved on (small → main, main → main's tail)
//! in O(1) each. When a whole pass finds nothing evictable, `evict` returns `None`.
//!
//! Memory: 8 bytes a resident key in its queue (a `VecDeque<u64>`, up to twice that while
//! the queue's buffer has room to grow), plus the ghost's 8 bytes per remembered key
//! (`policy_ghost`; it remembers as many keys as the main queue would hold, 90 % of the
//! entries). Measured by [`S3Fifo::memory_bytes`] in the test
//! `memory_per_entry_is_small`: 22.9 bytes an entry at 100,000 entries of one size (the
//! queues 8 a key plus `VecDeque` slack, the ghost 7).

use std::collections::VecDeque;

use hashbrown::HashMap;

use crate::cache::policy_ghost::Ghost;

/// A cache key: the chunk id's first 64 bits, as the store's index uses.
pub type Key = u64;

/// Which FIFO an entry is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Queue {
    Small,
    Main,
}

/// The per-entry state a tier keeps for the policy.
pub trait Entries {
    /// The entry's size in bytes, hit count (0..=3) and queue, or `None` if the tier no
    /// longer holds it.
    fn get(&mut self, key: Key) -> Option<(u32, u8, Queue)>;
    /// Sets the entry's hit count and queue (the policy resets counts and moves entries).
    fn set(&mut self, key: Key, freq: u8, queue: Queue);
}

/// The highest hit count: two bits.
pub const MAX_FREQ: u8 = 3;

/// What the tier does on a hit, without the policy: `freq = min(freq + 1, 3)`.
pub fn bumped(freq: u8) -> u8 {
    (freq + 1).min(MAX_FREQ)
}

/// The small queue's share of the capacity, in percent: the paper's and foyer's 10 %.
/// `tuning/sim_tables.py` with 5 % and 20 % moved the Zipf, scan and burst rows by under a
/// point of miss ratio (5 % a little better, 20 % a little worse); kept at the value the
/// paper validated on 6,594 production traces rather than fitted to synthetic ones.
const SMALL_PERCENT: u64 = 10;
/// Hits an entry needs while in the small queue to move to main rather than be evicted
/// (the paper's 1; 2 was up to 0.8 points worse in `tuning/sim_tables.py`).
const PROMOTE_AT_FREQ: u8 = 1;

/// One queue: its keys in FIFO order (live and lazily removed), and its live entries.
#[derive(Default)]
struct Fifo {
    keys: VecDeque<Key>,
    bytes: u64,
    len: usize,
    /// Keys removed by the tier whose occurrence is still in `keys`, with how many such
    /// occurrences: a key removed and inserted again is in a queue twice, and the older
    /// occurrence (always nearer the head) must be dropped, not taken for the entry.
    stale: HashMap<Key, u32>,
}

impl Fifo {
    fn push(&mut self, key: Key, size: u32) {
        self.keys.push_back(key);
        self.bytes += u64::from(size);
        self.len += 1;
    }

    fn forget(&mut self, size: u32) {
        self.bytes -= u64::from(size);
        self.len -= 1;
    }

    /// Pops the head's key and its state, dropping occurrences of removed keys on the way.
    fn pop_live(&mut self, entries: &mut impl Entries) -> Option<(Key, u32, u8)> {
        while let Some(key) = self.keys.pop_front() {
            if let Some(count) = self.stale.get_mut(&key) {
                *count -= 1;
                if *count == 0 {
                    self.stale.remove(&key);
                }
                continue;
            }
            // `None`: the tier dropped it without `removed` (its bytes are then wrong too).
            if let Some((size, freq, _)) = entries.get(key) {
                return Some((key, size, freq));
            }
        }
        None
    }

    /// Forgets the count of a queue found empty (see `S3Fifo::evict`).
    fn lost_track(&mut self) {
        self.len = 0;
        self.bytes = 0;
    }

    /// Gives back the queue's buffer when it holds four times the keys it has (a queue
    /// that held the whole cache while the other was empty, at start, would keep it).
    fn trim(&mut self) {
        if self.keys.capacity() > 4 * self.keys.len() + 1024 {
            self.keys.shrink_to(2 * self.keys.len());
        }
    }

    fn memory_bytes(&self) -> usize {
        self.keys.capacity() * size_of::<Key>() + self.stale.allocation_size()
    }
}

/// The S3-FIFO policy of one tier, bounded in bytes.
pub struct S3Fifo {
    capacity_bytes: u64,
    small: Fifo,
    main: Fifo,
    ghost: Ghost,
    ghost_hits: u64,
}

impl S3Fifo {
    /// An empty policy for `capacity_bytes`.
    pub fn new(capacity_bytes: u64) -> S3Fifo {
        S3Fifo {
            capacity_bytes,
            small: Fifo::default(),
            main: Fifo::default(),
            ghost: Ghost::new(),
            ghost_hits: 0,
        }
    }

    /// Records a new entry (the tier has just stored it with hit count 0; the key must not
    /// be held already) and returns its queue: `Main` if the key was in the ghost (counted
    /// as a ghost hit), else `Small`. The tier then evicts while over capacity.
    pub fn insert(&mut self, key: Key, size: u32) -> Queue {
        if self.ghost.take(key) {
            self.ghost_hits += 1;
            self.main.push(key, size);
            Queue::Main
        } else {
            self.small.push(key, size);
            Queue::Small
        }
    }

    /// Records an entry the tier held before a restart, in the queue it was in (if the
    /// tier kept that) or `Small`, without a ghost lookup. Restoring entries oldest first
    /// resumes the eviction order approximately. The tier then evicts while over capacity.
    pub fn restore(&mut self, key: Key, size: u32, queue: Queue) {
        self.fifo(queue).push(key, size);
    }

    /// The tier removed `key` (a delete, not an eviction), which was in `queue` with `size`
    /// bytes: fixes the byte accounting; the key leaves its queue lazily.
    pub fn removed(&mut self, key: Key, size: u32, queue: Queue) {
        let fifo = self.fifo(queue);
        fifo.forget(size);
        *fifo.stale.entry(key).or_insert(0) += 1;
    }

    /// Chooses the next victim by S3-FIFO and forgets it (the caller then drops it).
    ///
    /// `keep(key)` true means "cannot evict now" (pinned, in use): treated like a hit — a
    /// small entry moves to main, a main entry to main's tail, its count unchanged — so a
    /// pinned entry costs O(1) to skip. `None` when nothing is evictable: the small queue
    /// is empty and a whole pass of the main queue found only kept entries.
    pub fn evict(
        &mut self,
        entries: &mut impl Entries,
        mut keep: impl FnMut(Key) -> bool,
    ) -> Option<(Key, u32)> {
        // Consecutive kept entries seen at main's head. Once it reaches main's length the
        // queue has gone round once with nothing evictable (entries moved in from small
        // meanwhile were kept too, else the count restarted).
        let mut kept_in_main = 0;
        loop {
            let from_small = self.small.len > 0
                && (self.small.bytes > self.small_target_bytes() || kept_in_main >= self.main.len);
            if from_small {
                let Some((key, size, freq)) = self.small.pop_live(entries) else {
                    // Only if the tier dropped entries without `removed`: the queue counts
                    // entries it does not have. Its count starts afresh (rather than loop).
                    debug_assert!(false, "the small queue's count says it has live entries");
                    self.small.lost_track();
                    continue;
                };
                let kept = keep(key);
                if kept || freq >= PROMOTE_AT_FREQ {
                    // A promoted entry starts main with no hits (it earned its place; main's
                    // reinsertions need new ones). A kept one keeps its count.
                    let freq = if kept { freq } else { 0 };
                    if !kept {
                        kept_in_main = 0;
                    }
                    self.small.forget(size);
                    self.main.push(key, size);
                    entries.set(key, freq, Queue::Main);
                    continue;
                }
                self.remember(key);
                self.small.forget(size);
                self.small.trim();
                return Some((key, size));
            }
            if kept_in_main >= self.main.len {
                return None;
            }
            let Some((key, size, freq)) = self.main.pop_live(entries) else {
                debug_assert!(false, "the main queue's count says it has live entries");
                self.main.lost_track();
                return None;
            };
            if keep(key) {
                self.main.keys.push_back(key);
                kept_in_main += 1;
            } else if freq > 0 {
                self.main.keys.push_back(key);
                entries.set(key, freq - 1, Queue::Main);
                kept_in_main = 0;
            } else {
                self.main.forget(size);
                self.main.trim();
                return Some((key, size));
            }
        }
    }

    /// Bytes of the entries held.
    pub fn used_bytes(&self) -> u64 {
        self.small.bytes + self.main.bytes
    }

    pub fn capacity_bytes(&self) -> u64 {
        self.capacity_bytes
    }

    /// Changes the capacity; the tier then evicts while over it.
    pub fn set_capacity(&mut self, capacity_bytes: u64) {
        self.capacity_bytes = capacity_bytes;
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.small.len + self.main.len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Entries held in `queue`.
    pub fn queue_len(&self, queue: Queue) -> usize {
        match queue {
            Queue::Small => self.small.len,
            Queue::Main => self.main.len,
        }
    }

    /// Inserts that found their key in the ghost, since the policy was made.
    pub fn ghost_hits(&self) -> u64 {
        self.ghost_hits
    }

    /// Memory the policy's own structures hold (queues, ghost, stale-key maps).
    pub fn memory_bytes(&self) -> usize {
        size_of::<S3Fifo>()
            + self.small.memory_bytes()
            + self.main.memory_bytes()
            + self.ghost.memory_bytes()
    }

    fn fifo(&mut self, queue: Queue) -> &mut Fifo {
        match queue {
            Queue::Small => &mut self.small,
            Queue::Main => &mut self.main,
        }
    }

    /// Puts `key` in the ghost, sized to remember as many keys as the main queue holds
    /// entries when full (90 % of the capacity over the mean entry size), as the paper does.
    /// Half that or twice moved the Zipf rows of `tuning/sim_tables.py` by under a point;
    /// twice helped the loop a cache's 110 % long (0.85 → 0.72 at 1 %) for 8 more bytes a
    /// key, half hurt it: the paper's size.
    /// Called before `key` is forgotten, so the mean counts it and is never 0/0.
    fn remember(&mut self, key: Key) {
        let held = self.len().max(1) as u64;
        let mean_bytes = (self.used_bytes() / held).max(1);
        let main_bytes = self.capacity_bytes - self.small_target_bytes();
        self.ghost.resize((main_bytes / mean_bytes).max(1) as usize);
        self.ghost.insert(key);
    }

    fn small_target_bytes(&self) -> u64 {
        self.capacity_bytes * SMALL_PERCENT / 100
    }
}

//! The baselines chunkd's policy is compared with: FIFO, LRU and LRU-2, byte-bounded.
//!
//! One structure serves all three: the resident entries ordered by a rank, the lowest
//! evicted first. FIFO ranks by insertion, LRU by last access. LRU-2 (LRU-K with K = 2,
//! O'Neil, O'Neil and Weikum, SIGMOD '93) ranks by the *second-most-recent* access, so an
//! entry seen once (no second access: rank 0) goes before any entry seen twice, and ties
//! go by last access (LRU among them). Its history: the two last accesses of each resident
//! entry, and the last access of as many recently evicted keys as the cache holds entries
//! (the paper's "retained information", bounded here like S3-FIFO's ghost), so a key read
//! again soon after its eviction counts as seen twice. Clear rather than fast: a `BTreeSet`
//! keeps the order (O(log n) a request, about a second per million).

use std::collections::{BTreeSet, HashMap, VecDeque};

use crate::sim::replay::Simulated;

/// Which baseline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    Fifo,
    Lru,
    Lru2,
}

/// One resident entry.
struct Resident {
    size: u32,
    /// Its place in `order`.
    rank: (u64, u64),
    /// The access before the last (0: none known).
    penultimate: u64,
}

/// A byte-bounded cache evicting by a [`Rule`].
pub struct Baseline {
    rule: Rule,
    capacity_bytes: u64,
    used_bytes: u64,
    /// Requests so far: the clock of every rank (starts at 1; 0 means "never").
    clock: u64,
    resident: HashMap<u64, Resident>,
    order: BTreeSet<((u64, u64), u64)>,
    /// LRU-2's retained history: evicted key → its last access.
    history: HashMap<u64, u64>,
    /// The history's keys in eviction order, with the access they were stored with (an
    /// older occurrence of a key evicted again is skipped).
    history_order: VecDeque<(u64, u64)>,
}

impl Baseline {
    pub fn new(rule: Rule, capacity_bytes: u64) -> Baseline {
        Baseline {
            rule,
            capacity_bytes,
            used_bytes: 0,
            clock: 0,
            resident: HashMap::new(),
            order: BTreeSet::new(),
            history: HashMap::new(),
            history_order: VecDeque::new(),
        }
    }

    /// The rank of an entry last accessed at `last`, with the access before at
    /// `penultimate` (0 if none), inserted at `inserted`.
    fn rank(&self, inserted: u64, penultimate: u64, last: u64) -> (u64, u64) {
        match self.rule {
            Rule::Fifo => (inserted, 0),
            Rule::Lru => (last, 0),
            Rule::Lru2 => (penultimate, last),
        }
    }

    fn evict_one(&mut self) {
        let (rank, key) = self
            .order
            .pop_first()
            .expect("over capacity means not empty");
        let resident = self
            .resident
            .remove(&key)
            .expect("ordered keys are resident");
        self.used_bytes -= u64::from(resident.size);
        if self.rule == Rule::Lru2 {
            let last = rank.1;
            self.history.insert(key, last);
            self.history_order.push_back((key, last));
            while self.history.len() > self.resident.len().max(1) {
                let (old, stamp) = self.history_order.pop_front().expect("history is ordered");
                if self.history.get(&old) == Some(&stamp) {
                    self.history.remove(&old);
                }
            }
        }
    }
}

impl Simulated for Baseline {
    fn name(&self) -> &'static str {
        match self.rule {
            Rule::Fifo => "fifo",
            Rule::Lru => "lru",
            Rule::Lru2 => "lru2",
        }
    }

    fn request(&mut self, key: u64, size: u32) -> bool {
        self.clock += 1;
        let now = self.clock;
        if let Some(resident) = self.resident.get(&key) {
            let old_rank = resident.rank;
            let penultimate = match self.rule {
                Rule::Lru2 => old_rank.1,
                _ => 0,
            };
            let rank = self.rank(old_rank.0, penultimate, now);
            self.order.remove(&(old_rank, key));
            self.order.insert((rank, key));
            let resident = self.resident.get_mut(&key).expect("just found");
            resident.rank = rank;
            resident.penultimate = penultimate;
            return true;
        }
        let penultimate = self.history.remove(&key).unwrap_or(0);
        let rank = self.rank(now, penultimate, now);
        self.resident.insert(
            key,
            Resident {
                size,
                rank,
                penultimate,
            },
        );
        self.order.insert((rank, key));
        self.used_bytes += u64::from(size);
        while self.used_bytes > self.capacity_bytes {
            self.evict_one();
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hits of each request, as 'h' and '.'.
    fn run(rule: Rule, capacity: u64, keys: &[u64]) -> String {
        let mut cache = Baseline::new(rule, capacity);
        keys.iter()
            .map(|&k| if cache.request(k, 1) { 'h' } else { '.' })
            .collect()
    }

    #[test]
    fn fifo_ignores_hits_and_lru_does_not() {
        // Capacity 2: a b a c a — FIFO evicts a (oldest) for c; LRU evicts b.
        let keys = [1, 2, 1, 3, 1];
        assert_eq!(run(Rule::Fifo, 2, &keys), "..h..");
        assert_eq!(run(Rule::Lru, 2, &keys), "..h.h");
    }

    #[test]
    fn lru2_evicts_entries_seen_once_first() {
        // Capacity 2: a a b c a — LRU-2 keeps a (seen twice) and evicts b for c; LRU
        // evicts a (least recent) for c.
        let keys = [1, 1, 2, 3, 1];
        assert_eq!(run(Rule::Lru2, 2, &keys), ".h..h");
        assert_eq!(run(Rule::Lru, 2, &keys), ".h...");
    }

    #[test]
    fn lru2_remembers_evicted_keys() {
        // Capacity 1: a b a b — b evicts a, whose last access is remembered; a returns as
        // seen twice and b (seen once) is evicted, and then b returns seen twice too.
        let mut cache = Baseline::new(Rule::Lru2, 1);
        for key in [1, 2, 1] {
            assert!(!cache.request(key, 1));
        }
        assert_eq!(cache.resident[&1].penultimate, 1);
        assert!(cache.history.contains_key(&2));
    }

    #[test]
    fn sizes_are_bytes() {
        // Capacity 10: a 6-byte entry and a 5-byte one do not fit together.
        let mut cache = Baseline::new(Rule::Lru, 10);
        assert!(!cache.request(1, 6));
        assert!(!cache.request(2, 5));
        assert!(!cache.request(1, 6));
        assert_eq!(cache.used_bytes, 6);
    }
}

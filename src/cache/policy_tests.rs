//! Tests of [`crate::cache::policy`]: S3-FIFO's queue moves, pinned entries, lazy removal,
//! and properties over random operation sequences against a model of the tier.

use std::collections::{HashMap, HashSet};

use proptest::prelude::*;

use crate::cache::policy::{Entries, Key, MAX_FREQ, Queue, S3Fifo, bumped};

/// A tier as small as can be: the per-entry state in a map.
#[derive(Default)]
struct Tier {
    map: HashMap<Key, (u32, u8, Queue)>,
}

impl Entries for Tier {
    fn get(&mut self, key: Key) -> Option<(u32, u8, Queue)> {
        self.map.get(&key).copied()
    }
    fn set(&mut self, key: Key, freq: u8, queue: Queue) {
        let entry = self
            .map
            .get_mut(&key)
            .expect("the policy only sets held keys");
        entry.1 = freq;
        entry.2 = queue;
    }
}

impl Tier {
    fn put(&mut self, policy: &mut S3Fifo, key: Key, size: u32) {
        let queue = policy.insert(key, size);
        self.map.insert(key, (size, 0, queue));
    }

    fn hit(&mut self, key: Key) -> bool {
        match self.map.get_mut(&key) {
            Some(entry) => {
                entry.1 = bumped(entry.1);
                true
            }
            None => false,
        }
    }

    fn delete(&mut self, policy: &mut S3Fifo, key: Key) {
        if let Some((size, _, queue)) = self.map.remove(&key) {
            policy.removed(key, size, queue);
        }
    }

    /// Evicts until within capacity; false if `evict` gave up first.
    fn fit(&mut self, policy: &mut S3Fifo, keep: &HashSet<Key>) -> bool {
        while policy.used_bytes() > policy.capacity_bytes() {
            match policy.evict(self, |key| keep.contains(&key)) {
                Some((key, size)) => {
                    assert!(!keep.contains(&key), "evicted kept key {key}");
                    assert_eq!(self.map.remove(&key).map(|e| e.0), Some(size));
                }
                None => return false,
            }
        }
        true
    }

    /// One eviction with nothing pinned; the victim is dropped from the tier.
    fn evict(&mut self, policy: &mut S3Fifo) -> Option<(Key, u32)> {
        let victim = policy.evict(self, |_| false)?;
        self.map.remove(&victim.0);
        Some(victim)
    }

    /// A read: a hit bumps the count; a miss inserts and evicts until within capacity.
    fn get_or_put(&mut self, policy: &mut S3Fifo, key: Key, size: u32) -> bool {
        if self.hit(key) {
            return true;
        }
        self.put(policy, key, size);
        assert!(self.fit(policy, &HashSet::new()));
        false
    }
}

#[test]
fn hits_saturate_at_three() {
    assert_eq!(bumped(0), 1);
    assert_eq!(bumped(2), 3);
    assert_eq!(bumped(MAX_FREQ), MAX_FREQ);
}

#[test]
fn one_hit_entries_leave_from_the_small_queue_and_return_to_main() {
    let mut policy = S3Fifo::new(100);
    let mut tier = Tier::default();
    for key in 0..10 {
        tier.put(&mut policy, key, 10);
    }
    assert_eq!(policy.used_bytes(), 100);
    tier.hit(3);
    tier.put(&mut policy, 10, 10);
    // Small holds everything (main is empty): 0 goes first, to the ghost.
    assert_eq!(tier.evict(&mut policy), Some((0, 10)));
    // 0 comes back: the ghost sends it to main.
    assert_eq!(policy.insert(0, 10), Queue::Main);
    tier.map.insert(0, (10, 0, Queue::Main));
    assert_eq!(policy.ghost_hits(), 1);
    // 1 and 2 go; 3 was hit, so it moves to main with its count reset.
    assert_eq!(tier.evict(&mut policy), Some((1, 10)));
    assert_eq!(tier.evict(&mut policy), Some((2, 10)));
    assert_eq!(tier.evict(&mut policy), Some((4, 10)));
    assert_eq!(tier.map[&3], (10, 0, Queue::Main));
    assert_eq!(policy.queue_len(Queue::Main), 2);
}

#[test]
fn main_reinserts_entries_with_hits_and_decrements_them() {
    let mut policy = S3Fifo::new(100);
    let mut tier = Tier::default();
    // Fill main through the ghost: evict each once, then insert again.
    for key in 0..3 {
        tier.put(&mut policy, key, 10);
    }
    for key in 0..3 {
        assert_eq!(tier.evict(&mut policy), Some((key, 10)));
    }
    for key in 0..3 {
        tier.put(&mut policy, key, 10);
    }
    assert_eq!(policy.queue_len(Queue::Main), 3);
    tier.hit(0);
    tier.hit(0);
    tier.hit(1);
    // Small is empty: main's head 0 (2 hits) and 1 (1 hit) go round; 2 is evicted.
    assert_eq!(tier.evict(&mut policy), Some((2, 10)));
    assert_eq!(tier.map[&0].1, 1);
    assert_eq!(tier.map[&1].1, 0);
    assert_eq!(tier.evict(&mut policy), Some((1, 10)));
}

#[test]
fn kept_entries_are_skipped_and_a_pass_of_them_gives_up() {
    let mut policy = S3Fifo::new(100);
    let mut tier = Tier::default();
    for key in 0..10 {
        tier.put(&mut policy, key, 10);
    }
    let pinned: HashSet<Key> = (0..9).collect();
    assert_eq!(
        policy.evict(&mut tier, |k| pinned.contains(&k)),
        Some((9, 10))
    );
    tier.map.remove(&9);
    // All the rest are pinned: nothing to evict, and the accounting is unchanged.
    let mut asked = 0;
    assert_eq!(
        policy.evict(&mut tier, |k| {
            asked += 1;
            pinned.contains(&k)
        }),
        None
    );
    assert!(asked <= 2 * 9 + 1, "a pass asked {asked} times");
    assert_eq!(policy.used_bytes(), 90);
    assert_eq!(policy.len(), 9);
    // Unpinned, they are evictable again.
    assert!(policy.evict(&mut tier, |_| false).is_some());
}

#[test]
fn a_removed_key_inserted_again_is_not_taken_for_its_old_place() {
    let mut policy = S3Fifo::new(30);
    let mut tier = Tier::default();
    for key in 0..3 {
        tier.put(&mut policy, key, 10);
    }
    tier.delete(&mut policy, 0);
    assert_eq!(policy.used_bytes(), 20);
    tier.put(&mut policy, 0, 10);
    // 0's old place is at the head; it must be skipped, so 1 is the victim, not 0.
    assert_eq!(tier.evict(&mut policy), Some((1, 10)));
    assert_eq!(tier.evict(&mut policy), Some((2, 10)));
    assert_eq!(tier.evict(&mut policy), Some((0, 10)));
    assert_eq!(policy.used_bytes(), 0);
    assert_eq!(policy.evict(&mut tier, |_| false), None);
}

#[test]
fn restored_entries_keep_their_queue_and_order() {
    let mut policy = S3Fifo::new(100);
    let mut tier = Tier::default();
    for (key, queue) in [(0, Queue::Main), (1, Queue::Small), (2, Queue::Main)] {
        policy.restore(key, 40, queue);
        tier.map.insert(key, (40, 0, queue));
    }
    assert_eq!(policy.used_bytes(), 120);
    assert_eq!(policy.queue_len(Queue::Main), 2);
    // Small (40 bytes) is over its 10: 1 goes first; then main's oldest, 0.
    assert_eq!(tier.evict(&mut policy), Some((1, 40)));
    assert_eq!(tier.evict(&mut policy), Some((0, 40)));
}

#[test]
fn a_scan_of_one_hit_keys_does_not_flush_twice_hit_entries() {
    let size = 512 * 1024;
    let mut policy = S3Fifo::new(100 * size as u64);
    let mut tier = Tier::default();
    let hot: Vec<Key> = (0..50).collect();
    for _ in 0..3 {
        for &key in &hot {
            tier.get_or_put(&mut policy, key, size);
        }
    }
    // A scan of 10 × the capacity, each key read once, with the hot set read between.
    for round in 0..10u64 {
        for key in 0..100 {
            tier.get_or_put(&mut policy, 1_000_000 + round * 100 + key, size);
        }
        for &key in &hot {
            assert!(
                tier.get_or_put(&mut policy, key, size),
                "hot key {key} flushed"
            );
        }
    }
}

#[test]
fn memory_per_entry_is_small() {
    let size = 512 * 1024;
    let entries = 100_000u64;
    let mut policy = S3Fifo::new(entries * size as u64);
    let mut tier = Tier::default();
    // Twice the capacity through: the queues and the ghost reach their working sizes.
    for key in 0..2 * entries {
        tier.get_or_put(&mut policy, key, size);
        if key % 3 == 0 {
            tier.hit(key);
        }
    }
    let per_entry = policy.memory_bytes() as f64 / policy.len() as f64;
    println!("policy memory: {per_entry:.1} bytes an entry");
    assert!(per_entry <= 24.0, "{per_entry} bytes an entry");
}

/// One step of a tier's life.
#[derive(Clone, Debug)]
enum Op {
    Read { key: Key, size: u32 },
    Delete { key: Key },
    Pin { key: Key },
    Unpin { key: Key },
    Resize { capacity: u64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0..64u64, 1..100u32).prop_map(|(key, size)| Op::Read { key, size }),
        1 => (0..64u64).prop_map(|key| Op::Delete { key }),
        1 => (0..64u64).prop_map(|key| Op::Pin { key }),
        1 => (0..64u64).prop_map(|key| Op::Unpin { key }),
        1 => (100..2000u64).prop_map(|capacity| Op::Resize { capacity }),
    ]
}

proptest! {
    /// Byte accounting equals the live entries' sizes; `evict` never returns a kept key;
    /// evicting until it fits ends within capacity unless only kept entries are left.
    #[test]
    fn accounting_and_bounds_hold(ops in prop::collection::vec(op(), 1..400)) {
        let mut policy = S3Fifo::new(1000);
        let mut tier = Tier::default();
        let mut pinned = HashSet::new();
        for op in ops {
            match op {
                Op::Read { key, size } => {
                    if !tier.hit(key) {
                        tier.put(&mut policy, key, size);
                    }
                }
                Op::Delete { key } => tier.delete(&mut policy, key),
                Op::Pin { key } => { pinned.insert(key); }
                Op::Unpin { key } => { pinned.remove(&key); }
                Op::Resize { capacity } => policy.set_capacity(capacity),
            }
            let fits = tier.fit(&mut policy, &pinned);
            let live: u64 = tier.map.values().map(|e| u64::from(e.0)).sum();
            prop_assert_eq!(policy.used_bytes(), live);
            prop_assert_eq!(policy.len(), tier.map.len());
            if fits {
                prop_assert!(policy.used_bytes() <= policy.capacity_bytes());
            } else {
                // Gave up: every entry left is pinned.
                prop_assert!(tier.map.keys().all(|k| pinned.contains(k)));
            }
            let small = tier.map.values().filter(|e| e.2 == Queue::Small).count();
            prop_assert_eq!(policy.queue_len(Queue::Small), small);
        }
    }
}

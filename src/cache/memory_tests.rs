//! Unit tests of the memory tier: full-id confirmation, admission refusals, the delete
//! epoch, scan resistance through the policy, and the bounds under threads on every core.

use std::sync::atomic::{AtomicBool, Ordering};

use super::*;

/// An id whose first 64 bits are `key` and the rest `tail`.
fn id(key: u64, tail: u8) -> ChunkId {
    let mut bytes = [tail; 32];
    bytes[..8].copy_from_slice(&key.to_le_bytes());
    ChunkId::from_bytes(bytes)
}

/// The bytes chunk `id` is given in these tests (`len` of them, from its first byte).
fn content(id: &ChunkId, len: usize) -> Vec<u8> {
    let seed = id.as_bytes()[0];
    (0..len).map(|i| seed.wrapping_add(i as u8)).collect()
}

fn admit(tier: &MemoryTier, id: &ChunkId, len: usize) -> Admission {
    tier.admit(id, tier.copy(&[&content(id, len)]), None)
}

#[test]
fn a_hit_needs_the_full_id_not_just_its_key() {
    let tier = MemoryTier::new(8 << 20);
    let stored = id(7, 1);
    let twin = id(7, 2);
    assert_eq!(admit(&tier, &stored, 5000), Admission::Admitted);
    assert_eq!(admit(&tier, &stored, 5000), Admission::Present);
    assert_eq!(tier.get(&twin), None, "same key, another id");
    assert!(!tier.contains(&twin));
    assert!(!tier.remove(&twin), "removing the twin leaves the chunk");
    assert_eq!(
        tier.get(&stored).as_deref(),
        Some(&content(&stored, 5000)[..])
    );
    let s = tier.stats();
    assert_eq!((s.hits, s.misses, s.chunks, s.bytes), (1, 1, 1, 5000));
    assert_eq!(
        s.charged_bytes, 8192,
        "5000 bytes are charged two 4 KiB units"
    );
}

#[test]
fn a_chunk_larger_than_a_shard_is_refused_and_counted() {
    let tier = MemoryTier::with_shards(1 << 20, 1); // two shards of 512 KiB
    assert_eq!(admit(&tier, &id(1, 0), (512 << 10) + 1), Admission::Refused);
    assert_eq!(admit(&tier, &id(2, 0), 512 << 10), Admission::Admitted);
    let s = tier.stats();
    assert_eq!((s.admissions_refused, s.chunks), (1, 1));
}

#[test]
fn an_admission_after_a_delete_in_its_shard_is_stale() {
    let tier = MemoryTier::new(8 << 20);
    let chunk = id(9, 3);
    let seen = tier.epoch(&chunk);
    assert!(
        !tier.remove(&chunk),
        "a DELETE while the read was under way"
    );
    let copy = tier.copy(&[&content(&chunk, 100)]);
    assert_eq!(tier.admit(&chunk, copy, Some(seen)), Admission::Stale);
    assert!(!tier.contains(&chunk));
    let copy = tier.copy(&[&content(&chunk, 100)]);
    assert_eq!(
        tier.admit(&chunk, copy, Some(tier.epoch(&chunk))),
        Admission::Admitted
    );
    assert!(tier.remove(&chunk));
    assert_eq!(
        tier.stats().charged_bytes,
        0,
        "a delete gives its bytes back"
    );
}

#[test]
fn a_scan_of_one_hit_chunks_does_not_flush_the_hot_set() {
    // 64 units of 4 KiB; a hot set of 32 chunks read often, then 1,000 chunks read once.
    let tier = MemoryTier::new(64 * CHARGE_UNIT_BYTES);
    let hot: Vec<ChunkId> = (0..32).map(|i| id(i, 0)).collect();
    for _ in 0..4 {
        for chunk in &hot {
            if tier.get(chunk).is_none() {
                admit(&tier, chunk, 4096);
            }
        }
    }
    for i in 0..1000 {
        admit(&tier, &id(1_000_000 + i, 0), 4096);
    }
    let kept = hot.iter().filter(|c| tier.contains(c)).count();
    assert!(kept >= 24, "only {kept} of 32 hot chunks survived the scan");
    let s = tier.stats();
    assert!(
        s.charged_bytes <= tier.capacity_bytes() && s.evictions > 900,
        "{s:?}"
    );
}

#[test]
fn bounds_hold_while_every_core_admits_reads_and_deletes() {
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .max(2)
        * 2;
    let tier = MemoryTier::with_shards(4 << 20, 2);
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let sampler = scope.spawn(|| {
            let mut samples = 0u64;
            while !stop.load(Ordering::Relaxed) || samples == 0 {
                let s = tier.stats();
                assert!(s.charged_bytes <= tier.capacity_bytes(), "{s:?}");
                assert!(s.chunks <= tier.max_entries(), "{s:?}");
                samples += 1;
            }
            samples
        });
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let tier = &tier;
                scope.spawn(move || {
                    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ t as u64;
                    for _ in 0..3000 {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let chunk = id(((x >> 32) % 400).wrapping_mul(0x9e37_79b9_7f4a_7c15), 0);
                        let len = 1 + (x >> 20) as usize % (96 << 10);
                        match x % 10 {
                            0 => {
                                tier.remove(&chunk);
                            }
                            1..=4 => {
                                admit(tier, &chunk, len);
                            }
                            _ => {
                                if let Some(bytes) = tier.get(&chunk) {
                                    assert_eq!(&bytes[..], &content(&chunk, bytes.len())[..]);
                                }
                            }
                        }
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.join().expect("a worker");
        }
        stop.store(true, Ordering::Relaxed);
        assert!(sampler.join().expect("the sampler") > 0);
    });
    let s = tier.stats();
    assert!(s.charged_bytes <= tier.capacity_bytes());
    assert!(s.evictions > 0 && s.hits > 0, "{s:?}");
}

#[test]
fn the_doorkeeper_admits_on_a_second_look_and_forgets_old_keys() {
    let tier = MemoryTier::new(8 << 20); // one shard: 64 keys remembered
    let first = id(1, 0);
    assert!(!tier.second_look(&first), "a first read is only remembered");
    assert!(tier.second_look(&first), "a second read lately admits");
    assert!(!tier.second_look(&first), "and is forgotten again");
    for i in 0..200 {
        tier.second_look(&id(100 + i, 0));
    }
    assert!(!tier.second_look(&first), "pushed out by 200 newer keys");
    assert!(tier.second_look(&id(299, 0)), "a recent key is still known");
}

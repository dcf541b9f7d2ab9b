//! Manifests and GC at the store (issue 13), the basic path: counts follow manifests,
//! `missing` names what is not stored, a deleted manifest's chunks expire and a sweep past
//! the grace deletes them, a read during the grace cancels the deletion, and all of it
//! survives a restart. The model, crash and race tests are in `store_refs_*.rs`.

mod common;

use std::time::Duration;

use chunkd::chunk::ChunkId;
use chunkd::erasure::Scheme;
use chunkd::store::device::sim::SimEngine;
use chunkd::store::{GcClock, ManifestName, RefState, Store, StoreConfig, StoreError};
use common::{chunk_bytes, chunk_len, config, put, run};

const SEED: u64 = 0x13_0001;

fn gc_config(dir: &std::path::Path, clock: &GcClock) -> StoreConfig {
    let mut config = config(dir, 64, Scheme::DEFAULT);
    config.gc_clock = clock.clone();
    config.gc_grace = Duration::from_secs(10);
    config.gc_interval = Duration::ZERO;
    config
}

fn name(text: &str) -> ManifestName {
    ManifestName::parse(text).unwrap()
}

fn id_of(n: u64) -> ChunkId {
    ChunkId::of(&chunk_bytes(SEED, n, chunk_len(SEED, n)))
}

#[test]
fn counts_follow_manifests_and_a_sweep_deletes_only_what_expired_past_grace() {
    let dir = tempfile::tempdir().unwrap();
    let clock = GcClock::manual(1_000_000);
    let engine = SimEngine::new(SEED);
    run(async {
        let (store, _) = Store::open(gc_config(dir.path(), &clock), &engine).unwrap();
        let local = store.local().unwrap();
        for n in 0..3 {
            put(&local, Scheme::DEFAULT, SEED, n).await;
        }
        let ids: Vec<ChunkId> = (0..5).map(id_of).collect();
        // a: chunks 0, 1, 1, 3 (3 not stored); b: 1, 2.
        let a = store
            .put_manifest(&name("a"), vec![ids[0], ids[1], ids[1], ids[3]])
            .await
            .unwrap();
        assert!(a.created);
        assert_eq!((a.chunks, a.distinct), (4, 3));
        assert_eq!(a.missing, vec![ids[3]]);
        let b = store
            .put_manifest(&name("b"), vec![ids[1], ids[2]])
            .await
            .unwrap();
        assert!(b.missing.is_empty());
        assert_eq!(
            store.chunk_refs(&ids[1]).unwrap(),
            RefState::Referenced { refs: 2 }
        );
        assert_eq!(
            store.chunk_refs(&ids[3]).unwrap(),
            RefState::Referenced { refs: 1 }
        );
        assert_eq!(store.chunk_refs(&ids[4]).unwrap(), RefState::Unreferenced);
        let stats = store.gc_stats();
        assert_eq!((stats.manifests, stats.referenced_chunks), (2, 4));
        assert_eq!(
            (stats.pinned_chunks, stats.referenced_stored_chunks),
            (3, 3)
        );
        assert_eq!(store.manifest_names().unwrap(), vec![name("a"), name("b")]);
        assert_eq!(
            store.manifest(&name("a")).unwrap().unwrap(),
            vec![ids[0], ids[1], ids[1], ids[3]]
        );

        // Replace a with {1}: 0 expires, 3 (never stored) is forgotten.
        let replaced = store.put_manifest(&name("a"), vec![ids[1]]).await.unwrap();
        assert!(!replaced.created);
        assert_eq!(
            store.chunk_refs(&ids[0]).unwrap(),
            RefState::Expired {
                since_ms: 1_000_000
            }
        );
        assert_eq!(store.chunk_refs(&ids[3]).unwrap(), RefState::Unreferenced);
        assert_eq!(store.gc_stats().expired_chunks, 1);

        // Within the grace nothing goes.
        clock.advance(Duration::from_secs(9));
        let early = store.sweep().await.unwrap();
        assert_eq!((early.swept_chunks, early.expired_remaining), (0, 1));

        // Delete b: 2 expires now, later than 0.
        assert!(store.delete_manifest(&name("b")).await.unwrap());
        assert!(!store.delete_manifest(&name("b")).await.unwrap());
        clock.advance(Duration::from_secs(2));
        let swept = store.sweep().await.unwrap();
        assert_eq!(swept.swept_chunks, 1, "only 0 is past its grace");
        assert!(matches!(
            local.read(&ids[0], 0..1).await,
            Err(StoreError::NotFound)
        ));
        common::check(&local, SEED, 2).await;
        assert_eq!(
            store.gc_stats().expired_reads,
            1,
            "2 was read during its grace"
        );
        assert_eq!(store.chunk_refs(&ids[2]).unwrap(), RefState::Unreferenced);
        clock.advance(Duration::from_secs(60));
        let later = store.sweep().await.unwrap();
        assert_eq!((later.swept_chunks, later.expired_remaining), (0, 0));
        common::check(&local, SEED, 2).await;
        common::check(&local, SEED, 1).await;
        assert_eq!(store.gc_stats().swept_chunks, 1);
    });
}

#[test]
fn references_and_expiries_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let clock = GcClock::manual(5_000_000);
    let engine = SimEngine::new(SEED);
    let ids: Vec<ChunkId> = (10..13).map(id_of).collect();
    run(async {
        let (store, _) = Store::open(gc_config(dir.path(), &clock), &engine).unwrap();
        let local = store.local().unwrap();
        for n in 10..13 {
            put(&local, Scheme::DEFAULT, SEED, n).await;
        }
        store
            .put_manifest(&name("img"), vec![ids[0], ids[1]])
            .await
            .unwrap();
        store
            .put_manifest(&name("img"), vec![ids[0]])
            .await
            .unwrap();
    });
    run(async {
        let (store, _) = Store::open(gc_config(dir.path(), &clock), &engine).unwrap();
        assert_eq!(
            store.chunk_refs(&ids[0]).unwrap(),
            RefState::Referenced { refs: 1 }
        );
        assert_eq!(
            store.chunk_refs(&ids[1]).unwrap(),
            RefState::Expired {
                since_ms: 5_000_000
            }
        );
        let stats = store.gc_stats();
        assert_eq!((stats.manifests, stats.referenced_chunks), (1, 1));
        assert_eq!((stats.pinned_chunks, stats.expired_chunks), (1, 1));
        clock.advance(Duration::from_secs(11));
        assert_eq!(store.sweep().await.unwrap().swept_chunks, 1);
        assert_eq!(store.chunk_count(), 2);
    });
}

const PIN_LEN: usize = 256 << 10;

/// Pin test chunk `n`: 256 KiB, the first 8 bytes `n`.
fn pin_chunk(n: u64) -> (ChunkId, Vec<u8>) {
    let mut bytes = chunk_bytes(SEED ^ 3, n, PIN_LEN);
    bytes[..8].copy_from_slice(&n.to_le_bytes());
    (ChunkId::of(&bytes), bytes)
}

async fn put_pin(
    local: &chunkd::store::LocalStore<SimEngine>,
    n: u64,
) -> Result<chunkd::store::PutOutcome, StoreError> {
    let bytes = pin_chunk(n).1;
    let verified = chunkd::store::VerifiedChunk::from_slice(
        &bytes,
        Scheme::DEFAULT,
        chunkd::store::DEFAULT_MAX_CHUNK_BYTES,
    )
    .unwrap();
    local.put(verified).await
}

#[test]
fn chunks_live_manifests_name_are_never_evicted_and_expired_ones_go_first() {
    let dir = tempfile::tempdir().unwrap();
    let clock = GcClock::manual(9_000_000);
    let engine = SimEngine::new(SEED ^ 3);
    let mut config = config(dir.path(), 8, Scheme::DEFAULT);
    config.gc_clock = clock.clone();
    config.gc_interval = Duration::ZERO;
    run(async {
        let (store, _) = Store::open(config, &engine).unwrap();
        let local = store.local().unwrap();
        // Fill the node, naming every chunk in a manifest as it goes.
        let mut named = Vec::new();
        let refusal = loop {
            let n = named.len() as u64;
            match put_pin(&local, n).await {
                Ok(_) => {
                    named.push(pin_chunk(n).0);
                    store
                        .put_manifest(&name("all"), named.clone())
                        .await
                        .unwrap();
                }
                Err(error) => break error,
            }
            assert!(n < 1000, "an 8 MiB-device store never filled");
        };
        let message = refusal.to_string();
        assert!(
            matches!(refusal, StoreError::NoSpace { pinned_chunks, .. } if pinned_chunks > 0),
            "{message}"
        );
        assert!(message.contains("named by live manifests"), "{message}");
        for n in 0..named.len() as u64 {
            let (id, bytes) = pin_chunk(n);
            let read = local.read(&id, 0..PIN_LEN as u64).await.unwrap();
            assert!(common::same_bytes(&read, &bytes), "chunk {n}");
        }
        let stats = store.gc_stats();
        assert_eq!(stats.pinned_chunks, named.len() as u64);
        // Unname the first half: they expire and are evicted before anything else.
        let (gone, kept) = named.split_at(named.len() / 2);
        store
            .put_manifest(&name("all"), kept.to_vec())
            .await
            .unwrap();
        assert_eq!(store.gc_stats().expired_chunks, gone.len() as u64);
        let mut fresh = 0;
        for n in 10_000..10_000 + gone.len() as u64 / 2 {
            put_pin(&local, n).await.unwrap();
            fresh += 1;
        }
        assert!(fresh > 0);
        for (n, id) in named.iter().enumerate().skip(gone.len()) {
            let read = local.read(id, 0..PIN_LEN as u64).await;
            assert!(
                read.is_ok(),
                "named chunk {n} was evicted: {:?}",
                read.err()
            );
        }
        let mut evicted = 0;
        for id in gone {
            match local.read_uncounted(id, 0..1).await {
                Err(StoreError::NotFound) => evicted += 1,
                Ok(_) => {}
                Err(error) => panic!("{error}"),
            }
        }
        assert!(evicted > 0, "expired chunks were evicted to make room");
    });
}

/// A read of an expired chunk cancels its deletion before its I/O, so a sweep that runs
/// while the read waits on a slow device keeps the chunk the read is about to serve.
#[test]
fn a_sweep_during_a_slow_read_of_an_expired_chunk_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let clock = GcClock::manual(2_000_000);
    let engine = SimEngine::new(SEED ^ 4);
    run(async {
        let (store, _) = Store::open(gc_config(dir.path(), &clock), &engine).unwrap();
        let local = store.local().unwrap();
        let id = put(&local, Scheme::DEFAULT, SEED, 40).await;
        store.put_manifest(&name("m"), vec![id]).await.unwrap();
        store.delete_manifest(&name("m")).await.unwrap();
        clock.advance(Duration::from_secs(11));
        engine.set_faults(chunkd::store::device::sim::FaultPlan {
            latency: Some(Duration::from_millis(200)),
            ..Default::default()
        });
        let len = chunk_len(SEED, 40) as u64;
        let (read, swept) = tokio::join!(local.read(&id, 0..len), async {
            // Once the read has looked the chunk up and is waiting on the devices.
            tokio::time::sleep(Duration::from_millis(50)).await;
            store.sweep().await.unwrap()
        });
        engine.set_faults(chunkd::store::device::sim::FaultPlan::default());
        assert!(read.is_ok(), "the read is served: {:?}", read.err());
        assert_eq!(swept.swept_chunks, 0, "{swept:?}");
        assert_eq!(store.gc_stats().expired_reads, 1);
        common::check(&local, SEED, 40).await;
        assert_eq!(store.chunk_refs(&id).unwrap(), RefState::Unreferenced);
    });
}

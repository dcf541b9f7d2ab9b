//! Eviction on flash (issue 12): a full node keeps taking PUTs by evicting, within its
//! space, while reads race the evictions and never see a wrong byte; a restart serves what
//! flash held and evicts the oldest unhit chunks first; pinned chunks stay; space freed
//! under a read in flight waits for it; a working set three times the flash streams
//! through with no PUT refused. All on the simulated engine, several cores at once.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chunkd::chunk::ChunkId;
use chunkd::erasure::Scheme;
use chunkd::store::device::sim::{FaultPlan, SimEngine};
use chunkd::store::{
    DEFAULT_MAX_CHUNK_BYTES, LocalStore, PutOutcome, Store, StoreConfig, StoreError, VerifiedChunk,
};
use common::{Rng, config, run, same_bytes, wait_for};

/// How long a test waits for background work (the evictor) before failing.
const LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

const SEED: u64 = 0xe71c_0012;
/// Chunks of these tests: 256 KiB, so an 8 MiB-device store holds about a hundred.
const LEN: usize = 256 << 10;
/// Cores (threads with their own runtime and `LocalStore`) in the concurrent tests: more
/// than the machine has, so every core is busy.
const CORES: u64 = 4;

/// Test chunk `n`: `LEN` bytes, the first 8 being `n`, so no two are alike.
fn chunk(n: u64) -> (ChunkId, Vec<u8>) {
    let mut bytes = common::chunk_bytes(SEED, n, LEN);
    bytes[..8].copy_from_slice(&n.to_le_bytes());
    (ChunkId::of(&bytes), bytes)
}

fn small_store(dir: &std::path::Path) -> StoreConfig {
    config(dir, 8, Scheme::DEFAULT)
}

async fn put(local: &LocalStore<SimEngine>, n: u64) -> Result<PutOutcome, StoreError> {
    let bytes = chunk(n).1;
    let verified =
        VerifiedChunk::from_slice(&bytes, Scheme::DEFAULT, DEFAULT_MAX_CHUNK_BYTES).unwrap();
    local.put(verified).await
}

/// Reads chunk `n` whole: `Some(true)` byte-exact, `None` not stored; panics on a wrong
/// byte or any other error.
async fn read(local: &LocalStore<SimEngine>, n: u64) -> Option<bool> {
    let (id, bytes) = chunk(n);
    match local.read(&id, 0..LEN as u64).await {
        Ok(read) => {
            assert!(same_bytes(&read, &bytes), "chunk {n} read back wrong");
            Some(true)
        }
        Err(StoreError::NotFound) => None,
        Err(error) => panic!("chunk {n}: {error}"),
    }
}

fn stored(store: &Store<SimEngine>, n: u64) -> bool {
    store
        .list(None, usize::MAX)
        .unwrap()
        .iter()
        .any(|(id, _)| *id == chunk(n).0)
}

/// Space accounting holds exactly: the listed chunks' shards, the free and the pending
/// space add up to the devices' capacity (nothing leaked, nothing claimed twice). The
/// evictor may still be at work in the background: the sums are compared once two
/// snapshots around the listing agree (a bounded number of tries).
fn assert_space_adds_up(store: &Store<SimEngine>) {
    let mut last = None;
    for _ in 0..200 {
        let before = store.capacity();
        let listed: u64 = (store.list(None, usize::MAX).unwrap().iter())
            .map(|(_, len)| store.stored_bytes(*len))
            .sum();
        let after = store.capacity();
        let sum = listed + after.free_bytes + after.quarantined_bytes;
        if before == after && sum == after.total_bytes {
            return;
        }
        last = Some((listed, after));
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("listed shards, free and pending space do not add up to the capacity: {last:?}");
}

#[test]
fn a_full_node_keeps_accepting_puts_by_evicting() {
    let dir = tempfile::tempdir().unwrap();
    let engine = SimEngine::new(SEED);
    let (store, _) = Store::open(small_store(dir.path()), &engine).unwrap();
    const PUTS: u64 = 300;
    run(async {
        let local = store.local().unwrap();
        for n in 0..PUTS {
            let outcome = put(&local, n)
                .await
                .unwrap_or_else(|e| panic!("put {n}: {e}"));
            assert_eq!(outcome, PutOutcome::Created);
        }
        for n in PUTS - 5..PUTS {
            assert_eq!(read(&local, n).await, Some(true), "the newest are kept");
        }
        // The evictor counts a batch once its commit has answered: wait for the last one.
        wait_for("the evictions to be counted", LIMIT, || {
            let stats = store.flash_stats();
            stats.evicted_put + stats.evicted_watermark >= PUTS - stats.chunks
        })
        .await;
    });
    let stats = store.flash_stats();
    assert!(
        stats.chunks < PUTS / 2,
        "the store holds about a hundred: {stats:?}"
    );
    assert_eq!(stats.admissions_refused, 0);
    assert_eq!(stats.bytes, stats.chunks * LEN as u64);
    assert_space_adds_up(&store);
}

/// Several cores put and read at once, far past the flash's capacity: every read is the
/// chunk's exact bytes or a clean "not found", no device error is counted, and the space
/// adds up afterwards.
#[test]
fn concurrent_puts_and_reads_stay_in_bounds_and_never_read_a_wrong_byte() {
    let dir = tempfile::tempdir().unwrap();
    let engine = SimEngine::new(SEED ^ 1);
    let (store, _) = Store::open(small_store(dir.path()), &engine).unwrap();
    const PUTS_PER_CORE: u64 = 120;
    let written = AtomicU64::new(0);
    let (hits, misses) = (AtomicU64::new(0), AtomicU64::new(0));
    std::thread::scope(|scope| {
        for core in 0..CORES {
            let (store, written, hits, misses) = (&store, &written, &hits, &misses);
            scope.spawn(move || {
                run(async move {
                    use futures_util::StreamExt;
                    let local = store.local().unwrap();
                    let mut rng = Rng::new(SEED ^ core);
                    let mut plan = Vec::new();
                    for i in 0..PUTS_PER_CORE {
                        plan.push(Some(i * CORES + core));
                        for _ in 0..3 {
                            plan.push(None);
                        }
                    }
                    let reads: Vec<u64> = plan.iter().map(|_| rng.next_u64()).collect();
                    futures_util::stream::iter(plan.into_iter().zip(reads))
                        .for_each_concurrent(8, |(step, r)| {
                            let local = &local;
                            async move {
                                match step {
                                    Some(n) => {
                                        put(local, n).await.unwrap_or_else(|e| panic!("{n}: {e}"));
                                        written.fetch_max(n + 1, Ordering::Relaxed);
                                    }
                                    None => {
                                        let upto = written.load(Ordering::Relaxed).max(1);
                                        // Mostly recent chunks, so reads hit and race evictions.
                                        let back = r % 150;
                                        let n = upto.saturating_sub(1 + back);
                                        match read(local, n).await {
                                            Some(_) => hits.fetch_add(1, Ordering::Relaxed),
                                            None => misses.fetch_add(1, Ordering::Relaxed),
                                        };
                                    }
                                }
                            }
                        })
                        .await;
                });
            });
        }
    });
    let (hits, misses) = (hits.into_inner(), misses.into_inner());
    eprintln!("reads racing evictions: {hits} hits, {misses} misses");
    assert!(hits > 0 && misses > 0, "reads both hit and missed");
    let health = store.health();
    for device in &health.devices {
        assert_eq!(
            (device.read_errors, device.checksum_errors),
            (0, 0),
            "{device:?}"
        );
    }
    assert_eq!(health.chunks_unreadable, 0);
    let stats = health.flash;
    assert_eq!(stats.admissions_refused, 0, "{stats:?}");
    assert!(stats.evicted_put + stats.evicted_watermark > 0, "{stats:?}");
    assert_eq!(stats.hits, hits);
    assert_eq!(stats.misses, misses);
    assert_space_adds_up(&store);
}

/// A restart serves every chunk flash held, and eviction resumes in write order: after a
/// restart the oldest chunks not read since go first, chunks read since stay.
#[test]
fn a_restart_serves_what_flash_held_and_evicts_the_oldest_unhit_first() {
    let dir = tempfile::tempdir().unwrap();
    let engine = SimEngine::new(SEED ^ 2);
    let cfg = small_store(dir.path());
    const HELD: u64 = 90;
    const HIT: u64 = 10;
    {
        let (store, _) = Store::open(cfg.clone(), &engine).unwrap();
        run(async {
            let local = store.local().unwrap();
            for n in 0..HELD {
                put(&local, n).await.unwrap();
            }
        });
        assert_eq!(
            store.flash_stats().evicted_put + store.flash_stats().evicted_watermark,
            0
        );
    }
    {
        let (store, report) = Store::open(cfg.clone(), &engine).unwrap();
        assert_eq!(report.chunks as u64, HELD);
        run(async {
            let local = store.local().unwrap();
            for n in 0..HELD {
                assert_eq!(
                    read(&local, n).await,
                    Some(true),
                    "chunk {n} after a restart"
                );
            }
        });
    }
    // Hits are not kept across restarts: this open starts with every count at zero.
    let (store, _) = Store::open(cfg, &engine).unwrap();
    let mut next = HELD;
    run(async {
        let local = store.local().unwrap();
        for n in 0..HIT {
            read(&local, n).await.unwrap();
        }
        let evicted = || {
            let stats = store.flash_stats();
            stats.evicted_put + stats.evicted_watermark
        };
        while evicted() < 20 {
            put(&local, next).await.unwrap();
            next += 1;
            assert!(next < HELD + 100, "puts past the capacity evict");
        }
    });
    let gone: Vec<u64> = (0..HELD).filter(|&n| !stored(&store, n)).collect();
    assert!(gone.len() >= 10, "{gone:?}");
    assert!(gone.iter().all(|&n| n >= HIT), "read chunks stay: {gone:?}");
    let oldest_unhit: Vec<u64> = (HIT..HIT + gone.len() as u64).collect();
    assert_eq!(gone, oldest_unhit, "the oldest unread chunks go first");
}

/// Pinned chunks are never evicted; with everything pinned a PUT that finds no room is
/// refused (507) and counted.
#[test]
fn pinned_chunks_stay_and_a_node_of_pinned_chunks_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let engine = SimEngine::new(SEED ^ 3);
    let (store, _) = Store::open(small_store(dir.path()), &engine).unwrap();
    run(async {
        let local = store.local().unwrap();
        for n in 0..40 {
            put(&local, n).await.unwrap();
        }
        for n in 0..20 {
            assert!(store.set_pinned(&chunk(n).0, true));
        }
        for n in 40..300 {
            put(&local, n).await.unwrap();
        }
        for n in 0..20 {
            assert_eq!(read(&local, n).await, Some(true), "pinned chunk {n}");
        }
        for (id, _) in store.list(None, usize::MAX).unwrap() {
            store.set_pinned(&id, true);
        }
        let mut refused = None;
        for n in 300..400 {
            match put(&local, n).await {
                Ok(_) => assert!(store.set_pinned(&chunk(n).0, true)),
                Err(error) => {
                    refused = Some(error);
                    break;
                }
            }
        }
        let error = refused.expect("a node of pinned chunks fills up");
        assert!(matches!(error, StoreError::NoSpace { .. }), "{error}");
    });
    assert_eq!(store.flash_stats().admissions_refused, 1);
}

/// Space freed while a read of it is in flight is not reusable until the read ends, and
/// the read returns its exact bytes.
#[test]
fn space_freed_under_a_read_in_flight_waits_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let engine = SimEngine::new(SEED ^ 4);
    let (store, _) = Store::open(small_store(dir.path()), &engine).unwrap();
    run(async {
        let local = store.local().unwrap();
        put(&local, 1).await.unwrap();
        let (id, bytes) = chunk(1);
        engine.set_faults(FaultPlan {
            latency: Some(Duration::from_millis(50)),
            ..FaultPlan::default()
        });
        let mut reading = std::pin::pin!(local.read(&id, 0..LEN as u64));
        tokio::select! {
            biased;
            _ = &mut reading => panic!("the read waits for the devices"),
            () = tokio::task::yield_now() => {}
        }
        assert!(local.delete(&id).await.unwrap());
        let during = store.capacity();
        assert!(during.quarantined_bytes > 0, "{during:?}");
        assert_eq!(during.quarantine_release, Some(Duration::ZERO));
        let read = reading.await.unwrap();
        assert!(same_bytes(&read, &bytes));
        engine.set_faults(FaultPlan::default());
        let after = store.capacity();
        assert_eq!(after.quarantined_bytes, 0, "{after:?}");
    });
    assert_space_adds_up(&store);
}

/// The sustained test: a working set three times the flash, read with a skew and filled
/// on every miss, from every core, for a bounded number of requests: no PUT is refused and
/// the hit ratio is reported.
#[test]
fn a_working_set_three_times_the_flash_streams_through() {
    let dir = tempfile::tempdir().unwrap();
    let engine = SimEngine::new(SEED ^ 5);
    let (store, _) = Store::open(small_store(dir.path()), &engine).unwrap();
    let chunks_held = store.capacity().total_bytes / store.stored_bytes(LEN as u64);
    let working_set = 3 * chunks_held;
    const REQUESTS_PER_CORE: u64 = 600;
    let (hits, fills) = (AtomicU64::new(0), AtomicU64::new(0));
    std::thread::scope(|scope| {
        for core in 0..CORES {
            let (store, hits, fills) = (&store, &hits, &fills);
            scope.spawn(move || {
                run(async move {
                    let local = store.local().unwrap();
                    let mut rng = Rng::new(SEED ^ 0x5 ^ core);
                    for _ in 0..REQUESTS_PER_CORE {
                        // Skewed: the square of a uniform draw favours low ids.
                        let u = rng.below(1 << 16) as f64 / f64::from(1 << 16);
                        let n = (u * u * working_set as f64) as u64;
                        if read(&local, n).await.is_some() {
                            hits.fetch_add(1, Ordering::Relaxed);
                        } else {
                            fills.fetch_add(1, Ordering::Relaxed);
                            put(&local, n)
                                .await
                                .unwrap_or_else(|e| panic!("fill {n}: {e}"));
                        }
                    }
                });
            });
        }
    });
    let (hits, fills) = (hits.into_inner(), fills.into_inner());
    let stats = store.flash_stats();
    let ratio = hits as f64 / (hits + fills) as f64;
    eprintln!(
        "sustained: working set {working_set} chunks, flash {chunks_held}: hit ratio {ratio:.3} ({hits} hits, {fills} fills), {} + {} evictions (watermark + put), {} ghost hits",
        stats.evicted_watermark, stats.evicted_put, stats.ghost_hits
    );
    assert_eq!(stats.admissions_refused, 0);
    assert!(fills > working_set / 2 && hits > 0);
    assert!(stats.evicted_put + stats.evicted_watermark > 0);
    assert_space_adds_up(&store);
}

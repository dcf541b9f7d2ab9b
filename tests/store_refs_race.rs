//! Races of manifests and GC on several threads at once, each a core with its own
//! runtime (issue 13):
//!
//! - *a manifest put racing sweeps of the same chunks:* chunks expired past their grace;
//!   one thread puts manifests naming them (1–4 each, overlapping) while two others sweep,
//!   starting at a seeded point. Whatever the interleaving, a chunk a put did not answer
//!   missing is stored and reads back byte-exact afterwards; one it answered missing (the
//!   sweep won) is not stored, and counts one reference either way. Batches larger than
//!   one sweep transaction are included, so a manifest can land between two transactions
//!   of one sweep.
//! - *eviction racing a manifest that pins a chunk:* a small store under PUT pressure from
//!   three threads, while a fourth puts a chunk (some first expired, so the first
//!   victims) and, after a varying number of other PUTs, a manifest naming it: a chunk the
//!   manifest did not answer missing is never evicted afterwards.
//! - *a late cancellation:* a read's cancellation recorded after manifests expired the
//!   chunk anew must not undo the newer expiry.
//! - *PUTs racing the sweep of their own chunks* are never refused.
//! - *`chunk_refs` racing the record of a cancellation* never shows the old expiry again.
//! - *concurrent manifest work:* afterwards counts follow the manifests, memory equals
//!   what a restart loads, and eviction can still make room.
//!
//! Every choice is seeded; the interleavings are the threads' own, so a failure names the
//! iteration and the chunk.

mod common;

use std::collections::BTreeSet;
use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chunkd::chunk::ChunkId;
use chunkd::erasure::Scheme;
use chunkd::store::device::sim::SimEngine;
use chunkd::store::{GcClock, LocalStore, RefState, Store, StoreError};
use common::refs::{distinct_chunk, name, put_bytes, reads_back};
use common::{Rng, config, run};

const SEED: u64 = 0x4ace_0013;
const GRACE: Duration = Duration::from_secs(10);
/// How long a thread waits for another before the test fails.
const LIMIT: Duration = Duration::from_secs(60);
/// Sweeper threads in the sweep race.
const SWEEPERS: usize = 2;

/// Chunk `n` of the sweep race: small (1 byte to 16 KiB), so a batch of thousands is quick.
fn sweep_chunk(n: u64) -> (ChunkId, Vec<u8>) {
    let len = 1 + Rng::new(SEED ^ n).below(16 << 10);
    distinct_chunk(SEED, n, len as usize)
}

/// One iteration of the sweep race with `batch` chunks: put them, name them in a manifest
/// and delete it (they expire), pass the grace, then race manifest puts against sweeps.
/// Returns how many chunks the manifests won and how many the sweeps won.
fn sweep_race_iteration(
    store: &Store<SimEngine>,
    clock: &GcClock,
    iteration: u64,
    batch: u64,
) -> (u64, u64) {
    let first = iteration << 20;
    let chunks: Vec<(ChunkId, Vec<u8>)> = (first..first + batch).map(sweep_chunk).collect();
    let ids: Vec<ChunkId> = chunks.iter().map(|(id, _)| *id).collect();
    let hold = name(&format!("hold-{iteration}"));
    run(async {
        use futures_util::StreamExt;
        let local = store.local().unwrap();
        futures_util::stream::iter(&chunks)
            .for_each_concurrent(16, |(_, bytes)| {
                let local = &local;
                async move {
                    put_bytes(local, bytes).await.unwrap();
                }
            })
            .await;
        let put = store.put_manifest(&hold, ids.clone()).await.unwrap();
        assert!(put.missing.is_empty(), "iteration {iteration}: {put:?}");
        assert!(store.delete_manifest(&hold).await.unwrap());
    });
    for (n, id) in ids.iter().enumerate() {
        assert!(
            matches!(store.chunk_refs(id).unwrap(), RefState::Expired { .. }),
            "iteration {iteration}: chunk {n} expired"
        );
    }
    clock.advance(GRACE + Duration::from_secs(1));

    // Manifests of 1–4 chunks of the batch, in a seeded order: each chunk in at least one.
    let mut rng = Rng::new(SEED ^ iteration);
    let mut order: Vec<usize> = (0..batch as usize).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let lists: Vec<Vec<usize>> = order
        .chunks(2)
        .map(|pair| {
            let mut list = pair.to_vec();
            for _ in 0..rng.below(3) {
                list.push(rng.below(batch) as usize);
            }
            list
        })
        .collect();

    // The sweepers start once a seeded share of the manifests is in, so the crossing
    // point falls anywhere in the batch.
    let sweep_after = rng.below(lists.len() as u64 + 1);
    let start = Barrier::new(1 + SWEEPERS);
    let (done, put_so_far) = (AtomicBool::new(false), AtomicU64::new(0));
    let answers = std::thread::scope(|scope| {
        for _ in 0..SWEEPERS {
            scope.spawn(|| {
                run(async {
                    start.wait();
                    let started = Instant::now();
                    while put_so_far.load(Ordering::Acquire) < sweep_after
                        && !done.load(Ordering::Acquire)
                    {
                        assert!(started.elapsed() < LIMIT, "the manifest thread goes on");
                        std::thread::yield_now();
                    }
                    while !done.load(Ordering::Acquire) {
                        assert!(started.elapsed() < LIMIT, "the manifest thread finished");
                        store.sweep().await.unwrap();
                    }
                })
            });
        }
        let putter = scope.spawn(|| {
            run(async {
                start.wait();
                let mut answers = Vec::new();
                for (m, list) in lists.iter().enumerate() {
                    let named = list.iter().map(|&i| ids[i]).collect();
                    let put = store
                        .put_manifest(&name(&format!("race-{iteration}-{m}")), named)
                        .await
                        .unwrap();
                    answers.push(put.missing);
                    put_so_far.fetch_add(1, Ordering::Release);
                }
                done.store(true, Ordering::Release);
                answers
            })
        });
        putter.join().unwrap()
    });

    // A chunk is the manifests' if any put named it and did not answer it missing.
    let mut missing = vec![None::<bool>; batch as usize];
    for (list, answer) in lists.iter().zip(&answers) {
        for &i in list {
            let said_missing = answer.contains(&ids[i]);
            missing[i] = Some(missing[i].unwrap_or(true) && said_missing);
        }
    }
    let refs = implied(&lists, batch);
    let (mut kept, mut swept) = (0, 0);
    run(async {
        let local = store.local().unwrap();
        for (i, (id, bytes)) in chunks.iter().enumerate() {
            let what = format!("iteration {iteration} (batch {batch}): chunk {i}");
            let state = store.chunk_refs(id).unwrap();
            assert_eq!(state, RefState::Referenced { refs: refs[i] }, "{what}");
            match missing[i] {
                Some(false) => {
                    kept += 1;
                    match reads_back(&local, id, bytes).await {
                        Ok(true) => {}
                        Ok(false) => panic!("{what}: reads back other bytes"),
                        Err(e) => panic!("{what}: a manifest put said it was present: {e}"),
                    }
                }
                Some(true) => {
                    swept += 1;
                    assert_eq!(
                        local.lookup(id).unwrap(),
                        None,
                        "{what}: answered missing, yet stored"
                    );
                }
                None => unreachable!("every chunk is in a manifest"),
            }
        }
        for m in 0..lists.len() {
            let race = name(&format!("race-{iteration}-{m}"));
            assert!(store.delete_manifest(&race).await.unwrap());
        }
    });
    (kept, swept)
}

/// The count each chunk of the batch must have: one per manifest naming it.
fn implied(lists: &[Vec<usize>], batch: u64) -> Vec<u32> {
    let mut refs = vec![0; batch as usize];
    for list in lists {
        for i in list.iter().collect::<BTreeSet<_>>() {
            refs[*i] += 1;
        }
    }
    refs
}

#[test]
fn a_manifest_put_racing_sweeps_keeps_every_chunk_it_did_not_call_missing() {
    let dir = tempfile::tempdir().unwrap();
    let engine = SimEngine::new(SEED);
    let clock = GcClock::manual(1_700_000_000_000);
    let mut cfg = config(dir.path(), 256, Scheme::DEFAULT);
    cfg.gc_grace = GRACE;
    cfg.gc_interval = Duration::ZERO;
    cfg.gc_clock = clock.clone();
    let (store, _) = Store::open(cfg, &engine).unwrap();
    let (mut kept, mut swept) = (0, 0);
    // Many small batches (the sweep is one transaction), then a few of more than one.
    let batches = std::iter::repeat_n(24, 40).chain(std::iter::repeat_n(2_500, 3));
    for (iteration, batch) in batches.enumerate() {
        let (k, s) = sweep_race_iteration(&store, &clock, iteration as u64, batch);
        eprintln!("iteration {iteration}: {batch} chunks, {k} kept by a manifest, {s} swept");
        kept += k;
        swept += s;
    }
    // Both sides won sometimes: the race was run, not avoided.
    assert!(kept > 0 && swept > 0, "kept {kept}, swept {swept}");
}

/// Chunk `n` of the eviction race: 256 KiB, so an 8 MiB-device store holds about a
/// hundred.
fn pressure_chunk(n: u64) -> (ChunkId, Vec<u8>) {
    distinct_chunk(SEED ^ 0xe1c7, n, 256 << 10)
}

/// Chunks the pinning thread puts and names.
const PINS: u64 = 60;
/// Pressure threads, and the most chunks each puts.
const PRESSURE: u64 = 3;
const PRESSURE_PUTS_MAX: u64 = 3_000;

#[test]
fn eviction_racing_a_manifest_never_takes_a_chunk_it_pinned() {
    let dir = tempfile::tempdir().unwrap();
    let engine = SimEngine::new(SEED ^ 0xe);
    let cfg = config(dir.path(), 8, Scheme::DEFAULT);
    let (store, _) = Store::open(cfg, &engine).unwrap();
    let puts = AtomicU64::new(0);
    let refused = AtomicU64::new(0);
    let done = AtomicBool::new(false);
    let (pinned, said_missing) = std::thread::scope(|scope| {
        for thread in 0..PRESSURE {
            let (store, puts, refused, done) = (&store, &puts, &refused, &done);
            scope.spawn(move || {
                run(async move {
                    let local = store.local().unwrap();
                    for k in 0..PRESSURE_PUTS_MAX {
                        if done.load(Ordering::Acquire) {
                            return;
                        }
                        let bytes = pressure_chunk(k * PRESSURE + thread).1;
                        match put_bytes(&local, &bytes).await {
                            Ok(_) => {}
                            Err(StoreError::NoSpace { .. }) => {
                                refused.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => panic!("pressure put: {e}"),
                        }
                        puts.fetch_add(1, Ordering::Release);
                    }
                })
            });
        }
        let pinner = scope.spawn(|| {
            let pinned = pin_under_pressure(&store, &puts);
            done.store(true, Ordering::Release);
            pinned
        });
        pinner.join().unwrap()
    });
    eprintln!(
        "{} of {PINS} chunks pinned, {said_missing} evicted before their manifest; {} pressure puts, {} refused",
        pinned.len(),
        puts.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed)
    );
    run(async {
        let local = store.local().unwrap();
        check_pinned(&local, &pinned, "at the end").await;
    });
    assert!(
        !pinned.is_empty() && said_missing > 0,
        "both outcomes happened: the race was run"
    );
}

/// The pinning thread: for each of [`PINS`] chunks, puts it, waits for a seeded number of
/// other PUTs, then puts a manifest naming it. Even chunks wait around what the store
/// holds, so the policy sometimes evicts them first; odd ones are named by a manifest and
/// dropped again first, so they are expired — the first victims — and wait only a few
/// PUTs (the manifest then races their eviction). Checks the pinned ones after each step.
/// Returns the chunks pinned (not answered missing) and how many were answered missing.
fn pin_under_pressure(store: &Store<SimEngine>, puts: &AtomicU64) -> (Vec<u64>, u64) {
    let mut rng = Rng::new(SEED ^ 0x919);
    let mut pinned = Vec::new();
    let mut said_missing = 0;
    run(async {
        let local = store.local().unwrap();
        for j in 0..PINS {
            let (id, bytes) = pin_chunk(j);
            put_bytes(&local, &bytes).await.unwrap();
            let wait = if j % 2 == 1 {
                let hold = name(&format!("hold-{j}"));
                store.put_manifest(&hold, vec![id]).await.unwrap();
                assert!(store.delete_manifest(&hold).await.unwrap());
                rng.below(4)
            } else {
                60 + rng.below(80)
            };
            let target = puts.load(Ordering::Acquire) + wait;
            let started = Instant::now();
            while puts.load(Ordering::Acquire) < target {
                assert!(started.elapsed() < LIMIT, "the pressure threads put");
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            let answer = store
                .put_manifest(&name(&format!("pin-{j}")), vec![id])
                .await
                .unwrap();
            if answer.missing.is_empty() {
                pinned.push(j);
            } else {
                said_missing += 1;
            }
            check_pinned(&local, &pinned, &format!("after pin {j}")).await;
        }
    });
    (pinned, said_missing)
}

/// Chunk `j` the pinning thread puts: 64 KiB.
fn pin_chunk(j: u64) -> (ChunkId, Vec<u8>) {
    distinct_chunk(SEED ^ 0x919, j, 64 << 10)
}

/// Every chunk in `pinned` is stored and reads back byte-exact.
async fn check_pinned(local: &LocalStore<SimEngine>, pinned: &[u64], when: &str) {
    for &j in pinned {
        let (id, bytes) = pin_chunk(j);
        match reads_back(local, &id, &bytes).await {
            Ok(true) => {}
            Ok(false) => panic!("{when}: pinned chunk {j} reads back other bytes"),
            Err(e) => panic!("{when}: pinned chunk {j}, named by a live manifest: {e}"),
        }
    }
}

/// A read cancels an expired chunk's deletion at once in memory and records it in the
/// catalog in the background; meanwhile manifests name the chunk and stop naming it
/// again, so it expires anew. The late record of the old cancellation must not undo the
/// new expiry: afterwards the chunk is expired since the second manifest put, and a sweep
/// past the grace deletes it. Two threads keep the commit thread busy with PUTs, so the
/// cancellation and both manifest puts often land in one commit batch.
#[test]
fn a_late_cancellation_does_not_undo_a_newer_expiry() {
    const ITERATIONS: u64 = 200;
    let dir = tempfile::tempdir().unwrap();
    let engine = SimEngine::new(SEED ^ 0xca);
    let clock = GcClock::manual(1_700_000_000_000);
    let mut cfg = config(dir.path(), 256, Scheme::DEFAULT);
    cfg.gc_grace = GRACE;
    cfg.gc_interval = Duration::ZERO;
    cfg.gc_clock = clock.clone();
    let (store, _) = Store::open(cfg, &engine).unwrap();
    let done = AtomicBool::new(false);
    let failures = std::thread::scope(|scope| {
        for thread in 0..2u64 {
            let (store, done) = (&store, &done);
            scope.spawn(move || {
                run(async move {
                    let local = store.local().unwrap();
                    let started = Instant::now();
                    for n in 0.. {
                        if done.load(Ordering::Acquire) || started.elapsed() > LIMIT {
                            return;
                        }
                        let (id, bytes) = distinct_chunk(SEED ^ 0xb05, n * 2 + thread, 64 << 10);
                        put_bytes(&local, &bytes).await.unwrap();
                        local.delete(&id).await.unwrap();
                    }
                })
            });
        }
        let failures = run(async {
            let local = store.local().unwrap();
            let mut failures = Vec::new();
            for it in 0..ITERATIONS {
                if let Some(failure) = cancel_then_expire_again(&store, &local, &clock, it).await {
                    failures.push(failure);
                }
            }
            failures
        });
        done.store(true, Ordering::Release);
        failures
    });
    assert!(
        failures.is_empty(),
        "{} of {ITERATIONS} iterations lost the newer expiry:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// One iteration: chunk X expires, is read (cancelling that), is named by manifest `b` and
/// then replaced out of it at a later time; returns what went wrong, if anything.
async fn cancel_then_expire_again(
    store: &Store<SimEngine>,
    local: &LocalStore<SimEngine>,
    clock: &GcClock,
    it: u64,
) -> Option<String> {
    let (x, bytes) = distinct_chunk(SEED ^ 0x1a7e, it, 4096);
    let other = distinct_chunk(SEED ^ 0x07e5, it, 16).0;
    let (a, b) = (name(&format!("a-{it}")), name(&format!("b-{it}")));
    put_bytes(local, &bytes).await.unwrap();
    store.put_manifest(&a, vec![x]).await.unwrap();
    assert!(store.delete_manifest(&a).await.unwrap());
    clock.advance(Duration::from_secs(1));
    let newer_ms = clock.now_ms();
    // The read cancels the expiry and queues its record; both puts are sent at once
    // behind it, the second dropping X again.
    assert_eq!(reads_back(local, &x, &bytes).await.ok(), Some(true));
    let (first, second) = futures_util::future::join(
        store.put_manifest(&b, vec![x]),
        store.put_manifest(&b, vec![other]),
    )
    .await;
    first.unwrap();
    second.unwrap();
    // Two round trips through the commit thread: the queued record is surely done.
    for _ in 0..2 {
        store
            .delete_manifest(&name("no-such-manifest"))
            .await
            .unwrap();
    }
    let state = store.chunk_refs(&x).unwrap();
    clock.advance(GRACE + Duration::from_secs(1));
    store.sweep().await.unwrap();
    let stored = local.lookup(&x).unwrap().is_some();
    assert!(store.delete_manifest(&b).await.unwrap());
    let expected = RefState::Expired { since_ms: newer_ms };
    (state != expected || stored).then(|| {
        format!("iteration {it}: chunk_refs is {state:?} (expected {expected:?}); after a sweep past the grace it is stored: {stored}")
    })
}

/// PUTs of chunks racing the sweep that deletes them: each PUT answers created or already
/// present — never an error, since no other chunk shares an id prefix. Each iteration
/// stores [`RACED`] chunks no manifest names (`gc_unreferenced` with no grace: all due at
/// once), then one thread sweeps while three others PUT the same chunks again, each in
/// its own order. A PUT before the sweep claims a chunk cancels its deletion; one after
/// must store it anew.
#[test]
fn puts_racing_sweeps_of_the_same_chunks_are_never_refused() {
    const PUTTERS: u64 = 3;
    const ITERATIONS: u64 = 30;
    const RACED: u64 = 400;
    let dir = tempfile::tempdir().unwrap();
    let engine = SimEngine::new(SEED ^ 0x5e);
    let mut cfg = config(dir.path(), 64, Scheme::DEFAULT);
    cfg.gc_grace = Duration::ZERO;
    cfg.gc_interval = Duration::ZERO;
    cfg.gc_unreferenced = true;
    let (store, _) = Store::open(cfg, &engine).unwrap();
    let raced = |it: u64, n: u64| distinct_chunk(SEED ^ 0x9a7 ^ (it << 32), n, 4096).1;
    let (mut errors, mut swept, mut puts) = (Vec::new(), 0, 0);
    for it in 0..ITERATIONS {
        run(async {
            use futures_util::StreamExt;
            let local = store.local().unwrap();
            futures_util::stream::iter(0..RACED)
                .for_each_concurrent(16, |n| {
                    let local = &local;
                    async move {
                        put_bytes(local, &raced(it, n)).await.unwrap();
                    }
                })
                .await;
        });
        let start = Barrier::new(1 + PUTTERS as usize);
        std::thread::scope(|scope| {
            let putters: Vec<_> = (0..PUTTERS)
                .map(|putter| {
                    let (store, start, raced) = (&store, &start, &raced);
                    scope.spawn(move || {
                        run(async move {
                            let local = store.local().unwrap();
                            let mut rng = Rng::new(SEED ^ (it << 8) ^ putter);
                            let mut errors = Vec::new();
                            start.wait();
                            for _ in 0..RACED {
                                let n = rng.below(RACED);
                                if let Err(e) = put_bytes(&local, &raced(it, n)).await {
                                    errors.push(format!(
                                        "iteration {it}, putter {putter}, chunk {n}: {e}"
                                    ));
                                }
                            }
                            (errors, RACED)
                        })
                    })
                })
                .collect();
            let report = run(async {
                start.wait();
                store.sweep().await.unwrap()
            });
            swept += report.swept_chunks;
            for putter in putters {
                let (e, n) = putter.join().unwrap();
                errors.extend(e);
                puts += n;
            }
        });
    }
    eprintln!(
        "{puts} puts, {swept} chunks swept meanwhile, {} refused",
        errors.len()
    );
    assert!(swept > 0, "the sweeps deleted chunks while they were put");
    assert!(
        errors.is_empty(),
        "{} of {puts} puts failed, e.g.:\n{}",
        errors.len(),
        errors[..errors.len().min(5)].join("\n")
    );
}

/// `chunk_refs` while the commit thread records a cancellation: once a read has cancelled
/// a chunk's deletion, the chunk is unreferenced, and `chunk_refs` must never say it is
/// expired again (it read the catalog and the index at different moments, and paired the
/// old expiry with the index's mark already cleared). Each iteration expires the chunk
/// (at a time of its own) and reads it; another thread asks `chunk_refs` over and over
/// until two commit round trips later, when the cancellation is surely recorded.
#[test]
fn chunk_refs_never_shows_a_cancelled_expiry_again() {
    const ITERATIONS: u64 = 300;
    let dir = tempfile::tempdir().unwrap();
    let engine = SimEngine::new(SEED ^ 0x7e);
    let clock = GcClock::manual(1_700_000_000_000);
    let mut cfg = config(dir.path(), 64, Scheme::DEFAULT);
    cfg.gc_grace = GRACE;
    cfg.gc_interval = Duration::ZERO;
    cfg.gc_clock = clock.clone();
    let (store, _) = Store::open(cfg, &engine).unwrap();
    let (x, bytes) = distinct_chunk(SEED ^ 0x7e, 0, 4096);
    let hold = name("hold");
    // The expiry the asker looks for (0: none), how often it saw it, and the end.
    let (watched, seen, stop) = (AtomicU64::new(0), AtomicU64::new(0), AtomicBool::new(false));
    let asks = std::thread::scope(|scope| {
        let asker = scope.spawn(|| {
            let mut asks = 0u64;
            while !stop.load(Ordering::Acquire) {
                let since_ms = watched.load(Ordering::Acquire);
                if since_ms == 0 {
                    std::thread::yield_now();
                    continue;
                }
                asks += 1;
                if store.chunk_refs(&x).unwrap() == (RefState::Expired { since_ms }) {
                    seen.fetch_add(1, Ordering::Relaxed);
                }
            }
            asks
        });
        run(async {
            let local = store.local().unwrap();
            put_bytes(&local, &bytes).await.unwrap();
            for _ in 0..ITERATIONS {
                store.put_manifest(&hold, vec![x]).await.unwrap();
                assert!(store.delete_manifest(&hold).await.unwrap());
                let since_ms = clock.now_ms();
                clock.advance(Duration::from_secs(1));
                assert_eq!(reads_back(&local, &x, &bytes).await.ok(), Some(true));
                watched.store(since_ms, Ordering::Release);
                for _ in 0..2 {
                    store.delete_manifest(&name("none")).await.unwrap();
                }
                watched.store(0, Ordering::Release);
            }
        });
        stop.store(true, Ordering::Release);
        asker.join().unwrap()
    });
    let seen = seen.into_inner();
    eprintln!("{asks} asks during {ITERATIONS} cancellations, {seen} said expired");
    assert!(
        asks > ITERATIONS,
        "the asker asked while cancellations were recorded"
    );
    assert_eq!(
        seen, 0,
        "chunk_refs said expired after a read cancelled the expiry"
    );
}

/// Chunks of the concurrent tests: 1 byte to 64 KiB.
const CONCURRENT_POOL: u64 = 64;

/// A store for the concurrent tests: large enough that the work below evicts nothing,
/// with a manual GC clock.
fn concurrent_store(dir: &std::path::Path, clock: &GcClock) -> chunkd::store::StoreConfig {
    let mut cfg = config(dir, 64, Scheme::DEFAULT);
    cfg.gc_grace = GRACE;
    cfg.gc_interval = Duration::ZERO;
    cfg.gc_clock = clock.clone();
    cfg
}

fn concurrent_pool(seed: u64) -> Vec<(ChunkId, Vec<u8>)> {
    (0..CONCURRENT_POOL)
        .map(|n| distinct_chunk(seed, n, 1 + (n as usize * 997) % (64 << 10)))
        .collect()
}

/// Three cores at once put and delete manifests (of five names), put and read chunks of
/// `pool`, sweep and move the GC clock; no DELETE.
fn concurrent_work(
    store: &Store<SimEngine>,
    clock: &GcClock,
    pool: &[(ChunkId, Vec<u8>)],
    seed: u64,
) {
    const CORES: u64 = 3;
    const OPS: u64 = 4_000;
    const NAMES: u64 = 5;
    std::thread::scope(|scope| {
        for core in 0..CORES {
            scope.spawn(move || {
                run(async move {
                    let local = store.local().unwrap();
                    let mut rng = Rng::new(seed ^ core);
                    let count = pool.len() as u64;
                    for _ in 0..OPS {
                        let m = name(&format!("m{}", rng.below(NAMES)));
                        let (id, bytes) = &pool[rng.below(count) as usize];
                        match rng.below(10) {
                            0..3 => {
                                let ids = (0..rng.below(12))
                                    .map(|_| pool[rng.below(count) as usize].0)
                                    .collect();
                                store.put_manifest(&m, ids).await.unwrap();
                            }
                            3 => {
                                store.delete_manifest(&m).await.unwrap();
                            }
                            4 | 5 => {
                                put_bytes(&local, bytes).await.unwrap();
                            }
                            6 | 7 => match reads_back(&local, id, bytes).await {
                                Ok(exact) => assert!(exact, "a read gave other bytes"),
                                Err(StoreError::NotFound) => {}
                                Err(e) => panic!("read: {e}"),
                            },
                            8 => {
                                store.sweep().await.unwrap();
                            }
                            _ => clock.advance(Duration::from_secs(1 + rng.below(3))),
                        }
                    }
                })
            });
        }
    });
    let stats = store.gc_stats();
    eprintln!("{stats:?}");
    assert!(
        stats.swept_chunks > 0 && stats.expired_reads > 0,
        "{stats:?}"
    );
}

/// After [`concurrent_work`] every count equals what the manifests imply, an expired
/// chunk is a stored one, and what the store keeps in memory — each chunk's state, the
/// stats of references, pins and expiries — equals what a restart loads from the catalog.
#[test]
fn concurrent_manifest_work_leaves_memory_equal_to_what_a_restart_loads() {
    let dir = tempfile::tempdir().unwrap();
    let worked = after_concurrent_work(dir.path(), SEED ^ 0xc0);
    let (store, pool) = (worked.store, worked.pool);
    let before = settled_view(&store, &pool);
    drop(store);
    let (store, _) = Store::open(worked.config, &worked.engine).unwrap();
    let after = settled_view(&store, &pool);
    assert_eq!(
        before.states, after.states,
        "each chunk's state, before and after a restart"
    );
    assert_eq!(
        before.stats, after.stats,
        "the stats, before and after a restart"
    );
}

/// After [`concurrent_work`], what eviction keeps in memory is right too: PUTs of far more
/// than the store holds all succeed (no 507: everything but the few referenced chunks can
/// be evicted, however the pins were counted), and every referenced stored chunk is still
/// there, byte-exact.
#[test]
fn concurrent_manifest_work_leaves_eviction_able_to_make_room() {
    let dir = tempfile::tempdir().unwrap();
    let worked = after_concurrent_work(dir.path(), SEED ^ 0xc1);
    let (store, pool) = (&worked.store, &worked.pool);
    let view = settled_view(store, pool);
    let capacity = store.capacity().total_bytes;
    run(async {
        let local = store.local().unwrap();
        let mut put = 0;
        for n in 0.. {
            let bytes = distinct_chunk(SEED ^ 0xf111, n, 1 << 20).1;
            put_bytes(&local, &bytes)
                .await
                .unwrap_or_else(|e| panic!("fill put {n}: {e}"));
            put += store.stored_bytes(1 << 20);
            if put > 2 * capacity {
                break;
            }
        }
        for ((id, bytes), state) in pool.iter().zip(&view.states) {
            if state.refs() > 0 && local.lookup(id).unwrap().is_some() {
                assert_eq!(reads_back(&local, id, bytes).await.ok(), Some(true));
            }
        }
    });
    let stats = store.gc_stats();
    assert_eq!(
        (stats.pinned_chunks, stats.pinned_bytes),
        (view.stats[4], view.stats[5]),
        "pinned chunks survive the fill: {stats:?}"
    );
}

/// A store in `dir` after [`concurrent_work`] seeded by `seed`, with what reopens it.
struct Worked {
    store: Store<SimEngine>,
    pool: Vec<(ChunkId, Vec<u8>)>,
    engine: SimEngine,
    config: chunkd::store::StoreConfig,
}

fn after_concurrent_work(dir: &std::path::Path, seed: u64) -> Worked {
    let engine = SimEngine::new(seed);
    let clock = GcClock::manual(1_700_000_000_000);
    let config = concurrent_store(dir, &clock);
    let pool = concurrent_pool(seed);
    let (store, _) = Store::open(config.clone(), &engine).unwrap();
    concurrent_work(&store, &clock, &pool, seed);
    Worked {
        store,
        pool,
        engine,
        config,
    }
}

/// What a quiet store says about the pool, after checking it against its manifests.
#[derive(Debug, PartialEq, Eq)]
struct SettledView {
    states: Vec<RefState>,
    /// `gc_stats` without the counters that start afresh at each open.
    stats: [u64; 9],
}

fn settled_view(store: &Store<SimEngine>, pool: &[(ChunkId, Vec<u8>)]) -> SettledView {
    run(async {
        // Two commit round trips: cancellations reads queued are recorded.
        for _ in 0..2 {
            store.delete_manifest(&name("none")).await.unwrap();
        }
    });
    let live = common::refs::manifests(store);
    let counts = common::refs::implied_counts(live.values());
    let states: Vec<RefState> = run(async {
        let local = store.local().unwrap();
        let mut states = Vec::new();
        for (n, (id, _)) in pool.iter().enumerate() {
            let state = store.chunk_refs(id).unwrap();
            let count = counts.get(id).copied().unwrap_or(0);
            assert_eq!(state.refs(), count, "chunk {n}: {state:?}");
            let stored = local.lookup(id).unwrap().is_some();
            if let RefState::Expired { .. } = state {
                assert!(stored, "chunk {n} is expired but not stored");
            }
            states.push(state);
        }
        states
    });
    let s = store.gc_stats();
    assert_eq!(s.manifests, live.len() as u64);
    assert_eq!(s.referenced_chunks, counts.len() as u64);
    let stats = [
        s.manifests,
        s.referenced_chunks,
        s.referenced_stored_chunks,
        s.referenced_stored_bytes,
        s.pinned_chunks,
        s.pinned_bytes,
        s.expired_chunks,
        s.expired_bytes,
        store.flash_stats().chunks,
    ];
    SettledView { states, stats }
}

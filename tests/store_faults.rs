//! Faults the store must survive: corrupt bytes in a shard, more bad shards than parity,
//! read errors, a lost device, a device zeroed or deleted while the store was closed, and
//! torn or lost writes while storing. Mostly on the simulated engine, which corrupts,
//! loses and fails I/O from a seed; the two "file zeroed / file deleted" cases run on real
//! files with io_uring.
//!
//! Two rules hold throughout: a read returns the chunk's exact bytes or a clear error
//! (never other bytes), and once repaired every chunk is back to `k + m` sound shards
//! (`repair` finds it `Healthy` with every device online).

mod common;

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Duration;

use chunkd::chunk::ChunkId;
use chunkd::erasure::Scheme;
use chunkd::store::device::sim::{FaultPlan, SimEngine};
use chunkd::store::device::uring::UringEngine;
use chunkd::store::{
    DEFAULT_MAX_CHUNK_BYTES, DeviceState, Engine, LocalStore, PutOutcome, RepairOutcome, Store,
    StoreConfig, StoreError, VerifiedChunk,
};
use common::{
    assert_all_healthy, assert_all_whole, check_many, chunk, chunk_bytes, distinct, put_many,
    repair_config, run, same_bytes, spawn_repairs, wait_for,
};

const SEED: u64 = 0xfa01_7000;
/// Long enough that every data shard holds bytes: 75,001 bytes a shard at k = 4, so
/// 19-block shards whose last one is partly padding.
const BIG_CHUNK_BYTES: usize = 300_001;
/// Gives up on a refill that takes longer than this (it takes well under a second).
const REFILL_LIMIT: Duration = Duration::from_secs(30);

fn scheme(k: usize, m: usize) -> Scheme {
    Scheme::new(k, m).unwrap()
}

async fn put_bytes<E: Engine>(local: &LocalStore<E>, scheme: Scheme, bytes: &[u8]) -> ChunkId {
    let chunk = VerifiedChunk::from_slice(bytes, scheme, DEFAULT_MAX_CHUNK_BYTES).unwrap();
    let id = *chunk.id();
    assert_eq!(local.put(chunk).await.unwrap(), PutOutcome::Created);
    id
}

async fn read_all<E: Engine>(local: &LocalStore<E>, id: &ChunkId, len: usize) -> Vec<u8> {
    local
        .read(id, 0..len as u64)
        .await
        .unwrap_or_else(|e| panic!("reading {id}: {e}"))
        .to_vec()
}

/// A sim store holding one big chunk to damage and a few bystanders that must stay intact.
struct Damaged {
    engine: SimEngine,
    store: Store<SimEngine>,
    scheme: Scheme,
    bytes: Vec<u8>,
}

impl Damaged {
    fn new(dir: &Path, scheme: Scheme) -> Damaged {
        let engine = SimEngine::new(SEED);
        let (store, _) = Store::open(repair_config(dir, scheme), &engine).unwrap();
        Damaged {
            engine,
            store,
            scheme,
            bytes: chunk_bytes(SEED, 1_000_000, BIG_CHUNK_BYTES),
        }
    }

    fn id(&self) -> ChunkId {
        ChunkId::of(&self.bytes)
    }

    /// Header and data of shard `shard` of the big chunk, as on its device.
    fn shard_bytes(&self, shard: usize) -> Vec<u8> {
        let at = self.store.shard_locations(&self.id()).unwrap().unwrap()[shard];
        self.engine
            .device(&self.store.config().devices[at.device].path)
            .peek(at.header_offset_bytes, 4096 + at.data_len_bytes)
    }

    /// Flips the bits of the byte `offset` bytes into shard `shard` (header included).
    fn corrupt(&self, shard: usize, offset: u64) {
        let at = self.store.shard_locations(&self.id()).unwrap().unwrap()[shard];
        self.engine
            .device(&self.store.config().devices[at.device].path)
            .corrupt(at.header_offset_bytes + offset, 1);
    }

    async fn put_all(&self, local: &LocalStore<SimEngine>) -> Vec<ChunkId> {
        let mut ids = put_many(local, self.scheme, SEED, 0..8, 4).await;
        ids.push(put_bytes(local, self.scheme, &self.bytes).await);
        ids
    }
}

/// Where to flip one byte: a shard and an offset into it (the header is its first 4096).
struct OneBadByte {
    shard: usize,
    offset: u64,
    what: &'static str,
}

#[test]
fn one_corrupt_byte_is_rebuilt_on_read_and_repaired_in_place() {
    let cases = [
        OneBadByte {
            shard: 1,
            offset: 4096 + 5_000,
            what: "data shard, data byte",
        },
        OneBadByte {
            shard: 0,
            offset: 20,
            what: "data shard, header byte",
        },
        OneBadByte {
            shard: 3,
            offset: 4096 + 12_345,
            what: "last data shard, data byte",
        },
        OneBadByte {
            shard: 4,
            offset: 4096 + 100,
            what: "parity shard, data byte",
        },
    ];
    for case in cases {
        let dir = tempfile::tempdir().unwrap();
        let s = Damaged::new(dir.path(), Scheme::DEFAULT);
        run(async {
            let local = s.store.local().unwrap();
            let ids = s.put_all(&local).await;
            let id = s.id();
            let sound = s.shard_bytes(case.shard);
            s.corrupt(case.shard, case.offset);
            assert_ne!(s.shard_bytes(case.shard), sound, "{}: corrupted", case.what);

            let rebuilt_before = s.store.health().shards_rebuilt;
            assert!(
                read_all(&local, &id, s.bytes.len()).await == s.bytes,
                "{}",
                case.what
            );
            let rebuilt = s.store.health().shards_rebuilt - rebuilt_before;
            if case.shard < 4 {
                assert_eq!(rebuilt, 1, "{}: the read rebuilt the bad window", case.what);
                // A few bytes around the bad byte's place in the chunk.
                let shard_len = s.store.shard_locations(&id).unwrap().unwrap()[0].data_len_bytes;
                let at = (case.shard * shard_len) as u64 + case.offset.saturating_sub(4096);
                let range = at.saturating_sub(9)..at + 9;
                let read = local.read(&id, range.clone()).await.unwrap();
                assert!(
                    read.to_vec() == s.bytes[range.start as usize..range.end as usize],
                    "{}: range {range:?}",
                    case.what
                );
                assert_eq!(s.store.health().shards_rebuilt - rebuilt_before, 2);
            } else {
                assert_eq!(rebuilt, 0, "{}: reads do not touch parity", case.what);
            }

            assert_eq!(local.repair(&id).await.unwrap(), RepairOutcome::Repaired(1));
            assert_eq!(local.repair(&id).await.unwrap(), RepairOutcome::Healthy);
            assert!(
                s.shard_bytes(case.shard) == sound,
                "{}: the shard is rewritten exactly as first written",
                case.what
            );
            assert_all_healthy(&s.store, &local, &ids).await;
            check_many(&local, SEED, 0..8, 4).await;
        });
    }
}

/// Which shards of the big chunk are damaged, and whether the chunk can still be read.
struct BadShards {
    scheme: Scheme,
    bad: &'static [usize],
    readable: bool,
}

#[test]
fn up_to_m_bad_shards_are_rebuilt_and_more_fail_as_unreadable() {
    let cases = [
        (scheme(4, 1), &[3][..], true),
        (scheme(4, 1), &[0, 1][..], false),
        (scheme(4, 1), &[0, 4][..], false),
        (scheme(4, 2), &[0, 1][..], true),
        (scheme(4, 2), &[2, 5][..], true),
        (scheme(4, 2), &[4, 5][..], true),
        (scheme(4, 2), &[0, 1, 2][..], false),
        (scheme(4, 2), &[0, 4, 5][..], false),
    ]
    .map(|(scheme, bad, readable)| BadShards {
        scheme,
        bad,
        readable,
    });
    for case in cases {
        let what = format!(
            "{}+{} with shards {:?} bad",
            case.scheme.data_shards(),
            case.scheme.parity_shards(),
            case.bad
        );
        let dir = tempfile::tempdir().unwrap();
        let s = Damaged::new(dir.path(), case.scheme);
        run(async {
            let local = s.store.local().unwrap();
            let ids = s.put_all(&local).await;
            let id = s.id();
            let sound: Vec<Vec<u8>> = case.bad.iter().map(|&b| s.shard_bytes(b)).collect();
            for (i, &shard) in case.bad.iter().enumerate() {
                // Different blocks in each shard, all within the chunk's bytes.
                s.corrupt(shard, 4096 + 1_000 + 4096 * i as u64);
            }
            let read = local.read(&id, 0..s.bytes.len() as u64).await;
            if case.readable {
                assert!(read.unwrap().to_vec() == s.bytes, "{what}");
                let repaired = local.repair(&id).await.unwrap();
                assert_eq!(repaired, RepairOutcome::Repaired(case.bad.len()), "{what}");
                for (&shard, sound) in case.bad.iter().zip(&sound) {
                    assert!(
                        &s.shard_bytes(shard) == sound,
                        "{what}: shard {shard} restored"
                    );
                }
                assert_all_healthy(&s.store, &local, &ids).await;
            } else {
                match read {
                    Err(StoreError::Unreadable {
                        healthy, needed, ..
                    }) => {
                        assert_eq!(needed, 4, "{what}");
                        assert!(healthy < needed, "{what}: {healthy} healthy");
                    }
                    Ok(_) => panic!("{what}: read succeeded"),
                    Err(other) => panic!("{what}: {other}"),
                }
                // Bytes held only by a sound shard still read: shard 3 is never bad here.
                let shard_len = s.store.shard_locations(&id).unwrap().unwrap()[0].data_len_bytes;
                let range = (3 * shard_len) as u64..(3 * shard_len + 100) as u64;
                let read = local.read(&id, range.clone()).await.unwrap();
                assert!(
                    read.to_vec() == s.bytes[range.start as usize..range.end as usize],
                    "{what}"
                );
                assert_eq!(
                    local.repair(&id).await.unwrap(),
                    RepairOutcome::Unrecoverable,
                    "{what}"
                );
                assert!(s.store.health().chunks_unreadable >= 2, "{what}");
                // Every device answered: the chunk is lost, dropped and counted.
                assert_eq!(s.store.health().chunks_lost, 1, "{what}");
                assert!(
                    matches!(local.read(&id, range).await, Err(StoreError::NotFound)),
                    "{what}"
                );
                assert_all_healthy(&s.store, &local, &ids[..ids.len() - 1]).await;
            }
            check_many(&local, SEED, 0..8, 4).await;
        });
    }
}

/// Reads every chunk three times while 10% of device reads fail with EIO. A read during
/// which at most `m` device reads failed must return the exact bytes; with more it may
/// instead fail as unreadable, and never return other bytes. Failed device reads are
/// counted from the health counters, reads running one at a time; the counters count each
/// failing extent once (a repeat failure of one not rewritten since is not news), so a
/// read that gives up is checked by what it says: fewer than `k` of the other shards
/// sound, so more than `m` shards failed.
fn reads_survive_read_errors(scheme: Scheme) {
    const CHUNKS: u64 = 150;
    let m = scheme.parity_shards() as u64;
    let dir = tempfile::tempdir().unwrap();
    let engine = SimEngine::new(SEED);
    let mut cfg = repair_config(dir.path(), scheme);
    cfg.device_error_limit = 1_000; // Errors here are scattered: no device is to go offline.
    let (store, _) = Store::open(cfg, &engine).unwrap();
    let read_errors = || -> u64 { store.health().devices.iter().map(|d| d.read_errors).sum() };
    run(async {
        let local = store.local().unwrap();
        let ids = put_many(&local, scheme, SEED, 0..CHUNKS, 8).await;
        engine.set_faults(FaultPlan {
            read_eio_ppm: 100_000,
            ..FaultPlan::default()
        });
        // by_faults[f]: reads that saw f failed fetches (capped at 3), and how many failed.
        let mut by_faults = [(0u32, 0u32); 4];
        for _ in 0..3 {
            for n in 0..CHUNKS {
                let (id, bytes) = chunk(SEED, n);
                let before = read_errors();
                let read = local.read(&id, 0..bytes.len() as u64).await;
                let faults = read_errors() - before;
                let tally = &mut by_faults[faults.min(3) as usize];
                tally.0 += 1;
                match read {
                    Ok(read) => assert!(same_bytes(&read, &bytes), "chunk {n}: wrong bytes"),
                    Err(StoreError::Unreadable {
                        healthy, needed, ..
                    }) if (scheme.total_shards() - healthy) as u64 > m && healthy < needed => {
                        tally.1 += 1
                    }
                    Err(e) => panic!("chunk {n}, {faults} failed device reads: {e}"),
                }
            }
        }
        assert!(
            by_faults[m as usize].0 >= 10 && by_faults[1].0 >= 10,
            "enough reads met exactly 1 and exactly m faults: {by_faults:?}"
        );
        assert!(store.health().shards_rebuilt > 0);
        engine.set_faults(FaultPlan::default());
        check_many(&local, SEED, 0..CHUNKS, 8).await;
        assert_all_healthy(&store, &local, &ids).await;
    });
}

#[test]
fn reads_survive_up_to_m_read_errors_4_1() {
    reads_survive_read_errors(scheme(4, 1));
}

#[test]
fn reads_survive_up_to_m_read_errors_4_2() {
    reads_survive_read_errors(scheme(4, 2));
}

/// Reads the bytes `len` bytes at `offset` of a device, however the engine keeps them.
type Peek<'a> = &'a dyn Fn(&Path, u64, usize) -> Vec<u8>;

/// Shard `shard` of every chunk in `ids` (header and data) as on the devices: for checking
/// that a refill writes back exactly what was there.
fn shard_images<E: Engine>(
    store: &Store<E>,
    ids: &[ChunkId],
    device: usize,
    peek: Peek<'_>,
) -> Vec<(ChunkId, Vec<u8>)> {
    let path = &store.config().devices[device].path;
    ids.iter()
        .map(|id| {
            let at = store
                .shard_locations(id)
                .unwrap()
                .unwrap()
                .into_iter()
                .find(|at| at.device == device)
                .expect("five devices: every chunk has a shard on each");
            (
                *id,
                peek(path, at.header_offset_bytes, 4096 + at.data_len_bytes),
            )
        })
        .collect()
}

/// Reopens a store whose device `device` was replaced (or wiped) while it was closed:
/// the device must come back formatted and `Refilling`, every chunk must read before the
/// refill, and the refill must bring every chunk back to `k + m` sound shards, write back
/// the shards in `images` exactly as they were, and bring the device online.
fn reopen_and_refill<E: Engine>(
    cfg: &StoreConfig,
    engine: &E,
    device: usize,
    chunks: std::ops::Range<u64>,
    images: &[(ChunkId, Vec<u8>)],
    peek: Peek<'_>,
) {
    let ids: Vec<ChunkId> = chunks.clone().map(|n| chunk(SEED, n).0).collect();
    let (store, report) = Store::open(cfg.clone(), engine).unwrap();
    assert_eq!(report.chunks, distinct(&ids));
    assert_eq!(report.refilling, vec![cfg.devices[device].to_string()]);
    let health = store.health();
    assert_eq!(health.devices[device].state, DeviceState::Refilling);
    assert_eq!(
        health.chunks_at_risk, report.chunks as u64,
        "one group: every chunk"
    );
    run(async {
        let local = store.local().unwrap();
        check_many(&local, SEED, chunks.clone(), 8).await;
        spawn_repairs(&store);
        wait_for("the refill", REFILL_LIMIT, || {
            store.health().devices[device].state == DeviceState::Online
        })
        .await;
        assert_all_whole(&store, &local, &ids).await;
    });
    let health = store.health();
    assert_eq!(health.chunks_at_risk, 0);
    assert!(health.shards_repaired >= ids.len() as u64);
    let image_ids: Vec<ChunkId> = images.iter().map(|(id, _)| *id).collect();
    let after = shard_images(&store, &image_ids, device, peek);
    for ((id, was), (_, is)) in images.iter().zip(&after) {
        assert!(
            was == is,
            "chunk {id}: the refilled shard differs from the original"
        );
    }
}

/// How many whole-chunk reads of test chunks `ns` need a data shard on `device`: those
/// holding any of the chunk's bytes (a small chunk's bytes are all in its first shard).
fn reads_needing<E: Engine>(store: &Store<E>, ns: std::ops::Range<u64>, device: usize) -> u64 {
    let k = store.config().scheme.data_shards();
    let needing = ns.filter(|&n| {
        let (id, bytes) = chunk(SEED, n);
        let shards = store.shard_locations(&id).unwrap().unwrap();
        let data_shards_used = bytes.len().div_ceil(shards[0].data_len_bytes).min(k);
        shards[..data_shards_used]
            .iter()
            .any(|at| at.device == device)
    });
    needing.count() as u64
}

#[test]
fn a_lost_device_goes_offline_reads_rebuild_and_a_replacement_is_refilled() {
    const CHUNKS: u64 = 100;
    const LATER: u64 = 20;
    const LOST: usize = 2;
    let dir = tempfile::tempdir().unwrap();
    let scheme = Scheme::DEFAULT;
    let cfg = repair_config(dir.path(), scheme);
    let engine = SimEngine::new(SEED);
    let peek = |path: &Path, at: u64, len: usize| engine.device(path).peek(at, len);
    let images = {
        let (store, _) = Store::open(cfg.clone(), &engine).unwrap();
        run(async {
            let local = store.local().unwrap();
            let ids = put_many(&local, scheme, SEED, 0..CHUNKS, 8).await;
            let images = shard_images(&store, &ids, LOST, &peek);
            engine.device(&cfg.devices[LOST].path).set_lost(true);
            check_many(&local, SEED, 0..CHUNKS, 1).await;
            let health = store.health();
            let lost = &health.devices[LOST];
            assert_eq!(lost.state, DeviceState::Offline, "{health:?}");
            assert_eq!(lost.read_errors, u64::from(cfg.device_error_limit));
            assert!(health.chunks_at_risk >= CHUNKS, "{health:?}");
            assert_eq!(
                health.shards_rebuilt,
                reads_needing(&store, 0..CHUNKS, LOST),
                "every read that needed the lost device rebuilt its shard"
            );
            let online = health
                .devices
                .iter()
                .filter(|d| d.state == DeviceState::Online);
            assert_eq!(online.count(), 4);
            // Puts go on without the lost device, four shards each.
            put_many(&local, scheme, SEED, CHUNKS..CHUNKS + LATER, 8).await;
            check_many(&local, SEED, 0..CHUNKS + LATER, 8).await;
            images
        })
    };
    engine.remove(&cfg.devices[LOST].path);
    reopen_and_refill(&cfg, &engine, LOST, 0..CHUNKS + LATER, &images, &peek);
}

#[test]
fn a_device_file_zeroed_while_closed_is_refilled_uring() {
    replace_a_device_file_uring(|path| {
        let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        let len = file.metadata().unwrap().len();
        let zeros = vec![0u8; 1 << 20];
        let mut at = 0;
        while at < len {
            let n = zeros.len().min((len - at) as usize);
            file.write_all_at(&zeros[..n], at).unwrap();
            at += n as u64;
        }
        file.sync_all().unwrap();
        assert_eq!(std::fs::metadata(path).unwrap().len(), len, "same size");
    });
}

#[test]
fn a_device_file_deleted_while_closed_is_replaced_and_refilled_uring() {
    replace_a_device_file_uring(|path| std::fs::remove_file(path).unwrap());
}

fn replace_a_device_file_uring(damage: impl Fn(&Path)) {
    const CHUNKS: u64 = 200;
    const DEVICE: usize = 3;
    let dir = tempfile::tempdir().unwrap();
    let scheme = Scheme::DEFAULT;
    let cfg = repair_config(dir.path(), scheme);
    let peek = |path: &Path, at: u64, len: usize| {
        let mut bytes = vec![0u8; len];
        std::fs::File::open(path)
            .unwrap()
            .read_exact_at(&mut bytes, at)
            .unwrap();
        bytes
    };
    let images = {
        let (store, _) = Store::open(cfg.clone(), &UringEngine).unwrap();
        let ids = run(async {
            let local = store.local().unwrap();
            put_many(&local, scheme, SEED, 0..CHUNKS, 8).await
        });
        shard_images(&store, &ids, DEVICE, &peek)
    };
    damage(&cfg.devices[DEVICE].path);
    reopen_and_refill(&cfg, &UringEngine, DEVICE, 0..CHUNKS, &images, &peek);
    let (store, report) = Store::open(cfg, &UringEngine).unwrap();
    assert!(report.refilling.is_empty(), "{report:?}");
    run(async {
        let local = store.local().unwrap();
        check_many(&local, SEED, 0..CHUNKS, 8).await;
    });
}

/// Puts chunks one at a time (so the engine's seeded faults fall the same way on every
/// run) under `plan`; every put that returned Ok must read back exactly, and every put
/// that failed must have failed with an I/O error and stored nothing. Returns the chunks
/// stored and how many puts failed.
async fn put_under_write_faults(
    engine: &SimEngine,
    store: &Store<SimEngine>,
    scheme: Scheme,
    plan: FaultPlan,
    chunks: u64,
) -> (Vec<u64>, usize) {
    let local = store.local().unwrap();
    engine.set_faults(plan);
    let (mut stored, mut failed) = (Vec::new(), 0);
    let mut seen = std::collections::HashSet::new();
    for n in 0..chunks {
        let (id, bytes) = chunk(SEED, n);
        if !seen.insert(id) {
            continue; // A short chunk with the same bytes as an earlier one.
        }
        let verified = VerifiedChunk::from_slice(&bytes, scheme, DEFAULT_MAX_CHUNK_BYTES).unwrap();
        match local.put(verified).await {
            Ok(outcome) => {
                assert_eq!(outcome, PutOutcome::Created, "chunk {n}");
                stored.push(n);
            }
            Err(StoreError::Io(_)) => {
                failed += 1;
                assert_eq!(
                    local.lookup(&id).unwrap(),
                    None,
                    "failed put {n} stored nothing"
                );
            }
            Err(e) => panic!("chunk {n}: unexpected error {e}"),
        }
    }
    engine.set_faults(FaultPlan::default());
    for &n in &stored {
        common::check(&local, SEED, n).await;
    }
    let stored_ids: std::collections::HashSet<ChunkId> =
        stored.iter().map(|&n| chunk(SEED, n).0).collect();
    for n in 0..chunks {
        let id = chunk(SEED, n).0;
        if stored_ids.contains(&id) {
            continue;
        }
        assert!(matches!(
            local.read(&id, 0..1).await,
            Err(StoreError::NotFound)
        ));
    }
    (stored, failed)
}

#[test]
fn puts_under_torn_and_failed_writes_store_whole_chunks_or_fail() {
    const CHUNKS: u64 = 300;
    let dir = tempfile::tempdir().unwrap();
    let scheme = Scheme::DEFAULT;
    let mut cfg = repair_config(dir.path(), scheme);
    cfg.device_error_limit = 1_000; // Scattered errors: no device is to go offline.
    let engine = SimEngine::new(SEED);
    let (store, _) = Store::open(cfg.clone(), &engine).unwrap();
    let plan = FaultPlan {
        write_eio_ppm: 10_000,
        torn_write_ppm: 10_000,
        ..FaultPlan::default()
    };
    let stored = run(async {
        let (stored, failed) = put_under_write_faults(&engine, &store, scheme, plan, CHUNKS).await;
        assert!(failed >= 5, "{failed} puts failed");
        assert!(stored.len() >= CHUNKS as usize / 2);
        // A write that fails fails its put: nothing stored needed a rebuild.
        assert_eq!(store.health().shards_rebuilt, 0);
        let local = store.local().unwrap();
        let ids: Vec<ChunkId> = stored.iter().map(|&n| chunk(SEED, n).0).collect();
        for id in &ids {
            assert_eq!(local.repair(id).await.unwrap(), RepairOutcome::Healthy);
        }
        stored
    });
    drop(store);
    let (store, report) = Store::open(cfg, &engine).unwrap();
    assert_eq!(report.chunks, stored.len());
    run(async {
        let local = store.local().unwrap();
        for &n in &stored {
            common::check(&local, SEED, n).await;
        }
    });
}

/// Lost writes report success and land nothing, so the store cannot see them when it
/// writes: it relies on the parity. At 0.5% of writes and 6 shards a chunk, three lost
/// writes in one chunk (beyond what 4 + 2 rebuilds) has odds of about 2.5e-6 a chunk.
#[test]
fn puts_under_lost_and_torn_writes_read_back_after_rebuild_4_2() {
    const CHUNKS: u64 = 300;
    let dir = tempfile::tempdir().unwrap();
    let scheme = scheme(4, 2);
    let mut cfg = repair_config(dir.path(), scheme);
    cfg.device_error_limit = 1_000;
    let engine = SimEngine::new(SEED);
    let (store, _) = Store::open(cfg.clone(), &engine).unwrap();
    let plan = FaultPlan {
        lost_write_ppm: 5_000,
        torn_write_ppm: 10_000,
        write_eio_ppm: 5_000,
        ..FaultPlan::default()
    };
    run(async {
        let (stored, failed) = put_under_write_faults(&engine, &store, scheme, plan, CHUNKS).await;
        assert!(failed >= 5, "{failed} puts failed");
        let local = store.local().unwrap();
        let ids: Vec<ChunkId> = stored.iter().map(|&n| chunk(SEED, n).0).collect();
        let mut repaired = 0;
        for id in &ids {
            match local.repair(id).await.unwrap() {
                RepairOutcome::Healthy => {}
                RepairOutcome::Repaired(n) => repaired += n,
                other => panic!("chunk {id}: {other:?}"),
            }
        }
        assert!(
            repaired >= 2,
            "lost writes were found and repaired: {repaired}"
        );
        assert_all_healthy(&store, &local, &ids).await;
        for &n in &stored {
            common::check(&local, SEED, n).await;
        }
    });
}

//! Background maintenance of the store: a device that went offline is refilled after a
//! restart, the scrub finds and fixes what reads never look at (parity), repairs are made
//! durable without waiting for a PUT, a chunk found lost is dropped and stored again by a PUT, and the
//! store runs all of it on a thread of its own (`Store::start_maintenance`) on both engines.

mod common;

use std::path::Path;
use std::time::Duration;

use chunkd::erasure::Scheme;
use chunkd::store::device::sim::SimEngine;
use chunkd::store::device::uring::UringEngine;
use chunkd::store::{
    DEFAULT_MAX_CHUNK_BYTES, DeviceState, Engine, PutOutcome, RepairOutcome, Store, StoreError,
    VerifiedChunk,
};
use common::{
    assert_all_whole, check_many, chunk, config, put_many, repair_config, run, scrub_config,
    spawn_repairs, wait_for,
};

const SEED: u64 = 0x3a1e_7e11;
const LIMIT: Duration = Duration::from_secs(30);

#[test]
fn a_device_that_went_offline_is_refilled_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let engine = SimEngine::new(3);
    let mut cfg = repair_config(dir.path(), Scheme::DEFAULT);
    cfg.device_error_limit = 2;
    let victim = 2;
    let (before, during) = {
        let (store, _) = Store::open(cfg.clone(), &engine).unwrap();
        run(async {
            let local = store.local().unwrap();
            let before = put_many(&local, Scheme::DEFAULT, SEED, 0..40, 8).await;
            // The device fails: reads take it offline, and the puts that follow skip it.
            engine.device(&cfg.devices[victim].path).set_lost(true);
            check_many(&local, SEED, 0..40, 4).await;
            assert_eq!(store.health().devices[victim].state, DeviceState::Offline);
            let during = put_many(&local, Scheme::DEFAULT, SEED, 40..80, 8).await;
            (before, during)
        })
    };
    // The device comes back (a loose cable); the store must not trust it as whole.
    engine.device(&cfg.devices[victim].path).set_lost(false);
    let (store, report) = Store::open(cfg.clone(), &engine).unwrap();
    assert_eq!(
        report.refilling,
        vec![cfg.devices[victim].to_string()],
        "recorded for refill"
    );
    run(async {
        spawn_repairs(&store);
        wait_for("the refill", LIMIT, || {
            store.health().devices[victim].state == DeviceState::Online
        })
        .await;
        let local = store.local().unwrap();
        assert_all_whole(&store, &local, &[before, during].concat()).await;
    });
}

#[test]
fn the_scrub_repairs_corrupt_parity_that_reads_never_see() {
    let dir = tempfile::tempdir().unwrap();
    let engine = SimEngine::new(4);
    let cfg = scrub_config(dir.path(), Scheme::DEFAULT);
    let (store, _) = Store::open(cfg.clone(), &engine).unwrap();
    run(async {
        let local = store.local().unwrap();
        let ids = put_many(&local, Scheme::DEFAULT, SEED, 0..20, 8).await;
        let parity = store.shard_locations(&ids[7]).unwrap().unwrap()[4];
        engine
            .device(&cfg.devices[parity.device].path)
            .corrupt(parity.data_offset_bytes() + 100, 1);
        check_many(&local, SEED, 0..20, 4).await;
        assert_eq!(
            store.health().shards_rebuilt,
            0,
            "reads use data shards only"
        );
        spawn_repairs(&store);
        wait_for("the scrub to repair the parity", LIMIT, || {
            store.health().shards_repaired >= 1
        })
        .await;
        assert_eq!(local.repair(&ids[7]).await.unwrap(), RepairOutcome::Healthy);
    });
}

#[test]
fn repairs_are_flushed_without_a_put() {
    let dir = tempfile::tempdir().unwrap();
    let engine = SimEngine::new(5);
    let cfg = repair_config(dir.path(), Scheme::DEFAULT);
    let (store, _) = Store::open(cfg.clone(), &engine).unwrap();
    run(async {
        let local = store.local().unwrap();
        let ids = put_many(&local, Scheme::DEFAULT, SEED, 0..10, 4).await;
        let data = store.shard_locations(&ids[3]).unwrap().unwrap()[1];
        let device = engine.device(&cfg.devices[data.device].path);
        device.corrupt(data.data_offset_bytes(), 1);
        let syncs_before = device.syncs();
        spawn_repairs(&store);
        check_many(&local, SEED, 3..4, 1).await; // rebuilds, queues the repair
        wait_for("the repair", LIMIT, || store.health().shards_repaired >= 1).await;
        wait_for("the repair's flush", LIMIT, || {
            device.syncs() > syncs_before
        })
        .await;
    });
    drop(store);
    // Power loss now must not undo the repair.
    engine.crash();
    let (store, _) = Store::open(cfg, &engine).unwrap();
    run(async {
        let local = store.local().unwrap();
        let (id, _) = chunk(SEED, 3);
        assert_eq!(local.repair(&id).await.unwrap(), RepairOutcome::Healthy);
    });
}

#[test]
fn a_lost_chunk_is_stored_again_by_a_put() {
    let dir = tempfile::tempdir().unwrap();
    let engine = SimEngine::new(6);
    let cfg = config(dir.path(), 64, Scheme::DEFAULT);
    let (store, _) = Store::open(cfg.clone(), &engine).unwrap();
    run(async {
        let local = store.local().unwrap();
        let (id, bytes) = chunk(SEED, 11);
        let scheme = Scheme::DEFAULT;
        let put = || VerifiedChunk::from_slice(&bytes, scheme, DEFAULT_MAX_CHUNK_BYTES).unwrap();
        assert_eq!(local.put(put()).await.unwrap(), PutOutcome::Created);
        let shards = store.shard_locations(&id).unwrap().unwrap();
        for shard in &shards[..2] {
            engine
                .device(&cfg.devices[shard.device].path)
                .corrupt(shard.header_offset_bytes, 4096);
        }
        assert!(matches!(
            local.read(&id, 0..bytes.len() as u64).await,
            Err(StoreError::Unreadable { .. })
        ));
        assert_eq!(
            local.repair(&id).await.unwrap(),
            RepairOutcome::Unrecoverable
        );
        // Dropped from the catalog, counted: a miss from now on, which a PUT fills.
        assert_eq!(store.health().chunks_lost, 1);
        assert_eq!(local.lookup(&id).unwrap(), None);
        assert!(matches!(
            local.read(&id, 0..bytes.len() as u64).await,
            Err(StoreError::NotFound)
        ));
        assert_eq!(
            local.put(put()).await.unwrap(),
            PutOutcome::Created,
            "stored afresh, not 'already present'"
        );
        assert!(!local.is_lost(&id));
        let read = local.read(&id, 0..bytes.len() as u64).await.unwrap();
        assert!(read.to_vec() == bytes);
        assert_eq!(local.repair(&id).await.unwrap(), RepairOutcome::Healthy);
    });
}

#[test]
fn a_header_corrupted_after_it_was_cached_is_found_by_repair() {
    let dir = tempfile::tempdir().unwrap();
    let engine = SimEngine::new(7);
    let cfg = config(dir.path(), 64, Scheme::DEFAULT);
    let (store, _) = Store::open(cfg.clone(), &engine).unwrap();
    run(async {
        let local = store.local().unwrap();
        let ids = put_many(&local, Scheme::DEFAULT, SEED, 0..4, 4).await;
        check_many(&local, SEED, 0..4, 1).await; // caches every data shard's header
        let shard = store.shard_locations(&ids[2]).unwrap().unwrap()[0];
        engine
            .device(&cfg.devices[shard.device].path)
            .corrupt(shard.header_offset_bytes + 16, 1);
        // Reads keep verifying the data against the cached checksums: still exact.
        check_many(&local, SEED, 2..3, 1).await;
        // Repair reads headers from the device, finds the damage and fixes it.
        assert_eq!(
            local.repair(&ids[2]).await.unwrap(),
            RepairOutcome::Repaired(1)
        );
        assert_eq!(local.repair(&ids[2]).await.unwrap(), RepairOutcome::Healthy);
    });
}

/// Starts the store's own maintenance thread, damages a data shard through `corrupt`
/// (device path, byte offset), reads the chunk (which rebuilds the shard and queues its
/// repair) and waits for the maintenance thread to repair it; then stops the thread and
/// checks the store lets go of its catalog.
fn repairs_run_on_the_stores_own_thread<E: Engine>(engine: &E, corrupt: impl Fn(&Path, u64)) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = repair_config(dir.path(), Scheme::DEFAULT);
    let (store, _) = Store::open(cfg.clone(), engine).unwrap();
    let maintenance = store.start_maintenance().unwrap();
    run(async {
        let local = store.local().unwrap();
        let ids = put_many(&local, Scheme::DEFAULT, SEED, 0..10, 4).await;
        let data = store.shard_locations(&ids[3]).unwrap().unwrap()[1];
        corrupt(&cfg.devices[data.device].path, data.data_offset_bytes());
        check_many(&local, SEED, 3..4, 1).await; // rebuilds, queues the repair
        // Nothing runs repairs on this thread's runtime: the store's thread does it.
        wait_for("the maintenance thread's repair", LIMIT, || {
            store.health().shards_repaired >= 1
        })
        .await;
        assert_eq!(local.repair(&ids[3]).await.unwrap(), RepairOutcome::Healthy);
    });
    drop(maintenance); // stops the thread and waits for it
    drop(store);
    let (store, report) = Store::open(cfg, engine).unwrap();
    assert_eq!(report.chunks, store.chunk_count());
}

#[test]
fn maintenance_runs_on_the_stores_own_thread_sim() {
    let engine = SimEngine::new(8);
    repairs_run_on_the_stores_own_thread(&engine, |path, offset| {
        engine.device(path).corrupt(offset, 1)
    });
}

#[test]
fn maintenance_runs_on_the_stores_own_thread_uring() {
    repairs_run_on_the_stores_own_thread(&UringEngine, |path, offset| {
        use std::os::unix::fs::FileExt;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .unwrap();
        let mut byte = [0u8];
        file.read_exact_at(&mut byte, offset).unwrap();
        file.write_all_at(&[!byte[0]], offset).unwrap();
        file.sync_all().unwrap();
    });
}

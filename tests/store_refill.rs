//! Refill of a replaced device, pinned by regression tests named after the bugs they
//! caught: a replaced device must stay `Refilling` until every chunk has its shard on it
//! again, durably, whatever reads, restarts and crashes happen meanwhile.

mod common;

use std::time::Duration;

use chunkd::chunk::ChunkId;
use chunkd::erasure::Scheme;
use chunkd::store::device::sim::{FaultPlan, SimEngine};
use chunkd::store::{DeviceState, Store, StoreConfig};
use common::{assert_all_whole, check_many, put_many, repair_config, run, spawn_repairs, wait_for};

const SEED: u64 = 0x4ef1_1111;
const CHUNKS: u64 = 120;
const REPLACED: usize = 1;
const REFILL_LIMIT: Duration = Duration::from_secs(30);

/// A sim store holding `CHUNKS` chunks, closed, whose device `REPLACED` was then swapped
/// for a blank one. Returns the chunks' ids.
fn store_with_a_replaced_device(engine: &SimEngine, cfg: &StoreConfig) -> Vec<ChunkId> {
    let (store, _) = Store::open(cfg.clone(), engine).unwrap();
    let ids = run(async {
        let local = store.local().unwrap();
        put_many(&local, Scheme::DEFAULT, SEED, 0..CHUNKS, 8).await
    });
    drop(store);
    engine.remove(&cfg.devices[REPLACED].path);
    ids
}

/// Opens the store and runs its refill until the replaced device is online.
fn refill(engine: &SimEngine, cfg: &StoreConfig) -> Store<SimEngine> {
    let (store, report) = Store::open(cfg.clone(), engine).unwrap();
    assert_eq!(report.refilling, vec![cfg.devices[REPLACED].to_string()]);
    run(async {
        spawn_repairs(&store);
        wait_for("the refill", REFILL_LIMIT, || {
            store.health().devices[REPLACED].state == DeviceState::Online
        })
        .await;
    });
    store
}

fn assert_whole_after_reopen(engine: &SimEngine, cfg: &StoreConfig, ids: &[ChunkId]) {
    let (store, report) = Store::open(cfg.clone(), engine).unwrap();
    assert!(report.refilling.is_empty(), "{report:?}");
    run(async {
        let local = store.local().unwrap();
        check_many(&local, SEED, 0..CHUNKS, 8).await;
        assert_eq!(
            store.health().shards_rebuilt,
            0,
            "no read met a missing shard"
        );
        assert_all_whole(&store, &local, ids).await;
    });
}

/// The bug: reads of chunks whose shard on the blank device was not refilled yet failed
/// its checksum, each counting as a device error, until the device was taken offline,
/// and then the refill, which only walks devices still `Refilling`, never ran on it.
#[test]
fn reads_before_the_refill_do_not_take_the_replaced_device_offline() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = repair_config(dir.path(), Scheme::DEFAULT);
    let engine = SimEngine::new(SEED);
    let ids = store_with_a_replaced_device(&engine, &cfg);
    let (store, _) = Store::open(cfg.clone(), &engine).unwrap();
    run(async {
        let local = store.local().unwrap();
        check_many(&local, SEED, 0..CHUNKS, 1).await;
        assert_eq!(
            store.health().devices[REPLACED].state,
            DeviceState::Refilling
        );
        spawn_repairs(&store);
        wait_for("the refill", REFILL_LIMIT, || {
            store.health().devices[REPLACED].state == DeviceState::Online
        })
        .await;
        assert_all_whole(&store, &local, &ids).await;
    });
}

/// The bug: a replaced device was marked `Refilling` only in memory. Its new superblock
/// was durable, so after a restart before the refill finished it came back `Online` with
/// most of its shards missing, and nothing refilled it.
#[test]
fn a_restart_before_the_refill_ends_keeps_the_device_refilling() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = repair_config(dir.path(), Scheme::DEFAULT);
    let engine = SimEngine::new(SEED);
    let ids = store_with_a_replaced_device(&engine, &cfg);
    {
        let (store, report) = Store::open(cfg.clone(), &engine).unwrap();
        assert_eq!(report.refilling.len(), 1);
        drop(store);
    }
    let (store, report) = Store::open(cfg.clone(), &engine).unwrap();
    assert_eq!(
        report.refilling,
        vec![cfg.devices[REPLACED].to_string()],
        "still to be refilled after a restart"
    );
    assert_eq!(
        store.health().devices[REPLACED].state,
        DeviceState::Refilling
    );
    drop(store);
    drop(refill(&engine, &cfg));
    assert_whole_after_reopen(&engine, &cfg, &ids);
}

/// The bug: the refill marked the device online as soon as its shards were written, but
/// nothing flushed those writes; after a power loss the device was trusted as online with
/// its refill gone.
#[test]
fn a_refill_is_durable_before_the_device_goes_online() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = repair_config(dir.path(), Scheme::DEFAULT);
    let engine = SimEngine::new(SEED);
    let ids = store_with_a_replaced_device(&engine, &cfg);
    drop(refill(&engine, &cfg));
    engine.crash();
    assert_whole_after_reopen(&engine, &cfg, &ids);
}

/// The bug: the end of a refill set every device it had walked to `Online`, including one
/// that had failed (and gone offline) during the refill, with its shards never written.
/// Now it stays offline, the catalog still lists it as refilling, and the next start
/// refills it. (Its writes fail here but its flush succeeds, as with a device that
/// rejects writes for a while.)
#[test]
fn a_device_that_fails_during_its_refill_stays_offline() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = repair_config(dir.path(), Scheme::DEFAULT);
    let engine = SimEngine::new(SEED);
    let ids = store_with_a_replaced_device(&engine, &cfg);
    {
        let (store, _) = Store::open(cfg.clone(), &engine).unwrap();
        // Only the replacement is written to during the refill.
        engine.set_faults(FaultPlan {
            write_eio_ppm: 1_000_000,
            ..FaultPlan::default()
        });
        run(async {
            spawn_repairs(&store);
            wait_for("the failing device to go offline", REFILL_LIMIT, || {
                store.health().devices[REPLACED].state == DeviceState::Offline
            })
            .await;
            // Give the rest of the refill time to finish (it takes a few milliseconds):
            // the device must not come back online at its end.
            tokio::time::sleep(Duration::from_millis(500)).await;
        });
        let health = store.health();
        assert_eq!(health.devices[REPLACED].state, DeviceState::Offline);
        assert_eq!(health.shards_repaired, 0);
        engine.set_faults(FaultPlan::default());
    }
    drop(refill(&engine, &cfg));
    assert_whole_after_reopen(&engine, &cfg, &ids);
}

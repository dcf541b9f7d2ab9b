//! Chunks filled from an origin (`LocalStore::put_filled`) on the simulated engine: a fill
//! commits without a device flush; a power loss may lose it, but it then reads as
//! unreadable, never as wrong bytes, and a fill that replaces the broken copy makes it
//! readable again; a client PUT answered "already stored" for an unflushed fill flushes
//! first, so what a PUT acknowledges survives a power loss.

mod common;

use chunkd::erasure::Scheme;
use chunkd::store::device::sim::SimEngine;
use chunkd::store::{
    DEFAULT_MAX_CHUNK_BYTES, PutOutcome, Store, StoreConfig, StoreError, VerifiedChunk,
};
use common::{config, run};

const CHUNK_LEN: usize = 300_001;

fn verified(bytes: &[u8]) -> VerifiedChunk {
    VerifiedChunk::from_slice(bytes, Scheme::DEFAULT, DEFAULT_MAX_CHUNK_BYTES).unwrap()
}

/// Device flushes so far, over all devices.
fn syncs(engine: &SimEngine, config: &StoreConfig) -> u64 {
    config
        .devices
        .iter()
        .map(|d| engine.device(&d.path).syncs())
        .sum()
}

/// Loses every write not yet flushed, as a power cut does, and brings the devices back.
fn power_loss(engine: &SimEngine, config: &StoreConfig) {
    for device in &config.devices {
        engine.device(&device.path).set_lost(true);
    }
    engine.crash();
    for device in &config.devices {
        engine.device(&device.path).set_lost(false);
    }
}

#[test]
fn a_fill_commits_without_a_flush_and_a_put_with_one() {
    let dir = tempfile::tempdir().unwrap();
    let engine = SimEngine::new(0x5f11_0001);
    let config = config(dir.path(), 64, Scheme::DEFAULT);
    let (store, _) = Store::open(config.clone(), &engine).unwrap();
    run(async {
        let local = store.local().unwrap();
        let before = syncs(&engine, &config);
        let filled = common::chunk_bytes(1, 1, CHUNK_LEN);
        let outcome = local.put_filled(verified(&filled), false, false).await;
        assert_eq!(outcome.unwrap(), PutOutcome::Created);
        assert_eq!(syncs(&engine, &config), before, "a fill waits for no flush");
        let id = *verified(&filled).id();
        let read = local.read(&id, 0..CHUNK_LEN as u64).await.unwrap();
        assert!(common::same_bytes(&read, &filled));

        let put = common::chunk_bytes(1, 2, CHUNK_LEN);
        assert_eq!(
            local.put(verified(&put)).await.unwrap(),
            PutOutcome::Created
        );
        assert!(syncs(&engine, &config) > before, "a PUT is flushed");

        let durable = common::chunk_bytes(1, 3, CHUNK_LEN);
        let before = syncs(&engine, &config);
        local
            .put_filled(verified(&durable), false, true)
            .await
            .unwrap();
        assert!(
            syncs(&engine, &config) > before,
            "--origin-durable-fills flushes"
        );
    });
}

#[test]
fn a_put_answered_already_stored_for_an_unflushed_fill_survives_a_power_loss() {
    let dir = tempfile::tempdir().unwrap();
    let engine = SimEngine::new(0x5f11_0002);
    let config = config(dir.path(), 64, Scheme::DEFAULT);
    let bytes = common::chunk_bytes(2, 1, CHUNK_LEN);
    let id = *verified(&bytes).id();
    {
        let (store, _) = Store::open(config.clone(), &engine).unwrap();
        run(async {
            let local = store.local().unwrap();
            let filled = local.put_filled(verified(&bytes), false, false).await;
            assert_eq!(filled.unwrap(), PutOutcome::Created);
            let before = syncs(&engine, &config);
            // What a client's PUT of the same chunk calls: its 200 promises durability.
            let put = local.put(verified(&bytes)).await.unwrap();
            assert_eq!(put, PutOutcome::AlreadyPresent);
            assert!(
                syncs(&engine, &config) > before,
                "the unflushed fill was flushed before the PUT's answer"
            );
            // Nothing pending now: a second such PUT flushes nothing.
            let before = syncs(&engine, &config);
            local.put(verified(&bytes)).await.unwrap();
            assert_eq!(syncs(&engine, &config), before);
        });
        drop(store);
    }
    power_loss(&engine, &config);
    let (store, _) = Store::open(config.clone(), &engine).unwrap();
    run(async {
        let local = store.local().unwrap();
        let read = local.read(&id, 0..CHUNK_LEN as u64).await;
        let read = read.unwrap_or_else(|e| panic!("the acknowledged chunk is lost: {e}"));
        assert!(common::same_bytes(&read, &bytes));
    });
}

#[test]
fn a_fill_lost_in_a_power_loss_reads_unreadable_never_wrong_and_a_new_fill_replaces_it() {
    let dir = tempfile::tempdir().unwrap();
    let engine = SimEngine::new(0x5f11_0003);
    let config = config(dir.path(), 64, Scheme::DEFAULT);
    let old = common::chunk_bytes(3, 1, CHUNK_LEN);
    let filled = common::chunk_bytes(3, 2, CHUNK_LEN);
    let id = *verified(&filled).id();
    {
        let (store, _) = Store::open(config.clone(), &engine).unwrap();
        run(async {
            let local = store.local().unwrap();
            // Another chunk's durable shards where the fill will land.
            let old_id = *verified(&old).id();
            local.put(verified(&old)).await.unwrap();
            local.delete(&old_id).await.unwrap();
            // Past the removal's grace, so its space is reused.
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            local
                .put_filled(verified(&filled), false, false)
                .await
                .unwrap();
        });
        drop(store);
    }
    power_loss(&engine, &config);
    let (store, _) = Store::open(config.clone(), &engine).unwrap();
    run(async {
        let local = store.local().unwrap();
        // The record survived (its commit was durable), its shards did not: the old
        // chunk's bytes are there, and verification refuses them.
        match local.read(&id, 0..CHUNK_LEN as u64).await {
            Err(StoreError::Unreadable { .. }) => {}
            Ok(read) if common::same_bytes(&read, &filled) => {
                panic!("the unflushed fill survived the power loss: nothing was tested")
            }
            Ok(_) => panic!("wrong bytes served"),
            Err(other) => panic!("expected unreadable, got {other}"),
        }
        // The fill a GET then makes replaces the broken copy.
        let replaced = local.put_filled(verified(&filled), true, false).await;
        assert_eq!(replaced.unwrap(), PutOutcome::Created);
        let read = local.read(&id, 0..CHUNK_LEN as u64).await.unwrap();
        assert!(common::same_bytes(&read, &filled));
    });
}

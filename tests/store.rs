//! The flash store through its public API, each test body run against both engines: the
//! simulated one (memory, seeded faults) and io_uring with O_DIRECT on files.

mod common;

use chunkd::erasure::Scheme;
use chunkd::store::device::sim::SimEngine;
use chunkd::store::device::uring::UringEngine;
use chunkd::store::{Engine, Store};
use common::{check, config, put, run};

fn survives_restarts<E: Engine>(engine: &E, chunks: u64) {
    let dir = tempfile::tempdir().unwrap();
    let scheme = Scheme::DEFAULT;
    let cfg = config(dir.path(), 64, scheme);
    let seed = 7;
    {
        let (store, report) = Store::open(cfg.clone(), engine).unwrap();
        assert!(report.created);
        run(async {
            let local = store.local().unwrap();
            for n in 0..chunks {
                put(&local, scheme, seed, n).await;
            }
            for n in 0..chunks {
                check(&local, seed, n).await;
            }
        });
    }
    let (store, report) = Store::open(cfg, engine).unwrap();
    assert!(!report.created);
    assert_eq!(report.chunks, chunks as usize);
    run(async {
        let local = store.local().unwrap();
        for n in 0..chunks {
            check(&local, seed, n).await;
        }
    });
}

#[test]
fn smoke_sim() {
    survives_restarts(&SimEngine::new(1), 40);
}

#[test]
fn smoke_uring() {
    survives_restarts(&UringEngine, 40);
}

fn open_error<E: Engine>(config: chunkd::store::StoreConfig, engine: &E) -> String {
    match Store::open(config, engine) {
        Ok(_) => panic!("the store opened"),
        Err(error) => error.to_string(),
    }
}

/// Issue 11, finding 10: a second node with its own data directory on the first's devices
/// is refused while the first runs (the devices are locked), and after it stopped (the
/// devices hold another store) unless told to reformat them.
#[test]
fn a_second_store_on_the_same_devices_is_refused() {
    let first_dir = tempfile::tempdir().unwrap();
    let second_dir = tempfile::tempdir().unwrap();
    let first = config(first_dir.path(), 64, Scheme::DEFAULT);
    let mut second = first.clone();
    second.data_dir = second_dir.path().to_path_buf();
    second.device_lock_wait = std::time::Duration::ZERO;
    let (store, _) = Store::open(first.clone(), &UringEngine).unwrap();
    let locked = open_error(second.clone(), &UringEngine);
    assert!(locked.contains("in use"), "{locked}");
    drop(store);
    let foreign = open_error(second.clone(), &UringEngine);
    assert!(
        foreign.contains("belongs to chunkd store") && foreign.contains("reformat-foreign-devices"),
        "{foreign}"
    );
    // The first store is untouched and opens again.
    let (store, report) = Store::open(first, &UringEngine).unwrap();
    assert!(!report.created);
    drop(store);
    second.reformat_foreign_devices = true;
    let (_, report) = Store::open(second, &UringEngine).unwrap();
    assert!(report.created);
}

/// Issue 11, finding 11: one device listed twice, by the same path or by another name for
/// the same file, is refused before anything is written.
#[test]
fn a_device_listed_twice_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut same_path = config(dir.path(), 64, Scheme::DEFAULT);
    same_path.devices[4] = same_path.devices[0].clone();
    let error = open_error(same_path, &SimEngine::new(1));
    assert!(error.contains("same device"), "{error}");

    let dir = tempfile::tempdir().unwrap();
    let mut linked = config(dir.path(), 64, Scheme::DEFAULT);
    std::fs::write(dir.path().join("dev0"), b"").unwrap();
    std::fs::hard_link(dir.path().join("dev0"), dir.path().join("dev0-again")).unwrap();
    linked.devices[0].path = dir.path().join("dev0");
    linked.devices[3].path = dir.path().join("dev0-again");
    let error = open_error(linked, &UringEngine);
    assert!(error.contains("same device"), "{error}");
}

/// Issue 11, finding 13: the catalog's lock error names the file and the likely cause.
#[test]
fn a_catalog_already_open_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 64, Scheme::DEFAULT);
    let _open = Store::open(cfg.clone(), &SimEngine::new(1)).unwrap();
    let error = open_error(cfg, &SimEngine::new(1));
    assert!(
        error.contains("catalog.redb") && error.contains("another chunkd"),
        "{error}"
    );
}

/// Issue 11, finding 15: the scrub reports its progress (chunks checked, passes done).
#[test]
fn the_scrub_reports_its_progress() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::scrub_config(dir.path(), Scheme::DEFAULT);
    let (store, _) = Store::open(cfg, &SimEngine::new(3)).unwrap();
    run(async {
        let local = store.local().unwrap();
        for n in 0..20 {
            put(&local, Scheme::DEFAULT, 5, n).await;
        }
        common::spawn_repairs(&store);
        common::wait_for(
            "a full scrub pass",
            std::time::Duration::from_secs(30),
            || store.health().scrub_passes >= 1,
        )
        .await;
        let health = store.health();
        assert!(health.scrub_chunks >= 20, "{health:?}");
        assert!(health.scrub_pass_chunks <= 20, "{health:?}");
    });
}

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

//! Ten thousand random chunks survive restarts byte-exact, on both engines: one test body,
//! run on the simulated engine and on io_uring with O_DIRECT files.
//!
//! Chunk `n` is regenerated from the seed whenever it is needed (its length is log-uniform
//! from 1 byte to 1 MiB), so the test holds no copy of the ~750 MB it writes. Stored, the
//! chunks take about 1.2 GB: ~940 MB of data and parity plus a 4 KiB header and up to
//! 4 KiB of padding per shard, which 5 devices of 400 MiB hold with room to spare.

mod common;

use std::collections::BTreeSet;

use chunkd::chunk::ChunkId;
use chunkd::erasure::Scheme;
use chunkd::store::device::sim::SimEngine;
use chunkd::store::device::uring::UringEngine;
use chunkd::store::{Engine, LocalStore, Store};
use common::{Rng, check_many, chunk, config, distinct, put_many, run, same_bytes};

const CHUNKS: u64 = 10_000;
const SEED: u64 = 0x5eed_0001;
const IN_FLIGHT: usize = 24;
const DEVICE_MIB: u64 = 400;
/// Random sub-range reads checked after the first restart.
const RANGE_READS: u64 = 3_000;

fn survives_restarts<E: Engine>(engine: &E) {
    let dir = tempfile::tempdir().unwrap();
    let scheme = Scheme::DEFAULT;
    let cfg = config(dir.path(), DEVICE_MIB, scheme);
    let ids = {
        let (store, report) = Store::open(cfg.clone(), engine).unwrap();
        assert!(report.created);
        let ids = run(async {
            let local = store.local().unwrap();
            put_many(&local, scheme, SEED, 0..CHUNKS, IN_FLIGHT).await
        });
        assert_eq!(store.chunk_count(), distinct(&ids));
        ids
    };
    // Short chunks repeat (a 1-byte chunk has 256 values): a few hundred are duplicates.
    let stored = distinct(&ids);
    assert!(
        stored > CHUNKS as usize * 9 / 10,
        "{stored} distinct chunks"
    );
    for restart in 1..=2 {
        let (store, report) = Store::open(cfg.clone(), engine).unwrap();
        assert!(!report.created, "restart {restart}");
        assert_eq!(report.chunks, stored, "restart {restart}");
        assert!(report.refilling.is_empty(), "restart {restart}: {report:?}");
        let listed: BTreeSet<ChunkId> = store
            .list(None, usize::MAX)
            .unwrap()
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert!(
            listed == ids.iter().copied().collect(),
            "restart {restart}: the catalog lists exactly the chunks put"
        );
        run(async {
            let local = store.local().unwrap();
            check_many(&local, SEED, 0..CHUNKS, IN_FLIGHT).await;
            if restart == 1 {
                check_random_ranges(&local).await;
            }
        });
        let health = store.health();
        assert_eq!(
            (health.shards_rebuilt, health.chunks_unreadable),
            (0, 0),
            "restart {restart}: nothing needed rebuilding"
        );
    }
}

/// Reads random sub-ranges of random chunks, including empty ranges, single bytes and
/// ranges ending at the chunk's last byte, and compares them with the expected bytes.
async fn check_random_ranges<E: Engine>(local: &LocalStore<E>) {
    let mut rng = Rng::new(SEED ^ 0xa11);
    for _ in 0..RANGE_READS {
        let n = rng.below(CHUNKS);
        let (id, bytes) = chunk(SEED, n);
        let len = bytes.len() as u64;
        let (start, end) = match rng.below(4) {
            0 => {
                let at = rng.below(len + 1);
                (at, at)
            }
            1 => {
                let at = rng.below(len);
                (at, at + 1)
            }
            2 => (rng.below(len), len),
            _ => {
                let (a, b) = (rng.below(len + 1), rng.below(len + 1));
                (a.min(b), a.max(b))
            }
        };
        let read = local
            .read(&id, start..end)
            .await
            .unwrap_or_else(|e| panic!("chunk {n}, bytes {start}..{end}: {e}"));
        assert_eq!(read.chunk_len_bytes, len);
        assert!(
            same_bytes(&read, &bytes[start as usize..end as usize]),
            "chunk {n} of {len} bytes: range {start}..{end} differs"
        );
    }
}

#[test]
fn ten_thousand_chunks_survive_restarts_sim() {
    survives_restarts(&SimEngine::new(1));
}

#[test]
fn ten_thousand_chunks_survive_restarts_uring() {
    survives_restarts(&UringEngine);
}

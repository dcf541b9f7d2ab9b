//! Helpers shared by the store tests: configurations, deterministic chunk contents, and
//! running async test bodies on a tokio-uring runtime.

#![allow(dead_code)] // each test file uses a different subset

pub mod child;
pub mod refs;
mod seeded;

use std::future::Future;
use std::path::Path;

use chunkd::chunk::ChunkId;
use chunkd::erasure::Scheme;
use chunkd::store::{
    ChunkBytes, DEFAULT_MAX_CHUNK_BYTES, DeviceState, Engine, LocalStore, PutOutcome,
    RepairOutcome, Store, StoreConfig, VerifiedChunk,
};

/// A store config with five devices of `device_mib` MiB each under `dir`.
pub fn config(dir: &Path, device_mib: u64, scheme: Scheme) -> StoreConfig {
    let mut config = StoreConfig::embedded_default(dir);
    for device in &mut config.devices {
        device.size_bytes = Some(device_mib << 20);
    }
    config.scheme = scheme;
    config
}

/// A rate that never throttles: repair, refill and scrub finish as fast as the devices go.
pub const UNTHROTTLED_BYTES_PER_SECOND: u64 = 1 << 40;

/// Five 64 MiB devices under `dir` with repair and refill unthrottled, so a test waits
/// only for the work itself: the configuration of the repair, refill and fault tests.
pub fn repair_config(dir: &Path, scheme: Scheme) -> StoreConfig {
    let mut config = config(dir, 64, scheme);
    config.repair_bytes_per_second = UNTHROTTLED_BYTES_PER_SECOND;
    config
}

/// As [`repair_config`], with the scrub on and unthrottled too.
pub fn scrub_config(dir: &Path, scheme: Scheme) -> StoreConfig {
    let mut config = repair_config(dir, scheme);
    config.scrub_bytes_per_second = UNTHROTTLED_BYTES_PER_SECOND;
    config
}

/// Runs `body` on a fresh tokio-uring runtime on this thread.
pub fn run<F: Future>(body: F) -> F::Output {
    tokio_uring::start(body)
}

/// The bytes of test chunk `n` of `len` bytes: a cheap, seeded pseudo-random stream.
pub fn chunk_bytes(seed: u64, n: u64, len: usize) -> Vec<u8> {
    seeded::xorshift_bytes(seed ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15), len)
}

/// Length of test chunk `n`: log-uniform from 1 byte to 1 MiB, so small, odd and
/// full-size chunks all appear.
pub fn chunk_len(seed: u64, n: u64) -> usize {
    let r = chunk_bytes(seed ^ 0x5eed, n, 8);
    let unit = u64::from_le_bytes(r.try_into().unwrap()) as f64 / u64::MAX as f64;
    let max = f64::from(DEFAULT_MAX_CHUNK_BYTES);
    (max.powf(unit).round() as usize).clamp(1, DEFAULT_MAX_CHUNK_BYTES as usize)
}

/// Puts test chunk `n`; returns its id.
pub async fn put<E: Engine>(local: &LocalStore<E>, scheme: Scheme, seed: u64, n: u64) -> ChunkId {
    let bytes = chunk_bytes(seed, n, chunk_len(seed, n));
    let chunk = VerifiedChunk::from_slice(&bytes, scheme, DEFAULT_MAX_CHUNK_BYTES).unwrap();
    let id = *chunk.id();
    let outcome = local
        .put(chunk)
        .await
        .unwrap_or_else(|e| panic!("put {n}: {e}"));
    assert_eq!(outcome, PutOutcome::Created, "chunk {n} was new");
    id
}

/// Reads chunk `n` whole and checks it byte for byte.
pub async fn check<E: Engine>(local: &LocalStore<E>, seed: u64, n: u64) {
    let expected = chunk_bytes(seed, n, chunk_len(seed, n));
    let id = ChunkId::of(&expected);
    let read = local
        .read(&id, 0..expected.len() as u64)
        .await
        .unwrap_or_else(|e| panic!("read {n}: {e}"));
    assert_eq!(read.chunk_len_bytes, expected.len() as u64);
    assert!(same_bytes(&read, &expected), "chunk {n} differs");
}

/// Whether `read` holds exactly `expected` (without joining its segments).
pub fn same_bytes(read: &ChunkBytes, expected: &[u8]) -> bool {
    let mut rest = expected;
    for segment in &read.segments {
        match rest.split_at_checked(segment.len()) {
            Some((head, tail)) if head == &segment[..] => rest = tail,
            _ => return false,
        }
    }
    rest.is_empty()
}

/// A small seeded generator for test decisions (which chunk, which range, how long to wait),
/// so every run of a test makes the same choices.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// SplitMix64.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound` (`bound > 0`).
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound
    }
}

/// The bytes and id of test chunk `n`.
pub fn chunk(seed: u64, n: u64) -> (ChunkId, Vec<u8>) {
    let bytes = chunk_bytes(seed, n, chunk_len(seed, n));
    (ChunkId::of(&bytes), bytes)
}

/// Puts test chunks `ns` with up to `in_flight` puts at once; returns their ids in order.
/// Short test chunks repeat (there are only 256 one-byte chunks), so a put may find its
/// chunk already stored, but only if an earlier chunk of `ns` had the same bytes: each
/// distinct chunk must be created exactly once.
pub async fn put_many<E: Engine>(
    local: &LocalStore<E>,
    scheme: Scheme,
    seed: u64,
    ns: std::ops::Range<u64>,
    in_flight: usize,
) -> Vec<ChunkId> {
    use futures_util::StreamExt;
    let put = |n: u64| async move {
        let (id, bytes) = chunk(seed, n);
        let chunk = VerifiedChunk::from_slice(&bytes, scheme, DEFAULT_MAX_CHUNK_BYTES).unwrap();
        let outcome = local
            .put(chunk)
            .await
            .unwrap_or_else(|e| panic!("put {n}: {e}"));
        (id, outcome)
    };
    let puts: Vec<(ChunkId, PutOutcome)> = futures_util::stream::iter(ns)
        .map(put)
        .buffered(in_flight)
        .collect()
        .await;
    let created = puts
        .iter()
        .filter(|(_, outcome)| *outcome == PutOutcome::Created)
        .count();
    let ids: Vec<ChunkId> = puts.into_iter().map(|(id, _)| id).collect();
    assert_eq!(created, distinct(&ids), "each distinct chunk created once");
    ids
}

/// Number of distinct ids in `ids`.
pub fn distinct(ids: &[ChunkId]) -> usize {
    ids.iter().collect::<std::collections::HashSet<_>>().len()
}

/// Reads test chunks `ns` whole, up to `in_flight` at once, and checks them byte for byte.
pub async fn check_many<E: Engine>(
    local: &LocalStore<E>,
    seed: u64,
    ns: std::ops::Range<u64>,
    in_flight: usize,
) {
    use futures_util::StreamExt;
    futures_util::stream::iter(ns)
        .for_each_concurrent(in_flight, |n| check(local, seed, n))
        .await;
}

/// Repairs every chunk in `ids`, then checks that a second repair finds each one
/// `Healthy` with every device online: all `k + m` shards of every chunk are sound.
pub async fn assert_all_healthy<E: Engine>(
    store: &Store<E>,
    local: &LocalStore<E>,
    ids: &[ChunkId],
) {
    let devices = store.health().devices;
    assert!(
        devices.iter().all(|d| d.state == DeviceState::Online),
        "every device is online: {devices:?}"
    );
    for id in ids {
        let first = local.repair(id).await.unwrap();
        assert!(
            matches!(first, RepairOutcome::Healthy | RepairOutcome::Repaired(_)),
            "chunk {id}: {first:?}"
        );
    }
    for id in ids {
        assert_eq!(
            local.repair(id).await.unwrap(),
            RepairOutcome::Healthy,
            "chunk {id} after repair"
        );
    }
}

/// Starts the store's background repair and refill loop on this tokio-uring runtime; it
/// runs until the runtime ends.
pub fn spawn_repairs<E: Engine>(store: &Store<E>) {
    let store = store.clone();
    tokio_uring::spawn(async move {
        let local = store.local().unwrap();
        local.run_repairs().await;
    });
}

/// Waits (polling) until `done` holds, failing the test after `limit`.
pub async fn wait_for(what: &str, limit: std::time::Duration, mut done: impl FnMut() -> bool) {
    let started = std::time::Instant::now();
    while !done() {
        assert!(
            started.elapsed() < limit,
            "gave up waiting for {what} after {limit:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// Checks, without repairing anything first, that every chunk in `ids` has all `k + m`
/// shards sound with every device online: for after a refill, which must leave nothing
/// to repair.
pub async fn assert_all_whole<E: Engine>(store: &Store<E>, local: &LocalStore<E>, ids: &[ChunkId]) {
    let devices = store.health().devices;
    assert!(
        devices.iter().all(|d| d.state == DeviceState::Online),
        "every device is online: {devices:?}"
    );
    for id in ids {
        assert_eq!(
            local.repair(id).await.unwrap(),
            RepairOutcome::Healthy,
            "chunk {id}"
        );
    }
}

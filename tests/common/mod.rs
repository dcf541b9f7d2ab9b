//! Helpers shared by the store tests: configurations, deterministic chunk contents, and
//! running async test bodies on a tokio-uring runtime.

#![allow(dead_code)] // each test file uses a different subset

use std::future::Future;
use std::path::Path;

use chunkd::chunk::ChunkId;
use chunkd::erasure::Scheme;
use chunkd::store::{
    DEFAULT_MAX_CHUNK_BYTES, Engine, LocalStore, PutOutcome, StoreConfig, VerifiedChunk,
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

/// Runs `body` on a fresh tokio-uring runtime on this thread.
pub fn run<F: Future>(body: F) -> F::Output {
    tokio_uring::start(body)
}

/// The bytes of test chunk `n` of `len` bytes: a cheap, seeded pseudo-random stream.
pub fn chunk_bytes(seed: u64, n: u64, len: usize) -> Vec<u8> {
    let mut state = (seed ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15)) | 1;
    let mut bytes = Vec::with_capacity(len + 8);
    while bytes.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    bytes.truncate(len);
    bytes
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
    assert!(read.to_vec() == expected, "chunk {n} differs");
}

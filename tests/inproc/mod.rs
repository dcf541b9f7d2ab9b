//! The harness of the in-process HTTP tests: a node on the simulated engine (seeded
//! faults, devices in memory), served by the same `CoreServer` the binary runs, over
//! in-memory duplex streams, on a current-thread tokio runtime inside a `LocalSet` (the
//! handlers use `spawn_local`, as on a core). Clients: hyper's HTTP/1.1 and HTTP/2
//! handshakes over one end of a duplex ([`Client`]), and a raw HTTP/1.1 client that writes
//! any bytes and parses answers strictly ([`Raw`]).
//!
//! Time: tests whose waits are timers only (header and idle timeouts) pause the clock with
//! `tokio::time::pause()`, so a 2 s timeout takes no wall time and is asserted exactly.
//! The store's commit thread is a real thread: a PUT waits for it, and with a paused clock
//! tokio would jump time forward meanwhile (firing idle timeouts). So tests store their
//! chunks before pausing, or `resume()` the clock before a PUT.

#![allow(dead_code)] // each test file uses a different subset

mod bystander;
mod client;
#[path = "../harness/exposition.rs"]
mod exposition;
#[path = "../harness/multipart.rs"]
mod multipart;
mod node;
mod raw;
#[path = "../harness/response.rs"]
mod response;
#[path = "../common/seeded.rs"]
mod seeded;

use std::future::Future;

use chunkd::chunk::ChunkId;

#[allow(unused_imports)]
pub use bystander::Bystander;
#[allow(unused_imports)]
pub use client::{Client, Version};
#[allow(unused_imports)]
pub use exposition::metric;
#[allow(unused_imports)]
pub use multipart::{Part, check_parts, parse_multipart};
#[allow(unused_imports)]
pub use node::TestNode;
#[allow(unused_imports)]
pub use raw::{Raw, request_bytes};
#[allow(unused_imports)]
pub use response::Response;

/// Both protocols, for tests that run the same body over each.
pub const VERSIONS: [Version; 2] = [Version::Http1, Version::Http2];

/// Runs `body` on a current-thread runtime (timers on) inside a `LocalSet`, as a core runs
/// its connections.
pub fn run<F: Future>(body: F) -> F::Output {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    tokio::task::LocalSet::new().block_on(&runtime, body)
}

/// `len` bytes of a seeded pseudo-random stream (xorshift): the same chunks as the tests
/// of the real binary make from the same seed.
pub fn chunk_bytes(seed: u64, len: usize) -> Vec<u8> {
    seeded::xorshift_bytes(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15), len)
}

/// The chunk id of `bytes`: 64 lowercase hex digits of BLAKE3.
pub fn id_of(bytes: &[u8]) -> String {
    ChunkId::of(bytes).to_string()
}

/// The path of chunk `id`.
pub fn chunk_path(id: &str) -> String {
    format!("/v1/chunks/{id}")
}

//! The harness of the HTTP tests: runs the real `chunkd serve` binary on a free port with
//! small file devices, and talks to it as clients do — a raw HTTP/1.1 client over
//! `std::net::TcpStream` (full control of the bytes, for bad input too) and `curl` — with
//! parsers for what comes back (responses, `multipart/byteranges`, Prometheus text) —
//! and the origins a node fills its misses from: a test HTTP origin and moto's S3 server.
//!
//! Every server is killed when its [`Server`] is dropped, so a failing test leaks no
//! process; its log is printed when the test panics.
//!
//! Only what needs the binary uses this harness (real clients, signals, the command line
//! and config file, the README): the API, faults and limits are tested in-process on the
//! simulated engine through `tests/inproc`.

#![allow(dead_code)] // each test file uses a different subset

mod client;
mod curl;
mod exposition;
mod moto;
mod multipart;
mod origin_http;
mod prometheus;
mod response;
#[path = "../common/seeded.rs"]
mod seeded;
mod server;

use std::time::Duration;

use chunkd::chunk::ChunkId;

// Each test file uses a different subset of these.
#[allow(unused_imports)]
pub use client::*;
#[allow(unused_imports)]
pub use curl::{CurlResponse, curl, tool_or_skip};
#[allow(unused_imports)]
pub use exposition::metric;
#[allow(unused_imports)]
pub use moto::{MOTO_ENV, Moto, moto_or_skip};
#[allow(unused_imports)]
pub use multipart::{Part, check_parts, parse_multipart};
#[allow(unused_imports)]
pub use origin_http::{Behaviour, HttpOrigin};
#[allow(unused_imports)]
pub use prometheus::{metrics, wait_for_metric};
#[allow(unused_imports)]
pub use response::Response;
#[allow(unused_imports)]
pub use server::*;

/// How long a server may take to print its address and to turn ready (it takes well under
/// a second; the bound only turns a hang into a failure).
pub const START_LIMIT: Duration = Duration::from_secs(30);
/// How long a client waits for any one read before the test fails.
pub const READ_LIMIT: Duration = Duration::from_secs(30);
/// The header read timeout every test server gets unless a test sets its own: short, so
/// the slow-client test is quick.
pub const HEADER_READ_TIMEOUT: &str = "2s";

/// Devices per node: the default 4 + 1 scheme puts one shard of each chunk on each.
pub const DEVICES: usize = 5;

/// `len` bytes of a seeded pseudo-random stream (xorshift), so each test's chunks are
/// distinct and every run makes the same ones.
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

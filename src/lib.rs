//! chunkd: a cache-tier node for encrypted, content-addressed chunks.
//!
//! The modules follow the path of a chunk. On the client side an image is cut into chunks
//! ([`chunk`]), each sealed convergently ([`crypto`]) and named by the hash of its sealed
//! bytes; [`image`] drives that for whole files (`chunkd pack` / `unpack`). On the node a
//! chunk is split into erasure shards ([`erasure`]) and served over HTTP with byte ranges
//! ([`range`]). Sizes and durations as operators write them are parsed in one place,
//! [`units`]. See `ARCHITECTURE.md` for the bird's-eye view and each module's invariants.

pub mod bench;
pub mod cache;
pub mod chunk;
pub mod client;
pub mod config;
pub mod cores;
pub mod crypto;
pub mod erasure;
pub mod http;
pub mod image;
pub mod metrics;
pub mod metrics_gc;
pub mod metrics_origin;
pub mod origin;
pub mod range;
pub mod runs;
pub mod sim;
pub mod store;
pub mod units;
pub mod xorshift;

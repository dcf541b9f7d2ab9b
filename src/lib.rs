//! chunkd: a cache-tier node for encrypted, content-addressed chunks.
//!
//! The library is laid out as the path a chunk takes. See `ARCHITECTURE.md` for the
//! bird's-eye view and the invariants of each module.

pub mod range;

//! The cache's replacement policy and tiers: what chunkd keeps when it must forget.
//!
//! [`policy`] is S3-FIFO (Yang et al., SOSP '23) over `u64` keys and byte sizes: three
//! queues, no list moves on a hit. Every tier (memory, flash) wraps one [`policy::S3Fifo`]
//! and keeps the per-entry state (size, hit count, queue) in its own map or index entry,
//! reached through the [`policy::Entries`] trait; a hit only bumps that state's counter.
//!
//! **Architecture invariant:** the policy does no I/O, reads no clock and takes no lock:
//! single-threaded structures that a tier wraps (and locks, if it is shared).
//!
//! [`memory`] is the memory tier in front of flash: shards by key, each a `Mutex` over its
//! map and its own `S3Fifo`; its bytes live in a memfd arena (`memory_bytes`), which
//! `--memory-send sendfile` can hand to sockets without a copy. **Architecture invariant:** the memory tier never touches a
//! device and never holds the store's I/O buffers (admission copies); its only system
//! calls are on its own memfd: a write at admission, and a hole punched when a freed run's
//! last `Bytes` drops (after an eviction, possibly at the end of a response that was still
//! sending it). A hit itself makes none.

pub mod memory;
pub mod memory_admission;
mod memory_bytes;
pub mod policy;
mod policy_ghost;
mod policy_keys;
#[cfg(test)]
mod policy_tests;

pub use policy::{Entries, Key, Queue, S3Fifo, bumped};

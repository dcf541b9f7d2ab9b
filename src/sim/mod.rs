//! `chunkd sim`: replays a request trace through chunkd's cache policy and through LRU,
//! FIFO and LRU-2 baselines at one byte capacity, and reports object and byte miss ratios
//! side by side. The trace is a file ([`trace`]) or generated ([`generate`]: Zipf with
//! scans, bursts of cold starts, or a loop slightly larger than the cache).
//!
//! chunkd's policy runs as the real [`crate::cache::policy::S3Fifo`] behind a map of entry
//! states, driven as a tier drives it; the baselines are written here for comparison only.
//!
//! **Architecture invariant:** no I/O but reading and writing the trace files it is
//! given, no clocks, no threads: a run is a pure function of its trace and capacity, so
//! the same settings and seed print the same figures.

pub mod baselines;
pub mod chunkd;
pub mod error;
pub mod generate;
pub mod replay;
pub mod run;
pub mod trace;

pub use error::SimError;
pub use run::{Report, SimConfig, run};

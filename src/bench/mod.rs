//! `chunkd bench`: measurements that print chunkd's figures beside a peer's, measured in
//! the same run on the same files, with the ratio between them. These machines are shared
//! and noisy; only ratios from one run mean much.
//!
//! - `store`: the flash store against fio — chunk reads at several queue depths, 64 KiB
//!   range reads, reads with a device lost, and writes.
//! - `recovery`: fills a store with many small chunks, then times how long opening it
//!   takes (catalog → index and free space) and how much memory the index uses.
//!
//! **Architecture invariant:** runs only on the scratch directory it is given (deleted and
//! recreated) and never on a serving node's data; it drives the store through its public
//! API only (`Store`, `LocalStore`), so what it measures is what the node does.

mod error;
pub mod fio;
mod load;
pub mod recovery;
mod report;
pub mod store;

pub use error::BenchError;

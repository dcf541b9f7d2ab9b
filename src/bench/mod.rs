//! `chunkd bench`: measurements that print chunkd's figures beside a peer's, measured in
//! the same run on the same files, with the ratio between them. These machines are shared
//! and noisy; only ratios from one run mean much.
//!
//! - `store`: the flash store against fio — chunk reads at several queue depths, 64 KiB
//!   range reads, reads with a device lost, and writes.
//! - `recovery`: fills a store with many small chunks, then times how long opening it
//!   takes (catalog → index and free space) and how much memory the index uses.

pub mod fio;
mod load;
pub mod recovery;
pub mod store;

/// Formats bytes per second in GB/s (10^9, as fio and disk vendors count).
fn gbps(bytes_per_second: f64) -> String {
    format!("{:6.2} GB/s", bytes_per_second / 1e9)
}

//! `chunkd bench recovery`: how long a restart takes with many chunks stored, and how much
//! memory the index takes per chunk.
//!
//! The store is filled through the normal PUT path with small distinct chunks (so a million
//! chunks fit on this machine's disk), closed, and opened again: opening reads the whole
//! catalog into the index and the free-space maps, which is all recovery does (no log to
//! replay, no shard to scan). The open is timed once with the catalog in the page cache and
//! once after dropping the page cache (when permitted), i.e. as after a reboot.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::error::BenchError;
use super::load;
use crate::erasure::Scheme;
use crate::store::device::DeviceSpec;
use crate::store::device::uring::UringEngine;
use crate::store::{Store, StoreConfig};

/// Settings of `chunkd bench recovery`.
#[derive(Clone, Debug)]
pub struct RecoveryBench {
    pub dir: PathBuf,
    pub chunks: u64,
    pub chunk_bytes: usize,
    pub devices: usize,
    pub scheme: Scheme,
    pub cores: usize,
    pub puts_in_flight_per_core: usize,
}

/// Fills, reopens and reports.
pub fn run(bench: &RecoveryBench) -> Result<(), BenchError> {
    if bench.dir.exists() {
        std::fs::remove_dir_all(&bench.dir).map_err(|cause| BenchError::Remove {
            path: bench.dir.clone(),
            cause,
        })?;
    }
    let per_chunk_per_device =
        Store::<UringEngine>::stored_bytes_for(bench.scheme, bench.chunk_bytes as u64)
            * bench.scheme.total_shards().div_ceil(bench.devices) as u64
            / bench.scheme.total_shards() as u64;
    // Room for every chunk, uneven filling of groups, and the reserved start of each device.
    let device_bytes =
        (bench.chunks * per_chunk_per_device * 5 / 4 + (64 << 20)).next_multiple_of(1 << 20);
    let config = StoreConfig {
        devices: (0..bench.devices)
            .map(|i| DeviceSpec {
                path: bench.dir.join("devices").join(format!("dev{i}")),
                size_bytes: Some(device_bytes),
            })
            .collect(),
        scheme: bench.scheme,
        ..StoreConfig::embedded_default(&bench.dir)
    };
    println!(
        "chunkd bench recovery: {} chunks of {} bytes, {} device(s) of {} MiB, {}+{}",
        bench.chunks,
        bench.chunk_bytes,
        bench.devices,
        device_bytes >> 20,
        bench.scheme.data_shards(),
        bench.scheme.parity_shards()
    );
    let fill_started = Instant::now();
    {
        let (store, _) = Store::open(config.clone(), &UringEngine)?;
        let workers = load::Workers::start(&store, bench.cores);
        let (_, filled) = load::puts_on_cores(
            &workers,
            0..bench.chunks,
            bench.chunk_bytes,
            bench.puts_in_flight_per_core,
        );
        let failures = filled.errors;
        if failures != 0 {
            return Err(BenchError::FillFailed { failures });
        }
        println!("filled in {:.1} s", fill_started.elapsed().as_secs_f64());
    }
    let warm = reopen(&config)?;
    let cold = if drop_page_cache() {
        Some(reopen(&config)?)
    } else {
        None
    };
    println!("open, catalog in page cache: {}", warm.describe());
    match cold {
        Some(cold) => println!("open, page cache dropped:   {}", cold.describe()),
        None => println!(
            "open, page cache dropped:   not measured (needs root to write /proc/sys/vm/drop_caches)"
        ),
    }
    Ok(())
}

struct Reopened {
    total: Duration,
    recovery: Duration,
    chunks: usize,
    index_bytes: usize,
}

impl Reopened {
    fn describe(&self) -> String {
        format!(
            "{:.2} s in all, {:.2} s loading the catalog, {} chunks, index {:.1} MiB = {:.1} bytes/chunk",
            self.total.as_secs_f64(),
            self.recovery.as_secs_f64(),
            self.chunks,
            self.index_bytes as f64 / (1 << 20) as f64,
            self.index_bytes as f64 / self.chunks.max(1) as f64
        )
    }
}

fn reopen(config: &StoreConfig) -> Result<Reopened, BenchError> {
    let started = Instant::now();
    let (store, report) = Store::open(config.clone(), &UringEngine)?;
    let total = started.elapsed();
    Ok(Reopened {
        total,
        recovery: report.recovery,
        chunks: report.chunks,
        index_bytes: store.index_memory_bytes(),
    })
}

/// Drops clean pages so the next open reads the catalog from the disk; false when not
/// permitted.
fn drop_page_cache() -> bool {
    rustix::fs::sync();
    std::fs::write("/proc/sys/vm/drop_caches", "3\n").is_ok()
}

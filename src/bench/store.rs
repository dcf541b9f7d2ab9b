//! `chunkd bench store`: the flash store against fio on the same device files.
//!
//! 1. The device files are created and written once end to end by fio (so every read below
//!    hits written blocks on the disk — an unwritten extent would read as zeros without any
//!    I/O), then fio measures sequential O_DIRECT writes of one shard's size.
//! 2. chunkd formats a store on them and fills it with 512 KiB chunks: its PUT bandwidth
//!    (payload, each PUT durable before it returns) is compared with fio's writes.
//! 3. Random chunk reads at queue depths 1, 8 and 32, and random 64 KiB range reads, each
//!    followed by fio random reads of the same sizes at the same depth over the same
//!    region: for whole chunks, 128 KiB reads (a data shard) at 4× the depth, submitted
//!    four at a time and waited for four at a time, as a chunk read's shard reads are; for
//!    ranges, 64 KiB reads at the same depth.
//! 4. The same chunkd reads with one device taken offline (every read rebuilds a shard).
//!
//! Nothing here reads through the page cache: both sides use O_DIRECT, and chunkd has no
//! memory tier in front of the store. chunkd's core threads live for the whole run, as a
//! server's do, and every core reads every chunk once before the reads are measured, so
//! the data shards' headers are cached and a read fetches the bytes fio fetches. fio's
//! buffers are on huge pages, as chunkd's are (see [`fio::HugePages`]).

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;

use super::error::BenchError;
use super::fio::{self, FioJob, FioResult};
use super::load::{self, Measured};
use super::report::{Case, Degraded, median, print_report};
use crate::chunk::ChunkId;
use crate::erasure::Scheme;
use crate::store::device::uring::UringEngine;
use crate::store::device::{DeviceSpec, Engine as _};
use crate::store::{DeviceState, Store, StoreConfig};
use crate::xorshift::XorShift;

/// Settings of `chunkd bench store`.
#[derive(Clone, Debug)]
pub struct StoreBench {
    pub dir: PathBuf,
    pub devices: usize,
    pub device_bytes: u64,
    /// Payload written before the reads: the working set.
    pub fill_bytes: u64,
    pub chunk_bytes: usize,
    /// Length of one measurement.
    pub duration: Duration,
    /// Measurements per case, alternating with the peer's.
    pub rounds: usize,
    pub cores: usize,
    pub puts_in_flight_per_core: usize,
}

/// Most bytes of buffers a fio job here uses: 128 reads of 128 KiB in flight, with room.
const FIO_BUFFER_BYTES_MAX: u64 = 32 << 20;

/// fio writes one shard extent (header + 128 KiB) at a time, as a 512 KiB chunk's PUT does.
const SHARD_EXTENT_BYTES: usize = 132 * 1024;

/// Runs the benchmark and prints its report.
pub fn run(bench: &StoreBench) -> Result<(), BenchError> {
    if !fio::available() {
        return Err(BenchError::FioMissing);
    }
    if bench.rounds == 0 {
        return Err(BenchError::NoRounds);
    }
    let specs = prepare_devices(bench)?;
    let files: Vec<PathBuf> = specs.iter().map(|s| s.path.clone()).collect();
    let config = StoreConfig {
        devices: specs,
        scheme: Scheme::DEFAULT,
        ..StoreConfig::embedded_default(&bench.dir)
    };
    let chunks = (bench.fill_bytes / bench.chunk_bytes as u64).max(bench.rounds as u64);
    let region_bytes = chunks
        * Store::<UringEngine>::stored_bytes_for(config.scheme, bench.chunk_bytes as u64)
        / config.scheme.total_shards() as u64;
    if (1 << 20) + 2 * region_bytes > bench.device_bytes {
        return Err(BenchError::DevicesTooSmall {
            device_mib: bench.device_bytes >> 20,
            region_mib: region_bytes >> 20,
        });
    }
    // chunkd's I/O buffers are on huge pages (see `store::aligned`); fio's are only if it is
    // told so and the kernel has huge pages reserved. Enough for the deepest job.
    let huge_pages = fio::HugePages::reserve(FIO_BUFFER_BYTES_MAX);
    let peer = Peer {
        files,
        region_bytes,
        duration: bench.duration,
        huge_pages: huge_pages.is_ok(),
    };
    print_header(bench, chunks, &huge_pages);

    let (store, _) = Store::open(config, &UringEngine)?;
    let workers = load::Workers::start(&store, bench.cores);
    let Written {
        mut cases,
        ids,
        notes,
    } = measure_writes(&workers, &store, bench, &peer, chunks)?;
    let ids = Arc::new(ids);
    warm_header_caches(&workers, &ids);
    cases.extend(measure_reads(&workers, bench, &ids, &peer)?);
    let degraded = measure_degraded(&workers, &store, bench, &ids);
    let rebuilt = store.health().shards_rebuilt;
    print_report(&cases, &degraded, rebuilt, &notes);
    Ok(())
}

/// fio's jobs over the same files as the store: it reads the store's region (where the
/// chunks are) and writes the region after it, which the store does not use, so its writes
/// never clobber the chunks.
struct Peer {
    files: Vec<PathBuf>,
    region_bytes: u64,
    duration: Duration,
    huge_pages: bool,
}

impl Peer {
    fn run(
        &self,
        pattern: &'static str,
        block_bytes: usize,
        iodepth: usize,
        fdatasync_every: usize,
        batch: usize,
    ) -> Result<FioResult, BenchError> {
        let job = FioJob {
            files: self.files.clone(),
            pattern,
            block_bytes,
            iodepth,
            offset_bytes: if pattern.contains("write") {
                (1 << 20) + self.region_bytes.next_multiple_of(1 << 20)
            } else {
                1 << 20
            },
            region_bytes: self.region_bytes,
            runtime: Some(self.duration),
            fdatasync_every,
            batch,
            huge_pages: self.huge_pages,
        };
        Ok(fio::run(&job)?)
    }
}

fn print_header(bench: &StoreBench, chunks: u64, huge_pages: &Result<fio::HugePages, String>) {
    println!(
        "chunkd bench store: {} devices of {} MiB in {}, {} chunks of {} KiB, {} cores, {} rounds of {:?} per case",
        bench.devices,
        bench.device_bytes >> 20,
        bench.dir.display(),
        chunks,
        bench.chunk_bytes >> 10,
        bench.cores,
        bench.rounds,
        bench.duration
    );

    match huge_pages {
        Ok(_) => println!("fio's buffers are on huge pages (--iomem=shmhuge), as chunkd's are"),
        Err(why) => println!(
            "WARNING: fio's buffers are on 4 KiB pages ({why}); chunkd's are on huge pages, which can make the same device several times faster: the ratios below favour chunkd"
        ),
    }
}

/// What the writes measured, and what they stored.
struct Written {
    cases: Vec<Case>,
    /// Every chunk stored, with its length.
    ids: Vec<(ChunkId, u64)>,
    /// On the group commit and the write amplification.
    notes: Vec<String>,
}

/// Writes: the store is filled in `rounds` parts, each followed by fio's writes. Returns the
/// write cases, every chunk stored, and notes on the group commit and write amplification.
fn measure_writes(
    workers: &load::Workers,
    store: &Store<UringEngine>,
    bench: &StoreBench,
    peer: &Peer,
    chunks: u64,
) -> Result<Written, BenchError> {
    let mut ids = Vec::new();
    let mut writes = Case::new("writes: 512 KiB PUTs vs fio seq write", Some(0.8));
    let mut flushed_writes = Case::new("  same PUTs vs fio write+fdatasync/160", None);
    for round in 0..bench.rounds as u64 {
        let part = round * chunks / bench.rounds as u64..(round + 1) * chunks / bench.rounds as u64;
        let (new_ids, put) = load::puts_on_cores(
            workers,
            part,
            bench.chunk_bytes,
            bench.puts_in_flight_per_core,
        );
        ids.extend(new_ids);
        writes.add(
            put.clone(),
            peer.run("write", SHARD_EXTENT_BYTES, 64, 0, 1)?,
        );
        flushed_writes.add(put, peer.run("write", SHARD_EXTENT_BYTES, 64, 160, 1)?);
    }
    let health = store.health();
    let batches = health.commit_batches.max(1) as f64;
    let group_commit = format!(
        "group commit: {} batches, {:.1} PUTs each; per batch {:.1} ms flushing devices, {:.1} ms committing the catalog",
        health.commit_batches,
        health.commit_requests as f64 / batches,
        health.commit_flush_us as f64 / batches / 1000.0,
        health.commit_catalog_us as f64 / batches / 1000.0
    );
    let stored_per_put = store.stored_bytes(bench.chunk_bytes as u64);
    let amplification = stored_per_put as f64 / bench.chunk_bytes as f64;
    let write_bound = format!(
        "a {} KiB PUT writes {} KiB to the devices (parity and shard headers): PUT payload can reach at most {:.2}x of the devices' write bandwidth; in device bytes, chunkd wrote {:.2}x of fio's plain writes",
        bench.chunk_bytes >> 10,
        stored_per_put >> 10,
        1.0 / amplification,
        median(writes.ratios()) * amplification
    );
    Ok(Written {
        cases: vec![writes, flushed_writes],
        ids,
        notes: vec![group_commit, write_bound],
    })
}

/// A whole chunk.
fn whole_chunk(len: u64, _: &mut XorShift) -> Range<u64> {
    0..len
}

/// A random 64 KiB-aligned 64 KiB range (shorter at the chunk's end).
fn range_64k(len: u64, rng: &mut XorShift) -> Range<u64> {
    let blocks = (len / 65536).max(1);
    let start = rng.next_u64() % blocks * 65536;
    start..(start + 65536).min(len)
}

/// Chunk reads at QD 1, 8 and 32 and 64 KiB range reads at QD 8 and 32, each round followed
/// by fio's reads of the same sizes at the same depth.
fn measure_reads(
    workers: &load::Workers,
    bench: &StoreBench,
    ids: &Arc<Vec<(ChunkId, u64)>>,
    peer: &Peer,
) -> Result<Vec<Case>, BenchError> {
    let mut cases = Vec::new();
    for depth in [1, 8, 32] {
        let mut case = Case::new(&format!("512 KiB chunk reads, QD {depth}"), Some(0.9));
        for _ in 0..bench.rounds {
            let ours = reads(workers, bench, ids, depth, whole_chunk);
            case.add(ours, peer.run("randread", 128 * 1024, 4 * depth, 0, 4)?);
        }
        cases.push(case);
    }
    for depth in [8, 32] {
        let mut case = Case::new(&format!("64 KiB range reads, QD {depth}"), Some(0.9));
        for _ in 0..bench.rounds {
            let ours = reads(workers, bench, ids, depth, range_64k);
            case.add(ours, peer.run("randread", 64 * 1024, depth, 0, 1)?);
        }
        cases.push(case);
    }
    Ok(cases)
}

/// Healthy and one-device-offline reads at QD 32, alternating, so both see the same disk.
fn measure_degraded(
    workers: &load::Workers,
    store: &Store<UringEngine>,
    bench: &StoreBench,
    ids: &Arc<Vec<(ChunkId, u64)>>,
) -> Vec<Degraded> {
    let mut degraded = Vec::new();
    for (label, range_of) in [
        ("512 KiB chunk reads, QD 32", whole_chunk as RangeOf),
        ("64 KiB range reads, QD 32", range_64k),
    ] {
        let mut case = Degraded {
            label,
            degraded: Vec::new(),
            healthy: Vec::new(),
        };
        for _ in 0..bench.rounds {
            let measure = || reads(workers, bench, ids, 32, range_of);
            case.healthy.push(measure().bytes_per_second());
            store.set_device_state(0, DeviceState::Offline);
            case.degraded.push(measure().bytes_per_second());
            store.set_device_state(0, DeviceState::Online);
        }
        degraded.push(case);
    }
    degraded
}

/// Which bytes of a chunk of the given length one read asks for.
type RangeOf = fn(u64, &mut XorShift) -> Range<u64>;

/// Creates the device files and has fio write every byte of them once.
fn prepare_devices(bench: &StoreBench) -> Result<Vec<DeviceSpec>, BenchError> {
    if bench.dir.exists() {
        std::fs::remove_dir_all(&bench.dir).map_err(|cause| BenchError::Remove {
            path: bench.dir.clone(),
            cause,
        })?;
    }
    let specs: Vec<DeviceSpec> = (0..bench.devices)
        .map(|i| DeviceSpec {
            path: bench.dir.join("devices").join(format!("dev{i}")),
            size_bytes: Some(bench.device_bytes),
        })
        .collect();
    for spec in &specs {
        UringEngine
            .open(spec)
            .map_err(|cause| BenchError::CreateDevice {
                path: spec.path.clone(),
                cause,
            })?;
    }
    let fill = FioJob {
        files: specs.iter().map(|s| s.path.clone()).collect(),
        pattern: "write",
        block_bytes: 1 << 20,
        iodepth: 16,
        offset_bytes: 0,
        region_bytes: bench.device_bytes,
        runtime: None,
        fdatasync_every: 0,
        batch: 1,
        huge_pages: false,
    };
    fio::run(&fill)?;
    Ok(specs)
}

/// Reads every chunk once from every core, so each core has the headers of the data shards
/// cached before the measurements start, as a serving node's cores have for chunks they
/// serve often (a read whose header is not cached costs one 4 KiB read more).
fn warm_header_caches(workers: &load::Workers, ids: &Arc<Vec<(ChunkId, u64)>>) {
    let ids = ids.clone();
    let failed: u64 = workers
        .run(workers.cores(), move |_, local| {
            let ids = ids.clone();
            async move {
                let reads = ids.iter().map(|(id, len)| local.read(id, 0..*len));
                futures_util::stream::iter(reads)
                    .buffer_unordered(32)
                    .filter(|read| std::future::ready(read.is_err()))
                    .count()
                    .await as u64
            }
        })
        .into_iter()
        .sum();
    assert_eq!(failed, 0, "every chunk stored reads back");
}

/// Random reads from every core, `depth` requests in flight in all.
fn reads(
    workers: &load::Workers,
    bench: &StoreBench,
    ids: &Arc<Vec<(ChunkId, u64)>>,
    depth: usize,
    range_of: RangeOf,
) -> Measured {
    let used_cores = workers.cores().min(depth);
    let (ids, duration) = (ids.clone(), bench.duration);
    workers
        .run(used_cores, move |core, local| {
            let in_flight = depth / used_cores + usize::from(core < depth % used_cores);
            let ids = ids.clone();
            async move { load::reads(&local, &ids, in_flight, duration, range_of).await }
        })
        .into_iter()
        .reduce(Measured::merge)
        .expect("at least one core")
}

/// The default bench directory: beside the data directory, never inside it.
pub fn default_dir() -> PathBuf {
    Path::new("chunkd-bench").to_path_buf()
}

//! `chunkd sim`'s settings and its run: get a trace, size the cache, replay it through
//! chunkd's policy and the baselines, report.

use std::fmt;
use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::PathBuf;

use crate::sim::baselines::{Baseline, Rule};
use crate::sim::chunkd::ChunkdCache;
use crate::sim::error::SimError;
use crate::sim::generate::{Capacity, Generator, Kind};
use crate::sim::replay::{Outcome, replay};
use crate::sim::trace::{self, DEFAULT_SIZE_BYTES, Request};
use crate::units::parse_size;

/// Settings of `chunkd sim`.
#[derive(clap::Args, Clone, Debug)]
pub struct SimConfig {
    /// Trace to replay: one request a line, `ID [SIZE]` (SIZE in bytes, default 524288;
    /// ID any token; blank lines and `# ...` comment lines skipped; an ID may start with `#`).
    #[arg(
        long,
        conflicts_with = "generate",
        required_unless_present = "generate"
    )]
    pub trace: Option<PathBuf>,
    /// Generate a trace instead: Zipf with scans, Zipf with bursts of cold starts, or Zipf
    /// with a loop slightly larger than the cache.
    #[arg(long, value_enum)]
    pub generate: Option<Kind>,
    /// Cache capacity: a size (`64M`, `2G`) or a share of the trace's distinct bytes
    /// (`5%`).
    #[arg(long)]
    pub capacity: String,
    /// Print a JSON array of {policy, requests, misses, miss_ratio, byte_miss_ratio}.
    #[arg(long)]
    pub json: bool,
    /// Generator: the Zipf exponent.
    #[arg(long, default_value_t = 0.8)]
    pub zipf_skew: f64,
    /// Generator: the share of requests that are scans, bursts or the loop.
    #[arg(long, default_value_t = 0.1)]
    pub scan_fraction: f64,
    /// Generator: new keys in one scan or one burst (an image's chunks).
    #[arg(long, default_value_t = 1000)]
    pub scan_length: u64,
    /// Generator: keys in the loop (default: 110 % of the cache).
    #[arg(long)]
    pub loop_objects: Option<u64>,
    /// Generator: distinct Zipf objects.
    #[arg(long, default_value_t = 100_000)]
    pub objects: u64,
    /// Generator: requests.
    #[arg(long, default_value_t = 1_000_000)]
    pub requests: u64,
    /// Generator: bytes per object.
    #[arg(long, default_value_t = DEFAULT_SIZE_BYTES)]
    pub object_size: u32,
    /// Generator: seed (the same seed, the same trace).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Save the generated trace to this file (in the `--trace` format).
    #[arg(long, requires = "generate")]
    pub write_trace: Option<PathBuf>,
}

fn parse_capacity(text: &str) -> Result<Capacity, SimError> {
    let bad = |why: String| SimError::BadCapacity {
        text: text.to_string(),
        why,
    };
    match text.trim().strip_suffix('%') {
        Some(number) => match number.trim().parse::<f64>() {
            Ok(p) if p > 0.0 && p <= 100.0 => Ok(Capacity::Percent(p)),
            _ => Err(bad("a percentage must be above 0 and at most 100".into())),
        },
        None => parse_size(text)
            .map(Capacity::Bytes)
            .map_err(|e| bad(e.to_string())),
    }
}

/// What a run found.
#[derive(Clone, Debug)]
pub struct Report {
    pub capacity_bytes: u64,
    pub distinct_bytes: u64,
    pub distinct_keys: usize,
    /// chunkd's, then LRU, FIFO, LRU-2.
    pub outcomes: Vec<Outcome>,
    /// Inserts chunkd's policy found in its ghost.
    pub ghost_hits: u64,
}

impl Report {
    /// The JSON array scripts read.
    pub fn json(&self) -> String {
        serde_json::to_string_pretty(&self.outcomes).expect("outcomes are plain data")
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let requests = self.outcomes.first().map_or(0, |o| o.requests);
        writeln!(
            f,
            "{requests} requests, {} distinct keys, {} distinct bytes; capacity {} bytes \
             ({:.2} % of them); chunkd's ghost hits: {}",
            self.distinct_keys,
            self.distinct_bytes,
            self.capacity_bytes,
            100.0 * self.capacity_bytes as f64 / self.distinct_bytes.max(1) as f64,
            self.ghost_hits,
        )?;
        writeln!(
            f,
            "{:<8} {:>12} {:>12} {:>11} {:>16}",
            "policy", "requests", "misses", "miss ratio", "byte miss ratio"
        )?;
        for o in &self.outcomes {
            writeln!(
                f,
                "{:<8} {:>12} {:>12} {:>11.4} {:>16.4}",
                o.policy, o.requests, o.misses, o.miss_ratio, o.byte_miss_ratio
            )?;
        }
        Ok(())
    }
}

/// Runs `chunkd sim`.
pub fn run(config: &SimConfig) -> Result<Report, SimError> {
    let capacity = parse_capacity(&config.capacity)?;
    let trace = load(config, capacity)?;
    if trace.is_empty() {
        return Err(SimError::EmptyTrace);
    }
    let distinct_bytes = trace::distinct_bytes(&trace);
    let capacity_bytes = match capacity {
        Capacity::Bytes(bytes) => bytes,
        Capacity::Percent(p) => (distinct_bytes as f64 * p / 100.0).round() as u64,
    };
    let mut chunkd = ChunkdCache::new(capacity_bytes);
    let mut outcomes = vec![replay(&mut chunkd, &trace)];
    for rule in [Rule::Lru, Rule::Fifo, Rule::Lru2] {
        outcomes.push(replay(&mut Baseline::new(rule, capacity_bytes), &trace));
    }
    Ok(Report {
        capacity_bytes,
        distinct_bytes,
        distinct_keys: trace
            .iter()
            .map(|r| r.key)
            .collect::<hashbrown::HashSet<_>>()
            .len(),
        outcomes,
        ghost_hits: chunkd.policy().ghost_hits(),
    })
}

/// The trace: read from `--trace`, or generated (and saved with `--write-trace`).
fn load(config: &SimConfig, capacity: Capacity) -> Result<Vec<Request>, SimError> {
    if let Some(path) = &config.trace {
        let file = File::open(path).map_err(|cause| SimError::OpenTrace {
            path: path.clone(),
            cause,
        })?;
        return trace::read(BufReader::new(file));
    }
    let kind = config.generate.ok_or(SimError::NoTrace)?;
    let generator = Generator {
        kind,
        objects: config.objects,
        requests: config.requests,
        skew: config.zipf_skew,
        scan_fraction: config.scan_fraction,
        scan_length: config.scan_length,
        loop_objects: config.loop_objects,
        object_size: config.object_size,
        seed: config.seed,
    };
    generator
        .check()
        .map_err(|(flag, why)| SimError::BadGenerator { flag, why })?;
    let mut trace = generator.generate(capacity);
    trace::renumber(&mut trace);
    if let Some(path) = &config.write_trace {
        let write_error = |cause| SimError::WriteTrace {
            path: path.clone(),
            cause,
        };
        let file = File::create(path).map_err(write_error)?;
        trace::write(&trace, BufWriter::new(file)).map_err(write_error)?;
    }
    Ok(trace)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacities_are_sizes_or_percentages() {
        assert_eq!(parse_capacity("64M").unwrap(), Capacity::Bytes(64 << 20));
        assert_eq!(parse_capacity("5%").unwrap(), Capacity::Percent(5.0));
        assert_eq!(parse_capacity("0.5 %").unwrap(), Capacity::Percent(0.5));
        assert!(parse_capacity("0%").is_err());
        assert!(parse_capacity("lots").is_err());
    }
}

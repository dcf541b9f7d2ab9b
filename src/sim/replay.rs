//! Replaying a trace through a policy, and what it counts.

use serde::Serialize;

use crate::sim::trace::Request;

/// A byte-bounded cache under simulation: every miss is admitted, then evictions bring it
/// back within its capacity.
pub trait Simulated {
    /// The name the report gives it (`chunkd`, `lru`, `fifo`, `lru2`).
    fn name(&self) -> &'static str;
    /// One request: true on a hit; on a miss the entry is inserted.
    fn request(&mut self, key: u64, size: u32) -> bool;
}

/// One policy's result: the JSON shape `chunkd sim --json` prints (scripts depend on it).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Outcome {
    pub policy: String,
    pub requests: u64,
    pub misses: u64,
    pub miss_ratio: f64,
    pub byte_miss_ratio: f64,
}

/// Runs every request of `trace` through `cache`.
pub fn replay(cache: &mut impl Simulated, trace: &[Request]) -> Outcome {
    let (mut misses, mut bytes, mut missed_bytes) = (0u64, 0u64, 0u64);
    for request in trace {
        bytes += u64::from(request.size);
        if !cache.request(request.key, request.size) {
            misses += 1;
            missed_bytes += u64::from(request.size);
        }
    }
    let requests = trace.len() as u64;
    Outcome {
        policy: cache.name().to_string(),
        requests,
        misses,
        miss_ratio: ratio(misses, requests),
        byte_miss_ratio: ratio(missed_bytes, bytes),
    }
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

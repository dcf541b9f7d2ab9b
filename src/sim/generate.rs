//! Built-in traces: a Zipf workload disturbed by scans, by bursts of cold starts, or by a
//! loop slightly larger than the cache. The same settings and seed give the same trace.
//!
//! Keys: the Zipf objects are `0..objects` (0 the most popular); scan, burst and loop
//! keys come from ranges of their own (from 2^40, 2·2^40, 3·2^40), so they never collide
//! with the objects or one another.

use std::collections::HashSet;

use crate::sim::trace::Request;
use crate::xorshift::XorShift;

/// How much larger than the cache the loop is, when the trace sizes it.
pub const LOOP_OVER_CACHE: f64 = 1.1;

const SCAN_KEYS: u64 = 1 << 40;
const BURST_KEYS: u64 = 2 << 40;
const LOOP_KEYS: u64 = 3 << 40;

/// What disturbs the Zipf workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// Zipf with scans: runs of `scan-length` new keys, each read once, back to back.
    Zipf,
    /// Cold starts of new images: `scan-length` new chunks read once, in order, while the
    /// Zipf requests go on (half the requests during a burst are the burst's).
    Bursts,
    /// A loop over keys read in a cycle: `loop-objects` keys, or 110 % of the cache.
    Loop,
}

/// A generated trace's settings.
#[derive(Clone, Debug)]
pub struct Generator {
    pub kind: Kind,
    /// Distinct Zipf objects.
    pub objects: u64,
    pub requests: u64,
    /// The Zipf exponent: object `r` (from 0) is read in proportion to `1 / (r + 1)^skew`.
    pub skew: f64,
    /// The share of requests that are scan, burst or loop requests.
    pub scan_fraction: f64,
    /// Keys in one scan or burst.
    pub scan_length: u64,
    /// The loop's keys; `None`: 110 % of the cache.
    pub loop_objects: Option<u64>,
    pub object_size: u32,
    pub seed: u64,
}

/// A cache's capacity as given: bytes, or a percentage of the trace's distinct bytes (the
/// loop is sized against it).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Capacity {
    Bytes(u64),
    Percent(f64),
}

/// A sampler of Zipf ranks: the cumulative distribution, searched.
struct Zipf {
    cumulative: Vec<f64>,
}

impl Zipf {
    fn new(objects: u64, skew: f64) -> Zipf {
        let mut total = 0.0;
        let mut cumulative: Vec<f64> = (0..objects)
            .map(|rank| {
                total += 1.0 / ((rank + 1) as f64).powf(skew);
                total
            })
            .collect();
        for c in &mut cumulative {
            *c /= total;
        }
        Zipf { cumulative }
    }

    fn sample(&self, rng: &mut XorShift) -> u64 {
        let u = uniform(rng);
        let rank = self.cumulative.partition_point(|&c| c < u);
        rank.min(self.cumulative.len() - 1) as u64
    }
}

/// A uniform draw in [0, 1).
fn uniform(rng: &mut XorShift) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

impl Generator {
    /// Checks the settings; the message names the flag.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        // A burst takes half the requests while it lasts, so bursts make at most half.
        let (max_fraction, why) = match self.kind {
            Kind::Bursts => (0.5, " for bursts (half the requests during one)"),
            _ => (1.0, ""),
        };
        if !(0.0..max_fraction).contains(&self.scan_fraction) {
            return Err((
                "--scan-fraction",
                format!("must be at least 0 and below {max_fraction}{why}"),
            ));
        }
        if self.objects == 0 || self.requests == 0 || self.scan_length == 0 {
            return Err((
                "--objects, --requests, --scan-length",
                "must be above 0".into(),
            ));
        }
        if !(self.skew >= 0.0 && self.skew.is_finite()) {
            return Err(("--zipf-skew", "must be a number ≥ 0".into()));
        }
        Ok(())
    }

    /// The trace. `cache` sizes the loop when `loop_objects` is `None`.
    pub fn generate(&self, cache: Capacity) -> Vec<Request> {
        let zipf = Zipf::new(self.objects, self.skew);
        let mut rng = XorShift::new(self.seed.max(1) ^ 0x5eed_0000);
        let request = |key| Request {
            key,
            size: self.object_size,
        };
        let length = self.scan_length;
        // Zipf requests between two scans or bursts, on average: scans of `length` make
        // `fraction` of the requests when `length · (1 − fraction) / fraction` others
        // separate them; a burst also carries about `length` Zipf requests of its own.
        let f = self.scan_fraction;
        let gap = match self.kind {
            Kind::Zipf => length as f64 * (1.0 - f) / f,
            Kind::Bursts => length as f64 / f - 2.0 * length as f64,
            Kind::Loop => 0.0,
        };
        let start_probability = if f > 0.0 { 1.0 / gap.max(1.0) } else { 0.0 };
        let (mut left_in_run, mut next_new_key, mut loop_requests) = (0u64, 0u64, 0u64);
        let mut trace = Vec::with_capacity(self.requests as usize);
        while (trace.len() as u64) < self.requests {
            let new_key_base = if self.kind == Kind::Zipf {
                SCAN_KEYS
            } else {
                BURST_KEYS
            };
            match self.kind {
                Kind::Loop if uniform(&mut rng) < f => {
                    // A placeholder: the loop's length is known only at the end.
                    trace.push(request(LOOP_KEYS + loop_requests));
                    loop_requests += 1;
                    continue;
                }
                Kind::Zipf | Kind::Bursts if left_in_run > 0 => {
                    let burst_turn = self.kind == Kind::Zipf || rng.next_u64() & 1 == 0;
                    if burst_turn {
                        trace.push(request(new_key_base + next_new_key));
                        next_new_key += 1;
                        left_in_run -= 1;
                        continue;
                    }
                }
                Kind::Zipf | Kind::Bursts if uniform(&mut rng) < start_probability => {
                    left_in_run = length;
                }
                _ => {}
            }
            trace.push(request(zipf.sample(&mut rng)));
        }
        if self.kind == Kind::Loop {
            self.close_loop(&mut trace, cache);
        }
        trace
    }

    /// Numbers the loop's placeholders round a loop sized 110 % of the cache (or as
    /// given). For a cache given as a share `p` of the trace's distinct bytes, the loop's
    /// own keys count: with `z` distinct Zipf objects, `m = 1.1 · p · (z + m)`.
    fn close_loop(&self, trace: &mut [Request], cache: Capacity) {
        let size = f64::from(self.object_size);
        let loop_objects = self.loop_objects.unwrap_or_else(|| {
            let m = match cache {
                Capacity::Bytes(bytes) => LOOP_OVER_CACHE * bytes as f64 / size,
                Capacity::Percent(percent) => {
                    let zipf_objects = trace
                        .iter()
                        .filter(|r| r.key < SCAN_KEYS)
                        .map(|r| r.key)
                        .collect::<HashSet<_>>()
                        .len() as f64;
                    let share = LOOP_OVER_CACHE * percent / 100.0;
                    share * zipf_objects / (1.0 - share).max(f64::EPSILON)
                }
            };
            (m.ceil() as u64).max(1)
        });
        for r in trace.iter_mut().filter(|r| r.key >= LOOP_KEYS) {
            r.key = LOOP_KEYS + (r.key - LOOP_KEYS) % loop_objects;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::trace::distinct_bytes;

    fn generator(kind: Kind) -> Generator {
        Generator {
            kind,
            objects: 10_000,
            requests: 200_000,
            skew: 0.8,
            scan_fraction: 0.1,
            scan_length: 500,
            loop_objects: None,
            object_size: 1,
            seed: 7,
        }
    }

    fn share(trace: &[Request], keys: std::ops::Range<u64>) -> f64 {
        trace.iter().filter(|r| keys.contains(&r.key)).count() as f64 / trace.len() as f64
    }

    #[test]
    fn scans_and_bursts_take_their_share_of_new_keys() {
        for kind in [Kind::Zipf, Kind::Bursts] {
            let trace = generator(kind).generate(Capacity::Bytes(1));
            assert_eq!(trace.len(), 200_000);
            let new = share(&trace, SCAN_KEYS..LOOP_KEYS);
            assert!((0.07..0.13).contains(&new), "{kind:?}: {new}");
            // Read once each.
            let new_keys: Vec<u64> = trace
                .iter()
                .filter(|r| r.key >= SCAN_KEYS)
                .map(|r| r.key)
                .collect();
            let distinct: HashSet<&u64> = new_keys.iter().collect();
            assert_eq!(distinct.len(), new_keys.len());
        }
    }

    #[test]
    fn zipf_favours_low_ranks_and_is_deterministic() {
        let trace = generator(Kind::Zipf).generate(Capacity::Bytes(1));
        let top = share(&trace, 0..100);
        let next = share(&trace, 100..200);
        assert!(top > 3.0 * next, "top 100 {top}, next 100 {next}");
        assert_eq!(trace, generator(Kind::Zipf).generate(Capacity::Bytes(1)));
        let mut other = generator(Kind::Zipf);
        other.seed = 8;
        assert_ne!(trace, other.generate(Capacity::Bytes(1)));
    }

    #[test]
    fn the_loop_is_a_tenth_larger_than_the_cache() {
        let mut loops = generator(Kind::Loop);
        loops.scan_fraction = 0.5;
        let trace = loops.generate(Capacity::Bytes(1000));
        let keys: HashSet<u64> = trace
            .iter()
            .filter(|r| r.key >= LOOP_KEYS)
            .map(|r| r.key)
            .collect();
        assert_eq!(keys.len(), 1100);
        // As a share of the distinct bytes: the cache is 5 % of them, the loop 5.5 %.
        let trace = loops.generate(Capacity::Percent(5.0));
        let loop_keys = trace.iter().filter(|r| r.key >= LOOP_KEYS).map(|r| r.key);
        let m = loop_keys.collect::<HashSet<_>>().len() as f64;
        let total = distinct_bytes(&trace) as f64;
        assert!((m / total - 0.055).abs() < 0.001, "{m} of {total}");
    }
}

//! The metrics of manifests and garbage collection (issue 13), in a file beside `metrics`
//! (which calls these when it installs the recorder and at each scrape, and keeps the list
//! of every other metric): counters and gauges read from the store's [`GcStats`] at a
//! scrape (the last sweep's duration among them), and the duration of each sweep
//! `POST /v1/gc` runs as a histogram.
//!
//! `chunkd_gc_expired_reads_total` is the alarm of GC: each is a read of a chunk no
//! manifest named any more, which the read saved from deletion — something still used it.
//!
//! **Architecture invariant:** records only, through the global recorder `metrics`
//! installs: no I/O, nothing that blocks, and no call back into `metrics`.

use std::time::Duration;

use metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};

use crate::store::GcStats;

/// The histogram of the durations of sweeps `POST /v1/gc` ran, which has buckets of its
/// own (below). The store's periodic sweeps are not in it: they run inside the store,
/// which keeps only the last one's duration and the sum (so the last is a gauge).
pub const SWEEP_DURATION: &str = "chunkd_gc_sweep_duration_seconds";

/// The gauge of the last sweep's duration, periodic or asked for.
const LAST_SWEEP_DURATION: &str = "chunkd_gc_last_sweep_duration_seconds";

/// Sweep duration buckets in seconds, 1 ms to 2 min: a sweep is a few catalog
/// transactions of up to 1024 removals each, far slower than a request.
pub const SWEEP_DURATION_BUCKETS_SECONDS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0, 120.0,
];

/// A metric read from the snapshot: its name, help text and value.
type FromStats = (&'static str, &'static str, fn(&GcStats) -> u64);

/// The counters: each the running total the store keeps.
const COUNTERS: [FromStats; 4] = [
    (
        "chunkd_gc_sweeps_total",
        "Sweeps run (periodic and POST /v1/gc).",
        |s| s.sweeps,
    ),
    (
        "chunkd_gc_swept_chunks_total",
        "Expired chunks deleted by sweeps.",
        |s| s.swept_chunks,
    ),
    (
        "chunkd_gc_swept_bytes_total",
        "Bytes of the expired chunks deleted by sweeps.",
        |s| s.swept_bytes,
    ),
    (
        "chunkd_gc_expired_reads_total",
        "Reads of expired chunks: each was served and cancelled that chunk's deletion (an alarm: something still uses a chunk no manifest names).",
        |s| s.expired_reads,
    ),
];

/// The gauges.
const GAUGES: [FromStats; 8] = [
    ("chunkd_manifests", "Live manifests.", |s| s.manifests),
    (
        "chunkd_referenced_chunks",
        "Distinct chunk ids the live manifests name, stored or not.",
        |s| s.referenced_chunks,
    ),
    (
        "chunkd_referenced_stored_chunks",
        "Of the chunks the live manifests name, those stored here (the rest are yet to be uploaded).",
        |s| s.referenced_stored_chunks,
    ),
    (
        "chunkd_referenced_bytes",
        "Bytes of the stored chunks the live manifests name.",
        |s| s.referenced_stored_bytes,
    ),
    (
        "chunkd_pinned_chunks",
        "Stored chunks eviction may not take: named by a live manifest on a node without an origin, where they may be the only copy.",
        |s| s.pinned_chunks,
    ),
    ("chunkd_pinned_bytes", "Bytes of the pinned chunks.", |s| {
        s.pinned_bytes
    }),
    (
        "chunkd_expired_chunks",
        "Stored chunks no manifest names any more, awaiting a sweep after their grace period.",
        |s| s.expired_chunks,
    ),
    (
        "chunkd_expired_bytes",
        "Bytes of the expired chunks.",
        |s| s.expired_bytes,
    ),
];

/// Describes every GC metric (called by `metrics` with the others).
pub fn describe() {
    for (name, help, _) in COUNTERS {
        describe_counter!(name, help);
    }
    for (name, help, _) in GAUGES {
        match name.ends_with("_bytes") {
            true => describe_gauge!(name, Unit::Bytes, help),
            false => describe_gauge!(name, help),
        }
    }
    describe_gauge!(
        LAST_SWEEP_DURATION,
        Unit::Seconds,
        "Duration of the last sweep, periodic or asked for by POST /v1/gc (0 before the first)."
    );
    describe_histogram!(
        SWEEP_DURATION,
        Unit::Seconds,
        "Duration of each sweep POST /v1/gc ran (the store's periodic sweeps are counted in chunkd_gc_sweeps_total only)."
    );
}

/// Registers every GC series at zero, so it is exported before the store opens.
pub fn register_at_zero() {
    record(&GcStats::default());
    // Registering is what makes the series appear; nothing is recorded.
    let _ = histogram!(SWEEP_DURATION);
}

/// Records the store's GC snapshot (read at a scrape).
pub fn record(stats: &GcStats) {
    for (name, _, value) in COUNTERS {
        counter!(name).absolute(value(stats));
    }
    for (name, _, value) in GAUGES {
        gauge!(name).set(value(stats) as f64);
    }
    gauge!(LAST_SWEEP_DURATION).set(stats.last_sweep_micros as f64 / 1e6);
}

/// Records the duration of a sweep `POST /v1/gc` ran.
pub fn sweep_requested(duration: Duration) {
    histogram!(SWEEP_DURATION).record(duration.as_secs_f64());
}

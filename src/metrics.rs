//! Prometheus metrics: every metric chunkd exports is described here, once, with its help
//! text and labels, and recorded through the functions below, so names cannot drift apart.
//!
//! Request metrics are recorded as they happen (the `metrics` crate's global recorder);
//! store and device gauges are read from the store, and process metrics (`process_*`:
//! memory, open files, CPU, from the `metrics-process` crate) from the system, when
//! `/metrics` is scraped. Every series with a known set of labels is registered at zero
//! when the recorder is installed, so a dashboard or alert sees it before its first event.
//!
//! **Architecture invariant:** records and renders only: no I/O of its own beyond the
//! process statistics read at a scrape, nothing that blocks (the exporter runs without its
//! HTTP listener; `http` serves `/metrics`), and the store's gauges come from the snapshot
//! the caller hands to `render`.

use std::time::Duration;

use metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::cache::memory::MemoryStats;
use crate::metrics_gc;
use crate::store::{Capacity, EvictReason, FlashStats, GcStats, Health};

/// Latency buckets in seconds: 10 µs to 10 s (10 µs steps below 50 µs, where memory-tier
/// hits of 512 KiB are expected to answer).
const LATENCY_BUCKETS_SECONDS: [f64; 20] = [
    0.00001, 0.00002, 0.00003, 0.00004, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// The installed recorder.
#[derive(Clone)]
pub struct Metrics {
    handle: PrometheusHandle,
    process: std::sync::Arc<metrics_process::Collector>,
}

/// A method and the statuses a route answers it with in ordinary use.
type MethodStatuses = (&'static str, &'static [u16]);

/// Each route with the methods it answers, and the statuses it answers in ordinary use:
/// the series registered at zero when the recorder is installed. (Other statuses, and
/// requests to unknown routes, appear when they first happen.)
const KNOWN_REQUESTS: &[(&str, &[MethodStatuses])] = &[
    (
        "chunk",
        &[
            ("GET", &[200, 206, 304, 404, 416, 503]),
            ("HEAD", &[200, 304, 404]),
            ("PUT", &[200, 201, 400, 401, 413, 507]),
            ("DELETE", &[204, 401, 404]),
        ],
    ),
    ("chunk_meta", &[("GET", &[200, 404])]),
    ("manifests", &[("GET", &[200])]),
    (
        "manifest",
        &[
            ("GET", &[200, 404]),
            ("PUT", &[200, 201, 400, 401, 413]),
            ("DELETE", &[204, 404]),
        ],
    ),
    ("gc", &[("POST", &[200, 401])]),
    ("metrics", &[("GET", &[200])]),
    ("healthz", &[("GET", &[200])]),
    ("readyz", &[("GET", &[200, 503])]),
];

/// Reasons the node closes a connection itself (`connection_cut`).
const CUT_REASONS: [&str; 3] = ["header_timeout", "idle_timeout", "over_connection_limit"];

/// Methods kept as a label; any other is counted as `other`, so a client cannot create
/// series at will.
const METHODS: [&str; 7] = ["GET", "HEAD", "PUT", "DELETE", "POST", "OPTIONS", "PATCH"];

/// Why the recorder could not be installed (another one is, or the buckets are invalid).
#[derive(Debug, thiserror::Error)]
#[error("installing the metrics recorder: {0}")]
pub struct MetricsError(#[from] metrics_exporter_prometheus::BuildError);

/// What the store's gauges are read from when `/metrics` is scraped.
#[derive(Clone, Debug)]
pub struct StoreSnapshot {
    pub health: Health,
    pub capacity: Capacity,
    /// Chunks stored.
    pub chunks: u64,
    /// Bytes the in-memory index has allocated.
    pub index_memory_bytes: u64,
    /// Manifests, references and GC.
    pub gc: GcStats,
}

impl Metrics {
    /// Installs the process-wide recorder and describes every metric. Once per process:
    /// a second call fails.
    pub fn install() -> Result<Metrics, MetricsError> {
        let handle = PrometheusBuilder::new()
            .set_buckets(&LATENCY_BUCKETS_SECONDS)?
            .set_buckets_for_metric(
                Matcher::Full(metrics_gc::SWEEP_DURATION.into()),
                &metrics_gc::SWEEP_DURATION_BUCKETS_SECONDS,
            )?
            .install_recorder()?;
        describe();
        register_known_series();
        let process = metrics_process::Collector::default();
        process.describe();
        Ok(Metrics {
            handle,
            process: std::sync::Arc::new(process),
        })
    }

    /// The exposition text, with the store's gauges brought up to date first.
    pub fn render(&self, store: Option<&StoreSnapshot>) -> String {
        if let Some(store) = store {
            record_store(store);
        }
        self.process.collect();
        self.handle.run_upkeep();
        self.handle.render()
    }
}

/// Describes every metric chunkd exports. Long, and better whole: it is the list of them
/// all, one call each, in the order they appear on `/metrics`.
fn describe() {
    describe_gauge!(
        "chunkd_build_info",
        "Always 1; the version label says which chunkd this is."
    );
    describe_counter!(
        "chunkd_http_requests_total",
        "HTTP requests answered, by route, method and status."
    );
    describe_histogram!(
        "chunkd_http_request_duration_seconds",
        Unit::Seconds,
        "Time from a request's arrival to its last byte handed to the socket, by route and method."
    );
    describe_counter!(
        "chunkd_http_received_bytes_total",
        Unit::Bytes,
        "Request body bytes received."
    );
    describe_counter!(
        "chunkd_http_sent_bytes_total",
        Unit::Bytes,
        "Response body bytes sent."
    );
    describe_gauge!("chunkd_connections_open", "Client connections open now.");
    describe_counter!("chunkd_connections_total", "Client connections accepted.");
    describe_counter!(
        "chunkd_connections_closed_total",
        "Connections the node closed, by reason."
    );
    describe_counter!(
        "chunkd_store_lookups_total",
        "Chunk reads, by result (hit or miss)."
    );
    describe_gauge!("chunkd_store_chunks", "Chunks stored.");
    describe_gauge!(
        "chunkd_store_capacity_bytes",
        Unit::Bytes,
        "Shard space on all devices."
    );
    describe_gauge!(
        "chunkd_store_free_bytes",
        Unit::Bytes,
        "Free shard space on all devices, usable now (quarantined space apart)."
    );
    describe_gauge!(
        "chunkd_store_quarantined_bytes",
        Unit::Bytes,
        "Shard space freed by deletes or evictions and not reusable until the reads in flight that may use it end (not in free bytes)."
    );
    describe_gauge!(
        "chunkd_store_index_memory_bytes",
        Unit::Bytes,
        "Memory of the chunk index."
    );
    describe_counter!(
        "chunkd_store_shards_rebuilt_total",
        "Shards rebuilt from the others to serve a read."
    );
    describe_counter!(
        "chunkd_store_shards_repaired_total",
        "Shards rewritten by repair or refill."
    );
    describe_counter!(
        "chunkd_chunks_lost_total",
        "Chunks found with fewer than k sound shards on answering devices and dropped (404 until stored again)."
    );
    describe_counter!(
        "chunkd_store_scrub_passes_total",
        "Scrub passes over every chunk completed since the store opened (none yet: damage done while the node was down may be unknown)."
    );
    describe_gauge!(
        "chunkd_store_scrub_pass_chunks",
        "Chunks verified so far in the scrub pass under way."
    );
    describe_counter!(
        "chunkd_store_chunks_unreadable_total",
        "Reads or repairs that found fewer than k sound shards."
    );
    describe_counter!(
        "chunkd_store_repairs_dropped_total",
        "Repairs dropped because the repair queue was full."
    );
    describe_gauge!("chunkd_store_repairs_queued", "Chunks waiting for repair.");
    describe_gauge!(
        "chunkd_store_chunks_at_risk",
        "Chunks with a shard missing or on a device not online."
    );
    describe_counter!(
        "chunkd_store_scrub_chunks_total",
        "Chunks the background scrub has checked (every shard read and verified)."
    );
    describe_counter!(
        "chunkd_store_commit_batches_total",
        "Group commits of the catalog."
    );
    describe_counter!(
        "chunkd_store_commit_requests_total",
        "Changes committed to the catalog."
    );
    describe_gauge!(
        "chunkd_store_io_in_flight",
        "Device reads and writes submitted to io_uring and not yet complete."
    );
    describe_gauge!(
        "chunkd_device_state",
        "1 for a device's current state (online, offline, refilling)."
    );
    describe_counter!(
        "chunkd_device_errors_total",
        "Device errors, by device and kind (read, write, checksum)."
    );
    describe_cache();
    metrics_gc::describe();
    crate::metrics_origin::describe();
}

/// Cache tiers (`tier` = memory or flash) and their eviction reasons, registered at zero.
const CACHE_EVICTIONS: [(&str, &str); 3] = [
    ("memory", "capacity"),
    ("flash", "watermark"),
    ("flash", "put"),
];

/// Describes the cache metrics both tiers share (`tier` label: memory, flash).
fn describe_cache() {
    describe_counter!(
        "chunkd_cache_hits_total",
        "Chunk lookups a cache tier answered, by tier."
    );
    describe_counter!(
        "chunkd_cache_misses_total",
        "Chunk lookups a cache tier could not answer, by tier."
    );
    describe_counter!(
        "chunkd_cache_evictions_total",
        "Chunks a cache tier evicted, by tier and reason."
    );
    describe_counter!(
        "chunkd_cache_admissions_refused_total",
        "Chunks a cache tier refused to admit for lack of evictable room, by tier."
    );
    describe_gauge!(
        "chunkd_cache_bytes",
        Unit::Bytes,
        "Bytes of chunks a cache tier holds, by tier."
    );
    describe_gauge!("chunkd_cache_chunks", "Chunks a cache tier holds, by tier.");
    describe_counter!(
        "chunkd_cache_ghost_hits_total",
        "Admissions of chunks recently evicted (S3-FIFO ghost hits), by tier."
    );
}

/// Registers the cache series of both tiers at zero.
fn register_cache_series() {
    for tier in ["memory", "flash"] {
        for name in [
            "chunkd_cache_hits_total",
            "chunkd_cache_misses_total",
            "chunkd_cache_admissions_refused_total",
            "chunkd_cache_ghost_hits_total",
        ] {
            counter!(name, "tier" => tier).absolute(0);
        }
        gauge!("chunkd_cache_bytes", "tier" => tier).set(0.0);
        gauge!("chunkd_cache_chunks", "tier" => tier).set(0.0);
    }
    for (tier, reason) in CACHE_EVICTIONS {
        counter!("chunkd_cache_evictions_total", "tier" => tier, "reason" => reason).absolute(0);
    }
}

/// Records the memory tier's counters and sizes (read at a scrape).
pub fn record_memory(stats: &MemoryStats) {
    let tier = "memory";
    counter!("chunkd_cache_hits_total", "tier" => tier).absolute(stats.hits);
    counter!("chunkd_cache_misses_total", "tier" => tier).absolute(stats.misses);
    counter!("chunkd_cache_evictions_total", "tier" => tier, "reason" => "capacity")
        .absolute(stats.evictions);
    counter!("chunkd_cache_admissions_refused_total", "tier" => tier)
        .absolute(stats.admissions_refused);
    counter!("chunkd_cache_ghost_hits_total", "tier" => tier).absolute(stats.ghost_hits);
    gauge!("chunkd_cache_bytes", "tier" => tier).set(stats.bytes as f64);
    gauge!("chunkd_cache_chunks", "tier" => tier).set(stats.chunks as f64);
}

/// Records one answered request.
pub fn request(
    route: &'static str,
    method: &str,
    status: u16,
    duration: Duration,
    sent_bytes: u64,
) {
    let status = status.to_string();
    let method = method_label(method);
    counter!("chunkd_http_requests_total", "route" => route, "method" => method, "status" => status)
        .increment(1);
    histogram!("chunkd_http_request_duration_seconds", "route" => route, "method" => method)
        .record(duration.as_secs_f64());
    counter!("chunkd_http_sent_bytes_total").increment(sent_bytes);
}

/// The label for `method`: itself when it is a standard one, else `other`.
fn method_label(method: &str) -> &'static str {
    METHODS
        .into_iter()
        .find(|known| *known == method)
        .unwrap_or("other")
}

/// Registers, at zero, every series whose labels are known in advance, and sets
/// `chunkd_build_info`.
fn register_known_series() {
    crate::metrics_origin::register_at_zero();
    gauge!("chunkd_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    for (route, methods) in KNOWN_REQUESTS {
        for (method, statuses) in *methods {
            // Registering is what makes the series appear; nothing is recorded.
            let _ = histogram!("chunkd_http_request_duration_seconds", "route" => *route, "method" => *method);
            for status in *statuses {
                counter!("chunkd_http_requests_total", "route" => *route, "method" => *method, "status" => status.to_string())
                    .absolute(0);
            }
        }
    }
    for result in ["hit", "miss"] {
        counter!("chunkd_store_lookups_total", "result" => result).absolute(0);
    }
    for reason in CUT_REASONS {
        counter!("chunkd_connections_closed_total", "reason" => reason).absolute(0);
    }
    for name in [
        "chunkd_connections_total",
        "chunkd_http_received_bytes_total",
        "chunkd_http_sent_bytes_total",
    ] {
        counter!(name).absolute(0);
    }
    gauge!("chunkd_connections_open").set(0.0);
    register_cache_series();
    metrics_gc::register_at_zero();
}

/// Records request body bytes received.
pub fn received(bytes: u64) {
    counter!("chunkd_http_received_bytes_total").increment(bytes);
}

/// Records a chunk read's outcome.
pub fn lookup(hit: bool) {
    counter!("chunkd_store_lookups_total", "result" => if hit { "hit" } else { "miss" })
        .increment(1);
}

/// Tracks open connections.
pub fn connection_opened() {
    counter!("chunkd_connections_total").increment(1);
    gauge!("chunkd_connections_open").increment(1.0);
}

/// Tracks open connections.
pub fn connection_closed() {
    gauge!("chunkd_connections_open").decrement(1.0);
}

/// Counts a connection the node closed itself.
pub fn connection_cut(reason: &'static str) {
    counter!("chunkd_connections_closed_total", "reason" => reason).increment(1);
}

/// Records the flash tier's counters under the cache metrics shared by the tiers (described
/// and registered at zero with the memory tier's), labelled `tier="flash"`.
pub fn record_flash(flash: &FlashStats) {
    const TIER: &str = "flash";
    counter!("chunkd_cache_hits_total", "tier" => TIER).absolute(flash.hits);
    counter!("chunkd_cache_misses_total", "tier" => TIER).absolute(flash.misses);
    for (reason, count) in [
        (EvictReason::Watermark, flash.evicted_watermark),
        (EvictReason::Put, flash.evicted_put),
    ] {
        counter!("chunkd_cache_evictions_total", "tier" => TIER, "reason" => reason.as_str())
            .absolute(count);
    }
    counter!("chunkd_cache_admissions_refused_total", "tier" => TIER)
        .absolute(flash.admissions_refused);
    gauge!("chunkd_cache_bytes", "tier" => TIER).set(flash.bytes as f64);
    gauge!("chunkd_cache_chunks", "tier" => TIER).set(flash.chunks as f64);
    counter!("chunkd_cache_ghost_hits_total", "tier" => TIER).absolute(flash.ghost_hits);
}

fn record_store(store: &StoreSnapshot) {
    let (health, capacity) = (&store.health, &store.capacity);
    gauge!("chunkd_store_chunks").set(store.chunks as f64);
    gauge!("chunkd_store_capacity_bytes").set(capacity.total_bytes as f64);
    gauge!("chunkd_store_free_bytes").set(capacity.free_bytes as f64);
    gauge!("chunkd_store_quarantined_bytes").set(capacity.quarantined_bytes as f64);
    gauge!("chunkd_store_index_memory_bytes").set(store.index_memory_bytes as f64);
    counter!("chunkd_store_shards_rebuilt_total").absolute(health.shards_rebuilt);
    counter!("chunkd_store_shards_repaired_total").absolute(health.shards_repaired);
    counter!("chunkd_store_chunks_unreadable_total").absolute(health.chunks_unreadable);
    counter!("chunkd_chunks_lost_total").absolute(health.chunks_lost);
    counter!("chunkd_store_scrub_passes_total").absolute(health.scrub_passes);
    gauge!("chunkd_store_scrub_pass_chunks").set(health.scrub_pass_chunks as f64);
    counter!("chunkd_store_repairs_dropped_total").absolute(health.repairs_dropped);
    gauge!("chunkd_store_repairs_queued").set(health.repairs_queued as f64);
    gauge!("chunkd_store_chunks_at_risk").set(health.chunks_at_risk as f64);
    counter!("chunkd_store_scrub_chunks_total").absolute(health.scrub_chunks);
    counter!("chunkd_store_commit_batches_total").absolute(health.commit_batches);
    counter!("chunkd_store_commit_requests_total").absolute(health.commit_requests);
    gauge!("chunkd_store_io_in_flight").set(health.io_in_flight as f64);
    record_flash(&health.flash);
    metrics_gc::record(&store.gc);
    for device in &health.devices {
        for state in ["online", "offline", "refilling"] {
            let value = if device.state.as_str() == state {
                1.0
            } else {
                0.0
            };
            gauge!("chunkd_device_state", "device" => device.path.clone(), "state" => state)
                .set(value);
        }
        for (kind, count) in [
            ("read", device.read_errors),
            ("write", device.write_errors),
            ("checksum", device.checksum_errors),
        ] {
            counter!("chunkd_device_errors_total", "device" => device.path.clone(), "kind" => kind)
                .absolute(count);
        }
    }
}

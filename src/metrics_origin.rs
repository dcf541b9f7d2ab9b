//! The metrics of filling from an origin (issue 14), in a file beside `metrics` (which
//! calls [`describe`] and [`register_at_zero`] when it installs the recorder): origin
//! requests by outcome, bytes, fetch latency, coalesced waiters, fills in flight,
//! verification failures and 404s answered from memory.
//!
//! **Architecture invariant:** records only, through the global recorder `metrics`
//! installs: no I/O, nothing that blocks, and no call back into `metrics`.

use std::time::Duration;

use metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};

use crate::origin::FillError;

const REQUESTS: &str = "chunkd_origin_requests_total";
const BYTES: &str = "chunkd_origin_bytes_total";
const DURATION: &str = "chunkd_origin_fetch_duration_seconds";
const COALESCED: &str = "chunkd_origin_coalesced_total";
const IN_FLIGHT: &str = "chunkd_origin_fills_in_flight";
const MISMATCHES: &str = "chunkd_origin_verification_failures_total";
const NOT_FOUND_CACHED: &str = "chunkd_origin_not_found_cached_total";

/// Every `outcome` of [`REQUESTS`].
const OUTCOMES: [&str; 7] = [
    "filled",
    "not_found",
    "mismatch",
    "timeout",
    "unreachable",
    "error",
    "busy",
];

/// Describes every origin metric.
pub fn describe() {
    describe_counter!(
        REQUESTS,
        "Origin fetches by outcome: filled, not_found, mismatch (bytes not hashing to the id; nothing stored), timeout, unreachable, error, busy (the node's limit: no fetch slot within --origin-timeout, a timeout after waiting half of it or more for one, or too many fills queued). A fetch's retries are inside it; concurrent misses of one chunk are one fetch."
    );
    describe_counter!(
        BYTES,
        Unit::Bytes,
        "Verified bytes fetched from the origin."
    );
    describe_histogram!(
        DURATION,
        Unit::Seconds,
        "Time of each origin fetch: waiting for a slot, the request, retries, the body and its verification."
    );
    describe_counter!(
        COALESCED,
        "Requests for a missing chunk that waited on the fetch another request had started, instead of asking the origin again."
    );
    describe_gauge!(IN_FLIGHT, "Chunks being filled from the origin now.");
    describe_counter!(
        MISMATCHES,
        "Origin answers whose bytes did not hash to the chunk's id (or no chunk could have their length): answered 502, nothing stored."
    );
    describe_counter!(
        NOT_FOUND_CACHED,
        "404s answered from the memory of an origin 404 (--origin-not-found-ttl) without asking again."
    );
}

/// Registers every origin series at zero, so each is exported from the start.
pub fn register_at_zero() {
    for outcome in OUTCOMES {
        counter!(REQUESTS, "outcome" => outcome).absolute(0);
    }
    for name in [BYTES, COALESCED, MISMATCHES, NOT_FOUND_CACHED] {
        counter!(name).absolute(0);
    }
    gauge!(IN_FLIGHT).set(0.0);
    // Registering is what makes the series appear; nothing is recorded.
    let _ = histogram!(DURATION);
}

/// Records one fetch: the bytes it verified, or why it failed; and how long it took.
pub fn fetched(outcome: Result<u64, &FillError>, took: Duration) {
    match outcome {
        Ok(bytes) => {
            counter!(REQUESTS, "outcome" => "filled").increment(1);
            counter!(BYTES).increment(bytes);
        }
        Err(error) => {
            counter!(REQUESTS, "outcome" => error.outcome()).increment(1);
            if let FillError::Mismatch { .. } = error {
                counter!(MISMATCHES).increment(1);
            }
        }
    }
    histogram!(DURATION).record(took.as_secs_f64());
}

/// Counts a miss refused because as many fills are in flight as the node allows (an
/// origin request not made: `busy`).
pub fn too_many_fills() {
    counter!(REQUESTS, "outcome" => "busy").increment(1);
}

/// Counts a request that waited on another's fetch.
pub fn coalesced() {
    counter!(COALESCED).increment(1);
}

/// Moves the gauge of fills in flight by `delta`.
pub fn fills_in_flight(delta: f64) {
    gauge!(IN_FLIGHT).increment(delta);
}

/// Counts a 404 answered from the memory of an origin 404.
pub fn not_found_cached() {
    counter!(NOT_FOUND_CACHED).increment(1);
}

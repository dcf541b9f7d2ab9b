//! Manifests, reference counts and garbage collection (issue 13): the public face.
//!
//! A *manifest* names the chunks an image uses. Each distinct chunk id in a live manifest
//! counts one reference; replacing a manifest changes the counts by the difference. A
//! chunk whose count falls to zero is *expired*; after `gc_grace` a sweep deletes it. A
//! read of an expired chunk is served, counted (an alarm: something still uses it) and
//! cancels its deletion. On a node without an origin a referenced chunk is *pinned*: never
//! evicted, since it may be the only copy.
//!
//! Everything durable here — manifests, counts, expiry times — lives in the catalog beside
//! the chunk records and changes only on the commit thread, in the same transactions as
//! chunk inserts and removals (`catalog_refs`, `commit_refs`). So the rules hold by
//! construction, after a crash at any moment too: a sweep's check of a chunk's count and
//! its removal are one transaction, and no manifest update can fall between them; an
//! eviction checks the count in its own transaction and refuses a referenced chunk.
//!
//! **Architecture invariant:** a chunk is removed by GC only in a transaction that sees
//! its count at zero and its expiry older than `gc_grace`, and by eviction (with pinning
//! on) only in one that sees its count at zero.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::chunk::ChunkId;

/// A manifest's name: 1–128 characters of `[A-Za-z0-9._-]`, not starting with `.`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ManifestName(String);

/// Longest manifest name, in characters (all ASCII, so also bytes).
pub const MANIFEST_NAME_MAX: usize = 128;

/// Why a string is not a manifest name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ManifestNameError {
    #[error("a manifest name cannot be empty")]
    Empty,
    #[error("a manifest name is at most {MANIFEST_NAME_MAX} characters (this one has {0})")]
    TooLong(usize),
    #[error("a manifest name cannot start with '.'")]
    LeadingDot,
    #[error("a manifest name is made of A-Z, a-z, 0-9, '.', '_' and '-' (found {0:?} at byte {1})")]
    BadCharacter(char, usize),
}

impl ManifestName {
    /// Checks `text` against the API's rule.
    pub fn parse(text: &str) -> Result<ManifestName, ManifestNameError> {
        if text.is_empty() {
            return Err(ManifestNameError::Empty);
        }
        if let Some((at, c)) = text
            .char_indices()
            .find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(ManifestNameError::BadCharacter(c, at));
        }
        if text.len() > MANIFEST_NAME_MAX {
            return Err(ManifestNameError::TooLong(text.len()));
        }
        if text.starts_with('.') {
            return Err(ManifestNameError::LeadingDot);
        }
        Ok(ManifestName(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for ManifestName {
    type Err = ManifestNameError;
    fn from_str(text: &str) -> Result<ManifestName, ManifestNameError> {
        ManifestName::parse(text)
    }
}

impl fmt::Display for ManifestName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a manifest PUT did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestPut {
    /// True when no manifest of that name existed (201), false when one was replaced (200).
    pub created: bool,
    /// Ids listed, repeats included.
    pub chunks: usize,
    /// Distinct ids listed.
    pub distinct: usize,
    /// The distinct ids the store does not hold, in the manifest's order (first occurrence).
    pub missing: Vec<ChunkId>,
}

/// What one sweep did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Expired chunks deleted, and their lengths in bytes.
    pub swept_chunks: u64,
    pub swept_bytes: u64,
    /// Expired chunks whose deletion a read cancelled since they expired (found by this
    /// sweep; they stay, and are left to eviction).
    pub cancelled: u64,
    /// Expired chunks still within their grace period after the sweep.
    pub expired_remaining: u64,
    /// How long the sweep took.
    pub duration: Duration,
}

/// Where a chunk stands with respect to the manifests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefState {
    /// Named by `refs` live manifests (`refs ≥ 1`).
    Referenced { refs: u32 },
    /// Its count fell to zero at `since_ms` (milliseconds since the Unix epoch, by the
    /// store's GC clock); swept once `gc_grace` has passed, unless read first.
    Expired { since_ms: u64 },
    /// No live manifest names it and it is not scheduled for deletion: left to eviction.
    Unreferenced,
}

impl RefState {
    /// The reference count: 0 unless referenced.
    pub fn refs(&self) -> u32 {
        match self {
            RefState::Referenced { refs } => *refs,
            _ => 0,
        }
    }

    /// `"referenced"`, `"expired"` or `"unreferenced"` (the `/meta` `state` field).
    pub fn as_str(&self) -> &'static str {
        match self {
            RefState::Referenced { .. } => "referenced",
            RefState::Expired { .. } => "expired",
            RefState::Unreferenced => "unreferenced",
        }
    }
}

/// A snapshot of GC and references for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GcStats {
    /// Live manifests.
    pub manifests: u64,
    /// Distinct ids named by live manifests (stored or not).
    pub referenced_chunks: u64,
    /// Of those, the ones stored, and their lengths in bytes.
    pub referenced_stored_chunks: u64,
    pub referenced_stored_bytes: u64,
    /// Stored chunks eviction may not take (referenced, on a node without an origin).
    pub pinned_chunks: u64,
    pub pinned_bytes: u64,
    /// Stored chunks expired and awaiting a sweep, and their bytes.
    pub expired_chunks: u64,
    pub expired_bytes: u64,
    /// Reads of expired chunks (each cancelled that chunk's deletion).
    pub expired_reads: u64,
    /// Sweeps run, chunks and bytes they deleted.
    pub sweeps: u64,
    pub swept_chunks: u64,
    pub swept_bytes: u64,
    /// Time all sweeps took, and the last one, in microseconds.
    pub sweep_micros: u64,
    pub last_sweep_micros: u64,
}

/// Told of every chunk a sweep deletes (see `Store::on_swept`).
pub(super) type SweptListener = Box<dyn Fn(&ChunkId) + Send + Sync>;

/// The counters behind [`GcStats`], kept by the commit thread, the reads and the sweeps.
#[derive(Debug, Default)]
pub(super) struct GcCounters {
    pub(super) manifests: AtomicU64,
    pub(super) referenced: AtomicU64,
    pub(super) expired_reads: AtomicU64,
    pub(super) sweeps: AtomicU64,
    pub(super) swept_chunks: AtomicU64,
    pub(super) swept_bytes: AtomicU64,
    pub(super) sweep_micros: AtomicU64,
    pub(super) last_sweep_micros: AtomicU64,
}

/// The clock GC stamps expiries with and sweeps compare against: wall-clock milliseconds
/// since the Unix epoch (expiries are stored, so they must mean the same after a restart),
/// or a manual clock that tests advance.
#[derive(Clone, Debug, Default)]
pub enum GcClock {
    #[default]
    System,
    Manual(Arc<AtomicU64>),
}

impl GcClock {
    /// A manual clock starting at `start_ms`.
    pub fn manual(start_ms: u64) -> GcClock {
        GcClock::Manual(Arc::new(AtomicU64::new(start_ms)))
    }

    /// Milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> u64 {
        match self {
            GcClock::System => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            GcClock::Manual(now) => now.load(Ordering::Acquire),
        }
    }

    /// Moves a manual clock forward (nothing for the system clock).
    pub fn advance(&self, by: Duration) {
        if let GcClock::Manual(now) = self {
            now.fetch_add(by.as_millis() as u64, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_names_follow_the_api_rule() {
        for good in ["a", "ubuntu-24.04_rootfs", "A.b-c_9", &"x".repeat(128)] {
            assert_eq!(ManifestName::parse(good).unwrap().as_str(), good);
        }
        assert_eq!(ManifestName::parse(""), Err(ManifestNameError::Empty));
        assert_eq!(
            ManifestName::parse(&"x".repeat(129)),
            Err(ManifestNameError::TooLong(129))
        );
        assert_eq!(
            ManifestName::parse(".hidden"),
            Err(ManifestNameError::LeadingDot)
        );
        assert_eq!(
            ManifestName::parse("a/b"),
            Err(ManifestNameError::BadCharacter('/', 1))
        );
        assert_eq!(
            ManifestName::parse("é"),
            Err(ManifestNameError::BadCharacter('é', 0))
        );
        assert!(ManifestName::parse("a b").is_err());
        assert!(ManifestName::parse("..").is_err());
    }

    #[test]
    fn a_manual_clock_moves_only_when_advanced() {
        let clock = GcClock::manual(1_000);
        assert_eq!(clock.now_ms(), 1_000);
        clock.advance(Duration::from_secs(2));
        assert_eq!(clock.now_ms(), 3_000);
        assert!(GcClock::System.now_ms() > 1_700_000_000_000);
    }
}

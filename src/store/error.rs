//! [`StoreError`]: why a store operation failed, one variant per HTTP status it maps to.
//!
//! **Architecture invariant:** plain data; no I/O.

/// Why a store operation failed. Each variant maps to one HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("chunk not found")]
    NotFound,
    #[error("chunk of {len_bytes} bytes is larger than the {max_bytes}-byte limit")]
    TooLarge { len_bytes: u64, max_bytes: u32 },
    #[error(
        "no space for a chunk of {len_bytes} bytes (its group's largest free run is {largest_free_bytes} bytes){}{}",
        pinned_note(*pinned_chunks, *pinned_bytes),
        quarantine_note(*quarantined_bytes, *retry_after)
    )]
    NoSpace {
        len_bytes: u64,
        largest_free_bytes: u64,
        /// Bytes of the chunk's group freed and still pending (see `grace`).
        quarantined_bytes: u64,
        /// When the group's pending space is usable again (zero: once the reads in flight
        /// end); `None` when nothing is pending (nothing could be evicted either).
        retry_after: Option<std::time::Duration>,
        /// Chunks of the group that live manifests name, which eviction may not take, and
        /// their bytes (lengths).
        pinned_chunks: u64,
        pinned_bytes: u64,
    },
    #[error("byte range {start}..{end} is outside a chunk of {len_bytes} bytes")]
    BadRange {
        start: u64,
        end: u64,
        len_bytes: u64,
    },
    #[error("chunk cannot be read: {healthy} of {needed} shards needed are sound ({cause})")]
    Unreadable {
        healthy: usize,
        needed: usize,
        cause: String,
    },
    #[error("not enough devices online to store a chunk: {online} of {needed} needed")]
    Unavailable { online: usize, needed: usize },
    #[error("another chunk has the same 64-bit id prefix; this one cannot be stored")]
    PrefixTaken,
    #[error("the node keeps at most {max} manifests; delete one or replace an existing one")]
    TooManyManifests { max: u64 },
    #[error("device I/O failed: {0}")]
    Io(String),
    #[error("catalog: {0}")]
    Catalog(String),
    #[error("cannot open the store: {0}")]
    Setup(String),
}

impl From<redb::Error> for StoreError {
    fn from(error: redb::Error) -> StoreError {
        StoreError::Catalog(error.to_string())
    }
}

/// The part of a "no space" message that says how much is pinned by manifests.
fn pinned_note(pinned_chunks: u64, pinned_bytes: u64) -> String {
    if pinned_chunks == 0 {
        return String::new();
    }
    format!(
        "; {pinned_chunks} chunks ({pinned_bytes} bytes) of the group are named by live manifests, which a node without an origin never evicts: delete manifests or add devices"
    )
}

/// The part of a "no space" message that says when quarantined space returns.
fn quarantine_note(quarantined_bytes: u64, retry_after: Option<std::time::Duration>) -> String {
    match retry_after {
        Some(after) if quarantined_bytes > 0 => format!(
            "; {quarantined_bytes} bytes freed are quarantined until the reads in flight that may use them end, usable again in {}s",
            after.as_secs_f64().ceil().max(1.0) as u64
        ),
        _ => String::new(),
    }
}

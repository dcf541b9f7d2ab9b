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
        "no space for a chunk of {len_bytes} bytes (its group's largest free run is {largest_free_bytes} bytes)"
    )]
    NoSpace {
        len_bytes: u64,
        largest_free_bytes: u64,
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

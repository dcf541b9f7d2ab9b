//! [`ImageError`]: what can go wrong packing, unpacking or inspecting an image, with the
//! path or chunk a user needs to find the cause.

use std::io;
use std::path::PathBuf;

use crate::chunk::ChunkId;

/// A failure of `pack`, `unpack` or `inspect`.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    // The cause is in the message and deliberately not a `#[source]`: error chains
    // printed with `{:#}` would otherwise repeat it.
    #[error("{path}: {cause}")]
    Io { path: PathBuf, cause: io::Error },
    #[error("{path}: not a valid image manifest: {reason}")]
    Manifest { path: PathBuf, reason: String },
    #[error("chunk {id} (image offset {offset_bytes}) is missing: {path}")]
    ChunkMissing {
        id: ChunkId,
        offset_bytes: u64,
        path: PathBuf,
    },
    #[error("chunk {id} (image offset {offset_bytes}) is corrupt: its bytes hash to {actual}")]
    ChunkIdMismatch {
        id: ChunkId,
        offset_bytes: u64,
        actual: ChunkId,
    },
    #[error("chunk {id} (image offset {offset_bytes}) does not open with its key: {reason}")]
    ChunkOpen {
        id: ChunkId,
        offset_bytes: u64,
        reason: crate::crypto::OpenError,
    },
    #[error(
        "chunk {id} (image offset {offset_bytes}) holds {actual_bytes} bytes, the manifest says {expected_bytes}"
    )]
    ChunkLength {
        id: ChunkId,
        offset_bytes: u64,
        expected_bytes: u64,
        actual_bytes: u64,
    },
    #[error("invalid salt: {0}")]
    Salt(String),
}

/// Attaches a path to an I/O error.
pub(super) trait IoContext<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T, ImageError>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T, ImageError> {
        self.map_err(|cause| ImageError::Io {
            path: path.into(),
            cause,
        })
    }
}

//! [`ClientError`]: what can go wrong pushing to or fetching from a node, naming the node,
//! the request, the chunk and what the node said, so a user can act on the message alone.

use std::io;
use std::path::PathBuf;

use crate::chunk::ChunkId;
use crate::image::ImageError;
use crate::store::ManifestNameError;

/// A failure of `push` or `fetch`.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Reading the packed directory's manifest.
    #[error(transparent)]
    Image(#[from] ImageError),
    // The cause is in the message and deliberately not a `#[source]`: error chains
    // printed with `{:#}` would otherwise repeat it.
    #[error("{path}: {cause}")]
    Io { path: PathBuf, cause: io::Error },
    #[error("--node {url:?}: {reason}")]
    NodeUrl { url: String, reason: String },
    #[error("manifest name {name:?}: {reason}")]
    Name {
        name: String,
        reason: ManifestNameError,
    },
    #[error("cannot name the manifest after the directory {dir}: {reason}; give --name")]
    NoDefaultName { dir: PathBuf, reason: String },
    /// A request that every node refused or failed, after the retries the policy allows.
    #[error("{node}: {request}: {failure} (after {attempts} attempt{s})", s = if *.attempts == 1 { "" } else { "s" })]
    Request {
        node: String,
        request: String,
        failure: String,
        attempts: u32,
    },
    /// A node's answer that does not say what the API says it should.
    #[error("{node}: {request}: unexpected answer: {reason}")]
    Answer {
        node: String,
        request: String,
        reason: String,
    },
    #[error("{node}: chunk {id} came back corrupt: its bytes hash to {actual}")]
    ChunkIdMismatch {
        node: String,
        id: ChunkId,
        actual: ChunkId,
    },
    #[error(
        "{node}: chunk {id} (image offset {offset_bytes}) does not open with its key: {reason}"
    )]
    ChunkOpen {
        node: String,
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
    #[error(
        "{node}: manifest {name} still names {count} chunk{s} the node does not hold after the upload (first: {first})",
        s = if *.count == 1 { "" } else { "s" }
    )]
    StillMissing {
        node: String,
        name: String,
        count: usize,
        first: ChunkId,
    },
    #[error("{0}")]
    Range(String),
}

/// Attaches a path to an I/O error.
pub(super) trait IoContext<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T, ClientError>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T, ClientError> {
        self.map_err(|cause| ClientError::Io {
            path: path.into(),
            cause,
        })
    }
}

//! [`FillError`]: why a chunk could not be filled from the origin, each with the status the
//! request (and every request that waited on the same fill) is answered with, and the
//! outcome label it is counted under.

use std::time::Duration;

use http::StatusCode;

/// Why a fill failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FillError {
    /// The origin does not have the chunk (an HTTP 404, S3's NoSuchKey, no such file).
    #[error("chunk not found (not at the origin either)")]
    NotFound,
    /// The origin's bytes are not the chunk: they hash to another id, or have a length no
    /// chunk may have. Nothing was stored.
    #[error("the origin's bytes for {url} are not this chunk: {detail}")]
    Mismatch { url: String, detail: String },
    /// The fill did not finish within `--origin-timeout`.
    #[error("the origin did not answer for {url} within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    /// The origin could not be reached (connection refused or timed out, DNS).
    #[error("the origin is unreachable for {url}: {detail}")]
    Unreachable { url: String, detail: String },
    /// The origin answered with an error (a 5xx after the retries, a 403, a broken body).
    #[error("the origin failed for {url}: {detail}")]
    Failed { url: String, detail: String },
    /// No fetch slot came free within `--origin-timeout` (`--origin-concurrency`), or the
    /// fetch timed out after waiting for its slot for half of that or more.
    #[error("too many origin fetches in flight; try again shortly")]
    Busy,
    /// The fill's leader ended without an outcome.
    #[error("the fill was abandoned")]
    Abandoned,
}

impl FillError {
    /// The status the request is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            FillError::NotFound => StatusCode::NOT_FOUND,
            FillError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            FillError::Busy => StatusCode::SERVICE_UNAVAILABLE,
            FillError::Mismatch { .. }
            | FillError::Unreachable { .. }
            | FillError::Failed { .. }
            | FillError::Abandoned => StatusCode::BAD_GATEWAY,
        }
    }

    /// The `outcome` label of `chunkd_origin_requests_total`.
    pub fn outcome(&self) -> &'static str {
        match self {
            FillError::NotFound => "not_found",
            FillError::Mismatch { .. } => "mismatch",
            FillError::Timeout { .. } => "timeout",
            FillError::Unreachable { .. } => "unreachable",
            FillError::Failed { .. } | FillError::Abandoned => "error",
            FillError::Busy => "busy",
        }
    }
}

//! [`Source`]: one origin behind `object_store` — S3 (SigV4 signing, endpoints, path-style
//! requests), plain HTTP(S) GETs, or a local directory — and the fetch of one chunk from
//! it into a [`ChunkBuffer`], verified before it is handed on.
//!
//! Timeouts nest: one connection attempt gets `--origin-connect-timeout`; an attempt that
//! gets no byte (headers, or the body's next piece) for `--origin-first-byte-timeout`
//! fails;
//! `object_store` retries what may pass (connection errors, 5xx, 429) with exponential
//! backoff and decorrelated jitter, GETs being idempotent; and the caller bounds the whole
//! fill by `--origin-timeout` (`Origin::fetch`).

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::http::HttpBuilder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, RetryConfig};

use super::config::{Location, OriginConfig};
use super::error::FillError;
use crate::chunk::ChunkId;
use crate::erasure::Scheme;
use crate::store::{AlignedBuf, ChunkBuffer, VerifiedChunk};

/// An origin, ready to fetch from.
pub struct Source {
    store: Arc<dyn ObjectStore>,
    location: Location,
    scheme: Scheme,
    max_chunk_bytes: u32,
    /// `--origin-timeout`, for the errors of attempts that timed out.
    timeout: Duration,
}

impl Source {
    /// Connects nothing yet: builds the client for `config`'s origin. Chunks are laid out
    /// for `scheme` and may be at most `max_chunk_bytes` long.
    pub fn new(
        config: &OriginConfig,
        location: Location,
        scheme: Scheme,
        max_chunk_bytes: u32,
    ) -> Result<Source, String> {
        let connect = config.origin_connect_timeout.min(config.origin_timeout);
        let first_byte = config.origin_first_byte_timeout.min(config.origin_timeout);
        let options = ClientOptions::new()
            .with_connect_timeout(connect)
            .with_read_timeout(first_byte)
            .with_timeout(config.origin_timeout)
            .with_allow_http(true);
        let retry = RetryConfig {
            max_retries: config.origin_retries,
            retry_timeout: config.origin_timeout,
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(50),
                max_backoff: Duration::from_secs(1),
                base: 2.0,
            },
        };
        let store: Arc<dyn ObjectStore> = match &location {
            Location::Http { base } => Arc::new(
                HttpBuilder::new()
                    // The store appends the chunk's path segment to the URL's own.
                    .with_url(base.trim_end_matches('/'))
                    .with_client_options(options)
                    .with_retry(retry)
                    .build()
                    .map_err(|e| e.to_string())?,
            ),
            Location::S3 { bucket, .. } => {
                let mut builder = AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .with_client_options(options)
                    .with_retry(retry)
                    .with_allow_http(true)
                    .with_virtual_hosted_style_request(false);
                if std::env::var_os("AWS_REGION").is_none()
                    && std::env::var_os("AWS_DEFAULT_REGION").is_none()
                {
                    builder = builder.with_region("us-east-1");
                }
                if let Some(endpoint) = &config.origin_endpoint {
                    builder = builder.with_endpoint(endpoint);
                }
                Arc::new(builder.build().map_err(|e| e.to_string())?)
            }
            Location::File { dir } => Arc::new(
                LocalFileSystem::new_with_prefix(dir)
                    .map_err(|e| format!("{}: {e}", dir.display()))?,
            ),
        };
        Ok(Source {
            store,
            location,
            scheme,
            max_chunk_bytes,
            timeout: config.origin_timeout,
        })
    }

    /// The origin.
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// Where the origin keeps `id`, for logs and errors.
    pub fn url_of(&self, id: &ChunkId) -> String {
        self.location.url_of(&id.to_string())
    }

    /// Fetches chunk `id` whole into `buffer` (of [`ChunkBuffer::buffer_len_bytes`]) and
    /// verifies it: its bytes hash to `id` and fit `--max-chunk-bytes`. Nothing unverified
    /// leaves this function. The buffer is taken once the origin has answered with a
    /// length (left for the caller when it did not).
    pub async fn fetch(
        &self,
        id: &ChunkId,
        buffer: &mut Option<AlignedBuf>,
    ) -> Result<VerifiedChunk, FillError> {
        let url = self.url_of(id);
        let path = match &self.location {
            Location::S3 { prefix, .. } => Path::from(format!("{prefix}{id}")),
            Location::Http { .. } | Location::File { .. } => Path::from(id.to_string()),
        };
        let result = self
            .store
            .get(&path)
            .await
            .map_err(|e| self.classify(&url, e))?;
        let len_bytes = result.meta.size;
        let mismatch = |detail: String| FillError::Mismatch {
            url: url.clone(),
            detail,
        };
        if len_bytes > u64::from(self.max_chunk_bytes) {
            return Err(mismatch(format!(
                "{len_bytes} bytes, over --max-chunk-bytes ({})",
                self.max_chunk_bytes
            )));
        }
        let into = buffer.take().expect("one buffer a fetch");
        let mut buffer = ChunkBuffer::in_buffer(into, len_bytes, self.scheme, self.max_chunk_bytes)
            .map_err(|e| mismatch(e.to_string()))?;
        let mut body = result.into_stream();
        while let Some(bytes) = body.next().await {
            let bytes = bytes.map_err(|e| self.classify(&url, e))?;
            buffer.extend(&bytes).map_err(|e| mismatch(e.to_string()))?;
        }
        buffer.finish(id).map_err(|e| mismatch(e.to_string()))
    }

    /// The fill error an `object_store` error is.
    fn classify(&self, url: &str, error: object_store::Error) -> FillError {
        if matches!(error, object_store::Error::NotFound { .. }) {
            return FillError::NotFound;
        }
        let detail = self.location.redact(&error.to_string());
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
        while let Some(cause) = source {
            if let Some(http) = cause.downcast_ref::<object_store::client::HttpError>() {
                use object_store::client::HttpErrorKind;
                match http.kind() {
                    HttpErrorKind::Connect => {
                        return FillError::Unreachable {
                            url: url.to_owned(),
                            detail,
                        };
                    }
                    HttpErrorKind::Timeout => {
                        return FillError::Timeout {
                            url: url.to_owned(),
                            timeout: self.timeout,
                        };
                    }
                    _ => break,
                }
            }
            source = cause.source();
        }
        FillError::Failed {
            url: url.to_owned(),
            detail,
        }
    }
}

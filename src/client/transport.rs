//! One HTTP request to "the node": sent to the first node that answers, retried by
//! [`super::retry`]'s rules, its answer read whole.
//!
//! The HTTP client is `ureq` (blocking, keep-alive pool in its `Agent`): each of the
//! command's worker threads sends one request at a time on a pooled connection, so N
//! workers keep N connections busy with no async runtime on the client side.

use std::io::Read;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::error::ClientError;
use super::nodes::Nodes;
use super::retry::{Attempts, Failure, Next, RetryPolicy, parse_retry_after};
use crate::xorshift::XorShift;

/// Longest answer body read: a chunk is at most a few MiB, a manifest answer lists at most
/// one id (67 bytes of JSON) per chunk — 64 MiB covers a 500 GB image's.
pub const ANSWER_LIMIT_BYTES: u64 = 64 << 20;

/// How long to wait for a TCP connection to a node.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one request may take in all (a 1 MiB chunk on a slow link takes well under).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// A request's method and body.
#[derive(Clone, Copy, Debug)]
pub enum Method<'a> {
    Get,
    Delete,
    Post,
    /// A PUT with this body and content type.
    Put(&'a [u8], &'static str),
}

impl Method<'_> {
    fn name(&self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Delete => "DELETE",
            Method::Post => "POST",
            Method::Put(..) => "PUT",
        }
    }
}

/// A node's successful (2xx) answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
    /// Which node answered (an index into [`Nodes`]).
    pub node: usize,
}

/// The nodes of one command, the connections to them and the retry policy.
pub struct Transport {
    agent: ureq::Agent,
    nodes: Nodes,
    token: Option<String>,
    policy: RetryPolicy,
    /// The node the last successful request used: later requests start there, so a dead
    /// first node costs one failed connection per worker, not one per request.
    preferred: AtomicUsize,
    /// Seeds each request's jitter stream.
    jitter_seed: AtomicU64,
}

impl Transport {
    /// A transport with connections for `parallel` concurrent requests per node.
    pub fn new(
        nodes: Nodes,
        token: Option<String>,
        parallel: usize,
        policy: RetryPolicy,
    ) -> Transport {
        let config = ureq::Agent::config_builder()
            // Statuses are answers to classify, not errors.
            .http_status_as_error(false)
            .max_redirects(0)
            .user_agent(concat!("chunkd/", env!("CARGO_PKG_VERSION")))
            .max_idle_connections(parallel * nodes.len())
            .max_idle_connections_per_host(parallel)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_global(Some(REQUEST_TIMEOUT))
            .build();
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |t| t.as_nanos() as u64)
            | 1;
        Transport {
            agent: ureq::Agent::new_with_config(config),
            nodes,
            token,
            policy,
            preferred: AtomicUsize::new(0),
            jitter_seed: AtomicU64::new(seed),
        }
    }

    pub fn nodes(&self) -> &Nodes {
        &self.nodes
    }

    /// Sends `method path`, trying nodes and waiting as the policy says, and returns the
    /// first 2xx answer; otherwise the last failure, naming the node that gave it.
    pub fn send(&self, method: Method<'_>, path: &str) -> Result<Answer, ClientError> {
        let first = self.preferred.load(Ordering::Relaxed) % self.nodes.len();
        let mut attempts = Attempts::new(self.policy, self.nodes.len(), first);
        let mut jitter = XorShift::new(
            self.jitter_seed
                .fetch_add(0x9e37_79b9_7f4a_7c16, Ordering::Relaxed)
                | 1,
        );
        loop {
            let node = attempts.node();
            let (failure, description) = match self.send_once(method, node, path) {
                Ok(answer) if (200..300).contains(&answer.status) => {
                    self.preferred.store(node, Ordering::Relaxed);
                    return Ok(Answer {
                        status: answer.status,
                        body: answer.body,
                        node,
                    });
                }
                Ok(answer) => (
                    Failure::Status {
                        status: answer.status,
                        retry_after: answer.retry_after,
                    },
                    describe_status(answer.status, &answer.body),
                ),
                Err(error) if is_fatal(&error) => {
                    return Err(self.request_error(node, method, path, error.to_string(), 1));
                }
                Err(error) => (Failure::Connection, error.to_string()),
            };
            let unit = (jitter.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
            match attempts.failed(failure, unit) {
                Next::Retry { wait, .. } => {
                    tracing::debug!(
                        node = self.nodes.name(node),
                        %description,
                        ?wait,
                        "retrying {} {path}",
                        method.name()
                    );
                    std::thread::sleep(wait);
                }
                Next::GiveUp => {
                    return Err(self.request_error(
                        node,
                        method,
                        path,
                        description,
                        attempts.attempts(),
                    ));
                }
            }
        }
    }

    fn request_error(
        &self,
        node: usize,
        method: Method<'_>,
        path: &str,
        failure: String,
        attempts: u32,
    ) -> ClientError {
        ClientError::Request {
            node: self.nodes.name(node).to_owned(),
            request: format!("{} {path}", method.name()),
            failure,
            attempts,
        }
    }

    /// One attempt: the status, `Retry-After` and whole body of the answer.
    fn send_once(
        &self,
        method: Method<'_>,
        node: usize,
        path: &str,
    ) -> Result<RawAnswer, ureq::Error> {
        let url = self.nodes.url(node, path);
        let authorization = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let response = match method {
            Method::Put(body, content_type) => {
                let mut request = self.agent.put(&url).content_type(content_type);
                if let Some(value) = &authorization {
                    request = request.header("authorization", value);
                }
                request.send(body)?
            }
            Method::Post => {
                let mut request = self.agent.post(&url);
                if let Some(value) = &authorization {
                    request = request.header("authorization", value);
                }
                request.send_empty()?
            }
            Method::Get | Method::Delete => {
                let mut request = match method {
                    Method::Get => self.agent.get(&url),
                    _ => self.agent.delete(&url),
                };
                if let Some(value) = &authorization {
                    request = request.header("authorization", value);
                }
                request.call()?
            }
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let mut body = response.into_body();
        let expected = body.content_length().unwrap_or(0).min(ANSWER_LIMIT_BYTES);
        let mut bytes = Vec::with_capacity(expected as usize);
        body.with_config()
            .limit(ANSWER_LIMIT_BYTES)
            .reader()
            .read_to_end(&mut bytes)?;
        Ok(RawAnswer {
            status,
            retry_after,
            body: bytes,
        })
    }
}

/// An answer of any status, before it is classified.
struct RawAnswer {
    status: u16,
    retry_after: Option<Duration>,
    body: Vec<u8>,
}

/// Whether a client error means the request itself is wrong (so no node can do better),
/// rather than that this node could not be reached or broke off.
fn is_fatal(error: &ureq::Error) -> bool {
    matches!(
        error,
        ureq::Error::Http(_)
            | ureq::Error::BadUri(_)
            | ureq::Error::BodyExceedsLimit(_)
            | ureq::Error::InvalidProxyUrl
            | ureq::Error::RedirectFailed
            | ureq::Error::TooManyRedirects
    )
}

/// A failure status as a message: the status and the node's `{"error": …}` text, or the
/// start of whatever body it sent.
pub fn describe_status(status: u16, body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct ErrorBody {
        error: String,
    }
    let reason = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    let said = match serde_json::from_slice::<ErrorBody>(body) {
        Ok(parsed) => parsed.error,
        Err(_) => String::from_utf8_lossy(&body[..body.len().min(200)])
            .trim()
            .to_owned(),
    };
    if said.is_empty() {
        format!("answered {status} {reason}")
    } else {
        format!("answered {status} {reason}: {said}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_statuses_quote_what_the_node_said() {
        assert_eq!(
            describe_status(400, br#"{"error":"the body's BLAKE3 is not the id"}"#),
            "answered 400 Bad Request: the body's BLAKE3 is not the id"
        );
        assert_eq!(
            describe_status(502, b"  upstream gone\n"),
            "answered 502 Bad Gateway: upstream gone"
        );
        assert_eq!(
            describe_status(503, b""),
            "answered 503 Service Unavailable"
        );
    }
}

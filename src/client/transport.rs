//! One HTTP request to "the node": sent to the first node that answers, retried by
//! [`super::retry`]'s rules, its answer read whole into the caller's buffer.
//!
//! The HTTP client is `ureq` (blocking, keep-alive pool in its `Agent`): each of the
//! command's worker threads sends one request at a time on a pooled connection, so N
//! workers keep N connections busy with no async runtime on the client side.
//!
//! Copies are kept to what curl does: a chunk PUT reads its file straight into the
//! connection's output buffer (no buffer of the whole chunk), and an answer is read into a
//! buffer the worker reuses from chunk to chunk. Measured with
//! `tuning/push_fetch_vs_curl.py` (1.2 GB, 2,314 chunks): reading each file into a fresh
//! `Vec` first cost the push ~40% more client CPU than curl (0.86 s against 0.62 s), which
//! on two cores shared with the node made it 0.94x of curl.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::error::ClientError;
use super::nodes::Nodes;
use super::retry::{Attempts, Failure, Next, RetryPolicy, parse_retry_after};
use crate::xorshift::XorShift;

/// Longest answer body read: a chunk is at most a few MiB, a manifest answer lists at most
/// one id (67 bytes of JSON) per chunk — 64 MiB covers a 500 GB image's. A manifest PUT's
/// answer may be as long as its body (every id missing), so a larger manifest raises it.
pub const ANSWER_LIMIT_BYTES: u64 = 64 << 20;

/// Each connection's input and output buffers: a whole sealed 512 KiB chunk and its
/// headers, so a chunk goes out in one `read` from its file and one `write` to the socket
/// (ureq's default, 128 KiB, takes four of each).
const CONNECTION_BUFFER_BYTES: usize = 640 << 10;

/// How long to wait for a TCP connection to a node.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long each phase of a request (sending the head, the body; receiving the head, the
/// body) may take: a 1 MiB chunk on a slow link takes well under.
const PHASE_TIMEOUT: Duration = Duration::from_secs(60);

/// A request's method and body.
#[derive(Clone, Copy, Debug)]
pub enum Method<'a> {
    Get,
    Delete,
    Post,
    /// A PUT with this body and content type.
    Put(Body<'a>, &'static str),
}

/// The body of a PUT.
#[derive(Clone, Copy, Debug)]
pub enum Body<'a> {
    Bytes(&'a [u8]),
    /// The whole file, read from its start on every attempt.
    File(&'a File),
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

/// A node's successful (2xx) answer; its body is in the buffer the caller gave.
#[derive(Clone, Copy, Debug)]
pub struct Answer {
    pub status: u16,
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
    /// Whether a failure of each node has been reported.
    reported: Vec<AtomicBool>,
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
            .input_buffer_size(CONNECTION_BUFFER_BYTES)
            .output_buffer_size(CONNECTION_BUFFER_BYTES)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            // Per phase, not per call: ureq resolves the host name of every request, and
            // with a whole-call timeout it does so on a new thread (one thread per chunk;
            // `strace` counted 2,336 clone3 calls for 2,314 chunks). These bound every wait
            // on a node just as well.
            .timeout_send_request(Some(PHASE_TIMEOUT))
            .timeout_send_body(Some(PHASE_TIMEOUT))
            .timeout_recv_response(Some(PHASE_TIMEOUT))
            .timeout_recv_body(Some(PHASE_TIMEOUT))
            .build();
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |t| t.as_nanos() as u64)
            | 1;
        let reported = (0..nodes.len()).map(|_| AtomicBool::new(false)).collect();
        Transport {
            agent: ureq::Agent::new_with_config(config),
            nodes,
            token,
            policy,
            preferred: AtomicUsize::new(0),
            jitter_seed: AtomicU64::new(seed),
            reported,
        }
    }

    pub fn nodes(&self) -> &Nodes {
        &self.nodes
    }

    /// Sends `method path`, trying nodes and waiting as the policy says, and returns the
    /// first 2xx answer, its body in `body` (cleared first); otherwise the last failure,
    /// naming the node that gave it.
    pub fn send(
        &self,
        method: Method<'_>,
        path: &str,
        body: &mut Vec<u8>,
    ) -> Result<Answer, ClientError> {
        let first = self.preferred.load(Ordering::Relaxed) % self.nodes.len();
        let mut attempts = Attempts::new(self.policy, self.nodes.len(), first);
        let mut jitter = XorShift::new(
            self.jitter_seed
                .fetch_add(0x9e37_79b9_7f4a_7c16, Ordering::Relaxed)
                | 1,
        );
        loop {
            let node = attempts.node();
            let (failure, description) = match self.send_once(method, node, path, body) {
                Ok((status, _)) if (200..300).contains(&status) => {
                    self.preferred.store(node, Ordering::Relaxed);
                    return Ok(Answer { status, node });
                }
                Ok((status, retry_after)) => (
                    Failure::Status {
                        status,
                        retry_after,
                    },
                    describe_status(status, body),
                ),
                Err(error) if is_fatal(&error) => {
                    return Err(self.request_error(node, method, path, error.to_string(), 1));
                }
                Err(error) => (Failure::Connection, error.to_string()),
            };
            let unit = (jitter.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
            match attempts.failed(failure, unit) {
                Next::Retry { wait, .. } => {
                    // Said once per node (at info), so a dead node in a list of several is
                    // visible without a line per chunk; every retry is logged at debug.
                    if !self.reported[node].swap(true, Ordering::Relaxed) {
                        tracing::warn!(
                            "{}: {description}; trying again{}",
                            self.nodes.name(node),
                            if self.nodes.len() > 1 {
                                " and on the other nodes"
                            } else {
                                ""
                            }
                        );
                    }
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

    /// One attempt: the answer's status and `Retry-After`, its body in `into`.
    fn send_once(
        &self,
        method: Method<'_>,
        node: usize,
        path: &str,
        into: &mut Vec<u8>,
    ) -> Result<(u16, Option<Duration>), ureq::Error> {
        let url = self.nodes.url(node, path);
        let token = self.token.as_deref();
        let limit = match &method {
            Method::Put(Body::Bytes(bytes), _) => ANSWER_LIMIT_BYTES.max(2 * bytes.len() as u64),
            _ => ANSWER_LIMIT_BYTES,
        };
        let response = match method {
            Method::Get => authorized(self.agent.get(&url), token).call()?,
            Method::Delete => authorized(self.agent.delete(&url), token).call()?,
            Method::Post => authorized(self.agent.post(&url), token).send_empty()?,
            Method::Put(body, content_type) => {
                let request = authorized(self.agent.put(&url), token).content_type(content_type);
                match body {
                    Body::Bytes(bytes) => request.send(bytes)?,
                    Body::File(mut file) => {
                        file.seek(SeekFrom::Start(0))?;
                        request.send(file)?
                    }
                }
            }
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let mut body = response.into_body();
        let expected = body.content_length().unwrap_or(0).min(limit);
        into.clear();
        into.reserve(expected as usize);
        body.with_config().limit(limit).reader().read_to_end(into)?;
        Ok((status, retry_after))
    }
}

/// `request` with the write token, if there is one.
fn authorized<B>(request: ureq::RequestBuilder<B>, token: Option<&str>) -> ureq::RequestBuilder<B> {
    match token {
        Some(token) => request.header("authorization", format!("Bearer {token}")),
        None => request,
    }
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

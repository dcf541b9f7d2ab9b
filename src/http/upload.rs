//! A write's request body, shared by chunk PUTs (`put`) and manifest PUTs (`manifests`):
//! the length its `Content-Length` declares, checked against the route's limit; the time
//! limits it is read within; and what becomes of the rest of a body refused before or
//! while it was read (drained on HTTP/1.x, declined on HTTP/2).

use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap};
use http::request::Parts;
use http::{Response, StatusCode, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::body::Body;
use super::linger::{Linger, linger};
use super::reply::{Refusal, Reply, error, unavailable_briefly};
use crate::config::ServeConfig;

/// How long a request body may take.
#[derive(Clone, Copy)]
pub struct BodyLimits {
    /// Between two reads (`--idle-timeout`).
    pub idle: Duration,
    /// For the whole body (`--body-timeout`).
    pub whole: Duration,
}

impl BodyLimits {
    pub fn of(config: &ServeConfig) -> BodyLimits {
        BodyLimits {
            idle: config.idle_timeout,
            whole: config.body_timeout,
        }
    }
}

/// What becomes of an upload's body when the request is answered without all of it.
pub struct Upload {
    version: Version,
    /// The client waits for `100 Continue` before it sends the body.
    waits_for_continue: bool,
    linger: Linger,
}

impl Upload {
    pub fn new(parts: &Parts, config: &ServeConfig) -> Upload {
        Upload {
            version: parts.version,
            waits_for_continue: expects_continue(&parts.headers),
            linger: Linger {
                time: config.lingering_time,
                bytes: config.lingering_bytes,
            },
        }
    }

    /// Whether the client waits for `100 Continue` before sending the body.
    pub fn waits_for_continue(&self) -> bool {
        self.waits_for_continue
    }

    /// `refusal`, answered before any of the body was read: on HTTP/1.x the body is
    /// drained while it goes out (`linger`), unless the client waits for `100 Continue`
    /// and so has not sent it. HTTP/2 declines the rest of one stream's upload with
    /// RST_STREAM(NO_ERROR) instead, which hyper sends when the body is dropped, and the
    /// connection carries on.
    pub fn refuse_before(&self, refusal: Reply, body: Incoming) -> Reply {
        if self.version < Version::HTTP_2 && !self.waits_for_continue {
            linger(body, self.linger);
        }
        refusal
    }

    /// `refusal`, answered part-way through the body: the client is sending (any
    /// `100 Continue` went out), so on HTTP/1.x the rest is drained — except after a 408,
    /// which a client too slow to send in time earns no more time for.
    pub fn refuse_during(&self, refusal: Response<Body>, body: Incoming) -> Reply {
        if self.version < Version::HTTP_2 && refusal.status() != StatusCode::REQUEST_TIMEOUT {
            linger(body, self.linger);
        }
        refusal.into()
    }
}

/// The 503 for an upload its connection has no room for now: retry (on another stream,
/// or after the connection's other uploads).
pub fn busy_connection() -> Reply {
    unavailable_briefly("this connection's uploads in flight fill its share of memory: retry")
        .into()
}

/// The declared `Content-Length` (`None` without one), or the 400 or 413 it calls for:
/// `what` of more than `max` bytes is refused before its body is read.
pub fn declared_len(headers: &HeaderMap, max: u64, what: &str) -> Result<Option<u64>, Refusal> {
    let declared = match headers
        .get(header::CONTENT_LENGTH)
        .map(|v| v.to_str().ok().and_then(|v| v.parse::<u64>().ok()))
    {
        None => None,
        Some(Some(len)) => Some(len),
        Some(None) => {
            return Err(Box::new(error(
                StatusCode::BAD_REQUEST,
                "invalid Content-Length",
            )));
        }
    };
    if let Some(len) = declared.filter(|&len| len > max) {
        return Err(Box::new(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("{what} of {len} bytes is over the {max}-byte limit"),
        )));
    }
    Ok(declared)
}

fn expects_continue(headers: &HeaderMap) -> bool {
    headers
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

/// Reads `body` to its end, handing each piece of data to `take` (which refuses the
/// request by returning its answer). A body that sends nothing for the idle limit, or is
/// not all in by the whole-body limit, gets a 408; one whose transport fails, a 400.
pub async fn read(
    body: &mut Incoming,
    limits: BodyLimits,
    mut take: impl FnMut(Bytes) -> Result<(), Refusal>,
) -> Result<(), Refusal> {
    let deadline = tokio::time::Instant::now() + limits.whole;
    loop {
        let wait = limits
            .idle
            .min(deadline.saturating_duration_since(tokio::time::Instant::now()));
        let frame = match tokio::time::timeout(wait, body.frame()).await {
            Err(_) => {
                return Err(Box::new(error(
                    StatusCode::REQUEST_TIMEOUT,
                    "request body too slow",
                )));
            }
            Ok(None) => return Ok(()),
            Ok(Some(Err(failure))) => {
                return Err(Box::new(error(
                    StatusCode::BAD_REQUEST,
                    format!("request body failed: {failure}"),
                )));
            }
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        crate::metrics::received(data.len() as u64);
        take(data)?;
    }
}

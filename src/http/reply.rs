//! Answers as values: a handler's [`Reply`] (a response and the in-flight budget it holds
//! until sent), plain-text, JSON and `{"error": …}` bodies, the 405 with its `Allow`, and
//! the status a store failure maps to.
//!
//! **Invariant:** a leaf: it names no other file of `http` but `body` and `budget`, so
//! every handler can build its answers here without calling back into routing.

use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

use super::body::Body;
use super::budget::BudgetPermit;
use crate::store::{QUARANTINE, StoreError};

/// A handler's answer, with what must live until its body has been sent.
pub struct Reply {
    pub response: Response<Body>,
    /// This core's in-flight byte budget held by the request (see `budget`).
    pub permit: Option<BudgetPermit>,
}

impl From<Response<Body>> for Reply {
    fn from(response: Response<Body>) -> Reply {
        Reply {
            response,
            permit: None,
        }
    }
}

/// An answer that refuses a request, returned as a `Result`'s error: boxed, as responses
/// are large and the success values small.
pub type Refusal = Box<Response<Body>>;

impl From<Refusal> for Reply {
    fn from(response: Refusal) -> Reply {
        Reply::from(*response)
    }
}

/// A plain-text response.
pub fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut response = Response::new(Body::full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// A JSON response of `value` (a `serde_json::Value`, or a type that serialises as one
/// without building it: a manifest's list of ids).
pub fn json(status: StatusCode, value: &impl serde::Serialize) -> Response<Body> {
    // Every answer's type has string keys and finite numbers only, so it serialises.
    let mut body = serde_json::to_vec(value).expect("answers serialise to JSON");
    body.push(b'\n');
    let mut response = Response::new(Body::full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// An error answer: `{"error": "…"}` with `status`.
pub fn error(status: StatusCode, message: impl std::fmt::Display) -> Response<Body> {
    json(status, &serde_json::json!({ "error": message.to_string() }))
}

/// 503 with `Retry-After: 1`: the node cannot take this request now and will shortly.
pub fn unavailable_briefly(message: impl std::fmt::Display) -> Response<Body> {
    let mut response = error(StatusCode::SERVICE_UNAVAILABLE, message);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// 405 with the methods the route allows.
pub fn method_not_allowed(allow: &'static str) -> Response<Body> {
    let mut response = error(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("method not allowed; allowed: {allow}"),
    );
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

/// The status and message for a store failure.
pub fn store_error(failure: StoreError) -> Response<Body> {
    let status = match &failure {
        StoreError::NotFound => StatusCode::NOT_FOUND,
        StoreError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        StoreError::NoSpace { .. } | StoreError::TooManyManifests { .. } => {
            StatusCode::INSUFFICIENT_STORAGE
        }
        StoreError::BadRange { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
        StoreError::PrefixTaken => StatusCode::CONFLICT,
        StoreError::Unreadable { .. } | StoreError::Unavailable { .. } | StoreError::Io(_) => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        StoreError::Catalog(_) | StoreError::Setup(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    if status == StatusCode::INSUFFICIENT_STORAGE {
        // A full node is a state, not a fault: clients retrying would flood an error log.
        tracing::warn!(error = %failure, "store request refused");
    } else if status.is_server_error() {
        tracing::error!(error = %failure, "store request failed");
    }
    let retry_after = match &failure {
        StoreError::NoSpace { retry_after, .. } => Some(no_space_retry_after(*retry_after)),
        _ => None,
    };
    let mut response = error(status, failure);
    if let Some(seconds) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// `Retry-After` of a 507, in seconds: when the first quarantined space of the chunk's
/// group is usable again (rounded up, at least 1), or, with nothing quarantined, the
/// quarantine's length — space then returns only after deletes, and none deleted from now
/// on is usable sooner.
fn no_space_retry_after(release: Option<std::time::Duration>) -> u64 {
    release.unwrap_or(QUARANTINE).as_secs_f64().ceil().max(1.0) as u64
}

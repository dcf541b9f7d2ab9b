//! Requests in, responses out: routing, the per-core context handlers share, JSON errors,
//! and the bookkeeping every request gets (metrics, access log, connection state, in-flight
//! byte budget) when its response has been sent.

use std::cell::{Cell, OnceCell};
use std::convert::Infallible;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::Node;
use super::body::{Body, Done};
use super::chunks;
use super::conn::ConnState;
use crate::store::LocalStore;
use crate::store::device::uring::UringEngine;

/// What one core's handlers share.
pub struct CoreContext {
    pub node: Arc<Node>,
    local: OnceCell<Rc<LocalStore<UringEngine>>>,
    /// Bytes of request and response bodies this core holds at once (in KiB permits, so a
    /// request's share fits in the semaphore's u32).
    budget: Arc<Semaphore>,
    budget_kib: u32,
    random: Cell<u64>,
}

/// A handler's answer, with what must live until its body has been sent.
pub struct Reply {
    pub response: Response<Body>,
    pub permit: Option<OwnedSemaphorePermit>,
}

impl From<Response<Body>> for Reply {
    fn from(response: Response<Body>) -> Reply {
        Reply {
            response,
            permit: None,
        }
    }
}

impl CoreContext {
    pub fn new(node: Arc<Node>, core: usize) -> CoreContext {
        let budget_kib = u32::try_from(node.config.max_inflight_bytes_per_core / 1024)
            .unwrap_or(u32::MAX)
            .max(1);
        CoreContext {
            node,
            local: OnceCell::new(),
            budget: Arc::new(Semaphore::new(budget_kib as usize)),
            budget_kib,
            random: Cell::new(
                0x9e37_79b9_7f4a_7c15 ^ (core as u64 + 1).wrapping_mul(0xff51_afd7_ed55_8ccd),
            ),
        }
    }

    /// This core's store handle, once the store is open.
    pub fn local(&self) -> Option<Rc<LocalStore<UringEngine>>> {
        if let Some(local) = self.local.get() {
            return Some(local.clone());
        }
        let store = self.node.store.get()?;
        match store.local() {
            Ok(local) => Some(self.local.get_or_init(|| Rc::new(local)).clone()),
            Err(error) => {
                tracing::error!(%error, "could not open this core's device handles");
                None
            }
        }
    }

    /// Waits until `bytes` more may be held in flight on this core.
    pub async fn reserve(&self, bytes: u64) -> OwnedSemaphorePermit {
        let kib = u32::try_from(bytes.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .clamp(1, self.budget_kib);
        self.budget
            .clone()
            .acquire_many_owned(kib)
            .await
            .expect("the budget semaphore is never closed")
    }

    /// 64 fresh pseudo-random bits (multipart boundaries; not a secret).
    pub fn random(&self) -> u64 {
        let mut x = self.random.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.random.set(x);
        x
    }
}

/// Serves one request.
pub async fn handle(
    context: Rc<CoreContext>,
    conn: Rc<ConnState>,
    request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let started = Instant::now();
    conn.request_started();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let (route, reply) = route(&context, request).await;
    let Reply {
        mut response,
        permit,
    } = reply;
    if matches!(
        response.status(),
        StatusCode::PAYLOAD_TOO_LARGE | StatusCode::REQUEST_TIMEOUT
    ) {
        tracing::info!(%method, %path, status = response.status().as_u16(), "request over a limit refused");
    }
    if context.node.shutting_down.load(Ordering::Relaxed) {
        // Tells HTTP/1.1 clients not to send another request on this connection.
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    let finish = Finish {
        route,
        method,
        path,
        status: response.status(),
        started,
        conn,
        access_log: context.node.config.access_log,
        _permit: permit,
    };
    Ok(response.map(|body| body.on_done(Box::new(finish))))
}

/// Runs when a response has been sent in full or abandoned.
struct Finish {
    route: &'static str,
    method: Method,
    path: String,
    status: StatusCode,
    started: Instant,
    conn: Rc<ConnState>,
    access_log: bool,
    _permit: Option<OwnedSemaphorePermit>,
}

impl Done for Finish {
    fn done(self: Box<Self>, sent_bytes: u64, complete: bool) {
        let elapsed = self.started.elapsed();
        crate::metrics::request(
            self.route,
            self.method.as_str(),
            self.status.as_u16(),
            elapsed,
            sent_bytes,
        );
        if self.access_log {
            tracing::info!(
                target: "chunkd::access",
                method = %self.method,
                path = %self.path,
                status = self.status.as_u16(),
                sent_bytes,
                complete,
                micros = elapsed.as_micros() as u64,
            );
        }
        self.conn.request_finished();
    }
}

async fn route(context: &CoreContext, request: Request<Incoming>) -> (&'static str, Reply) {
    let path = request.uri().path().to_owned();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segments.as_slice() {
        ["v1", "chunks", id] => ("chunk", chunks::chunk(context, id, request).await),
        ["v1", "chunks", id, "meta"] => ("chunk_meta", chunks::meta(context, id, &request).await),
        ["v1", "manifests", ..] | ["v1", "gc"] => (
            "not_implemented",
            error(
                StatusCode::NOT_IMPLEMENTED,
                "manifests and garbage collection are not implemented yet",
            )
            .into(),
        ),
        ["metrics"] => (
            "metrics",
            only_get(&request)
                .unwrap_or_else(|| metrics(context))
                .into(),
        ),
        ["healthz"] => (
            "healthz",
            only_get(&request)
                .unwrap_or_else(|| text(StatusCode::OK, "ok\n"))
                .into(),
        ),
        ["readyz"] => (
            "readyz",
            only_get(&request)
                .unwrap_or_else(|| readiness(context))
                .into(),
        ),
        _ => (
            "other",
            error(StatusCode::NOT_FOUND, "no such route").into(),
        ),
    }
}

/// `None` for GET and HEAD, a 405 otherwise.
fn only_get(request: &Request<Incoming>) -> Option<Response<Body>> {
    if matches!(*request.method(), Method::GET | Method::HEAD) {
        return None;
    }
    Some(method_not_allowed("GET, HEAD"))
}

fn metrics(context: &CoreContext) -> Response<Body> {
    let store = context.node.store.get();
    let snapshot = store.map(|s| {
        (
            s.health(),
            s.capacity(),
            s.chunk_count() as u64,
            s.index_memory_bytes() as u64,
        )
    });
    let text = context
        .node
        .metrics
        .render(snapshot.as_ref().map(|(h, c, n, i)| (h, c, *n, *i)));
    let mut response = Response::new(Body::full(text));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

fn readiness(context: &CoreContext) -> Response<Body> {
    let node = &context.node;
    if node.shutting_down.load(Ordering::Relaxed) {
        return text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n");
    }
    if node.store.get().is_none() {
        return text(StatusCode::SERVICE_UNAVAILABLE, "recovering\n");
    }
    text(StatusCode::OK, "ready\n")
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

/// A JSON response.
pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut body = serde_json::to_vec(value).expect("JSON values serialise");
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

//! The operator's routes: `/metrics` (Prometheus text, the store's gauges read at the
//! scrape), `/healthz` (the process runs) and `/readyz` (the store is open, can serve reads
//! and take writes, and the node is not shutting down; a JSON reason when not). Each
//! answers GET and HEAD only.

use http::header::{self, HeaderValue};
use http::{Method, Response, StatusCode};

use super::body::Body;
use super::context::CoreContext;
use super::reply::{json, method_not_allowed, text};
use crate::metrics::StoreSnapshot;
use crate::store::Engine;

/// `None` for GET and HEAD, a 405 otherwise.
fn only_get(method: &Method) -> Option<Response<Body>> {
    if matches!(*method, Method::GET | Method::HEAD) {
        return None;
    }
    Some(method_not_allowed("GET, HEAD"))
}

/// `GET /metrics`.
pub fn metrics<E: Engine>(context: &CoreContext<E>, method: &Method) -> Response<Body> {
    if let Some(refusal) = only_get(method) {
        return refusal;
    }
    let snapshot = context.node.store.get().map(|store| StoreSnapshot {
        health: store.health(),
        capacity: store.capacity(),
        chunks: store.chunk_count() as u64,
        index_memory_bytes: store.index_memory_bytes() as u64,
        gc: store.gc_stats(),
    });
    if let Some(memory) = context.node.memory() {
        crate::metrics::record_memory(&memory.stats());
    }
    let text = context.node.metrics.render(snapshot.as_ref());
    let mut response = Response::new(Body::full(text));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// `GET /healthz`: 200 while the process runs.
pub fn healthz(method: &Method) -> Response<Body> {
    only_get(method).unwrap_or_else(|| text(StatusCode::OK, "ok\n"))
}

/// `GET /readyz`: 200 once the store is open and can serve; 503 with a JSON reason
/// (`{"status": "unavailable", "reason": …}`) before, while shutting down, and whenever
/// the store cannot serve reads or take writes (fewer than k usable devices).
pub fn readiness<E: Engine>(context: &CoreContext<E>, method: &Method) -> Response<Body> {
    if let Some(refusal) = only_get(method) {
        return refusal;
    }
    let node = &context.node;
    let unavailable = |reason: String| {
        json(
            StatusCode::SERVICE_UNAVAILABLE,
            &serde_json::json!({ "status": "unavailable", "reason": reason }),
        )
    };
    if node.is_shutting_down() {
        return unavailable("shutting down".into());
    }
    let Some(store) = node.store.get() else {
        return unavailable("recovering: the store is not open yet".into());
    };
    if let Some(reason) = store.unready_reason() {
        return unavailable(reason);
    }
    text(StatusCode::OK, "ready\n")
}

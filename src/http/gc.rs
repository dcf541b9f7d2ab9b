//! `POST /v1/gc`: sweeps now — deletes every expired chunk whose grace period has passed —
//! and answers what the sweep did as JSON. Needs the write token (it deletes data).

use http::header::HeaderMap;
use http::{Method, StatusCode};

use super::auth::write_refusal;
use super::context::CoreContext;
use super::reply::{Reply, error, json, method_not_allowed, store_error};
use super::target::open_store;
use crate::store::Engine;

pub async fn gc<E: Engine>(
    context: &CoreContext<E>,
    method: &Method,
    headers: &HeaderMap,
) -> Reply {
    if *method != Method::POST {
        return method_not_allowed("POST").into();
    }
    let store = match open_store(context) {
        Ok(store) => store,
        Err(refusal) => return *refusal,
    };
    if let Some(refusal) = write_refusal(context, headers) {
        return refusal;
    }
    // A task of the core's own: a client that leaves does not stop the sweep part-way.
    let store = store.clone();
    let swept = tokio::task::spawn_local(async move { store.sweep().await });
    let report = match swept.await {
        Ok(Ok(report)) => report,
        Ok(Err(failure)) => return store_error(failure).into(),
        Err(_) => {
            return error(StatusCode::INTERNAL_SERVER_ERROR, "the sweep task failed").into();
        }
    };
    crate::metrics_gc::sweep_requested(report.duration);
    json(
        StatusCode::OK,
        &serde_json::json!({
            "swept_chunks": report.swept_chunks,
            "swept_bytes": report.swept_bytes,
            "cancelled": report.cancelled,
            "expired_remaining": report.expired_remaining,
            "duration_seconds": report.duration.as_secs_f64(),
        }),
    )
    .into()
}

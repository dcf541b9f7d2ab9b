//! `GET /v1/chunks/{id}/meta`: the chunk's length and shard health, as JSON. Every shard is
//! read and verified, so the count of healthy shards is what the devices hold now.

use http::{Method, Request, StatusCode};
use hyper::body::Incoming;

use super::context::CoreContext;
use super::reply::{Reply, error, json, method_not_allowed, store_error};
use super::target::target;
use crate::store::Engine;

pub async fn meta<E: Engine>(
    context: &CoreContext<E>,
    id: &str,
    request: &Request<Incoming>,
) -> Reply {
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        return method_not_allowed("GET, HEAD").into();
    }
    let (id, local) = match target(context, id) {
        Ok(target) => target,
        Err(refusal) => return *refusal,
    };
    match local.shard_health(&id).await {
        Ok(Some(health)) => json(
            StatusCode::OK,
            &serde_json::json!({
                "id": id,
                "len": health.len_bytes,
                // Reference counting arrives with manifests and GC (not yet implemented).
                "refs": 0,
                "state": "unreferenced",
                "tiers": ["flash"],
                "shards": { "k": health.data_shards, "m": health.parity_shards, "healthy": health.healthy },
            }),
        )
        .into(),
        Ok(None) => error(StatusCode::NOT_FOUND, "chunk not found").into(),
        Err(failure) => store_error(failure).into(),
    }
}

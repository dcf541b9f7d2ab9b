//! `GET /v1/chunks/{id}/meta`: the chunk's length, its references and GC state
//! (`referenced`, `expired`, `unreferenced`), the tiers holding it (`memory`, `flash`) and
//! its shard health, as JSON. Every shard is read and verified, so the count
//! of healthy shards is what the devices hold now.

use http::{Method, Request, StatusCode};
use hyper::body::Incoming;

use super::context::CoreContext;
use super::reply::{Reply, error, json, method_not_allowed, store_error};
use super::target::{open_store, target};
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
    let in_memory = context
        .node
        .memory()
        .and_then(|m| m.peek_len(&id))
        .map(|len| len as u64);
    // Asked before the shards are read, and answered from the catalog and the index:
    // looking at a chunk's state is not a read of it, so it cancels no expiry.
    let store = match open_store(context) {
        Ok(store) => store,
        Err(refusal) => return *refusal,
    };
    let refs = match store.chunk_refs(&id) {
        Ok(refs) => refs,
        Err(failure) => return store_error(failure).into(),
    };
    let (len, tiers, shards) = match local.shard_health(&id).await {
        Ok(Some(health)) => {
            let mut tiers = Vec::from(in_memory.map(|_| "memory").as_slice());
            tiers.push("flash");
            let shards = serde_json::json!({ "k": health.data_shards, "m": health.parity_shards, "healthy": health.healthy });
            (health.len_bytes, tiers, shards)
        }
        Ok(None) => match in_memory {
            // Evicted from flash, still in memory: no shard holds it.
            Some(len) => {
                let scheme = context.node.config.scheme;
                let shards = serde_json::json!({ "k": scheme.data_shards(), "m": scheme.parity_shards(), "healthy": 0 });
                (len, vec!["memory"], shards)
            }
            None => return error(StatusCode::NOT_FOUND, "chunk not found").into(),
        },
        Err(failure) => return store_error(failure).into(),
    };
    json(
        StatusCode::OK,
        &serde_json::json!({
            "id": id,
            "len": len,
            "refs": refs.refs(),
            "state": refs.as_str(),
            "tiers": tiers,
            "shards": shards,
        }),
    )
    .into()
}

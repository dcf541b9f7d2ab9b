//! `DELETE /v1/chunks/{id}`: removes the chunk now (an operator's tool): 204, or 404 when
//! it is not stored. Needs the write token where one is configured.

use http::header::HeaderMap;
use http::{Response, StatusCode};

use super::auth::write_refusal;
use super::body::Body;
use super::context::CoreContext;
use super::reply::{Reply, error, store_error};
use crate::chunk::ChunkId;
use crate::store::{Engine, LocalStore};

pub async fn delete<E: Engine>(
    context: &CoreContext<E>,
    local: &LocalStore<E>,
    id: &ChunkId,
    headers: &HeaderMap,
) -> Reply {
    if let Some(refusal) = write_refusal(context, headers) {
        return refusal;
    }
    match local.delete(id).await {
        Ok(true) => Response::builder()
            .status(StatusCode::NO_CONTENT)
            .body(Body::empty())
            .expect("a status and an empty body make a valid response")
            .into(),
        Ok(false) => error(StatusCode::NOT_FOUND, "chunk not found").into(),
        Err(failure) => store_error(failure).into(),
    }
}

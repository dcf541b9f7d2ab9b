//! `DELETE /v1/chunks/{id}`: removes the chunk now (an operator's tool), from flash and
//! then from the memory tier: 204, or 404 when neither held it. A fill of the chunk in
//! flight ends first (its store would otherwise undo the delete). Needs the write token
//! where one is configured.

use std::rc::Rc;

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
    local: Rc<LocalStore<E>>,
    id: &ChunkId,
    headers: &HeaderMap,
) -> Reply {
    if let Some(refusal) = write_refusal(context, headers) {
        return refusal;
    }
    // Both tiers, as one task of the core's own: once the flash delete is sent to the
    // commit thread it happens, so the memory copy must go too even if the client leaves
    // (a dropped request future would otherwise stop between the two, and the tier would
    // go on serving a deleted chunk). Dropping a `JoinHandle` does not cancel its task.
    let (node, id) = (context.node.clone(), *id);
    let both = tokio::task::spawn_local(async move {
        // A fill of this chunk in flight stores it when its fetch is done: let it end
        // first, or its store would land after this delete and undo it.
        if let Some(settled) = node.origin.as_ref().and_then(|o| o.settled(&id)) {
            settled.await;
        }
        let stored = local.delete(&id).await;
        // After the flash delete: a GET that read flash before it finds the tier's epoch
        // moved on and does not admit what it read.
        let in_memory = node.memory().is_some_and(|m| m.remove(&id));
        (stored, in_memory)
    });
    let Ok((stored, in_memory)) = both.await else {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "the delete task failed").into();
    };
    match stored {
        Ok(true) => Response::builder()
            .status(StatusCode::NO_CONTENT)
            .body(Body::empty())
            .expect("a status and an empty body make a valid response")
            .into(),
        Ok(false) if in_memory => Response::builder()
            .status(StatusCode::NO_CONTENT)
            .body(Body::empty())
            .expect("a status and an empty body make a valid response")
            .into(),
        Ok(false) => error(StatusCode::NOT_FOUND, "chunk not found").into(),
        Err(failure) => store_error(failure).into(),
    }
}

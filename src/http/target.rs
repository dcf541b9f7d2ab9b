//! The target of a route: for a chunk, the chunk id of the path, parsed strictly, and this
//! core's store handle; for manifests and GC, the shared store. Or the answer that refuses
//! the request (400 for a malformed id, 503 with `Retry-After` while the store recovers).

use std::rc::Rc;

use http::StatusCode;

use super::context::CoreContext;
use super::reply::{Reply, error, unavailable_briefly};
use crate::chunk::ChunkId;
use crate::store::{Engine, LocalStore, Store};

/// The chunk id of the path and this core's store, or the answer that refuses the request.
pub fn target<E: Engine>(
    context: &CoreContext<E>,
    id: &str,
) -> Result<(ChunkId, Rc<LocalStore<E>>), Box<Reply>> {
    let id = id.parse::<ChunkId>().map_err(|reason| {
        Box::new(Reply::from(error(
            StatusCode::BAD_REQUEST,
            format!("invalid chunk id: {reason}"),
        )))
    })?;
    let local = context.local().ok_or_else(|| Box::new(starting()))?;
    Ok((id, local))
}

/// The node's store, or the 503 that answers while it recovers.
pub fn open_store<E: Engine>(context: &CoreContext<E>) -> Result<&Store<E>, Box<Reply>> {
    context.node.store.get().ok_or_else(|| Box::new(starting()))
}

fn starting() -> Reply {
    unavailable_briefly("the node is starting: recovering its store").into()
}

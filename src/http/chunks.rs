//! `/v1/chunks/{id}`: the method decides the command — GET and HEAD (`get`, and `fill` when
//! the chunk is missing and the node has an origin), PUT (`put`), DELETE (`delete`);
//! anything else is a 405.

use http::{Method, Request};
use hyper::body::Incoming;

use super::budget::ConnShares;
use super::context::CoreContext;
use super::reply::{Reply, method_not_allowed};
use super::target::target;
use super::{delete, fill, get, put};
use crate::store::Engine;

/// Serves GET, HEAD, PUT and DELETE of one chunk.
pub async fn chunk<E: Engine>(
    context: &CoreContext<E>,
    id: &str,
    request: Request<Incoming>,
    shares: &ConnShares,
) -> Reply {
    let (id, local) = match target(context, id) {
        Ok(target) => target,
        Err(refusal) => return *refusal,
    };
    match *request.method() {
        Method::GET | Method::HEAD => {
            let head = request.method() == Method::HEAD;
            let headers = request.headers();
            match get::stored(context, &local, &id, head, headers, shares).await {
                Ok(reply) => reply,
                Err(missing) if context.node.origin.is_some() => {
                    fill::fill(context, &id, missing, head, headers, shares).await
                }
                Err(_) => get::not_found(),
            }
        }
        Method::PUT => put::put(context, &local, id, request, shares).await,
        Method::DELETE => delete::delete(context, local, &id, request.headers()).await,
        _ => method_not_allowed("GET, HEAD, PUT, DELETE").into(),
    }
}

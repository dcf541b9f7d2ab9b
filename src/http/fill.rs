//! A GET or HEAD of a chunk the node does not hold, with an origin (`--origin`): the fill.
//! Also of a chunk it holds but cannot read now (fewer than k sound shards), which without
//! an origin would be a 503: the origin has it.
//!
//! ```text
//! Origin::join ─▶ Waiter: wait (woken with the leader's outcome)
//!     └▶ Leader: a core task, which no departing client can cut:
//!          still missing? ─▶ Origin::fetch (verified) ─▶ publish the bytes (waiters woken)
//!          ─▶ store (no device flush unless --origin-durable-fills) ─▶ memory per
//!          --memory-admission ─▶ end the flight
//! outcome ─▶ bytes: answered as a stored chunk (ranges, conditionals, HEAD) from them
//!         └▶ error: its status (404, 502, 503, 504) for every request that waited on it
//! ```
//!
//! Every request of a fill is answered from the verified bytes the leader published, not
//! from flash: the answer does not wait for the store's writes, and a store that fails
//! (no space even by eviction, a device error) costs the node its copy, not the client its
//! answer. The flight lasts until the store is done, so a request that comes meanwhile
//! joins it instead of asking the origin again.

use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};

use super::budget::ConnShares;
use super::context::CoreContext;
use super::get::{Missing, from_bytes, not_found, stored};
use super::node::Node;
use super::reply::{Reply, error};
use crate::chunk::ChunkId;
use crate::origin::{Fetched, FillError, Filled, Flight, Joined};
use crate::store::{Engine, LocalStore};

/// Answers a GET (or HEAD) of `id`, which missed (`missing` says how), by filling it from
/// the origin.
pub async fn fill<E: Engine>(
    context: &CoreContext<E>,
    id: &ChunkId,
    missing: Missing,
    head: bool,
    headers: &HeaderMap,
    shares: &ConnShares,
) -> Reply {
    let (Some(origin), Some(local)) = (&context.node.origin, context.local()) else {
        return not_found();
    };
    // A leader first checks that the chunk is still not stored (a fill may have ended
    // just before its flight began) — unless it is stored but was unreadable.
    let mut check_stored = missing == Missing::Absent;
    loop {
        let outcome = match origin.join(id) {
            Err(error) => Err(error),
            Ok(Joined::Waiter(waiting)) => waiting.await,
            Ok(Joined::Leader(flight)) => {
                let waiting = flight.waiting();
                let node = context.node.clone();
                tokio::task::spawn_local(lead(node, local.clone(), flight, check_stored));
                waiting.await
            }
        };
        return match outcome {
            Ok(Filled::Bytes(bytes)) => {
                from_bytes(context, id, bytes, head, headers, shares, false).await
            }
            // Stored meanwhile: answered from the store. If that cannot answer after all
            // (unreadable, or removed again), one fill that does not check comes next.
            Ok(Filled::Stored) => match stored(context, &local, id, head, headers, shares).await {
                Ok(reply) => reply,
                Err(_) if check_stored => {
                    check_stored = false;
                    continue;
                }
                Err(_) => not_found(),
            },
            Err(failure) => refusal(&failure),
        };
    }
}

/// The answer to every request of a failed fill.
fn refusal(failure: &FillError) -> Reply {
    let mut response = error(failure.status(), failure.to_string());
    if let FillError::Busy = failure {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response.into()
}

/// Leads the fill of `flight`'s chunk: fetches it, publishes the outcome, stores it, and
/// ends the flight (by dropping it) only then. With `check_stored`, first makes sure the
/// chunk was not stored since the request missed it.
async fn lead<E: Engine>(
    node: Arc<Node<E>>,
    local: Rc<LocalStore<E>>,
    mut flight: Flight,
    check_stored: bool,
) {
    let id = *flight.id();
    let origin = node.origin.as_ref().expect("a fill has an origin");
    // Stored since the request missed it: a fill that ended just before this flight
    // began, or a PUT.
    if check_stored && matches!(local.lookup(&id), Ok(Some(_))) && !local.is_lost(&id) {
        flight.publish(Ok(Filled::Stored));
        return;
    }
    let memory = node.memory();
    let admission = node.config.memory_admission;
    // The fetch slot comes with the chunk and is held until it is stored: at most
    // --origin-concurrency fetched chunks are held at once, however slow the stores.
    // The buffer comes from this core's pool and returns to it when the chunk has been
    // written (or the fetch did not use it): buffers carved on the origin's threads and
    // freed here were fresh pages every time, which the kernel zeroes — over half the
    // node's CPU in a run of cold misses.
    let Fetched { chunk, slot } = match origin.fetch(id, local.fill_buffer()).await {
        Ok(fetched) => fetched,
        Err((failure, unused)) => {
            drop(unused);
            flight.publish(Err(failure));
            return;
        }
    };
    // One copy of the bytes serves every waiter, and is the memory tier's when admitted
    // (unless a DELETE comes between this and the admission: the epoch).
    let epoch = memory.map(|m| m.epoch(&id));
    let admit = memory.filter(|_| admission.on_put);
    let bytes = match admit {
        Some(memory) => memory.copy(&[chunk.bytes()]),
        None => Bytes::copy_from_slice(chunk.bytes()),
    };
    flight.publish(Ok(Filled::Bytes(bytes.clone())));
    // Asked for although stored (it could not be read): this copy replaces that one.
    let replace = !check_stored;
    let stored = local
        .put_filled(chunk, replace, origin.durable_fills())
        .await;
    drop(slot);
    match stored {
        Ok(_) => match (admit, memory) {
            (Some(memory), _) => {
                memory.admit(&id, bytes, epoch);
            }
            // The fill was this chunk's first whole read: the next one admits it.
            (None, Some(memory)) if admission.on_hit => {
                memory.second_look(&id);
            }
            _ => {}
        },
        Err(failure) => {
            tracing::warn!(%id, error = %failure, "a chunk filled from the origin could not be stored; it was served");
        }
    }
    drop(flight);
}

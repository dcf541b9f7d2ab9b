//! `PUT /v1/chunks/{id}`: the body is hashed as it streams into the shard-laid-out buffer,
//! and stored only if the whole of it arrived and hashes to the id.
//!
//! ```text
//! token? ─▶ Content-Length ≤ max? ─▶ (Expect: 100-continue and stored: 200 at once)
//!   ─▶ budget reserved ─▶ body received and hashed ─▶ store put (durable) ─▶ 201 / 200
//! ```

use std::time::Duration;

use http::header::{self, HeaderMap};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::auth::write_refusal;
use super::body::Body;
use super::context::CoreContext;
use super::reply::{Refusal, Reply, error, json, store_error};
use crate::chunk::ChunkId;
use crate::store::{ChunkBuffer, Engine, LocalStore, PutOutcome, VerifiedChunk};

pub async fn put<E: Engine>(
    context: &CoreContext<E>,
    local: &LocalStore<E>,
    id: ChunkId,
    request: Request<Incoming>,
) -> Reply {
    if let Some(refusal) = write_refusal(context, request.headers()) {
        return refusal;
    }
    let declared = match declared_len(request.headers(), local.max_chunk_bytes()) {
        Ok(declared) => declared,
        Err(refusal) => return refusal.into(),
    };
    // A client waiting for `100 Continue` has not sent the body, so a chunk already stored
    // is confirmed without it. Any other client is sending it already: it is read (and
    // checked against the id) before the 200, because answering first cuts the upload
    // off, and clients report the reset connection or stream as a failed PUT.
    if expects_continue(request.headers()) {
        match local.lookup(&id) {
            // A chunk known lost is received and stored again.
            Ok(Some(_)) if !local.is_lost(&id) => {
                return json(
                    StatusCode::OK,
                    &serde_json::json!({ "id": id, "created": false }),
                )
                .into();
            }
            Ok(_) => {}
            Err(failure) => return store_error(failure).into(),
        }
    }
    let permit = context
        .reserve(declared.unwrap_or(u64::from(local.max_chunk_bytes())))
        .await;
    let idle_timeout = context.node.config.idle_timeout;
    let chunk = match receive(local, &id, declared, request.into_body(), idle_timeout).await {
        Ok(chunk) => chunk,
        Err(refusal) => return refusal.into(),
    };
    let len = chunk.layout().chunk_len_bytes();
    let reply = match local.put(chunk).await {
        Ok(PutOutcome::Created) => json(
            StatusCode::CREATED,
            &serde_json::json!({ "id": id, "len": len, "created": true }),
        ),
        Ok(PutOutcome::AlreadyPresent) => json(
            StatusCode::OK,
            &serde_json::json!({ "id": id, "len": len, "created": false }),
        ),
        Err(failure) => store_error(failure),
    };
    drop(permit);
    reply.into()
}

/// The declared `Content-Length` (`None` without one), or the 400 or 413 it calls for.
fn declared_len(headers: &HeaderMap, max: u32) -> Result<Option<u64>, Refusal> {
    let declared = match headers
        .get(header::CONTENT_LENGTH)
        .map(|v| v.to_str().ok().and_then(|v| v.parse::<u64>().ok()))
    {
        None => None,
        Some(Some(len)) => Some(len),
        Some(None) => {
            return Err(Box::new(error(
                StatusCode::BAD_REQUEST,
                "invalid Content-Length",
            )));
        }
    };
    if let Some(len) = declared.filter(|&len| len > u64::from(max)) {
        return Err(Box::new(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("chunk of {len} bytes is over the {max}-byte limit"),
        )));
    }
    Ok(declared)
}

fn expects_continue(headers: &HeaderMap) -> bool {
    headers
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

/// Reads the body into a chunk buffer, hashing as it goes; the verified chunk or the answer
/// that refuses it. Nothing is stored unless the whole body arrived and hashes to `id`.
/// A body that sends nothing for `idle_timeout` gets a 408.
async fn receive<E: Engine>(
    local: &LocalStore<E>,
    id: &ChunkId,
    declared: Option<u64>,
    mut body: Incoming,
    idle_timeout: Duration,
) -> Result<VerifiedChunk, Response<Body>> {
    let max = u64::from(local.max_chunk_bytes());
    let too_large = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("chunk is over the {max}-byte limit"),
        )
    };
    // With a declared length the bytes go straight into the aligned, shard-laid-out buffer;
    // without one (chunked encoding, HTTP/2 without content-length) they are gathered first.
    let mut direct = match declared {
        Some(len) => Some(local.chunk_buffer(len).map_err(store_error)?),
        None => None,
    };
    let mut gathered: Vec<u8> = Vec::new();
    loop {
        let frame = match tokio::time::timeout(idle_timeout, body.frame()).await {
            Err(_) => return Err(error(StatusCode::REQUEST_TIMEOUT, "request body stalled")),
            Ok(None) => break,
            Ok(Some(Err(failure))) => {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    format!("request body failed: {failure}"),
                ));
            }
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        crate::metrics::received(data.len() as u64);
        match &mut direct {
            Some(buffer) => buffer
                .extend(&data)
                .map_err(|e| error(StatusCode::BAD_REQUEST, e))?,
            None if gathered.len() as u64 + data.len() as u64 > max => return Err(too_large()),
            None => gathered.extend_from_slice(&data),
        }
    }
    let buffer: ChunkBuffer = match direct {
        Some(buffer) => buffer,
        None => {
            let mut buffer = local
                .chunk_buffer(gathered.len() as u64)
                .map_err(store_error)?;
            buffer
                .extend(&gathered)
                .expect("the buffer has exactly this length");
            buffer
        }
    };
    buffer
        .finish(id)
        .map_err(|e| error(StatusCode::BAD_REQUEST, e))
}

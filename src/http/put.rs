//! `PUT /v1/chunks/{id}`: the body is hashed as it streams into the shard-laid-out buffer,
//! and stored only if the whole of it arrived and hashes to the id.
//!
//! ```text
//! token? ─▶ Content-Length ≤ max? ─▶ (Expect: 100-continue and stored: 200 at once)
//!   ─▶ budget reserved ─▶ body received and hashed ─▶ store put (durable) ─▶ 201 / 200
//! ```

use std::time::Duration;

use http::header::{self, HeaderMap};
use http::{Request, Response, StatusCode, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::auth::write_refusal;
use super::body::Body;
use super::budget::ConnShares;
use super::context::CoreContext;
use super::linger::{Linger, linger};
use super::reply::{Refusal, Reply, error, json, store_error, unavailable_briefly};
use crate::chunk::ChunkId;
use crate::store::{ChunkBuffer, Engine, LocalStore, PutOutcome, VerifiedChunk};

pub async fn put<E: Engine>(
    context: &CoreContext<E>,
    local: &LocalStore<E>,
    id: ChunkId,
    request: Request<Incoming>,
    shares: &ConnShares,
) -> Reply {
    let (parts, mut body) = request.into_parts();
    let headers = &parts.headers;
    let config = &context.node.config;
    let linger_limits = Linger {
        time: config.lingering_time,
        bytes: config.lingering_bytes,
    };
    // An answer before the body: on HTTP/1.x the body is drained while it goes out
    // (`linger`), unless the client waits for `100 Continue` and so has not sent it.
    // HTTP/2 declines the rest of one stream's upload with RST_STREAM(NO_ERROR) instead,
    // which hyper sends when the body is dropped, and the connection carries on.
    let lingers = parts.version < Version::HTTP_2 && !expects_continue(headers);
    let early = |refusal: Reply, body: Incoming| {
        if lingers {
            linger(body, linger_limits);
        }
        refusal
    };
    if let Some(refusal) = write_refusal(context, headers) {
        return early(refusal, body);
    }
    let declared = match declared_len(headers, local.max_chunk_bytes()) {
        Ok(declared) => declared,
        Err(refusal) => return early(refusal.into(), body),
    };
    // A client waiting for `100 Continue` has not sent the body, so a chunk already stored
    // is confirmed without it. Any other client is sending it already: it is read (and
    // checked against the id) before the 200, because answering first cuts the upload
    // off, and clients report the reset connection or stream as a failed PUT.
    if expects_continue(headers)
        && let Some(answer) = already_stored(local, &id)
    {
        return answer.into();
    }
    let wanted = declared.unwrap_or(u64::from(local.max_chunk_bytes()));
    let Some(permit) = context.reserve_upload(shares, wanted).await else {
        return early(busy_connection(), body);
    };
    let limits = BodyLimits {
        idle: config.idle_timeout,
        whole: config.body_timeout,
    };
    let chunk = match receive(local, &id, declared, &mut body, limits).await {
        Ok(chunk) => chunk,
        Err(refusal) => {
            // Refused part-way: the client is sending (any `100 Continue` went out).
            if parts.version < Version::HTTP_2 && refusal.status() != StatusCode::REQUEST_TIMEOUT {
                linger(body, linger_limits);
            }
            return refusal.into();
        }
    };
    let len = chunk.layout().chunk_len_bytes();
    // `--memory-admission put`: the tier's copy is made before the store takes the buffer,
    // and admitted once the chunk is durable (unless a DELETE came in between). Until then
    // the copy is in-flight memory like the body, so it is charged to the same budget —
    // only if that costs no wait; else the chunk is not admitted (counted as refused).
    let admit = context
        .node
        .memory()
        .filter(|m| config.memory_admission.on_put && !m.contains(&id))
        .and_then(|m| match context.try_reserve(shares, len) {
            Some(copy_permit) => Some((m, m.epoch(&id), m.copy(&[chunk.bytes()]), copy_permit)),
            None => {
                m.count_refused(&id);
                None
            }
        });
    let stored = local.put(chunk).await;
    if let (Ok(_), Some((memory, epoch, copy, _copy_permit))) = (&stored, admit) {
        memory.admit(&id, copy, Some(epoch));
    }
    let reply = match stored {
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

/// The 503 for an upload its connection has no room for now: retry (on another stream,
/// or after the connection's other uploads).
fn busy_connection() -> Reply {
    unavailable_briefly("this connection's uploads in flight fill its share of memory: retry")
        .into()
}

/// The 200 for a chunk already stored (and not known lost: that one is received and
/// stored again), or the store's failure; `None` to receive the body.
fn already_stored<E: Engine>(local: &LocalStore<E>, id: &ChunkId) -> Option<Response<Body>> {
    match local.lookup(id) {
        Ok(Some(_)) if !local.is_lost(id) => Some(json(
            StatusCode::OK,
            &serde_json::json!({ "id": id, "created": false }),
        )),
        Ok(_) => None,
        Err(failure) => Some(store_error(failure)),
    }
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

/// How long a request body may take.
#[derive(Clone, Copy)]
struct BodyLimits {
    /// Between two reads (`--idle-timeout`).
    idle: Duration,
    /// For the whole body (`--body-timeout`).
    whole: Duration,
}

/// Reads the body into a chunk buffer, hashing as it goes; the verified chunk or the answer
/// that refuses it. Nothing is stored unless the whole body arrived and hashes to `id`.
/// A body that sends nothing for the idle limit, or is not all in by the whole-body
/// limit, gets a 408.
async fn receive<E: Engine>(
    local: &LocalStore<E>,
    id: &ChunkId,
    declared: Option<u64>,
    body: &mut Incoming,
    limits: BodyLimits,
) -> Result<VerifiedChunk, Response<Body>> {
    let deadline = tokio::time::Instant::now() + limits.whole;
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
        let wait = limits
            .idle
            .min(deadline.saturating_duration_since(tokio::time::Instant::now()));
        let frame = match tokio::time::timeout(wait, body.frame()).await {
            Err(_) => return Err(error(StatusCode::REQUEST_TIMEOUT, "request body too slow")),
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

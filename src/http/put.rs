//! `PUT /v1/chunks/{id}`: the body is hashed as it streams into the shard-laid-out buffer,
//! and stored only if the whole of it arrived and hashes to the id.
//!
//! ```text
//! token? ─▶ Content-Length ≤ max? ─▶ (Expect: 100-continue and stored: 200 at once)
//!   ─▶ budget reserved ─▶ body received and hashed ─▶ store put (durable) ─▶ 201 / 200
//! ```

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use super::auth::write_refusal;
use super::body::Body;
use super::budget::ConnShares;
use super::context::CoreContext;
use super::reply::{Reply, error, json, store_error};
use super::upload::{self, BodyLimits, Upload, busy_connection, declared_len};
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
    let upload = Upload::new(&parts, config);
    if let Some(refusal) = write_refusal(context, headers) {
        return upload.refuse_before(refusal, body);
    }
    let max = u64::from(local.max_chunk_bytes());
    let declared = match declared_len(headers, max, "chunk") {
        Ok(declared) => declared,
        Err(refusal) => return upload.refuse_before(refusal.into(), body),
    };
    // A client waiting for `100 Continue` has not sent the body, so a chunk already stored
    // is confirmed without it. Any other client is sending it already: it is read (and
    // checked against the id) before the 200, because answering first cuts the upload
    // off, and clients report the reset connection or stream as a failed PUT.
    if upload.waits_for_continue()
        && let Some(answer) = already_stored(local, &id).await
    {
        return answer.into();
    }
    let wanted = declared.unwrap_or(max);
    let Some(permit) = context.reserve_upload(shares, wanted).await else {
        return upload.refuse_before(busy_connection(), body);
    };
    let chunk = match receive(local, &id, declared, &mut body, BodyLimits::of(config)).await {
        Ok(chunk) => chunk,
        Err(refusal) => return upload.refuse_during(refusal, body),
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

/// The 200 for a chunk already stored (and not known lost: that one is received and
/// stored again), or the store's failure; `None` to receive the body. The chunk is
/// touched, as a PUT that stores it again would: a client putting an expired chunk is
/// using it, so its deletion is cancelled (`store::refs`). What is stored may be a fill
/// from the origin not yet flushed: the 200 promises durability, so the devices are
/// flushed first (`LocalStore::flush_written`; nothing to do when no write is pending).
async fn already_stored<E: Engine>(local: &LocalStore<E>, id: &ChunkId) -> Option<Response<Body>> {
    match local.lookup(id) {
        Ok(Some(_)) if !local.is_lost(id) => {
            local.touch(id);
            if let Err(failure) = local.flush_written().await {
                return Some(store_error(failure));
            }
            Some(json(
                StatusCode::OK,
                &serde_json::json!({ "id": id, "created": false }),
            ))
        }
        Ok(_) => None,
        Err(failure) => Some(store_error(failure)),
    }
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
    let max = u64::from(local.max_chunk_bytes());
    // With a declared length the bytes go straight into the aligned, shard-laid-out buffer;
    // without one (chunked encoding, HTTP/2 without content-length) they are gathered first.
    let mut direct = match declared {
        Some(len) => Some(local.chunk_buffer(len).map_err(store_error)?),
        None => None,
    };
    let mut gathered: Vec<u8> = Vec::new();
    upload::read(body, limits, |data| {
        match &mut direct {
            Some(buffer) => buffer
                .extend(&data)
                .map_err(|e| Box::new(error(StatusCode::BAD_REQUEST, e)))?,
            None if gathered.len() as u64 + data.len() as u64 > max => {
                return Err(Box::new(error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("chunk is over the {max}-byte limit"),
                )));
            }
            None => gathered.extend_from_slice(&data),
        }
        Ok(())
    })
    .await
    .map_err(|refusal| *refusal)?;
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

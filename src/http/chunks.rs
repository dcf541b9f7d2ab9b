//! `/v1/chunks/{id}`: GET and HEAD with ranges and conditionals, PUT with the body hashed as
//! it streams in, DELETE, and `/meta`.

use std::time::Duration;

use bytes::Bytes;
use futures_util::future::join_all;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::body::Body;
use super::multipart;
use super::service::{CoreContext, Reply, error, json, method_not_allowed};
use crate::chunk::ChunkId;
use crate::range::{self, ByteRange, Precondition, Resolution};
use crate::store::{ChunkBuffer, PutOutcome, StoreError};

const CACHE_CONTROL: &str = "public, max-age=31536000, immutable";

/// Serves GET, HEAD, PUT and DELETE of one chunk.
pub async fn chunk(context: &CoreContext, id: &str, request: Request<Incoming>) -> Reply {
    let (id, local) = match target(context, id) {
        Ok(target) => target,
        Err(refusal) => return *refusal,
    };
    match *request.method() {
        Method::GET | Method::HEAD => {
            get(
                context,
                &local,
                &id,
                request.method() == Method::HEAD,
                request.headers(),
            )
            .await
        }
        Method::PUT => put(context, &local, id, request).await,
        Method::DELETE => delete(context, &local, &id, request.headers()).await,
        _ => method_not_allowed("GET, HEAD, PUT, DELETE").into(),
    }
}

/// The chunk id of the path and this core's store, or the answer that refuses the
/// request (a 400 for a malformed id, a 503 while the store recovers).
fn target(context: &CoreContext, id: &str) -> Result<(ChunkId, std::rc::Rc<Local>), Box<Reply>> {
    let id = id.parse::<ChunkId>().map_err(|reason| {
        Box::new(Reply::from(error(
            StatusCode::BAD_REQUEST,
            format!("invalid chunk id: {reason}"),
        )))
    })?;
    let local = context.local().ok_or_else(|| Box::new(starting()))?;
    Ok((id, local))
}

fn starting() -> Reply {
    let mut response = error(
        StatusCode::SERVICE_UNAVAILABLE,
        "the node is starting: recovering its store",
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response.into()
}

/// The value of header `name`, repeated lines joined with ", " (RFC 9110 §5.3).
fn joined(headers: &HeaderMap, name: HeaderName) -> Option<Vec<u8>> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?.as_bytes().to_vec();
    Some(values.fold(first, |mut all, v| {
        all.extend_from_slice(b", ");
        all.extend_from_slice(v.as_bytes());
        all
    }))
}

/// Headers every 200, 206 and 304 of a chunk carries.
fn chunk_headers(response: &mut Response<Body>, etag: &str) {
    let headers = response.headers_mut();
    headers.insert(
        header::ETAG,
        HeaderValue::from_str(etag).expect("an ETag of hex digits is a valid header"),
    );
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(CACHE_CONTROL),
    );
}

fn with_length(mut response: Response<Body>, len_bytes: u64) -> Response<Body> {
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(len_bytes));
    response
}

async fn get(
    context: &CoreContext,
    local: &crate::store::LocalStore<crate::store::device::uring::UringEngine>,
    id: &ChunkId,
    head: bool,
    headers: &HeaderMap,
) -> Reply {
    // HEAD answers without reading shards, so it confirms the full id in the catalog; GET
    // confirms it in the shard headers it reads.
    let len = if head {
        local.lookup(id)
    } else {
        Ok(local.indexed_len(id))
    };
    let len_bytes = match len {
        Ok(Some(len)) => len,
        Ok(None) => {
            crate::metrics::lookup(false);
            return error(StatusCode::NOT_FOUND, "chunk not found").into();
        }
        Err(failure) => return store_error(failure).into(),
    };
    let etag = range::chunk_etag(&id.to_string());
    match range::check_preconditions(
        true,
        joined(headers, header::IF_MATCH).as_deref(),
        joined(headers, header::IF_NONE_MATCH).as_deref(),
        &etag,
    ) {
        Precondition::Proceed => {}
        Precondition::NotModified => {
            let mut response = with_length(Response::new(Body::empty()), len_bytes);
            *response.status_mut() = StatusCode::NOT_MODIFIED;
            chunk_headers(&mut response, &etag);
            return response.into();
        }
        Precondition::Failed => {
            return error(
                StatusCode::PRECONDITION_FAILED,
                "If-Match does not match the chunk's ETag",
            )
            .into();
        }
    }
    if head {
        crate::metrics::lookup(true);
        let mut response = with_length(Response::new(Body::empty()), len_bytes);
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        chunk_headers(&mut response, &etag);
        return response.into();
    }
    let range_header = joined(headers, header::RANGE);
    let honour_range =
        range::if_range_allows_range(joined(headers, header::IF_RANGE).as_deref(), &etag);
    let resolution = if honour_range {
        range::resolve_range(range_header.as_deref(), len_bytes)
    } else {
        Resolution::Full
    };
    let ranges = match resolution {
        Resolution::Full => None,
        Resolution::Partial(ranges) => Some(ranges),
        Resolution::Unsatisfiable => {
            let mut response = error(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "no requested range is within the chunk",
            );
            let value = range::content_range_unsatisfied(len_bytes);
            response.headers_mut().insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&value).expect("digits"),
            );
            return response.into();
        }
    };
    let wanted: u64 = ranges
        .as_ref()
        .map_or(len_bytes, |r| r.iter().map(|r| r.len_bytes()).sum());
    let permit = context.reserve(wanted).await;
    let reply = match ranges {
        None => read_whole(local, id, len_bytes).await,
        Some(ranges) if ranges.len() == 1 => read_one(local, id, ranges[0], len_bytes).await,
        Some(ranges) => read_many(context, local, id, ranges, len_bytes).await,
    };
    match reply {
        Ok(mut response) => {
            crate::metrics::lookup(true);
            chunk_headers(&mut response, &etag);
            Reply {
                response,
                permit: Some(permit),
            }
        }
        Err(StoreError::NotFound) => {
            crate::metrics::lookup(false);
            error(StatusCode::NOT_FOUND, "chunk not found").into()
        }
        Err(failure) => store_error(failure).into(),
    }
}

fn octets(segments: Vec<Bytes>) -> Response<Body> {
    let body = Body::segments(segments);
    let len = body.len_bytes();
    let mut response = with_length(Response::new(body), len);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    response
}

type Local = crate::store::LocalStore<crate::store::device::uring::UringEngine>;

async fn read_whole(
    local: &Local,
    id: &ChunkId,
    len_bytes: u64,
) -> Result<Response<Body>, StoreError> {
    let bytes = local.read(id, 0..len_bytes).await?;
    Ok(octets(bytes.segments))
}

async fn read_one(
    local: &Local,
    id: &ChunkId,
    range: ByteRange,
    len_bytes: u64,
) -> Result<Response<Body>, StoreError> {
    let bytes = local.read(id, range.first()..range.last() + 1).await?;
    let mut response = octets(bytes.segments);
    *response.status_mut() = StatusCode::PARTIAL_CONTENT;
    let value = range::content_range(range, len_bytes);
    response.headers_mut().insert(
        header::CONTENT_RANGE,
        HeaderValue::from_str(&value).expect("digits"),
    );
    Ok(response)
}

async fn read_many(
    context: &CoreContext,
    local: &Local,
    id: &ChunkId,
    ranges: Vec<ByteRange>,
    len_bytes: u64,
) -> Result<Response<Body>, StoreError> {
    let reads = join_all(
        ranges
            .iter()
            .map(|r| local.read(id, r.first()..r.last() + 1)),
    )
    .await;
    let mut parts = Vec::with_capacity(ranges.len());
    for (range, read) in ranges.into_iter().zip(reads) {
        parts.push((range, read?.segments));
    }
    let boundary = multipart::boundary(context.random());
    let mut response = octets(multipart::body(parts, len_bytes, &boundary));
    *response.status_mut() = StatusCode::PARTIAL_CONTENT;
    let content_type =
        HeaderValue::from_str(&multipart::content_type(&boundary)).expect("ASCII boundary");
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, content_type);
    Ok(response)
}

/// Why a write is refused, if it is.
fn write_refusal(context: &CoreContext, headers: &HeaderMap) -> Option<Reply> {
    let node = &context.node;
    match &node.config.write_token {
        Some(token) => {
            let presented = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(bearer_token);
            if presented.is_some_and(|p| constant_time_eq(p.as_bytes(), token.as_bytes())) {
                return None;
            }
            let mut response = error(
                StatusCode::UNAUTHORIZED,
                "this write needs the node's bearer token",
            );
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            Some(response.into())
        }
        None if node.open_writes => None,
        None => Some(
            error(
                StatusCode::FORBIDDEN,
                "writes are refused: the node listens beyond loopback without a write token \
                 (set --write-token, or --allow-unauthenticated-writes)",
            )
            .into(),
        ),
    }
}

/// The token of an `Authorization: Bearer <token>` value. The scheme name is
/// case-insensitive (RFC 9110 §11.1): `bearer` and `BEARER` name the same scheme.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("Bearer").then(|| token.trim())
}

/// Compares without an early exit, so response timing does not reveal how much of a guess
/// matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn put(
    context: &CoreContext,
    local: &Local,
    id: ChunkId,
    request: Request<Incoming>,
) -> Reply {
    if let Some(refusal) = write_refusal(context, request.headers()) {
        return refusal;
    }
    let max = local.max_chunk_bytes();
    let declared = match request
        .headers()
        .get(header::CONTENT_LENGTH)
        .map(|v| v.to_str().ok().and_then(|v| v.parse::<u64>().ok()))
    {
        None => None,
        Some(Some(len)) => Some(len),
        Some(None) => return error(StatusCode::BAD_REQUEST, "invalid Content-Length").into(),
    };
    if let Some(len) = declared.filter(|&len| len > u64::from(max)) {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("chunk of {len} bytes is over the {max}-byte limit"),
        )
        .into();
    }
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
    let permit = context.reserve(declared.unwrap_or(u64::from(max))).await;
    let chunk = match receive(
        local,
        &id,
        declared,
        request.into_body(),
        context.node.config.idle_timeout,
    )
    .await
    {
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

fn expects_continue(headers: &HeaderMap) -> bool {
    headers
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

/// Reads the body into a chunk buffer, hashing as it goes; the verified chunk or the answer
/// that refuses it. Nothing is stored unless the whole body arrived and hashes to `id`.
async fn receive(
    local: &Local,
    id: &ChunkId,
    declared: Option<u64>,
    mut body: Incoming,
    idle_timeout: Duration,
) -> Result<crate::store::VerifiedChunk, Response<Body>> {
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

async fn delete(context: &CoreContext, local: &Local, id: &ChunkId, headers: &HeaderMap) -> Reply {
    if let Some(refusal) = write_refusal(context, headers) {
        return refusal;
    }
    match local.delete(id).await {
        Ok(true) => Response::builder()
            .status(StatusCode::NO_CONTENT)
            .body(Body::empty())
            .expect("valid")
            .into(),
        Ok(false) => error(StatusCode::NOT_FOUND, "chunk not found").into(),
        Err(failure) => store_error(failure).into(),
    }
}

/// `GET /v1/chunks/{id}/meta`: length, shard health (every shard is read and verified).
pub async fn meta(context: &CoreContext, id: &str, request: &Request<Incoming>) -> Reply {
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

/// The status and message for a store failure.
pub fn store_error(failure: StoreError) -> Response<Body> {
    let status = match &failure {
        StoreError::NotFound => StatusCode::NOT_FOUND,
        StoreError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        StoreError::NoSpace { .. } => StatusCode::INSUFFICIENT_STORAGE,
        StoreError::BadRange { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
        StoreError::PrefixTaken => StatusCode::CONFLICT,
        StoreError::Unreadable { .. } | StoreError::Unavailable { .. } | StoreError::Io(_) => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        StoreError::Catalog(_) | StoreError::Setup(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    if status.is_server_error() {
        tracing::error!(error = %failure, "store request failed");
    }
    error(status, failure)
}

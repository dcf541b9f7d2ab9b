//! `GET` and `HEAD /v1/chunks/{id}`: conditionals (304, 412), ranges (one → 206 with
//! `Content-Range`, several → `multipart/byteranges`, none satisfiable → 416), and bodies
//! made of the very buffers the store read into — or of the memory tier's copy.
//!
//! Every answer about a stored chunk goes through a store read or `LocalStore::touch`
//! (memory hits, HEAD, 304, 412, 416): the store counts each as a use, so a chunk a client
//! still asks about is not deleted by GC while expired (issue 13).
//!
//! ```text
//! memory tier hit? ─yes─▶ (full id confirmed by the tier; touched) ─▶ same answers from its bytes
//!   │no                                      (a miss: filled from the origin, `fill`, or 404)
//! length (index; HEAD: catalog) ─▶ If-Match / If-None-Match ─▶ HEAD answers here (touched)
//!   ─▶ If-Range + Range resolved ─▶ budget reserved ─▶ store reads ─▶ 200 / 206
//!   ─▶ a chunk's second whole read lately is admitted to memory (`--memory-admission hit`)
//! ```

use super::body::Body;
use super::budget::{BudgetPermit, ConnShares};
use super::context::CoreContext;
use super::multipart;
use super::reply::{Refusal, Reply, error, store_error};
use crate::cache::memory::{Epoch, MemoryTier};
use crate::chunk::ChunkId;
use crate::range::{self, ByteRange, Precondition, Resolution};
use crate::store::{Engine, LocalStore, StoreError};
use bytes::Bytes;
use futures_util::future::join_all;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Response, StatusCode};

const CACHE_CONTROL: &str = "public, max-age=31536000, immutable";

/// Why the stored chunk could not answer: a miss.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Missing {
    /// Not stored (or lost, or removed since it was looked up).
    Absent,
    /// Stored, but not readable now (fewer than k sound shards): reported only on a node
    /// with an origin, which can fill it instead of a 503.
    Unreadable,
}

/// The 404 of a chunk neither stored nor at the origin.
pub fn not_found() -> Reply {
    error(StatusCode::NOT_FOUND, "chunk not found").into()
}

/// The answer to a GET (or, with `head`, a HEAD) of chunk `id` from the stored chunk, or
/// `Missing` (which `chunks` answers by a fill from the origin, or a 404).
pub async fn stored<E: Engine>(
    context: &CoreContext<E>,
    local: &LocalStore<E>,
    id: &ChunkId,
    head: bool,
    headers: &HeaderMap,
    shares: &ConnShares,
) -> Result<Reply, Missing> {
    let memory = context.node.memory();
    if let Some(bytes) = memory.and_then(|m| m.get(id)) {
        local.touch(id);
        return Ok(from_bytes(context, id, bytes, head, headers, shares, true).await);
    }
    let len_bytes = match stored_len(local, id, head)? {
        Ok(len_bytes) => len_bytes,
        Err(refusal) => return Ok(refusal.into()),
    };
    let etag = range::chunk_etag(&id.to_string());
    let ranges = match plan(headers, &etag, len_bytes, head) {
        Ok(ranges) => ranges,
        Err(Early::Head(response)) => {
            // HEAD's length came from the catalog: the chunk is stored, and asked about.
            crate::metrics::lookup(true);
            local.touch(id);
            return Ok((*response).into());
        }
        Err(Early::Refusal(refusal)) => return confirmed(local, id, head, *refusal),
    };
    let permit = context
        .reserve(shares, wanted_bytes(ranges.as_deref(), len_bytes))
        .await;
    let read = match ranges {
        None => {
            let admit = memory
                .filter(|m| context.node.config.memory_admission.on_hit && m.second_look(id))
                .map(|m| (m, m.epoch(id)));
            read_whole(local, id, len_bytes, admit).await
        }
        Some(ranges) if ranges.len() == 1 => read_one(local, id, ranges[0], len_bytes).await,
        Some(ranges) => read_many(context, local, id, ranges, len_bytes).await,
    };
    match read {
        Err(StoreError::NotFound) => {
            // Removed (or found lost) since its length was looked up.
            crate::metrics::lookup(false);
            return Err(Missing::Absent);
        }
        Err(StoreError::Unreadable { .. }) if context.node.origin.is_some() => {
            return Err(Missing::Unreadable);
        }
        _ => {}
    }
    Ok(answer(read, &etag, permit, true))
}

/// An answer a GET or HEAD gets before any body is read.
enum Early {
    /// HEAD's answer.
    Head(Refusal),
    /// A 304, 412 or 416 (which a GET from flash confirms in the catalog first).
    Refusal(Refusal),
}

/// Given the chunk's length: the early answer, or the ranges to send (`None`: all).
fn plan(
    headers: &HeaderMap,
    etag: &str,
    len_bytes: u64,
    head: bool,
) -> Result<Option<Vec<ByteRange>>, Early> {
    if let Some(answer) = preconditions(headers, etag, len_bytes) {
        return Err(Early::Refusal(answer));
    }
    if head {
        let mut response = octets(Body::empty(), len_bytes);
        chunk_headers(&mut response, etag);
        return Err(Early::Head(Box::new(response)));
    }
    wanted_ranges(headers, etag, len_bytes).map_err(Early::Refusal)
}

/// Bytes a response of `ranges` (`None`: the whole chunk) carries.
fn wanted_bytes(ranges: Option<&[ByteRange]>, len_bytes: u64) -> u64 {
    ranges.map_or(len_bytes, |r| r.iter().map(|r| r.len_bytes()).sum())
}

/// The answer from `bytes`, the whole of chunk `id`, confirmed by whoever had them: the
/// memory tier (which confirmed the full id) or a fill (which verified them), so 304, 412
/// and 416 need no catalog lookup, and nothing touches a device. `hit` says whether to
/// count the request as a hit (a fill's was counted as a miss).
pub async fn from_bytes<E: Engine>(
    context: &CoreContext<E>,
    id: &ChunkId,
    bytes: Bytes,
    head: bool,
    headers: &HeaderMap,
    shares: &ConnShares,
    hit: bool,
) -> Reply {
    let len_bytes = bytes.len() as u64;
    let etag = range::chunk_etag(&id.to_string());
    let ranges = match plan(headers, &etag, len_bytes, head) {
        Ok(ranges) => ranges,
        Err(Early::Head(response)) => {
            if hit {
                crate::metrics::lookup(true);
            }
            return (*response).into();
        }
        Err(Early::Refusal(response)) => return (*response).into(),
    };
    let permit = context
        .reserve(shares, wanted_bytes(ranges.as_deref(), len_bytes))
        .await;
    let slice = |r: &ByteRange| vec![bytes.slice(r.first() as usize..r.last() as usize + 1)];
    let response = match ranges {
        None => segments(vec![bytes.clone()]),
        Some(ranges) if ranges.len() == 1 => partial(slice(&ranges[0]), ranges[0], len_bytes),
        Some(ranges) => {
            let parts = ranges.iter().map(|r| (*r, slice(r))).collect();
            multipart_response(context, parts, len_bytes)
        }
    };
    answer(Ok(response), &etag, permit, hit)
}

/// The chunk's length, or the store failure that answers instead, or `Missing`. HEAD answers
/// without reading shards, so it confirms the full id in the catalog; GET confirms it in
/// the shard headers it reads.
fn stored_len<E: Engine>(
    local: &LocalStore<E>,
    id: &ChunkId,
    head: bool,
) -> Result<Result<u64, Refusal>, Missing> {
    let len = if head {
        local.lookup(id)
    } else {
        Ok(local.indexed_len(id))
    };
    match len {
        Ok(Some(len)) => Ok(Ok(len)),
        Ok(None) => {
            crate::metrics::lookup(false);
            local.count_miss();
            Err(Missing::Absent)
        }
        Err(failure) => Ok(Err(Box::new(store_error(failure)))),
    }
}

/// `answer` (a 304, 412 or 416, which reads no shard), once the full id is confirmed in
/// the catalog: a GET's length comes from the index, keyed by the id's first 64 bits, so
/// without this an id sharing them with a stored chunk would learn its length (issue 11).
/// HEAD's length came from the catalog already. The confirmed chunk is touched, as every
/// answer about a stored chunk that reads none of its bytes is (HEAD, 304, 412, 416): it is
/// used as much as a read uses it, so it counts as a hit for eviction and cancels any
/// expiry (`store::refs`: a read of an expired chunk is an alarm and stops its deletion).
fn confirmed<E: Engine>(
    local: &LocalStore<E>,
    id: &ChunkId,
    head: bool,
    answer: Response<Body>,
) -> Result<Reply, Missing> {
    if !head && let Err(refusal) = stored_len(local, id, true)? {
        return Ok(refusal.into());
    }
    local.touch(id);
    Ok(answer.into())
}

/// The 304 or 412 that `If-None-Match` / `If-Match` call for, if any.
fn preconditions(headers: &HeaderMap, etag: &str, len_bytes: u64) -> Option<Refusal> {
    match range::check_preconditions(
        true,
        joined(headers, header::IF_MATCH).as_deref(),
        joined(headers, header::IF_NONE_MATCH).as_deref(),
        etag,
    ) {
        Precondition::Proceed => None,
        Precondition::NotModified => {
            let mut response = Response::new(Body::empty());
            set_length(&mut response, len_bytes);
            *response.status_mut() = StatusCode::NOT_MODIFIED;
            chunk_headers(&mut response, etag);
            Some(Box::new(response))
        }
        Precondition::Failed => Some(Box::new(error(
            StatusCode::PRECONDITION_FAILED,
            "If-Match does not match the chunk's ETag",
        ))),
    }
}

/// The ranges to send (`None`: the whole chunk), or the 416 when none is satisfiable.
fn wanted_ranges(
    headers: &HeaderMap,
    etag: &str,
    len_bytes: u64,
) -> Result<Option<Vec<ByteRange>>, Refusal> {
    let honour_range =
        range::if_range_allows_range(joined(headers, header::IF_RANGE).as_deref(), etag);
    if !honour_range {
        return Ok(None);
    }
    match range::resolve_range(joined(headers, header::RANGE).as_deref(), len_bytes) {
        Resolution::Full => Ok(None),
        Resolution::Partial(ranges) => Ok(Some(ranges)),
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
            Err(Box::new(response))
        }
    }
}

/// The 200 or 206 of a read, holding `permit` until its body is sent; or the failure's.
/// `hit`: count it as a hit.
fn answer(
    read: Result<Response<Body>, StoreError>,
    etag: &str,
    permit: BudgetPermit,
    hit: bool,
) -> Reply {
    match read {
        Ok(mut response) => {
            if hit {
                crate::metrics::lookup(true);
            }
            chunk_headers(&mut response, etag);
            Reply {
                response,
                permit: Some(permit),
            }
        }
        Err(failure) => store_error(failure).into(),
    }
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

fn set_length(response: &mut Response<Body>, len_bytes: u64) {
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(len_bytes));
}

/// An `application/octet-stream` response of `body`, declaring `len_bytes` (a HEAD
/// declares the length a GET's body would have).
fn octets(body: Body, len_bytes: u64) -> Response<Body> {
    let mut response = Response::new(body);
    set_length(&mut response, len_bytes);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    response
}

fn segments(segments: Vec<Bytes>) -> Response<Body> {
    let body = Body::segments(segments);
    let len_bytes = body.len_bytes();
    octets(body, len_bytes)
}

/// Reads the whole chunk; with `admit`, copies it into the memory tier too (unless a
/// delete came in between: the epoch).
async fn read_whole<E: Engine>(
    local: &LocalStore<E>,
    id: &ChunkId,
    len_bytes: u64,
    admit: Option<(&MemoryTier, Epoch)>,
) -> Result<Response<Body>, StoreError> {
    let bytes = local.read(id, 0..len_bytes).await?;
    if let Some((memory, epoch)) = admit {
        let parts: Vec<&[u8]> = bytes.segments.iter().map(|s| &s[..]).collect();
        memory.admit(id, memory.copy(&parts), Some(epoch));
    }
    Ok(segments(bytes.segments))
}

async fn read_one<E: Engine>(
    local: &LocalStore<E>,
    id: &ChunkId,
    range: ByteRange,
    len_bytes: u64,
) -> Result<Response<Body>, StoreError> {
    let bytes = local.read(id, range.first()..range.last() + 1).await?;
    Ok(partial(bytes.segments, range, len_bytes))
}

/// A 206 of one range.
fn partial(parts: Vec<Bytes>, range: ByteRange, len_bytes: u64) -> Response<Body> {
    let mut response = segments(parts);
    *response.status_mut() = StatusCode::PARTIAL_CONTENT;
    let value = range::content_range(range, len_bytes);
    response.headers_mut().insert(
        header::CONTENT_RANGE,
        HeaderValue::from_str(&value).expect("digits"),
    );
    response
}

async fn read_many<E: Engine>(
    context: &CoreContext<E>,
    local: &LocalStore<E>,
    id: &ChunkId,
    ranges: Vec<ByteRange>,
    len_bytes: u64,
) -> Result<Response<Body>, StoreError> {
    // One request is one hit (or miss) of the chunk, however many ranges it asks for.
    let reads = join_all(ranges.iter().enumerate().map(|(i, r)| {
        let range = r.first()..r.last() + 1;
        async move {
            if i == 0 {
                local.read(id, range).await
            } else {
                local.read_uncounted(id, range).await
            }
        }
    }))
    .await;
    let mut parts = Vec::with_capacity(ranges.len());
    for (range, read) in ranges.into_iter().zip(reads) {
        parts.push((range, read?.segments));
    }
    Ok(multipart_response(context, parts, len_bytes))
}

/// A 206 `multipart/byteranges` of `parts`.
fn multipart_response<E: Engine>(
    context: &CoreContext<E>,
    parts: Vec<(ByteRange, Vec<Bytes>)>,
    len_bytes: u64,
) -> Response<Body> {
    let boundary = multipart::boundary(context.random());
    let mut response = segments(multipart::body(parts, len_bytes, &boundary));
    *response.status_mut() = StatusCode::PARTIAL_CONTENT;
    let content_type =
        HeaderValue::from_str(&multipart::content_type(&boundary)).expect("ASCII boundary");
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, content_type);
    response
}

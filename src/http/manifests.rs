//! `/v1/manifests` and `/v1/manifests/{name}`: a manifest names, in order, the chunks an
//! image uses; each distinct chunk it names holds one reference (see `store::refs`).
//!
//! ```text
//! PUT: name valid? ─▶ token? ─▶ Content-Length ≤ --max-manifest-bytes? ─▶ budget reserved
//!   ─▶ body read (within the limits) ─▶ JSON and every id parsed ─▶ store (durable) ─▶ 201 / 200
//! GET, HEAD: the stored list as JSON. DELETE: 204 / 404. GET /v1/manifests: the names.
//! ```
//!
//! The body is `{"chunks": ["id", …]}` and nothing else: an unknown top-level field is a
//! 400, because a misspelt `"chunk"` would otherwise store an empty manifest and drop every
//! reference the old one held. Every id is parsed strictly; the first bad one is named with
//! its index. An empty list is a valid manifest (an empty image).

use std::fmt;

use http::{Method, Request, StatusCode};
use hyper::body::Incoming;
use serde::de::{self, Deserializer, SeqAccess, Visitor};

use super::auth::write_refusal;
use super::body::Body;
use super::budget::ConnShares;
use super::context::CoreContext;
use super::reply::{Refusal, Reply, error, json, method_not_allowed, store_error};
use super::target::open_store;
use super::upload::{self, BodyLimits, Upload, busy_connection, declared_len};
use crate::chunk::ChunkId;
use crate::store::{Engine, ManifestName, ManifestPut, Store};

/// Bytes one id takes in a JSON list: 64 hex digits, two quotes and a comma. With
/// [`ENVELOPE_BYTES`], sizes the budget a listing holds while it is sent.
const LISTED_ID_BYTES: u64 = ChunkId::HEX_LEN as u64 + LISTED_ITEM_EXTRA_BYTES;

/// Bytes around a listed item besides the item: two quotes and a comma.
const LISTED_ITEM_EXTRA_BYTES: u64 = 3;

/// Bytes of the object around a list, `{"manifests":[]}` and the newline at most.
const ENVELOPE_BYTES: u64 = 17;

/// `GET /v1/manifests`: the names of every manifest, sorted.
pub async fn list<E: Engine>(
    context: &CoreContext<E>,
    request: &Request<Incoming>,
    shares: &ConnShares,
) -> Reply {
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        return method_not_allowed("GET, HEAD").into();
    }
    let store = match open_store(context) {
        Ok(store) => store,
        Err(refusal) => return *refusal,
    };
    let names = match store.manifest_names() {
        Ok(names) => names,
        Err(failure) => return store_error(failure).into(),
    };
    let listed_bytes: u64 = names
        .iter()
        .map(|n| n.as_str().len() as u64 + LISTED_ITEM_EXTRA_BYTES)
        .sum();
    let permit = context.reserve(shares, listed_bytes + ENVELOPE_BYTES).await;
    let names: Vec<&str> = names.iter().map(ManifestName::as_str).collect();
    Reply {
        response: json(StatusCode::OK, &serde_json::json!({ "manifests": names })),
        permit: Some(permit),
    }
}

/// `/v1/manifests/{name}`: GET and HEAD, PUT, DELETE; anything else is a 405.
pub async fn manifest<E: Engine>(
    context: &CoreContext<E>,
    name: &str,
    request: Request<Incoming>,
    shares: &ConnShares,
) -> Reply {
    match *request.method() {
        Method::GET | Method::HEAD => get(context, name, shares).await,
        Method::PUT => put(context, name, request, shares).await,
        Method::DELETE => delete(context, name, &request).await,
        _ => method_not_allowed("GET, HEAD, PUT, DELETE").into(),
    }
}

/// The manifest name of the path and the store, or the 400 or 503 that refuses the request.
fn target<'c, E: Engine>(
    context: &'c CoreContext<E>,
    name: &str,
) -> Result<(ManifestName, &'c Store<E>), Box<Reply>> {
    let name = ManifestName::parse(name).map_err(|reason| {
        Box::new(Reply::from(error(
            StatusCode::BAD_REQUEST,
            format!("invalid manifest name: {reason}"),
        )))
    })?;
    Ok((name, open_store(context)?))
}

fn not_found() -> Reply {
    error(StatusCode::NOT_FOUND, "manifest not found").into()
}

async fn get<E: Engine>(context: &CoreContext<E>, name: &str, shares: &ConnShares) -> Reply {
    let (name, store) = match target(context, name) {
        Ok(target) => target,
        Err(refusal) => return *refusal,
    };
    let chunks = match store.manifest(&name) {
        Ok(Some(chunks)) => chunks,
        Ok(None) => return not_found(),
        Err(failure) => return store_error(failure).into(),
    };
    let permit = context
        .reserve(
            shares,
            chunks.len() as u64 * LISTED_ID_BYTES + ENVELOPE_BYTES,
        )
        .await;
    Reply {
        response: json(StatusCode::OK, &Listing { chunks: &chunks }),
        permit: Some(permit),
    }
}

/// A manifest as GET answers it.
#[derive(serde::Serialize)]
struct Listing<'a> {
    chunks: &'a [ChunkId],
}

async fn delete<E: Engine>(
    context: &CoreContext<E>,
    name: &str,
    request: &Request<Incoming>,
) -> Reply {
    let (name, store) = match target(context, name) {
        Ok(target) => target,
        Err(refusal) => return *refusal,
    };
    if let Some(refusal) = write_refusal(context, request.headers()) {
        return refusal;
    }
    // A task of the core's own: a client that leaves does not stop the store part-way.
    let store = store.clone();
    let deleted = tokio::task::spawn_local(async move { store.delete_manifest(&name).await });
    match deleted.await {
        Ok(Ok(true)) => http::Response::builder()
            .status(StatusCode::NO_CONTENT)
            .body(Body::empty())
            .expect("a status and an empty body make a valid response")
            .into(),
        Ok(Ok(false)) => not_found(),
        Ok(Err(failure)) => store_error(failure).into(),
        Err(_) => task_failed(),
    }
}

fn task_failed() -> Reply {
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "the manifest update task failed",
    )
    .into()
}

async fn put<E: Engine>(
    context: &CoreContext<E>,
    name: &str,
    request: Request<Incoming>,
    shares: &ConnShares,
) -> Reply {
    let (parts, mut body) = request.into_parts();
    let config = &context.node.config;
    let upload = Upload::new(&parts, config);
    let (name, store) = match target(context, name) {
        Ok(target) => target,
        Err(refusal) => return upload.refuse_before(*refusal, body),
    };
    if let Some(refusal) = write_refusal(context, &parts.headers) {
        return upload.refuse_before(refusal, body);
    }
    let max = config.max_manifest_bytes;
    let declared = match declared_len(&parts.headers, max, "manifest") {
        Ok(declared) => declared,
        Err(refusal) => return upload.refuse_before(refusal.into(), body),
    };
    // Held until the answer is sent: its list of missing ids is at most as long as the
    // body's list, and the parsed ids (32 bytes each, against ~67 of JSON) fit in it too.
    // Like any request's, the reservation is clamped to the connection's share (16 MiB by
    // default), so a manifest larger than that holds more than it reserves.
    let Some(permit) = context
        .reserve_upload(shares, declared.unwrap_or(max))
        .await
    else {
        return upload.refuse_before(busy_connection(), body);
    };
    let text = match receive(&mut body, declared, max, BodyLimits::of(config)).await {
        Ok(text) => text,
        Err(refusal) => return upload.refuse_during(*refusal, body),
    };
    let chunks = match parse(&text) {
        Ok(chunks) => chunks,
        Err(refusal) => return refusal.into(),
    };
    drop(text);
    let store = store.clone();
    let stored = tokio::task::spawn_local(async move { store.put_manifest(&name, chunks).await });
    let response = match stored.await {
        Ok(Ok(put)) => put_answer(&put),
        Ok(Err(failure)) => store_error(failure),
        Err(_) => return task_failed(),
    };
    Reply {
        response,
        permit: Some(permit),
    }
}

/// Reads a manifest's body: at most `max` bytes (413 past them), within `limits`.
async fn receive(
    body: &mut Incoming,
    declared: Option<u64>,
    max: u64,
    limits: BodyLimits,
) -> Result<Vec<u8>, Refusal> {
    let mut text = Vec::with_capacity(declared.unwrap_or(0) as usize);
    upload::read(body, limits, |data| {
        if text.len() as u64 + data.len() as u64 > max {
            return Err(Box::new(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("manifest is over the {max}-byte limit"),
            )));
        }
        text.extend_from_slice(&data);
        Ok(())
    })
    .await?;
    Ok(text)
}

/// The ids of a manifest's body, or the 400 that says what is wrong with it.
fn parse(text: &[u8]) -> Result<Vec<ChunkId>, Refusal> {
    serde_json::from_slice::<ManifestBody>(text)
        .map(|manifest| manifest.chunks.0)
        .map_err(|reason| {
            Box::new(error(
                StatusCode::BAD_REQUEST,
                format!("invalid manifest: {reason}"),
            ))
        })
}

/// 201 (new) or 200 (replaced), with the counts and the ids the node lacks.
fn put_answer(put: &ManifestPut) -> http::Response<Body> {
    #[derive(serde::Serialize)]
    struct Answer<'a> {
        chunks: usize,
        distinct: usize,
        missing: &'a [ChunkId],
    }
    let status = if put.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let answer = Answer {
        chunks: put.chunks,
        distinct: put.distinct,
        missing: &put.missing,
    };
    json(status, &answer)
}

/// The body of a manifest PUT.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestBody {
    chunks: Ids,
}

/// A JSON list of chunk ids, each parsed strictly; an error names the index of the first
/// bad one (serde_json adds where in the body it is).
struct Ids(Vec<ChunkId>);

impl<'de> serde::Deserialize<'de> for Ids {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Ids, D::Error> {
        deserializer.deserialize_seq(IdsVisitor)
    }
}

struct IdsVisitor;

impl<'de> Visitor<'de> for IdsVisitor {
    type Value = Ids;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of chunk ids")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Ids, A::Error> {
        let mut ids = Vec::new();
        loop {
            match seq.next_element::<ChunkId>() {
                Ok(Some(id)) => ids.push(id),
                Ok(None) => return Ok(Ids(ids)),
                Err(reason) => {
                    let index = ids.len();
                    return Err(de::Error::custom(format_args!("chunks[{index}]: {reason}")));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ids, or serde's message (which the 400 carries).
    fn ids(text: &str) -> Result<Vec<ChunkId>, String> {
        serde_json::from_str::<ManifestBody>(text)
            .map(|m| m.chunks.0)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn a_manifest_body_is_a_list_of_strict_ids_and_nothing_else() {
        let a = ChunkId::of(b"a");
        let b = ChunkId::of(b"b");
        let text = format!(r#"{{"chunks": ["{a}", "{b}", "{a}"]}}"#);
        assert_eq!(ids(&text).unwrap(), [a, b, a], "order and repeats kept");
        assert_eq!(ids(r#"{"chunks": []}"#).unwrap(), []);
        let upper = a.to_string().to_uppercase();
        for (text, wanted) in [
            (
                format!(r#"{{"chunks": ["{a}", "{upper}"]}}"#),
                "chunks[1]: a chunk id is lowercase hex",
            ),
            (
                format!(r#"{{"chunks": ["{a}", "{b}", "abc"]}}"#),
                "chunks[2]: a chunk id is 64 hex characters, this one has 3",
            ),
            (
                r#"{"chunks": [7]}"#.to_owned(),
                "chunks[0]: invalid type: integer `7`",
            ),
            (r#"{"chunk": []}"#.to_owned(), "unknown field `chunk`"),
            (
                format!(r#"{{"chunks": [], "name": "{a}"}}"#),
                "unknown field `name`",
            ),
            (r#"{}"#.to_owned(), "missing field `chunks`"),
            (
                r#"{"chunks": "x"}"#.to_owned(),
                "expected a list of chunk ids",
            ),
            (r#"{"chunks": []} x"#.to_owned(), "trailing characters"),
        ] {
            let error = ids(&text).unwrap_err();
            assert!(error.contains(wanted), "{text}: {error}");
        }
    }
}

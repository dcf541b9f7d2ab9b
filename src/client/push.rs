//! `chunkd push`: puts a packed image's chunks and manifest on a node, uploading only the
//! chunks the node lacks.
//!
//! 1. `PUT /v1/manifests/{name}` with the ids in image order. The node records the
//!    references and answers with the distinct ids it does not hold (`missing`).
//! 2. `PUT /v1/chunks/{id}` for each of those, from `DIR/chunks/{id}`, `parallel` at a
//!    time. Only sealed bytes leave the machine: the manifest's keys never do.
//! 3. `PUT /v1/manifests/{name}` again: now `missing` must be empty. It is not if a chunk
//!    was evicted or lost between its upload and this check; the push then fails, naming
//!    how many and the first, and running it again uploads them.
//!
//! A manifest is put *before* its chunks so that the chunks are referenced (pinned, on a
//! node without an origin) from the moment they arrive: a chunk uploaded first could be
//! evicted before the manifest named it.

use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::error::{ClientError, IoContext};
use super::pool;
use super::progress;
use super::transport::{Body, Method, Transport};
use crate::chunk::ChunkId;
use crate::image::{CHUNKS_DIR, MANIFEST_FILE, Manifest};
use crate::store::ManifestName;

/// How to push.
#[derive(Clone, Debug)]
pub struct PushOptions {
    pub name: ManifestName,
    /// Uploads in flight at once.
    pub parallel: usize,
    /// Draw a progress bar (on a terminal).
    pub progress: bool,
}

/// What a push did.
#[derive(Clone, Debug)]
pub struct PushReport {
    pub name: ManifestName,
    /// The node that took the manifest.
    pub node: String,
    /// Chunk ids the manifest lists (repeats included) and distinct ones.
    pub chunks: usize,
    pub distinct: usize,
    /// Chunks the node lacked and were uploaded, and their bytes.
    pub uploaded: usize,
    pub uploaded_bytes: u64,
    pub elapsed: Duration,
}

/// The body of a manifest PUT.
#[derive(Serialize)]
struct ManifestBody<'a> {
    chunks: Vec<&'a ChunkId>,
}

/// The answer to a manifest PUT.
#[derive(Deserialize)]
struct ManifestAnswer {
    chunks: usize,
    distinct: usize,
    missing: Vec<ChunkId>,
}

/// Pushes the image packed in `dir` through `transport`.
pub fn push(
    dir: &Path,
    transport: &Transport,
    options: &PushOptions,
) -> Result<PushReport, ClientError> {
    let started = Instant::now();
    let manifest = Manifest::read(&dir.join(MANIFEST_FILE))?;
    let body = serde_json::to_vec(&ManifestBody {
        chunks: manifest.chunks.iter().map(|c| &c.id).collect(),
    })
    .expect("ids serialise");
    let first = put_manifest(transport, &options.name, &body, manifest.chunks.len())?;
    let uploaded_bytes = upload(dir, transport, &first.answer.missing, options)?;
    let second = put_manifest(transport, &options.name, &body, manifest.chunks.len())?;
    if let Some(&first_missing) = second.answer.missing.first() {
        return Err(ClientError::StillMissing {
            node: second.node,
            name: options.name.to_string(),
            count: second.answer.missing.len(),
            first: first_missing,
        });
    }
    Ok(PushReport {
        name: options.name.clone(),
        node: second.node,
        chunks: second.answer.chunks,
        distinct: second.answer.distinct,
        uploaded: first.answer.missing.len(),
        uploaded_bytes,
        elapsed: started.elapsed(),
    })
}

/// A manifest PUT's answer and the node that gave it.
struct NodeAnswer {
    node: String,
    answer: ManifestAnswer,
}

/// `PUT /v1/manifests/{name}`, its answer checked against what was sent.
fn put_manifest(
    transport: &Transport,
    name: &ManifestName,
    body: &[u8],
    chunks: usize,
) -> Result<NodeAnswer, ClientError> {
    let path = format!("/v1/manifests/{name}");
    let mut answer_body = Vec::new();
    let method = Method::Put(Body::Bytes(body), "application/json");
    let answer = transport.send(method, &path, &mut answer_body)?;
    let node = transport.nodes().name(answer.node).to_owned();
    let unexpected = |reason: String| ClientError::Answer {
        node: node.clone(),
        request: format!("PUT {path}"),
        reason,
    };
    let parsed: ManifestAnswer =
        serde_json::from_slice(&answer_body).map_err(|e| unexpected(e.to_string()))?;
    if parsed.chunks != chunks || parsed.missing.len() > parsed.distinct {
        return Err(unexpected(format!(
            "{} chunks, {} distinct, {} missing for a manifest of {chunks} chunks",
            parsed.chunks,
            parsed.distinct,
            parsed.missing.len()
        )));
    }
    Ok(NodeAnswer {
        node,
        answer: parsed,
    })
}

/// Uploads `missing` from `dir/chunks`; returns the bytes sent.
fn upload(
    dir: &Path,
    transport: &Transport,
    missing: &[ChunkId],
    options: &PushOptions,
) -> Result<u64, ClientError> {
    let chunks_dir = dir.join(CHUNKS_DIR);
    let bar = progress::bar(options.progress, missing.len() as u64, false);
    let sent_bytes = AtomicU64::new(0);
    pool::run::<_, ClientError>(
        missing.len(),
        options.parallel,
        |answer: &mut Vec<u8>, index| {
            let id = missing[index];
            let path = chunks_dir.join(id.to_string());
            let file = match File::open(&path) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(ClientError::Io {
                        path,
                        cause: io::Error::new(
                            io::ErrorKind::NotFound,
                            "the manifest names this chunk but the packed directory lacks it",
                        ),
                    });
                }
                opened => opened.at(&path)?,
            };
            let len_bytes = file.metadata().at(&path)?.len();
            let method = Method::Put(Body::File(&file), "application/octet-stream");
            transport.send(method, &format!("/v1/chunks/{id}"), answer)?;
            sent_bytes.fetch_add(len_bytes, Ordering::Relaxed);
            bar.inc(1);
            Ok(())
        },
    )?;
    bar.finish_and_clear();
    Ok(sent_bytes.into_inner())
}

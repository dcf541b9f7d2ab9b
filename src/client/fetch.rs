//! `chunkd fetch`: rebuilds an image, or a byte range of it, from a node, using the local
//! manifest — which holds the keys; the node only ever sees chunk ids.
//!
//! The chunks the range needs ([`super::plan`]) are fetched `parallel` at a time with
//! `GET /v1/chunks/{id}`. Each one's bytes must hash to its id and open with its key
//! (AES-256-GCM's tag) before any of them is written; then each piece is written with a
//! positional write (`pwrite`) into a temporary file beside the output, created at the
//! range's length so holes read back as zeros without being written. Only when every
//! chunk is in and the file is synced is it renamed to the output path: on any failure
//! the temporary file is removed and nothing is left at the output.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::error::{ClientError, IoContext};
use super::plan::{self, ByteRange, Fetch};
use super::pool;
use super::progress;
use super::transport::{Method, Transport};
use crate::chunk::ChunkId;
use crate::crypto;
use crate::image::{MANIFEST_FILE, Manifest};

/// How to fetch.
#[derive(Clone, Debug)]
pub struct FetchOptions {
    /// The first image byte to fetch (default 0).
    pub offset: Option<u64>,
    /// How many bytes (default: to the end of the image).
    pub length: Option<u64>,
    /// Downloads in flight at once.
    pub parallel: usize,
    /// Draw a progress bar (on a terminal).
    pub progress: bool,
}

/// What a fetch did.
#[derive(Clone, Debug)]
pub struct FetchReport {
    /// The part of the image now at the output path.
    pub range: ByteRange,
    /// Chunks downloaded (each distinct chunk once) and their sealed bytes.
    pub chunks: usize,
    pub received_bytes: u64,
    pub elapsed: Duration,
}

/// Rebuilds the image packed in `dir` (or the range `options` asks for) from the nodes of
/// `transport` into the file `out`.
pub fn fetch(
    dir: &Path,
    transport: &Transport,
    out: &Path,
    options: &FetchOptions,
) -> Result<FetchReport, ClientError> {
    let started = Instant::now();
    let manifest = Manifest::read(&dir.join(MANIFEST_FILE))?;
    let range = plan::resolve_range(manifest.image_len_bytes, options.offset, options.length)?;
    let fetches = plan::chunks_needed(&manifest, range);
    let temp = temporary_path(out);
    let result = write_output(transport, &fetches, range, &temp, options)
        .and_then(|received| fs::rename(&temp, out).at(out).map(|()| received));
    let received_bytes = match result {
        Ok(received) => received,
        Err(error) => {
            // Best effort: the error being returned matters more than a failed cleanup.
            let _ = fs::remove_file(&temp);
            return Err(error);
        }
    };
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        File::open(parent).and_then(|d| d.sync_all()).at(parent)?;
    }
    Ok(FetchReport {
        range,
        chunks: fetches.len(),
        received_bytes,
        elapsed: started.elapsed(),
    })
}

/// `.{name}.fetching-{pid}` in the output's directory, so the final rename stays on one
/// file system.
fn temporary_path(out: &Path) -> PathBuf {
    let name = out
        .file_name()
        .map_or_else(|| "image".into(), |n| n.to_string_lossy());
    out.with_file_name(format!(".{name}.fetching-{}", std::process::id()))
}

/// Fetches every chunk into `temp` and syncs it; returns the sealed bytes received.
fn write_output(
    transport: &Transport,
    fetches: &[Fetch<'_>],
    range: ByteRange,
    temp: &Path,
    options: &FetchOptions,
) -> Result<u64, ClientError> {
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(temp)
        .at(temp)?;
    // Holes are never written: set_len leaves them sparse, reading back as zeros.
    file.set_len(range.len_bytes).at(temp)?;
    let bar = progress::bar(options.progress, range.len_bytes, true);
    let received = AtomicU64::new(0);
    pool::run::<_, ClientError>(
        fetches.len(),
        options.parallel,
        |buffer: &mut Vec<u8>, index| {
            let fetch = &fetches[index];
            let (plaintext, sealed_bytes) = fetch_chunk(transport, fetch, std::mem::take(buffer))?;
            for piece in &fetch.pieces {
                let from = piece.from_bytes as usize;
                let bytes = &plaintext[from..from + piece.len_bytes as usize];
                file.write_all_at(bytes, piece.out_offset_bytes).at(temp)?;
                bar.inc(piece.len_bytes);
            }
            received.fetch_add(sealed_bytes, Ordering::Relaxed);
            // The plaintext is the answer's buffer, opened in place: the next answer reuses it.
            *buffer = plaintext;
            Ok(())
        },
    )?;
    file.sync_all().at(temp)?;
    bar.finish_and_clear();
    Ok(received.into_inner())
}

/// One chunk's plaintext, checked against its id, its key and its length, and the
/// number of sealed bytes received. The answer is read into `buffer`, which becomes the
/// plaintext.
fn fetch_chunk(
    transport: &Transport,
    fetch: &Fetch<'_>,
    mut buffer: Vec<u8>,
) -> Result<(Vec<u8>, u64), ClientError> {
    let entry = fetch.entry;
    let path = format!("/v1/chunks/{}", entry.id);
    let answer = transport.send(Method::Get, &path, &mut buffer)?;
    let node_index = answer.node;
    let node = || transport.nodes().name(node_index).to_owned();
    let sealed_bytes = buffer.len() as u64;
    let actual = ChunkId::of(&buffer);
    if actual != entry.id {
        return Err(ClientError::ChunkIdMismatch {
            node: node(),
            id: entry.id,
            actual,
        });
    }
    let plaintext = crypto::open(buffer, &entry.key).map_err(|reason| ClientError::ChunkOpen {
        node: node(),
        id: entry.id,
        offset_bytes: entry.offset_bytes,
        reason,
    })?;
    if plaintext.len() as u64 != entry.len_bytes {
        return Err(ClientError::ChunkLength {
            id: entry.id,
            offset_bytes: entry.offset_bytes,
            expected_bytes: entry.len_bytes,
            actual_bytes: plaintext.len() as u64,
        });
    }
    Ok((plaintext, sealed_bytes))
}

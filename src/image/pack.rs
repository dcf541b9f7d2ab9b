//! `chunkd pack`: cuts an image into 512 KiB pieces, seals each non-zero piece, writes
//! every distinct sealed chunk once to `chunks/{id}` and the manifest last.
//!
//! Write order, so a crash never leaves a manifest that names a chunk not on disk: each
//! chunk goes to a temporary name and is renamed into place; after the last one, one
//! `syncfs` makes them all durable; then the manifest is written to a temporary name,
//! synced, and renamed over `manifest.json`.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use indicatif::{ProgressBar, ProgressStyle};

use super::error::ImageError;
use super::error::IoContext;
use super::manifest::CHUNKS_DIR;
use super::manifest::{ChunkEntry, Hole, MANIFEST_FILE, Manifest};
use super::workers;
use crate::chunk::{CHUNK_SIZE_BYTES, ChunkId, Chunker, Piece};
use crate::crypto;

/// Inputs larger than this get a progress bar (when stderr is a terminal).
const PROGRESS_MIN_BYTES: u64 = 8 * 1024 * 1024;

/// How to pack.
#[derive(Debug, Clone, Default)]
pub struct PackOptions {
    /// Mixed into every chunk key: the same image under another salt gives other chunks.
    pub salt: Vec<u8>,
    /// Draw a progress bar on stderr for large inputs.
    pub progress: bool,
}

/// Packs the image at `image` into the directory `out` (created if needed; chunks already
/// there are reused after their bytes are checked) and returns its manifest.
pub fn pack(image: &Path, out: &Path, options: &PackOptions) -> Result<Manifest, ImageError> {
    crypto::check_salt(&options.salt).map_err(|e| ImageError::Salt(e.to_string()))?;
    let input = File::open(image).at(image)?;
    let chunks_dir = out.join(CHUNKS_DIR);
    fs::create_dir_all(&chunks_dir).at(&chunks_dir)?;
    let progress = progress_bar(options.progress, input.metadata().at(image)?.len());

    let mut manifest = Manifest::new(&options.salt, CHUNK_SIZE_BYTES as u64);
    let mut holes = Vec::new();
    let mut image_len_bytes = 0u64;
    let jobs = Chunker::new(input).filter_map(|piece| match piece {
        Err(cause) => Some(Err(ImageError::Io {
            path: image.to_owned(),
            cause,
        })),
        Ok(Piece::Hole {
            offset_bytes,
            len_bytes,
        }) => {
            image_len_bytes = offset_bytes + len_bytes;
            progress.inc(len_bytes);
            holes.push(Hole {
                offset_bytes,
                len_bytes,
            });
            None
        }
        Ok(Piece::Data {
            offset_bytes,
            bytes,
        }) => {
            image_len_bytes = offset_bytes + bytes.len() as u64;
            Some(Ok((offset_bytes, bytes)))
        }
    });
    let temp_counter = AtomicU64::new(0);
    let seal_and_store = |(offset_bytes, bytes): (u64, Vec<u8>)| {
        let len_bytes = bytes.len() as u64;
        let (sealed, key) = crypto::seal(bytes, &options.salt);
        let id = ChunkId::of(&sealed);
        store_chunk(
            &chunks_dir,
            id,
            &sealed,
            temp_counter.fetch_add(1, Ordering::Relaxed),
        )?;
        Ok(ChunkEntry {
            offset_bytes,
            len_bytes,
            id,
            key,
        })
    };
    workers::run(jobs, seal_and_store, |entry| {
        progress.inc(entry.len_bytes);
        manifest.chunks.push(entry);
    })?;
    progress.finish_and_clear();

    manifest.image_len_bytes = image_len_bytes;
    manifest.chunks.sort_unstable_by_key(|c| c.offset_bytes);
    holes.into_iter().for_each(|hole| manifest.push_hole(hole));
    debug_assert_eq!(manifest.validate(), Ok(()));
    sync_file_system(&chunks_dir)?;
    write_manifest(out, &manifest)?;
    Ok(manifest)
}

/// Writes `sealed` to `chunks/{id}` unless a file with exactly those bytes is there.
fn store_chunk(
    chunks_dir: &Path,
    id: ChunkId,
    sealed: &[u8],
    unique: u64,
) -> Result<(), ImageError> {
    let path = chunks_dir.join(id.to_string());
    match fs::read(&path) {
        // A file with the right name but other bytes (a damaged earlier pack) is replaced.
        Ok(existing) if existing.len() == sealed.len() && id.verifies(&existing) => return Ok(()),
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(cause) => return Err(ImageError::Io { path, cause }),
    }
    // Workers may store the same id at once; unique temporary names keep them apart and
    // the renames are atomic, so the survivor is whole either way.
    let temp = chunks_dir.join(format!(".tmp-{}-{unique}", std::process::id()));
    fs::write(&temp, sealed).at(&temp)?;
    fs::rename(&temp, &path).at(&path)
}

/// Flushes everything written on the file system that holds `dir` (one call instead of
/// one fsync per chunk file).
fn sync_file_system(dir: &Path) -> Result<(), ImageError> {
    let handle = File::open(dir).at(dir)?;
    rustix::fs::syncfs(&handle).map_err(io::Error::from).at(dir)
}

fn write_manifest(out: &Path, manifest: &Manifest) -> Result<(), ImageError> {
    let path = out.join(MANIFEST_FILE);
    let temp: PathBuf = out.join(format!(".{MANIFEST_FILE}.tmp-{}", std::process::id()));
    let mut text = serde_json::to_vec_pretty(manifest).expect("a manifest always serialises");
    text.push(b'\n');
    let mut file = File::create(&temp).at(&temp)?;
    file.write_all(&text).at(&temp)?;
    file.sync_all().at(&temp)?;
    fs::rename(&temp, &path).at(&path)?;
    File::open(out).and_then(|dir| dir.sync_all()).at(out)
}

fn progress_bar(enabled: bool, len_bytes: u64) -> ProgressBar {
    if !enabled || len_bytes < PROGRESS_MIN_BYTES {
        return ProgressBar::hidden();
    }
    // indicatif draws nothing when stderr is not a terminal, so logs stay clean.
    ProgressBar::new(len_bytes).with_style(
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
            .expect("the template is valid"),
    )
}

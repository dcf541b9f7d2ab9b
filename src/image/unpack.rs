//! `chunkd unpack`: rebuilds an image from a packed directory, checking every chunk's id
//! and tag before a byte of it is written.
//!
//! The output is built under a temporary name beside the destination and renamed into
//! place only when every chunk has been verified and written and the file is synced: a
//! failed unpack leaves no file that could be taken for the image.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::error::ImageError;
use super::error::IoContext;
use super::manifest::CHUNKS_DIR;
use super::manifest::{ChunkEntry, MANIFEST_FILE, Manifest};
use super::workers;
use crate::chunk::ChunkId;
use crate::crypto;

/// Rebuilds the image packed in `dir` into the file `out` and returns its manifest.
pub fn unpack(dir: &Path, out: &Path) -> Result<Manifest, ImageError> {
    let manifest = Manifest::read(&dir.join(MANIFEST_FILE))?;
    let temp = temporary_path(out);
    let result = write_image(dir, &manifest, &temp).and_then(|()| fs::rename(&temp, out).at(out));
    if result.is_err() {
        // Best effort: the error being returned matters more than a failed cleanup.
        let _ = fs::remove_file(&temp);
    }
    result?;
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        File::open(parent).and_then(|d| d.sync_all()).at(parent)?;
    }
    Ok(manifest)
}

/// `.{name}.unpacking-{pid}` in the destination's directory, so the final rename stays on
/// one file system.
fn temporary_path(out: &Path) -> PathBuf {
    let name = out
        .file_name()
        .map_or_else(|| "image".into(), |n| n.to_string_lossy());
    out.with_file_name(format!(".{name}.unpacking-{}", std::process::id()))
}

fn write_image(dir: &Path, manifest: &Manifest, temp: &Path) -> Result<(), ImageError> {
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(temp)
        .at(temp)?;
    // Holes are never written: set_len leaves them sparse, reading back as zeros.
    file.set_len(manifest.image_len_bytes).at(temp)?;
    let chunks_dir = dir.join(CHUNKS_DIR);
    let open_and_write = |entry: &ChunkEntry| {
        let plaintext = read_chunk(&chunks_dir, entry)?;
        file.write_all_at(&plaintext, entry.offset_bytes).at(temp)
    };
    workers::run(manifest.chunks.iter().map(Ok), open_and_write, |()| {})?;
    file.sync_all().at(temp)
}

/// Reads one chunk and returns its plaintext, or the error that names what is wrong.
fn read_chunk(chunks_dir: &Path, entry: &ChunkEntry) -> Result<Vec<u8>, ImageError> {
    let (id, offset_bytes) = (entry.id, entry.offset_bytes);
    let path = chunks_dir.join(id.to_string());
    let sealed = match fs::read(&path) {
        Ok(sealed) => sealed,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(ImageError::ChunkMissing {
                id,
                offset_bytes,
                path,
            });
        }
        Err(cause) => return Err(ImageError::Io { path, cause }),
    };
    let actual = ChunkId::of(&sealed);
    if actual != id {
        return Err(ImageError::ChunkIdMismatch {
            id,
            offset_bytes,
            actual,
        });
    }
    let plaintext = crypto::open(sealed, &entry.key).map_err(|reason| ImageError::ChunkOpen {
        id,
        offset_bytes,
        reason,
    })?;
    if plaintext.len() as u64 != entry.len_bytes {
        return Err(ImageError::ChunkLength {
            id,
            offset_bytes,
            expected_bytes: entry.len_bytes,
            actual_bytes: plaintext.len() as u64,
        });
    }
    Ok(plaintext)
}

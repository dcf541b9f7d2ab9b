//! `chunkd inspect`: a short summary of a packed image: size, chunks, holes, distinct
//! chunks and the deduplication ratio, and whether every chunk file is there.

use std::collections::HashSet;
use std::fmt;
use std::path::Path;

use super::error::ImageError;
use super::manifest::CHUNKS_DIR;
use super::manifest::{MANIFEST_FILE, Manifest};
use crate::chunk::ChunkId;
use crate::crypto::TAG_LEN_BYTES;

/// What `inspect` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub image_len_bytes: u64,
    pub chunk_size_bytes: u64,
    /// Pieces of the image stored as chunks (repeats counted).
    pub chunks: usize,
    /// Runs of zeros, and their total length.
    pub holes: usize,
    pub hole_bytes: u64,
    /// Chunk ids counted once.
    pub distinct_chunks: usize,
    /// Bytes of the distinct sealed chunks: what a cache stores for this image.
    pub distinct_sealed_bytes: u64,
    /// Distinct chunks whose file is not in `chunks/`.
    pub missing_chunk_files: usize,
}

impl Summary {
    /// Stored pieces per distinct chunk: 1.0 when no piece repeats.
    pub fn dedup_ratio(&self) -> f64 {
        if self.distinct_chunks == 0 {
            1.0
        } else {
            self.chunks as f64 / self.distinct_chunks as f64
        }
    }
}

/// Summarises the image packed in `dir`. Checks only that chunk files exist; `unpack`
/// verifies their bytes.
pub fn inspect(dir: &Path) -> Result<Summary, ImageError> {
    let manifest = Manifest::read(&dir.join(MANIFEST_FILE))?;
    let mut seen: HashSet<ChunkId> = HashSet::new();
    let mut distinct_sealed_bytes = 0;
    let mut missing_chunk_files = 0;
    for entry in &manifest.chunks {
        if seen.insert(entry.id) {
            distinct_sealed_bytes += entry.len_bytes + TAG_LEN_BYTES as u64;
            if !dir.join(CHUNKS_DIR).join(entry.id.to_string()).is_file() {
                missing_chunk_files += 1;
            }
        }
    }
    Ok(Summary {
        image_len_bytes: manifest.image_len_bytes,
        chunk_size_bytes: manifest.chunk_size_bytes,
        chunks: manifest.chunks.len(),
        holes: manifest.holes.len(),
        hole_bytes: manifest.holes.iter().map(|h| h.len_bytes).sum(),
        distinct_chunks: seen.len(),
        distinct_sealed_bytes,
        missing_chunk_files,
    })
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let size = |bytes: u64| format!("{} ({bytes} bytes)", indicatif::BinaryBytes(bytes));
        writeln!(f, "image size      {}", size(self.image_len_bytes))?;
        writeln!(
            f,
            "chunk size      {}",
            indicatif::BinaryBytes(self.chunk_size_bytes)
        )?;
        writeln!(f, "chunks          {}", self.chunks)?;
        writeln!(
            f,
            "holes           {} runs, {}",
            self.holes,
            size(self.hole_bytes)
        )?;
        writeln!(
            f,
            "distinct chunks {} ({} sealed)",
            self.distinct_chunks,
            size(self.distinct_sealed_bytes)
        )?;
        writeln!(f, "dedup ratio     {:.2}x", self.dedup_ratio())?;
        match self.missing_chunk_files {
            0 => writeln!(f, "chunk files     all present"),
            n => writeln!(f, "chunk files     {n} MISSING"),
        }
    }
}

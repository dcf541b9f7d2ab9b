//! The image manifest (`manifest.json`): the image's length and, for each 512 KiB piece,
//! either the chunk that holds it (offset, id, key) or a hole. Secret, because of the keys.
//!
//! ```json
//! {
//!   "format": "chunkd-image", "version": 1,
//!   "image_len_bytes": 1572864, "chunk_size_bytes": 524288, "salt": "",
//!   "chunks": [{"offset_bytes": 0, "len_bytes": 524288, "id": "…64 hex…", "key": "…64 hex…"}],
//!   "holes": [{"offset_bytes": 524288, "len_bytes": 1048576}]
//! }
//! ```
//!
//! `len_bytes` of a chunk is its plaintext length (the sealed chunk is 16 bytes longer).
//! Adjacent holes are merged. Chunks and holes together tile `[0, image_len_bytes)`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::error::ImageError;
use crate::chunk::ChunkId;
use crate::crypto::{self, ChunkKey};

/// Folder of a packed image that holds the sealed chunks, one file per distinct id.
pub const CHUNKS_DIR: &str = "chunks";

/// Name of the manifest file inside a packed image's directory.
pub const MANIFEST_FILE: &str = "manifest.json";

const FORMAT: &str = "chunkd-image";
const VERSION: u32 = 1;

/// A packed image's manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: String,
    pub version: u32,
    pub image_len_bytes: u64,
    pub chunk_size_bytes: u64,
    /// Hex; the salt every chunk key was derived with.
    pub salt: String,
    /// In image order.
    pub chunks: Vec<ChunkEntry>,
    /// In image order, adjacent holes merged.
    pub holes: Vec<Hole>,
}

/// One stored piece of the image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChunkEntry {
    pub offset_bytes: u64,
    /// Plaintext length.
    pub len_bytes: u64,
    pub id: ChunkId,
    #[serde(with = "key_hex")]
    pub key: ChunkKey,
}

/// A run of zero bytes that was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hole {
    pub offset_bytes: u64,
    pub len_bytes: u64,
}

impl Manifest {
    /// An empty manifest for an image to be packed with `salt` and `chunk_size_bytes`.
    pub fn new(salt: &[u8], chunk_size_bytes: u64) -> Manifest {
        Manifest {
            format: FORMAT.to_owned(),
            version: VERSION,
            image_len_bytes: 0,
            chunk_size_bytes,
            salt: hex::encode(salt),
            chunks: Vec::new(),
            holes: Vec::new(),
        }
    }

    /// Appends a hole, merging it with a hole that ends where it starts.
    pub fn push_hole(&mut self, hole: Hole) {
        match self.holes.last_mut() {
            Some(last) if last.offset_bytes + last.len_bytes == hole.offset_bytes => {
                last.len_bytes += hole.len_bytes;
            }
            _ => self.holes.push(hole),
        }
    }

    /// Reads and validates `path`.
    pub fn read(path: &Path) -> Result<Manifest, ImageError> {
        let invalid = |reason: String| ImageError::Manifest {
            path: path.to_owned(),
            reason,
        };
        let text = std::fs::read(path).map_err(|cause| ImageError::Io {
            path: path.to_owned(),
            cause,
        })?;
        let manifest: Manifest =
            serde_json::from_slice(&text).map_err(|e| invalid(e.to_string()))?;
        manifest.validate().map_err(invalid)?;
        Ok(manifest)
    }

    /// Checks what `unpack` relies on: a known format, and pieces that tile the image
    /// exactly, none longer than a chunk.
    pub fn validate(&self) -> Result<(), String> {
        if self.format != FORMAT || self.version != VERSION {
            return Err(format!(
                "format {:?} version {} (this build reads {FORMAT:?} version {VERSION})",
                self.format, self.version
            ));
        }
        if self.chunk_size_bytes == 0 {
            return Err("chunk_size_bytes is 0".into());
        }
        let salt = hex::decode(&self.salt).map_err(|e| format!("salt is not hex: {e}"))?;
        crypto::check_salt(&salt).map_err(|e| e.to_string())?;
        let mut pieces: Vec<(u64, u64, bool)> = self
            .chunks
            .iter()
            .map(|c| (c.offset_bytes, c.len_bytes, true))
            .collect();
        pieces.extend(
            self.holes
                .iter()
                .map(|h| (h.offset_bytes, h.len_bytes, false)),
        );
        pieces.sort_unstable();
        let mut expected_offset = 0u64;
        for (offset, len, is_chunk) in pieces {
            if offset != expected_offset {
                return Err(format!(
                    "pieces do not tile the image: expected one at {expected_offset}, found one at {offset}"
                ));
            }
            if len == 0 || (is_chunk && len > self.chunk_size_bytes) {
                return Err(format!("piece at {offset} has length {len}"));
            }
            expected_offset = offset.checked_add(len).ok_or("piece offsets overflow")?;
        }
        if expected_offset != self.image_len_bytes {
            return Err(format!(
                "pieces end at {expected_offset}, the image is {} bytes",
                self.image_len_bytes
            ));
        }
        Ok(())
    }

    /// The salt's bytes. Valid after [`Manifest::validate`].
    pub fn salt_bytes(&self) -> Vec<u8> {
        hex::decode(&self.salt).unwrap_or_default()
    }
}

/// Chunk keys as 64 lowercase hex characters.
mod key_hex {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    use crate::crypto::{ChunkKey, KEY_LEN_BYTES};

    pub fn serialize<S: Serializer>(key: &ChunkKey, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&hex::encode(key.as_bytes()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<ChunkKey, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        let mut bytes = [0u8; KEY_LEN_BYTES];
        hex::decode_to_slice(text.as_bytes(), &mut bytes).map_err(|e| {
            D::Error::custom(format!("a chunk key is {KEY_LEN_BYTES} bytes of hex: {e}"))
        })?;
        Ok(ChunkKey::from_bytes(bytes))
    }
}

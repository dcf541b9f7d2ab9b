//! Images on the client side: `chunkd pack` cuts an image file into sealed chunks and
//! writes its manifest, `chunkd unpack` rebuilds the file from them, verifying every
//! byte, and `chunkd inspect` summarises a packed image.
//!
//! A packed image is a directory: `chunks/{id}` holds each distinct sealed chunk and
//! `manifest.json` lists, for every 512 KiB piece of the image, its offset, chunk id and
//! key, plus the all-zero pieces (holes) that were not stored. **The manifest is a
//! secret**: its keys open every chunk. The chunks alone reveal nothing but their sizes.
//!
//! **Architecture invariant:** it never talks to a node (`crate::client` does, reading
//! the manifests this module writes).
//!
//! Files: `manifest` (the JSON format and its validation), `pack`, `unpack`, `inspect`,
//! and `workers` (the bounded pool that seals or opens chunks on every core).

mod error;
mod inspect;
mod manifest;
mod pack;
mod unpack;
mod workers;

pub use error::ImageError;
pub use inspect::{Summary, inspect};
pub use manifest::{CHUNKS_DIR, ChunkEntry, Hole, MANIFEST_FILE, Manifest};
pub use pack::{PackOptions, pack};
pub use unpack::unpack;

//! Chunks: naming a chunk by its content ([`ChunkId`]) and cutting an image into chunks
//! ([`Chunker`]).
//!
//! **Architecture invariant:** this module does no I/O of its own; the chunker reads from
//! whatever `std::io::Read` it is given.

mod chunker;
mod id;

pub use chunker::{CHUNK_SIZE_BYTES, Chunker, Piece};
pub use id::{ChunkId, ParseIdError};

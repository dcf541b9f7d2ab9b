//! [`ChunkBuffer`]: where an incoming chunk is assembled — an aligned buffer already laid
//! out as the erasure data shards, hashed as it fills — and [`VerifiedChunk`], what it
//! becomes once its bytes are known to hash to its id. The store only accepts the latter,
//! so nothing unverified can be written.

use crate::chunk::ChunkId;
use crate::erasure::{Layout, Scheme};

use super::aligned::AlignedBuf;
use super::error::StoreError;

/// A chunk being received.
pub struct ChunkBuffer {
    buf: AlignedBuf,
    layout: Layout,
    filled_bytes: usize,
    hasher: blake3::Hasher,
}

/// A chunk whose bytes hash to its id, laid out as zero-padded data shards.
pub struct VerifiedChunk {
    id: ChunkId,
    buf: AlignedBuf,
    layout: Layout,
}

/// Why a buffer did not become a verified chunk.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FinishError {
    #[error("got {got_bytes} bytes, expected {expected_bytes}")]
    Length { got_bytes: u64, expected_bytes: u64 },
    #[error("body hashes to {actual}, not to the chunk id")]
    IdMismatch { actual: ChunkId },
}

impl ChunkBuffer {
    /// A buffer for a chunk of exactly `len_bytes` under `scheme`, at most `max_bytes`.
    pub fn new(len_bytes: u64, scheme: Scheme, max_bytes: u32) -> Result<ChunkBuffer, StoreError> {
        let padded = Layout::new(scheme, len_bytes.min(u64::from(max_bytes))).padded_len_bytes();
        ChunkBuffer::in_buffer(AlignedBuf::scratch(padded), len_bytes, scheme, max_bytes)
    }

    /// Bytes a buffer must have to receive any chunk of at most `max_bytes` under
    /// `scheme` (see [`ChunkBuffer::in_buffer`]).
    pub fn buffer_len_bytes(scheme: Scheme, max_bytes: u32) -> usize {
        Layout::new(scheme, u64::from(max_bytes)).padded_len_bytes()
    }

    /// As [`ChunkBuffer::new`], in `buf` (recycled: its old bytes are overwritten by the
    /// chunk, the padding after it zeroed), which must be at least the chunk's padded
    /// length: a buffer of [`ChunkBuffer::buffer_len_bytes`] takes any chunk. A fill takes
    /// its buffer from the core that will store and free it, so buffers stay in that
    /// core's pool instead of being carved afresh on the fetching thread.
    pub fn in_buffer(
        mut buf: AlignedBuf,
        len_bytes: u64,
        scheme: Scheme,
        max_bytes: u32,
    ) -> Result<ChunkBuffer, StoreError> {
        if len_bytes > u64::from(max_bytes) {
            return Err(StoreError::TooLarge {
                len_bytes,
                max_bytes,
            });
        }
        let layout = Layout::new(scheme, len_bytes);
        let padded = layout.padded_len_bytes();
        assert!(
            buf.len() >= padded,
            "a buffer of {} bytes for a chunk of {len_bytes} padded to {padded}",
            buf.len()
        );
        // The chunk's bytes overwrite [0, len); the rest of its data shards is zeros.
        buf[len_bytes as usize..padded].fill(0);
        Ok(ChunkBuffer {
            buf,
            layout,
            filled_bytes: 0,
            hasher: blake3::Hasher::new(),
        })
    }

    /// Bytes still expected.
    pub fn remaining_bytes(&self) -> usize {
        self.layout.chunk_len_bytes() as usize - self.filled_bytes
    }

    /// Appends `bytes`; fails without appending anything if they would overflow the length.
    pub fn extend(&mut self, bytes: &[u8]) -> Result<(), FinishError> {
        if bytes.len() > self.remaining_bytes() {
            return Err(FinishError::Length {
                got_bytes: (self.filled_bytes + bytes.len()) as u64,
                expected_bytes: self.layout.chunk_len_bytes(),
            });
        }
        self.buf[self.filled_bytes..self.filled_bytes + bytes.len()].copy_from_slice(bytes);
        self.hasher.update(bytes);
        self.filled_bytes += bytes.len();
        Ok(())
    }

    /// Checks the length and the hash: the chunk, or why not.
    pub fn finish(self, id: &ChunkId) -> Result<VerifiedChunk, FinishError> {
        if self.remaining_bytes() != 0 {
            return Err(FinishError::Length {
                got_bytes: self.filled_bytes as u64,
                expected_bytes: self.layout.chunk_len_bytes(),
            });
        }
        let actual = ChunkId::from_bytes(*self.hasher.finalize().as_bytes());
        if actual != *id {
            return Err(FinishError::IdMismatch { actual });
        }
        Ok(VerifiedChunk {
            id: actual,
            buf: self.buf,
            layout: self.layout,
        })
    }
}

impl VerifiedChunk {
    /// Names and lays out `bytes` (for tools and tests; servers stream into a
    /// [`ChunkBuffer`]).
    pub fn from_slice(
        bytes: &[u8],
        scheme: Scheme,
        max_bytes: u32,
    ) -> Result<VerifiedChunk, StoreError> {
        let mut buffer = ChunkBuffer::new(bytes.len() as u64, scheme, max_bytes)?;
        buffer
            .extend(bytes)
            .expect("the buffer has exactly this length");
        Ok(buffer
            .finish(&ChunkId::of(bytes))
            .expect("the id was computed from these bytes"))
    }

    /// The chunk's id.
    pub fn id(&self) -> &ChunkId {
        &self.id
    }

    /// The chunk's layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The chunk's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.buf[..self.layout.chunk_len_bytes() as usize]
    }

    pub(super) fn into_parts(self) -> (ChunkId, AlignedBuf, Layout) {
        (self.id, self.buf, self.layout)
    }
}

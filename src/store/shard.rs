//! The shard header: the first 4 KiB of every stored shard, which makes the shard
//! self-checking. It names the chunk (id, length), the shard (index, scheme, length), the
//! write (generation), and holds a CRC-32C of every 4 KiB block of the shard's data, so a
//! read of any aligned window verifies exactly the blocks it fetched.
//!
//! Layout (little-endian), worked for a 512 KiB chunk at k = 4 (128 KiB shards, 32 blocks):
//!
//! ```text
//! [0, 8)      magic "CHKDSHRD"         [8, 10)   version = 1
//! [12, 16)    chunk length             [16, 48)  chunk id
//! [48, 56)    generation               [56]      shard index   [57] k   [58] m
//! [60, 64)    shard data length        [64, 68)  block count = shard length / 4096
//! [68, 68+4n) CRC-32C of each block    [4092, 4096) CRC-32C of bytes [0, 4092)
//! ```
//!
//! A header holds at most 1006 block checksums, so a shard is at most 1006 × 4 KiB
//! (≈ 3.9 MiB) long. A torn header fails its own CRC; a torn or stale data block fails its
//! block CRC; a header from another chunk or write fails the id and generation checks.
//!
//! **Architecture invariant:** pure encoding and checking; no I/O.

use super::aligned::IO_ALIGN_BYTES;
use super::geometry::DEVICE_BLOCK_BYTES;
use crate::chunk::ChunkId;
use crate::erasure::{Layout, SHARD_ALIGN_BYTES, Scheme};

/// Bytes of a shard header: one aligned block, so the data after it is aligned too.
pub const HEADER_BYTES: usize = IO_ALIGN_BYTES;
/// Granularity of the data checksums: the O_DIRECT read unit, so every aligned read
/// window is whole checksum blocks.
pub const CHECKSUM_BLOCK_BYTES: usize = SHARD_ALIGN_BYTES;

// A shard's `[header | data]` extent is whole device blocks (its offset is counted in
// them), its data starts aligned for O_DIRECT, and an aligned window is whole checksum
// blocks.
const _: () = assert!((HEADER_BYTES as u64).is_multiple_of(DEVICE_BLOCK_BYTES));
const _: () = assert!((SHARD_ALIGN_BYTES as u64).is_multiple_of(DEVICE_BLOCK_BYTES));
const _: () = assert!(HEADER_BYTES.is_multiple_of(IO_ALIGN_BYTES));
const _: () = assert!(SHARD_ALIGN_BYTES.is_multiple_of(CHECKSUM_BLOCK_BYTES));
/// Most data blocks one header can describe.
pub const BLOCKS_MAX: usize = (HEADER_BYTES - CRCS_AT - 4) / 4;

const MAGIC: &[u8; 8] = b"CHKDSHRD";
const VERSION: u16 = 1;
const CRCS_AT: usize = 68;
const HEADER_CRC_AT: usize = HEADER_BYTES - 4;

const _: () = assert!(BLOCKS_MAX == 1006);

/// Device blocks one shard of a chunk of `len_bytes` occupies: its header plus its data.
pub fn extent_blocks(scheme: Scheme, len_bytes: u64) -> u32 {
    let layout = Layout::new(scheme, len_bytes);
    ((HEADER_BYTES + layout.shard_len_bytes()) as u64 / DEVICE_BLOCK_BYTES) as u32
}

/// What a header says about its shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShardIdentity {
    pub id: ChunkId,
    pub chunk_len_bytes: u32,
    pub generation: u64,
    pub shard_index: u8,
    pub data_shards: u8,
    pub parity_shards: u8,
    pub shard_len_bytes: u32,
}

impl std::fmt::Display for ShardIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "shard {} of chunk {} ({} bytes, {}+{}, generation {}, {}-byte shard)",
            self.shard_index,
            self.id,
            self.chunk_len_bytes,
            self.data_shards,
            self.parity_shards,
            self.generation,
            self.shard_len_bytes
        )
    }
}

/// Why a header or a block did not check out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShardError {
    #[error("no shard header here (magic or version wrong)")]
    NotAHeader,
    #[error("shard header checksum mismatch (torn or corrupt header)")]
    HeaderChecksum,
    #[error("shard header describes another shard: expected {expected}, found {found}")]
    Mismatch {
        expected: Box<ShardIdentity>,
        found: Box<ShardIdentity>,
    },
    #[error("checksum mismatch in shard data block {block}")]
    BlockChecksum { block: usize },
}

/// Writes the header of a shard holding `data` (whose length is `identity.shard_len_bytes`).
pub fn encode_header(identity: &ShardIdentity, data: &[u8], out: &mut [u8]) {
    assert_eq!(out.len(), HEADER_BYTES);
    assert_eq!(data.len(), identity.shard_len_bytes as usize);
    let blocks = data.len() / CHECKSUM_BLOCK_BYTES;
    assert!(
        data.len().is_multiple_of(CHECKSUM_BLOCK_BYTES) && blocks <= BLOCKS_MAX,
        "shard of {} bytes",
        data.len()
    );
    out.fill(0);
    out[0..8].copy_from_slice(MAGIC);
    out[8..10].copy_from_slice(&VERSION.to_le_bytes());
    out[12..16].copy_from_slice(&identity.chunk_len_bytes.to_le_bytes());
    out[16..48].copy_from_slice(identity.id.as_bytes());
    out[48..56].copy_from_slice(&identity.generation.to_le_bytes());
    out[56] = identity.shard_index;
    out[57] = identity.data_shards;
    out[58] = identity.parity_shards;
    out[60..64].copy_from_slice(&identity.shard_len_bytes.to_le_bytes());
    out[64..68].copy_from_slice(&(blocks as u32).to_le_bytes());
    for (i, block) in data.chunks_exact(CHECKSUM_BLOCK_BYTES).enumerate() {
        out[CRCS_AT + 4 * i..CRCS_AT + 4 * i + 4]
            .copy_from_slice(&crc32c::crc32c(block).to_le_bytes());
    }
    let crc = crc32c::crc32c(&out[..HEADER_CRC_AT]);
    out[HEADER_CRC_AT..].copy_from_slice(&crc.to_le_bytes());
}

/// A header whose own checksum and whose identity have been verified.
pub struct VerifiedHeader<'a> {
    bytes: &'a [u8],
}

/// Checks `bytes` is a sound header for exactly the shard `expected`.
pub fn verify_header<'a>(
    bytes: &'a [u8],
    expected: &ShardIdentity,
) -> Result<VerifiedHeader<'a>, ShardError> {
    let found = decode_header(bytes)?;
    if found != *expected {
        return Err(ShardError::Mismatch {
            expected: Box::new(*expected),
            found: Box::new(found),
        });
    }
    Ok(VerifiedHeader { bytes })
}

/// Reads a header's fields after checking its magic, version and checksum.
pub fn decode_header(bytes: &[u8]) -> Result<ShardIdentity, ShardError> {
    assert_eq!(bytes.len(), HEADER_BYTES);
    if &bytes[0..8] != MAGIC || u16_at(bytes, 8) != VERSION {
        return Err(ShardError::NotAHeader);
    }
    if crc32c::crc32c(&bytes[..HEADER_CRC_AT]) != u32_at(bytes, HEADER_CRC_AT) {
        return Err(ShardError::HeaderChecksum);
    }
    let id: [u8; 32] = bytes[16..48].try_into().expect("32 bytes");
    Ok(ShardIdentity {
        id: ChunkId::from_bytes(id),
        chunk_len_bytes: u32_at(bytes, 12),
        generation: u64::from_le_bytes(bytes[48..56].try_into().expect("8 bytes")),
        shard_index: bytes[56],
        data_shards: bytes[57],
        parity_shards: bytes[58],
        shard_len_bytes: u32_at(bytes, 60),
    })
}

impl VerifiedHeader<'_> {
    /// The block checksums, to keep for later reads of the same shard.
    pub fn block_crcs(&self) -> Vec<u32> {
        let blocks = u32_at(self.bytes, 64) as usize;
        (0..blocks)
            .map(|i| u32_at(self.bytes, CRCS_AT + 4 * i))
            .collect()
    }
}

/// Checks `data`, shard bytes starting at block `first_block`, against `block_crcs` taken
/// from the shard's verified header.
pub fn verify_blocks(
    block_crcs: &[u32],
    first_block: usize,
    data: &[u8],
) -> Result<(), ShardError> {
    assert!(data.len().is_multiple_of(CHECKSUM_BLOCK_BYTES));
    for (i, block) in data.chunks_exact(CHECKSUM_BLOCK_BYTES).enumerate() {
        let index = first_block + i;
        assert!(
            index < block_crcs.len(),
            "block {index} beyond the shard's {}",
            block_crcs.len()
        );
        if crc32c::crc32c(block) != block_crcs[index] {
            return Err(ShardError::BlockChecksum { block: index });
        }
    }
    Ok(())
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(bytes[at..at + 2].try_into().expect("2 bytes"))
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(data: &[u8]) -> ShardIdentity {
        ShardIdentity {
            id: ChunkId::of(b"chunk"),
            chunk_len_bytes: 100_000,
            generation: 7,
            shard_index: 2,
            data_shards: 4,
            parity_shards: 1,
            shard_len_bytes: data.len() as u32,
        }
    }

    #[test]
    fn a_header_verifies_its_own_shard_and_nothing_else() {
        let data: Vec<u8> = (0..8 * 4096u32).map(|i| (i % 251) as u8).collect();
        let mut header = vec![0u8; HEADER_BYTES];
        encode_header(&identity(&data), &data, &mut header);
        let crcs = verify_header(&header, &identity(&data))
            .unwrap()
            .block_crcs();
        verify_blocks(&crcs, 0, &data).unwrap();
        verify_blocks(&crcs, 3, &data[3 * 4096..5 * 4096]).unwrap();
        assert_eq!(
            verify_blocks(&crcs, 2, &data[3 * 4096..4 * 4096]),
            Err(ShardError::BlockChecksum { block: 2 })
        );

        let other_generation = ShardIdentity {
            generation: 8,
            ..identity(&data)
        };
        let Err(mismatch) = verify_header(&header, &other_generation) else {
            panic!("a header of another generation verified");
        };
        assert!(matches!(mismatch, ShardError::Mismatch { .. }));
        // Issue 11, finding 13: the message is for people, not Rust's debug output.
        let text = mismatch.to_string();
        assert!(
            text.contains("generation 8") && !text.contains("ShardIdentity") && !text.contains('{'),
            "{text}"
        );
        header[100] ^= 1;
        assert_eq!(decode_header(&header), Err(ShardError::HeaderChecksum));
        assert_eq!(
            decode_header(&[0u8; HEADER_BYTES]),
            Err(ShardError::NotAHeader)
        );
    }
}

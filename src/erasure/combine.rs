//! Combining shard bytes a cache block at a time: the XOR that is the whole code when
//! `m = 1`, and the block size the Reed–Solomon rebuild shares.
//!
//! **Architecture invariant:** pure byte arithmetic; no I/O, no allocation.

use super::align::{RS_BLOCK_BYTES, SHARD_ALIGN_BYTES};

/// Shard bytes are combined a block at a time so the output block stays in L1 cache while
/// every source adds into it: each source byte is read once and each output byte written
/// once. One aligned unit (4 KiB, a page), so a rebuilt window is whole blocks.
pub(super) const COMBINE_BLOCK_BYTES: usize = SHARD_ALIGN_BYTES;

// The Reed–Solomon rebuild multiplies whole 64-byte blocks of a combine block.
const _: () = assert!(COMBINE_BLOCK_BYTES.is_multiple_of(RS_BLOCK_BYTES));

/// `output = sources[0] ^ sources[1] ^ …`, a cache block at a time.
pub(super) fn xor_of(output: &mut [u8], sources: &[&[u8]]) {
    let (first, rest) = sources.split_first().expect("XOR of no shards");
    for (block_index, out) in output.chunks_mut(COMBINE_BLOCK_BYTES).enumerate() {
        let start = block_index * COMBINE_BLOCK_BYTES;
        out.copy_from_slice(&first[start..start + out.len()]);
        for source in rest {
            xor_into(out, &source[start..start + out.len()]);
        }
    }
}

/// `output ^= input`, byte by byte; written so the compiler vectorises it.
pub(super) fn xor_into(output: &mut [u8], input: &[u8]) {
    debug_assert_eq!(output.len(), input.len());
    for (out, byte) in output.iter_mut().zip(input) {
        *out ^= byte;
    }
}

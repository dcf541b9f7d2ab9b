//! The base alignment of the whole crate, and the Reed–Solomon block it must hold.
//!
//! Every shard length, shard read window, device offset and I/O buffer is a multiple of
//! [`SHARD_ALIGN_BYTES`]: the O_DIRECT alignment of the devices (their physical block size).
//! The store derives its own units from it (`store::IO_ALIGN_BYTES` for buffers, the shard
//! header and checksum block, the device block its offsets count in, the superblock) with
//! compile-time checks beside each.
//!
//! **Architecture invariant:** constants only.

/// Shard lengths and shard read offsets are multiples of this, the O_DIRECT alignment of
/// the devices (their physical block size). The one definition of 4096 in the crate.
pub const SHARD_ALIGN_BYTES: usize = 4096;

/// Reed–Solomon (`reed-solomon-simd`) codes shards as 64-byte blocks of 32 GF(2^16)
/// symbols.
pub(super) const RS_BLOCK_BYTES: usize = 64;

// Aligned windows must hold whole Reed–Solomon blocks, so a window of a shard can be
// rebuilt on its own.
const _: () = assert!(SHARD_ALIGN_BYTES.is_multiple_of(RS_BLOCK_BYTES));

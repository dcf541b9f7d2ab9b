//! Erasure coding of one stored chunk as `k` data shards plus `m` parity shards, so that any
//! `k` of the `k + m` shards rebuild the chunk.
//!
//! [`Layout`] is the arithmetic: how long each shard is and which shard bytes hold a given
//! byte range of the chunk. [`Codec`] computes parity and rebuilds missing shards: a plain
//! XOR when `m = 1` (the paper's 4-of-5), Reed–Solomon over GF(2^16) from
//! `reed-solomon-simd` when `m ≥ 2`.
//!
//! ```
//! use chunkd::erasure::{Codec, Layout, Scheme, ShardSet};
//!
//! let scheme = Scheme::new(4, 1).unwrap();
//! let chunk = vec![7u8; 100_000];
//! let layout = Layout::new(scheme, chunk.len() as u64);
//! let mut codec = Codec::new(scheme);
//! let mut shards = codec.encode_chunk(&layout, &chunk);
//! shards[2].fill(0xEE); // lose data shard 2 …
//! let present = ShardSet::all(5).without(2);
//! let mut views: Vec<&mut [u8]> = shards.iter_mut().map(|s| s.as_mut_slice()).collect();
//! codec.rebuild(&mut views, present, ShardSet::single(2)).unwrap(); // … and get it back
//! assert_eq!(layout.join(&shards), chunk);
//! ```
//!
//! **Architecture invariant:** no I/O and no allocation proportional to the number of
//! chunks: the codec keeps scratch space and caches sized by the scheme alone.

mod align;
mod codec;
mod combine;
mod layout;
mod rs;
mod shard_set;

pub use align::SHARD_ALIGN_BYTES;
pub use codec::{Codec, RebuildError};
pub use layout::{Layout, Scheme, SchemeError, ShardSpan};
pub use shard_set::ShardSet;

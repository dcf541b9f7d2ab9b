//! [`Codec`]: computes parity shards and rebuilds missing shards, for one thread.

use super::align::RS_BLOCK_BYTES;
use super::combine::xor_of;
use super::layout::{Layout, Scheme};
use super::rs::ReedSolomon;
use super::shard_set::ShardSet;

/// Erasure encoder and decoder for one scheme. Not shared between threads: each core owns
/// one, so its Reed–Solomon tables and per-pattern caches are used without locks.
pub struct Codec {
    scheme: Scheme,
    /// Present when `m ≥ 2`; `m = 1` is plain XOR and `m = 0` has no parity at all.
    reed_solomon: Option<ReedSolomon>,
}

/// Why shards could not be rebuilt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RebuildError {
    #[error("{present} shards are healthy, {needed} are needed to rebuild the others")]
    TooFewShards { present: usize, needed: usize },
}

impl Codec {
    /// A codec for `scheme`.
    pub fn new(scheme: Scheme) -> Codec {
        let reed_solomon = (scheme.parity_shards() >= 2).then(|| ReedSolomon::new(scheme));
        Codec {
            scheme,
            reed_solomon,
        }
    }

    /// The scheme this codec encodes.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// Computes the `m` parity shards of `k` data shards. All shards have one length, a
    /// multiple of 64 bytes.
    pub fn encode(&mut self, data: &[&[u8]], parity: &mut [&mut [u8]]) {
        assert_eq!(
            data.len(),
            self.scheme.data_shards(),
            "one slice per data shard"
        );
        assert_eq!(
            parity.len(),
            self.scheme.parity_shards(),
            "one slice per parity shard"
        );
        let len = data[0].len();
        assert!(data.iter().all(|s| s.len() == len) && parity.iter().all(|s| s.len() == len));
        assert!(
            len.is_multiple_of(RS_BLOCK_BYTES),
            "shard length {len} is not a multiple of 64"
        );
        match (&mut self.reed_solomon, parity) {
            (_, []) => {}
            (None, [xor]) => xor_of(xor, data),
            (Some(rs), parity) => rs.encode(data, parity),
            (None, _) => unreachable!("m ≥ 2 always has a Reed–Solomon codec"),
        }
    }

    /// Splits `chunk` per `layout` and returns all `k + m` shards (allocating; for tools
    /// and tests, the store encodes into its own buffers).
    pub fn encode_chunk(&mut self, layout: &Layout, chunk: &[u8]) -> Vec<Vec<u8>> {
        assert_eq!(layout.scheme(), self.scheme);
        let mut shards = layout.split(chunk);
        let mut parity = vec![vec![0u8; layout.shard_len_bytes()]; self.scheme.parity_shards()];
        {
            let data: Vec<&[u8]> = shards.iter().map(Vec::as_slice).collect();
            let mut parity_views: Vec<&mut [u8]> =
                parity.iter_mut().map(Vec::as_mut_slice).collect();
            self.encode(&data, &mut parity_views);
        }
        shards.extend(parity);
        shards
    }

    /// Rebuilds every shard in `wanted` that is not in `present`, from the shards in
    /// `present`, in place.
    ///
    /// `shards` has one slice per shard (`k + m`). The slices of present and wanted shards
    /// must have one length, a multiple of 64 bytes; they may be a window of the shards (the
    /// same offsets in each), since every byte position is coded independently. Other
    /// slices may be empty. Fails, changing nothing, when fewer than `k` shards are present.
    pub fn rebuild(
        &mut self,
        shards: &mut [&mut [u8]],
        present: ShardSet,
        wanted: ShardSet,
    ) -> Result<(), RebuildError> {
        let total = self.scheme.total_shards();
        assert_eq!(shards.len(), total, "one slice per shard");
        let present = present.intersection(ShardSet::all(total));
        let missing = wanted
            .intersection(ShardSet::all(total))
            .difference(present);
        if missing.is_empty() {
            return Ok(());
        }
        let needed = self.scheme.data_shards();
        if present.len() < needed {
            return Err(RebuildError::TooFewShards {
                present: present.len(),
                needed,
            });
        }
        let len = check_lengths(shards, present.iter().chain(missing.iter()));
        assert!(
            len.is_multiple_of(RS_BLOCK_BYTES),
            "window length {len} is not a multiple of 64"
        );
        match &mut self.reed_solomon {
            Some(rs) => rs.rebuild(shards, present, missing),
            // m ≤ 1 and at least k present: exactly one shard is missing, and it is the
            // XOR of all the others (with m = 0 nothing can be missing here).
            None => {
                for target in missing.iter() {
                    let output = std::mem::take(&mut shards[target]);
                    let sources: Vec<&[u8]> = present.iter().map(|i| &*shards[i]).collect();
                    xor_of(output, &sources);
                    shards[target] = output;
                }
            }
        }
        Ok(())
    }
}

/// The common length of the slices at `indices`.
fn check_lengths(shards: &[&mut [u8]], mut indices: impl Iterator<Item = usize>) -> usize {
    let first = indices.next().expect("at least one shard is involved");
    let len = shards[first].len();
    for i in indices {
        assert_eq!(
            shards[i].len(),
            len,
            "shard {i} window differs in length from shard {first}"
        );
    }
    len
}

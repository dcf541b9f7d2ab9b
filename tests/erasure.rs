//! Erasure coding through the public API: every set of up to `m` lost shards is rebuilt
//! byte-exact, for chunk lengths from 0 to 1 MiB, and too many losses fail cleanly.

#[path = "common/seeded.rs"]
mod seeded;

use chunkd::erasure::{Codec, Layout, RebuildError, Scheme, ShardSet};
use proptest::prelude::*;

const MIB: usize = 1024 * 1024;

/// All subsets of `0..total` with at most `max_len` members.
fn subsets_up_to(total: usize, max_len: usize) -> Vec<ShardSet> {
    (0u32..1 << total)
        .map(|bits| {
            (0..total)
                .filter(|i| bits & (1 << i) != 0)
                .fold(ShardSet::empty(), ShardSet::with)
        })
        .filter(|set| set.len() <= max_len)
        .collect()
}

/// Garbles the `lost` shards, rebuilds them all and checks every shard and the chunk.
fn check_every_loss_pattern(scheme: Scheme, chunk: &[u8]) {
    let layout = Layout::new(scheme, chunk.len() as u64);
    let mut codec = Codec::new(scheme);
    let shards = codec.encode_chunk(&layout, chunk);
    assert_eq!(shards.len(), scheme.total_shards());
    assert_eq!(layout.join(&shards), chunk, "data shards hold the chunk");
    let total = scheme.total_shards();
    for lost in subsets_up_to(total, scheme.parity_shards()) {
        let mut damaged = shards.clone();
        for i in lost.iter() {
            damaged[i].iter_mut().for_each(|b| *b = !*b);
        }
        let present = ShardSet::all(total).difference(lost);
        let mut views: Vec<&mut [u8]> = damaged.iter_mut().map(|s| s.as_mut_slice()).collect();
        codec
            .rebuild(&mut views, present, ShardSet::all(total))
            .unwrap();
        assert!(
            damaged == shards,
            "{scheme:?} len {} lost {lost:?}: rebuilt shards differ",
            chunk.len()
        );
    }
}

fn chunk_strategy() -> impl Strategy<Value = Vec<u8>> {
    // Lengths cluster around the interesting boundaries (multiples of k and of 4096) as
    // well as spreading over the whole range.
    let len = prop_oneof![
        0..=MIB,
        (0usize..=256).prop_map(|n| n * 4096),
        (0usize..=256, -3i64..=3)
            .prop_map(|(n, d)| (n as i64 * 4096 + d).clamp(0, MIB as i64) as usize),
    ];
    // The tests' seeded xorshift stream: cheap, so megabyte chunks are fast to make.
    (len, any::<u64>()).prop_map(|(len, seed)| seeded::xorshift_bytes(seed, len))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn xor_4_plus_1_rebuilds_any_single_loss(chunk in chunk_strategy()) {
        check_every_loss_pattern(Scheme::new(4, 1).unwrap(), &chunk);
    }

    #[test]
    fn reed_solomon_4_plus_2_rebuilds_any_two_losses(chunk in chunk_strategy()) {
        check_every_loss_pattern(Scheme::new(4, 2).unwrap(), &chunk);
    }

    #[test]
    fn reed_solomon_3_plus_3_rebuilds_any_three_losses(chunk in chunk_strategy()) {
        check_every_loss_pattern(Scheme::new(3, 3).unwrap(), &chunk);
    }
}

#[test]
fn schemes_without_parity_or_with_one_data_shard_round_trip() {
    let chunk: Vec<u8> = (0..70_001u32).map(|i| (i * 7 % 253) as u8).collect();
    for (k, m) in [(1, 0), (4, 0), (1, 1), (1, 2), (2, 1), (5, 3), (10, 4)] {
        check_every_loss_pattern(Scheme::new(k, m).unwrap(), &chunk);
    }
}

#[test]
fn more_losses_than_parity_fail_without_touching_shards() {
    for (k, m) in [(4, 1), (4, 2)] {
        let scheme = Scheme::new(k, m).unwrap();
        let chunk = vec![0x5au8; 300_000];
        let layout = Layout::new(scheme, chunk.len() as u64);
        let mut codec = Codec::new(scheme);
        let mut shards = codec.encode_chunk(&layout, &chunk);
        let before = shards.clone();
        let present = (m + 1..k + m).fold(ShardSet::empty(), ShardSet::with);
        let mut views: Vec<&mut [u8]> = shards.iter_mut().map(|s| s.as_mut_slice()).collect();
        let result = codec.rebuild(&mut views, present, ShardSet::all(k + m));
        assert_eq!(
            result,
            Err(RebuildError::TooFewShards {
                present: k - 1,
                needed: k
            })
        );
        assert!(shards == before, "a failed rebuild must not write");
    }
}

#[test]
fn a_window_of_a_shard_rebuilds_on_its_own() {
    // Degraded range reads fetch only the aligned window of each shard they need.
    for (k, m) in [(4, 1), (4, 2)] {
        let scheme = Scheme::new(k, m).unwrap();
        let chunk: Vec<u8> = (0..524_288u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let layout = Layout::new(scheme, chunk.len() as u64);
        let mut codec = Codec::new(scheme);
        let shards = codec.encode_chunk(&layout, &chunk);
        let window = 65_536..131_072;
        let mut windows: Vec<Vec<u8>> = shards.iter().map(|s| s[window.clone()].to_vec()).collect();
        windows[1].fill(0);
        let mut views: Vec<&mut [u8]> = windows.iter_mut().map(|s| s.as_mut_slice()).collect();
        codec
            .rebuild(
                &mut views,
                ShardSet::all(k + m).without(1),
                ShardSet::single(1),
            )
            .unwrap();
        assert_eq!(windows[1], shards[1][window.clone()]);
    }
}

#[test]
fn parity_of_4_plus_1_is_the_xor_of_the_data_shards() {
    let scheme = Scheme::new(4, 1).unwrap();
    let chunk: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let layout = Layout::new(scheme, chunk.len() as u64);
    let shards = Codec::new(scheme).encode_chunk(&layout, &chunk);
    let xor: Vec<u8> = (0..layout.shard_len_bytes())
        .map(|i| shards[..4].iter().fold(0, |acc, s| acc ^ s[i]))
        .collect();
    assert_eq!(shards[4], xor);
}

#[test]
fn reed_solomon_parity_matches_the_library_decoder() {
    // Our cached linear-combination rebuild must agree with reed-solomon-simd's own decode.
    let (k, m) = (4, 2);
    let scheme = Scheme::new(k, m).unwrap();
    let chunk: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(40503) >> 7) as u8)
        .collect();
    let layout = Layout::new(scheme, chunk.len() as u64);
    let shards = Codec::new(scheme).encode_chunk(&layout, &chunk);
    let originals = [(1, &shards[1]), (3, &shards[3])];
    let recovery = [(0, &shards[4]), (1, &shards[5])];
    let restored = reed_solomon_simd::decode(k, m, originals, recovery).unwrap();
    assert_eq!(restored[&0], shards[0]);
    assert_eq!(restored[&2], shards[2]);
}

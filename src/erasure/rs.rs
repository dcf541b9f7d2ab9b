//! Reed–Solomon parity (`m ≥ 2`) over GF(2^16), built on `reed-solomon-simd`, with rebuilds
//! that cost a few multiply-adds per byte instead of a full decode.
//!
//! Why not call `ReedSolomonDecoder::decode` per read: each decode evaluates the erasure
//! locator polynomial over the whole field (two 65536-point transforms), a fixed ~0.25 ms
//! whatever the shard size, which measured here as half of rebuilding a 512 KiB chunk.
//! Instead we use that the code is linear: every missing shard is a fixed GF(2^16) linear
//! combination of any `k` present shards, the same at every symbol position. The
//! coefficients depend only on *which* shards are present, so they are found once per
//! pattern — by decoding unit vectors with the library's own decoder — and cached. A
//! rebuild is then `k` SIMD multiply-and-XOR passes with the library's engine.
//!
//! Symbols: the library stores a shard as 64-byte blocks of 32 symbols, low bytes in
//! `[0, 32)`, high bytes in `[32, 64)`; symbol 0 of a block is bytes 0 and 32.

use std::collections::HashMap;

use reed_solomon_simd::engine::tables::{self, ExpLog};
use reed_solomon_simd::engine::{DefaultEngine, Engine, GfElement};
use reed_solomon_simd::{ReedSolomonDecoder, ReedSolomonEncoder};

use super::align::RS_BLOCK_BYTES;
use super::combine::{COMBINE_BLOCK_BYTES, xor_into};
use super::layout::Scheme;
use super::shard_set::ShardSet;

/// Shard length used to find coefficients: one 64-byte block is the smallest the library
/// codes.
const PROBE_SHARD_BYTES: usize = RS_BLOCK_BYTES;

/// Most source patterns whose coefficients are kept. With `k + m ≤ 32` the count of
/// `k`-subsets can be huge in theory; in practice a node sees a handful (which devices are
/// down). Past the bound the cache is cleared rather than grown.
const RECIPES_MAX: usize = 1024;

/// How to rebuild shards from one set of `k` source shards.
struct Recipe {
    /// The source shard indices, increasing.
    sources: Vec<usize>,
    /// `coefficients[target][j]` multiplies `sources[j]` in the sum that gives `target`.
    /// Empty for targets that are themselves sources.
    coefficients: Vec<Vec<GfElement>>,
}

pub(super) struct ReedSolomon {
    scheme: Scheme,
    encoder: ReedSolomonEncoder,
    decoder: ReedSolomonDecoder,
    engine: DefaultEngine,
    exp_log: &'static ExpLog,
    /// `parity_coefficients[d][p]`: how much data shard `d` adds to parity shard `p`.
    parity_coefficients: Vec<Vec<GfElement>>,
    /// Keyed by the source mask.
    recipes: HashMap<u32, Recipe>,
    /// One block of scratch for a multiplied source.
    scratch: Vec<[u8; RS_BLOCK_BYTES]>,
}

impl ReedSolomon {
    pub(super) fn new(scheme: Scheme) -> ReedSolomon {
        let (k, m) = (scheme.data_shards(), scheme.parity_shards());
        // The library supports any k, m with k + m ≤ 65536; Scheme bounds them to 32.
        let encoder =
            ReedSolomonEncoder::new(k, m, PROBE_SHARD_BYTES).expect("scheme within library bounds");
        let decoder =
            ReedSolomonDecoder::new(k, m, PROBE_SHARD_BYTES).expect("scheme within library bounds");
        let mut rs = ReedSolomon {
            scheme,
            encoder,
            decoder,
            engine: DefaultEngine::new(),
            exp_log: tables::get_exp_log(),
            parity_coefficients: Vec::new(),
            recipes: HashMap::new(),
            scratch: vec![[0u8; RS_BLOCK_BYTES]; COMBINE_BLOCK_BYTES / RS_BLOCK_BYTES],
        };
        rs.parity_coefficients = (0..k).map(|d| rs.encode_unit(d)).collect();
        rs
    }

    pub(super) fn encode(&mut self, data: &[&[u8]], parity: &mut [&mut [u8]]) {
        let (k, m) = (self.scheme.data_shards(), self.scheme.parity_shards());
        let len = data[0].len();
        if len == 0 {
            return;
        }
        self.encoder
            .reset(k, m, len)
            .expect("scheme and length checked by Codec");
        for shard in data {
            self.encoder
                .add_original_shard(shard)
                .expect("k shards of one length");
        }
        let result = self.encoder.encode().expect("all k shards were added");
        for (out, recovery) in parity.iter_mut().zip(result.recovery_iter()) {
            out.copy_from_slice(recovery);
        }
    }

    pub(super) fn rebuild(
        &mut self,
        shards: &mut [&mut [u8]],
        present: ShardSet,
        missing: ShardSet,
    ) {
        // Any k present shards will do; the lowest indices favour data shards, and a stable
        // choice keeps the number of cached patterns small.
        let sources: ShardSet = present
            .iter()
            .take(self.scheme.data_shards())
            .fold(ShardSet::empty(), ShardSet::with);
        if !self.recipes.contains_key(&sources.bits()) {
            if self.recipes.len() >= RECIPES_MAX {
                self.recipes.clear();
            }
            let recipe = self.recipe(sources);
            self.recipes.insert(sources.bits(), recipe);
        }
        let recipe = &self.recipes[&sources.bits()];
        for target in missing.iter() {
            let output = std::mem::take(&mut shards[target]);
            let terms: Vec<(&[u8], GfElement)> = recipe
                .sources
                .iter()
                .zip(&recipe.coefficients[target])
                .map(|(&source, &coefficient)| (&*shards[source], coefficient))
                .collect();
            combine(
                &self.engine,
                self.exp_log,
                &mut self.scratch,
                output,
                &terms,
            );
            shards[target] = output;
        }
    }

    /// Finds the coefficients that rebuild every non-source shard from `sources`.
    fn recipe(&mut self, sources: ShardSet) -> Recipe {
        let (k, total) = (self.scheme.data_shards(), self.scheme.total_shards());
        let source_list: Vec<usize> = sources.iter().collect();
        // data_from_sources[d][j]: data shard d in terms of source j.
        let mut data_from_sources = vec![vec![0 as GfElement; k]; k];
        for (j, &source) in source_list.iter().enumerate() {
            if source < k {
                data_from_sources[source][j] = 1;
            }
            for (d, symbol) in self.decode_unit(&source_list, source) {
                data_from_sources[d][j] = symbol;
            }
        }
        let coefficients = (0..total)
            .map(|target| match target {
                t if sources.contains(t) => Vec::new(),
                t if t < k => data_from_sources[t].clone(),
                t => self.parity_from_sources(t - k, &data_from_sources),
            })
            .collect();
        Recipe {
            sources: source_list,
            coefficients,
        }
    }

    /// Parity shard `p` in terms of the sources: `Σ_d parity[d][p] · data[d][j]`.
    fn parity_from_sources(
        &self,
        p: usize,
        data_from_sources: &[Vec<GfElement>],
    ) -> Vec<GfElement> {
        let k = self.scheme.data_shards();
        (0..k)
            .map(|j| {
                (0..k).fold(0, |sum, d| {
                    sum ^ self.gf_mul(self.parity_coefficients[d][p], data_from_sources[d][j])
                })
            })
            .collect()
    }

    /// Encodes data that is 1 in shard `d` and 0 elsewhere: the parity symbols are how much
    /// shard `d` contributes to each parity shard.
    fn encode_unit(&mut self, d: usize) -> Vec<GfElement> {
        let (k, m) = (self.scheme.data_shards(), self.scheme.parity_shards());
        self.encoder
            .reset(k, m, PROBE_SHARD_BYTES)
            .expect("probe size is valid");
        for i in 0..k {
            self.encoder
                .add_original_shard(probe_shard(i == d))
                .expect("k probe shards");
        }
        let result = self
            .encoder
            .encode()
            .expect("all k probe shards were added");
        result.recovery_iter().map(symbol0).collect()
    }

    /// Decodes from `sources` holding 1 in shard `unit` and 0 elsewhere; yields each
    /// restored data shard with its symbol: the coefficient of `unit` for that shard.
    fn decode_unit(&mut self, sources: &[usize], unit: usize) -> Vec<(usize, GfElement)> {
        let (k, m) = (self.scheme.data_shards(), self.scheme.parity_shards());
        self.decoder
            .reset(k, m, PROBE_SHARD_BYTES)
            .expect("probe size is valid");
        for &source in sources {
            let shard = probe_shard(source == unit);
            if source < k {
                self.decoder
                    .add_original_shard(source, shard)
                    .expect("distinct sources");
            } else {
                self.decoder
                    .add_recovery_shard(source - k, shard)
                    .expect("distinct sources");
            }
        }
        let result = self.decoder.decode().expect("k sources suffice to decode");
        result
            .restored_original_iter()
            .map(|(d, shard)| (d, symbol0(shard)))
            .collect()
    }

    fn gf_mul(&self, a: GfElement, b: GfElement) -> GfElement {
        if a == 0 || b == 0 {
            return 0;
        }
        tables::mul(
            a,
            self.exp_log.log[b as usize],
            &self.exp_log.exp,
            &self.exp_log.log,
        )
    }
}

/// A probe shard whose symbol 0 is `1` (or `0`) and every other symbol `0`.
fn probe_shard(unit: bool) -> [u8; PROBE_SHARD_BYTES] {
    let mut shard = [0u8; PROBE_SHARD_BYTES];
    shard[0] = u8::from(unit);
    shard
}

/// Symbol 0 of a shard: low byte at 0, high byte at 32.
fn symbol0(shard: &[u8]) -> GfElement {
    GfElement::from(shard[0]) | GfElement::from(shard[32]) << 8
}

/// `output = Σ coefficient · source` over GF(2^16), a cache block at a time.
fn combine(
    engine: &DefaultEngine,
    exp_log: &ExpLog,
    scratch: &mut [[u8; RS_BLOCK_BYTES]],
    output: &mut [u8],
    terms: &[(&[u8], GfElement)],
) {
    for (block_index, out) in output.chunks_mut(COMBINE_BLOCK_BYTES).enumerate() {
        let start = block_index * COMBINE_BLOCK_BYTES;
        let mut written = false;
        for &(source, coefficient) in terms {
            if coefficient == 0 {
                continue;
            }
            let input = &source[start..start + out.len()];
            let (product, _) = scratch.as_flattened_mut().split_at_mut(out.len());
            let product: &mut [u8] = if written {
                product.copy_from_slice(input);
                product
            } else {
                out.copy_from_slice(input);
                out
            };
            if coefficient != 1 {
                let (blocks, rest) = product.as_chunks_mut::<RS_BLOCK_BYTES>();
                debug_assert!(rest.is_empty(), "lengths are multiples of 64");
                engine.mul(blocks, exp_log.log[coefficient as usize]);
            }
            if written {
                xor_into(out, &scratch.as_flattened()[..out.len()]);
            }
            written = true;
        }
        if !written {
            out.fill(0);
        }
    }
}

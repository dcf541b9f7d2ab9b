//! The pure chunk pipeline, measured: sealing against the bare AEADs, naming, erasure
//! encode and rebuild, range parsing. After criterion's own report it prints a summary
//! with each figure's target and the ratios between peers measured in this same run.
//!
//! `cargo bench --bench pipeline`

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use aes_gcm::aead::{Aead, AeadInOut};
use aes_gcm::{Aes256Gcm, KeyInit};
use chunkd::chunk::ChunkId;
use chunkd::crypto;
use chunkd::erasure::{Codec, Layout, Scheme, ShardSet};
use chunkd::range;
use criterion::{BatchSize, Criterion, Throughput};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};

const CHUNK_BYTES: usize = 512 * 1024;

fn chunk() -> Vec<u8> {
    (0..CHUNK_BYTES)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[0])
        .collect()
}

/// A fresh copy of `bytes` with room for the tag, made outside the timed part, so every
/// in-place operation starts from the same state without reallocating.
fn fresh(bytes: &[u8]) -> Vec<u8> {
    let mut buffer = Vec::with_capacity(bytes.len() + crypto::TAG_LEN_BYTES);
    buffer.extend_from_slice(bytes);
    buffer
}

fn bench_crypto(c: &mut Criterion) {
    let plaintext = chunk();
    let (sealed, key) = crypto::seal(fresh(&plaintext), b"salt");
    let mut group = c.benchmark_group("crypto");
    group.throughput(Throughput::Bytes(CHUNK_BYTES as u64));
    group.bench_function("seal", |b| {
        b.iter_batched(
            || fresh(&plaintext),
            |p| crypto::seal(p, b"salt"),
            BatchSize::LargeInput,
        )
    });
    group.bench_function("open", |b| {
        b.iter_batched(
            || sealed.clone(),
            |s| crypto::open(s, &key).unwrap(),
            BatchSize::LargeInput,
        )
    });
    // Peers: what the AEADs cost on the same buffer with nothing else around them, in
    // place on a fresh buffer exactly as `seal` gets it.
    let aes_gcm_crate = Aes256Gcm::new(&[7u8; 32].into());
    group.bench_function("bare_aes_gcm_crate", |b| {
        b.iter_batched(
            || fresh(&plaintext),
            |mut p| {
                aes_gcm_crate
                    .encrypt_in_place(&Default::default(), b"", &mut p)
                    .unwrap()
            },
            BatchSize::LargeInput,
        )
    });
    group.bench_function("bare_aes_gcm_crate_allocating", |b| {
        b.iter(|| {
            aes_gcm_crate
                .encrypt(&Default::default(), plaintext.as_slice())
                .unwrap()
        })
    });
    let ring_key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[7u8; 32]).unwrap());
    let mut in_place = plaintext.clone();
    group.bench_function("bare_ring_in_place", |b| {
        b.iter(|| {
            let nonce = Nonce::assume_unique_for_key([0; 12]);
            ring_key
                .seal_in_place_separate_tag(nonce, Aad::empty(), &mut in_place)
                .unwrap()
        })
    });
    group.bench_function("derive_key", |b| {
        b.iter(|| crypto::derive_key(&plaintext, b"salt"))
    });
    group.finish();

    let mut group = c.benchmark_group("id");
    group.throughput(Throughput::Bytes(sealed.len() as u64));
    group.bench_function("blake3", |b| b.iter(|| ChunkId::of(&sealed)));
    group.finish();
}

fn bench_erasure(c: &mut Criterion) {
    let data = chunk();
    let mut group = c.benchmark_group("erasure");
    group.throughput(Throughput::Bytes(CHUNK_BYTES as u64));
    for (k, m) in [(4, 1), (4, 2)] {
        let scheme = Scheme::new(k, m).unwrap();
        let layout = Layout::new(scheme, CHUNK_BYTES as u64);
        let mut codec = Codec::new(scheme);
        let mut shards = codec.encode_chunk(&layout, &data);
        let (data_shards, parity_shards) = shards.split_at_mut(k);
        let data_views: Vec<&[u8]> = data_shards.iter().map(Vec::as_slice).collect();
        let mut parity_views: Vec<&mut [u8]> =
            parity_shards.iter_mut().map(Vec::as_mut_slice).collect();
        group.bench_function(format!("encode_{k}+{m}"), |b| {
            b.iter(|| codec.encode(&data_views, &mut parity_views))
        });

        // One data shard missing, the common degraded read.
        let mut views: Vec<&mut [u8]> = shards.iter_mut().map(Vec::as_mut_slice).collect();
        let present = ShardSet::all(k + m).without(0);
        group.bench_function(format!("rebuild_{k}+{m}"), |b| {
            b.iter(|| {
                codec
                    .rebuild(&mut views, present, ShardSet::single(0))
                    .unwrap()
            })
        });
    }
    group.finish();
}

fn bench_range(c: &mut Criterion) {
    let mut group = c.benchmark_group("range");
    group.throughput(Throughput::Elements(1));
    group.bench_function("single", |b| {
        b.iter(|| range::resolve_range(Some(b"bytes=65536-131071"), 524_288))
    });
    let many = (0..64)
        .map(|i| format!("{}-{}", i * 8000, i * 8000 + 99))
        .collect::<Vec<_>>()
        .join(", ");
    let many = format!("bytes={many}");
    group.bench_function("multi_64", |b| {
        b.iter(|| range::resolve_range(Some(many.as_bytes()), 524_288))
    });
    group.finish();
}

/// Where criterion writes its estimates (the same rules criterion follows).
fn criterion_home() -> PathBuf {
    std::env::var_os("CRITERION_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
                || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"),
                PathBuf::from,
            );
            target.join("criterion")
        })
}

/// Median GB/s of one 512 KiB operation from criterion's estimates, if that benchmark ran
/// in this invocation (older results on disk are ignored, never reported as new).
fn criterion_gbps(group: &str, name: &str, run_started: SystemTime) -> Option<f64> {
    let path = criterion_home()
        .join(group)
        .join(name)
        .join("new")
        .join("estimates.json");
    if std::fs::metadata(&path).ok()?.modified().ok()? < run_started {
        return None;
    }
    let estimates: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    let median_seconds = estimates["median"]["point_estimate"].as_f64()? * 1e-9;
    Some(CHUNK_BYTES as f64 / median_seconds / 1e9)
}

/// Times `op` on a fresh input from `setup` (not timed), `ROUNDS` times in turn with the
/// other contestants, so a slow moment of this shared machine hits all of them alike.
struct Contestant<'a> {
    name: &'static str,
    setup: Box<dyn Fn() -> Vec<u8> + 'a>,
    op: Box<dyn Fn(Vec<u8>) + 'a>,
}

const ROUNDS: usize = 60;
const OPS_PER_ROUND: usize = 8;

/// Median seconds per op of each contestant, interleaved round by round.
fn interleaved_medians(contestants: &[Contestant]) -> Vec<f64> {
    let mut samples = vec![Vec::with_capacity(ROUNDS); contestants.len()];
    for _ in 0..ROUNDS {
        for (contestant, samples) in contestants.iter().zip(&mut samples) {
            let mut elapsed = Duration::ZERO;
            for _ in 0..OPS_PER_ROUND {
                let input = (contestant.setup)();
                let start = Instant::now();
                (contestant.op)(black_box(input));
                elapsed += start.elapsed();
            }
            samples.push(elapsed.as_secs_f64() / OPS_PER_ROUND as f64);
        }
    }
    samples
        .into_iter()
        .map(|mut s| {
            s.sort_by(f64::total_cmp);
            s[s.len() / 2]
        })
        .collect()
}

fn print_seal_comparison() {
    let plaintext = chunk();
    let aes_gcm_crate = Aes256Gcm::new(&[7u8; 32].into());
    let ring_key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[7u8; 32]).unwrap());
    let contestants = [
        Contestant {
            name: "seal (derive key + encrypt)",
            setup: Box::new(|| fresh(&plaintext)),
            op: Box::new(|p| drop(black_box(crypto::seal(p, b"salt")))),
        },
        Contestant {
            name: "bare aes-gcm crate, in place",
            setup: Box::new(|| fresh(&plaintext)),
            op: Box::new(|mut p| {
                aes_gcm_crate
                    .encrypt_in_place(&Default::default(), b"", &mut p)
                    .unwrap()
            }),
        },
        Contestant {
            name: "bare ring AES-GCM, in place",
            setup: Box::new(|| fresh(&plaintext)),
            op: Box::new(|mut p| {
                let nonce = Nonce::assume_unique_for_key([0; 12]);
                let _tag = black_box(
                    ring_key
                        .seal_in_place_separate_tag(nonce, Aad::empty(), &mut p)
                        .unwrap(),
                );
            }),
        },
        Contestant {
            name: "key derivation alone (BLAKE3)",
            setup: Box::new(|| fresh(&plaintext)),
            op: Box::new(|p| {
                black_box(crypto::derive_key(&p, b"salt"));
            }),
        },
    ];
    let medians = interleaved_medians(&contestants);
    println!("\nsealing a 512 KiB chunk, {ROUNDS} interleaved rounds (medians):");
    for (contestant, seconds) in contestants.iter().zip(&medians) {
        println!(
            "  {:32} {:7.1} us  {:5.2} GB/s",
            contestant.name,
            seconds * 1e6,
            CHUNK_BYTES as f64 / seconds / 1e9
        );
    }
    let [seal, aes_gcm, ring, derive] = medians[..] else {
        unreachable!("four contestants")
    };
    println!(
        "  seal vs bare aes-gcm crate       {:.2}x  (target >= 0.90; above 1 is faster)",
        aes_gcm / seal
    );
    println!(
        "  seal vs derive + ring, summed    {:.2}x  (1.00 = nothing beyond the two passes)",
        (derive + ring) / seal
    );
}

fn print_erasure_figures(run_started: SystemTime) {
    let show = |name: &str| {
        criterion_gbps("erasure", name, run_started)
            .map_or_else(|| "not run".to_owned(), |v| format!("{v:6.2} GB/s"))
    };
    println!("\nerasure on a 512 KiB chunk (criterion medians from this run):");
    println!(
        "  encode 4+1 (XOR)            {}  target >= 10",
        show("encode_4+1")
    );
    println!("  encode 4+2 (Reed-Solomon)   {}", show("encode_4+2"));
    println!(
        "  rebuild 4+1, 1 shard lost   {}  target >= 2",
        show("rebuild_4+1")
    );
    println!(
        "  rebuild 4+2, 1 shard lost   {}  target >= 1",
        show("rebuild_4+2")
    );
}

fn main() {
    let run_started = SystemTime::now();
    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    bench_crypto(&mut criterion);
    bench_erasure(&mut criterion);
    bench_range(&mut criterion);
    criterion.final_summary();
    print_seal_comparison();
    print_erasure_figures(run_started);
}

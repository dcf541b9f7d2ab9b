//! SIGKILL during manifest updates and sweeps (issue 13) loses no referenced chunk, tears
//! no manifest and leaves every reference count equal to what the manifests imply.
//!
//! This test binary re-executes itself as a child ([`child_gc_writer`]) on io_uring with
//! real files. The child runs, at once: manifest workers that put and delete manifests of
//! [`NAMES`] (each name owned by one worker, so at most one update of a name is in flight)
//! and upload the chunks a put answered missing, as a client does; a chunk worker putting
//! and deleting chunks no manifest names; and a sweeper, besides the store's periodic one.
//! The grace period is short and real ([`GRACE`]), so manifests replaced or deleted leave
//! chunks that sweeps really delete while the child runs. Odd rounds run with
//! `gc_unreferenced` (chunks no manifest names expire when stored and at every open), and
//! three of them are killed while the store opens. The child prints a line before each manifest update (`mput`,
//! `mdel`) and after it returned (`mack` with the ids answered missing, `dack`), and after
//! each upload (`put`). The parent SIGKILLs it at a seeded random moment, then opens the
//! store itself and checks:
//!
//! - each manifest is wholly the last acknowledged version, or wholly the update in flight
//!   at the kill (a put's list or a delete's absence);
//! - every chunk of a live manifest that its put answered as present, or that was
//!   uploaded after that answer, is stored and reads back byte-exact (so do all other
//!   referenced stored chunks: they are pinned from now on);
//! - `chunk_refs` of every pool chunk equals the count implied by the manifests present
//!   (recomputed from `manifest_names` and `manifest`); an expired chunk is a stored one;
//!   `gc_stats` counts the same manifests and referenced chunks.
//!
//! Rounds continue on the same store, each with new manifest versions.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use chunkd::chunk::ChunkId;
use chunkd::erasure::Scheme;
use chunkd::store::device::uring::UringEngine;
use chunkd::store::{LocalStore, RefState, Store, StoreConfig};
use common::child::{ChildRun, say};
use common::refs::{distinct_chunk, implied_counts, manifests, name, put_bytes};
use common::{Rng, config, run};

const SEED: u64 = 0x9c4a_5013;
const ROUNDS: u64 = 24;
/// Tells the child where the store is; without it the child test does nothing.
const ENV_DIR: &str = "CHUNKD_REFS_CRASH_STORE";
/// The round the child runs: its choices and manifest versions depend on it.
const ENV_ROUND: &str = "CHUNKD_REFS_CRASH_ROUND";
/// Chunks the manifests name, `0..POOL`; chunks `POOL..2 * POOL` are put but never named.
const POOL: u64 = 96;
const CHUNK_LEN_MAX: u64 = 192 << 10;
const NAMES: [&str; 8] = ["n0", "n1", "n2", "n3", "n4", "n5", "n6", "n7"];
/// Manifest workers; worker `w` owns the names `w`, `w + WORKERS`, ….
const WORKERS: usize = 4;
const MANIFEST_LEN_MAX: u64 = 32;
/// Short and real: chunks expire and are swept within a round.
const GRACE: Duration = Duration::from_millis(300);
const GC_INTERVAL: Duration = Duration::from_millis(100);
const KILL_DELAY_MS_MIN: u64 = 100;
const KILL_DELAY_MS_MAX: u64 = 1_200;
const DEVICE_MIB: u64 = 128;

/// The store of round `round`: odd rounds also expire chunks no manifest names (when
/// stored, and at every open — which a kill while opening then interrupts).
fn store_config(dir: &Path, round: u64) -> StoreConfig {
    let mut cfg = config(dir, DEVICE_MIB, Scheme::DEFAULT);
    cfg.gc_grace = GRACE;
    cfg.gc_interval = GC_INTERVAL;
    cfg.gc_unreferenced = round % 2 == 1;
    cfg
}

/// Pool chunk `p`.
fn pool_chunk(p: u64) -> (ChunkId, Vec<u8>) {
    let len = 1 + Rng::new(SEED ^ p).below(CHUNK_LEN_MAX);
    distinct_chunk(SEED, p, len as usize)
}

/// The chunks (pool indexes, in order, repeats allowed) of manifest version `version`:
/// derived from the number alone, so the parent knows every version the child may put.
fn version_chunks(version: u64) -> Vec<u64> {
    let mut rng = Rng::new(SEED ^ version.wrapping_mul(0x2545_f491_4f6c_dd1d));
    let len = 1 + rng.below(MANIFEST_LEN_MAX);
    let mut chunks: Vec<u64> = Vec::new();
    for _ in 0..len {
        let repeat = !chunks.is_empty() && rng.below(6) == 0;
        chunks.push(if repeat {
            chunks[rng.below(chunks.len() as u64) as usize]
        } else {
            rng.below(POOL)
        });
    }
    chunks
}

/// The child: manifest workers, a chunk worker and a sweeper, until it is killed.
#[test]
#[ignore = "the child of killed_manifest_updates_and_sweeps_keep_counts_and_chunks_uring"]
fn child_gc_writer() {
    let Ok(dir) = std::env::var(ENV_DIR) else {
        return;
    };
    let round: u64 = std::env::var(ENV_ROUND).unwrap().parse().unwrap();
    say("opening");
    let (store, _) = Store::open(store_config(Path::new(&dir), round), &UringEngine).unwrap();
    say("open");
    let pool: BTreeMap<ChunkId, u64> = (0..POOL).map(|p| (pool_chunk(p).0, p)).collect();
    run(async {
        let local = store.local().unwrap();
        let workers = (0..WORKERS).map(|w| manifest_worker(&store, &local, &pool, round, w));
        futures_util::future::join3(
            futures_util::future::join_all(workers),
            chunk_worker(&local, round),
            sweeper(&store, round),
        )
        .await;
    });
}

/// Puts and deletes the manifests of worker `w`'s names; after each put uploads the
/// chunks it answered missing.
async fn manifest_worker(
    store: &Store<UringEngine>,
    local: &LocalStore<UringEngine>,
    pool: &BTreeMap<ChunkId, u64>,
    round: u64,
    w: usize,
) {
    let mut rng = Rng::new(SEED ^ (round << 8) ^ w as u64);
    // Killed long before this ends; the bound only keeps a forgotten child from lingering.
    for k in 0..10_000u64 {
        let names: Vec<&str> = NAMES.iter().copied().skip(w).step_by(WORKERS).collect();
        let text = names[rng.below(names.len() as u64) as usize];
        if rng.below(5) == 0 {
            say(&format!("mdel {text}"));
            store.delete_manifest(&name(text)).await.unwrap();
            say(&format!("dack {text}"));
        } else {
            let version = (round << 32) | ((w as u64) << 24) | k;
            let ids = version_chunks(version)
                .iter()
                .map(|&p| pool_chunk(p).0)
                .collect();
            say(&format!("mput {text} {version}"));
            let answer = store.put_manifest(&name(text), ids).await.unwrap();
            let missing: Vec<u64> = answer.missing.iter().map(|id| pool[id]).collect();
            let list: Vec<String> = missing.iter().map(u64::to_string).collect();
            say(&format!("mack {text} {version} {}", list.join(",")));
            for p in missing {
                // Another worker may have uploaded it meanwhile: either outcome.
                put_bytes(local, &pool_chunk(p).1).await.unwrap();
                say(&format!("put {text} {p}"));
            }
        }
        tokio::time::sleep(Duration::from_millis(rng.below(8))).await;
    }
}

/// Puts chunks no manifest names (`POOL..2 * POOL`) and deletes some: churn for the
/// catalog beside the manifests.
async fn chunk_worker(local: &LocalStore<UringEngine>, round: u64) {
    let mut rng = Rng::new(SEED ^ (round << 8) ^ 0xc4);
    for _ in 0..100_000 {
        let n = POOL + rng.below(POOL);
        let len = 1 + Rng::new(SEED ^ n).below(64 << 10);
        let (id, bytes) = distinct_chunk(SEED ^ 0xf00, n, len as usize);
        if rng.below(3) == 0 {
            local.delete(&id).await.unwrap();
        } else {
            put_bytes(local, &bytes).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(rng.below(10))).await;
    }
}

/// Sweeps every few tens of milliseconds (besides the store's own periodic sweeps).
async fn sweeper(store: &Store<UringEngine>, round: u64) {
    let mut rng = Rng::new(SEED ^ (round << 8) ^ 0x5e);
    for _ in 0..100_000 {
        let report = store.sweep().await.unwrap();
        say(&format!("swept {}", report.swept_chunks));
        tokio::time::sleep(Duration::from_millis(rng.below(60))).await;
    }
}

/// What the parent knows of one manifest name.
#[derive(Clone, Debug, Default)]
struct Known {
    /// The last acknowledged version (`None`: deleted or never put), and the chunks of it
    /// known to be stored: answered present, uploaded since, or seen stored at a restart.
    acked: Option<(u64, BTreeSet<u64>)>,
    /// An update started and not acknowledged: a put of a version, or a delete (`None`).
    in_flight: Option<Option<u64>>,
}

/// How a round ends its child.
#[derive(Clone, Copy, Debug)]
enum Kill {
    /// This long after it says it is opening the store: during start-up.
    WhileOpening(Duration),
    /// This long after it was started.
    After(Duration),
}

/// Runs the child of `round`, kills it as `kill` says and returns its messages.
fn run_child(dir: &Path, round: u64, kill: Kill) -> Vec<String> {
    let env = [
        (ENV_DIR, dir.display().to_string()),
        (ENV_ROUND, round.to_string()),
    ];
    let mut child = ChildRun::spawn("child_gc_writer", &env);
    match kill {
        Kill::WhileOpening(delay) => {
            child.wait_until_opening();
            std::thread::sleep(delay);
        }
        Kill::After(delay) => child.sleep_until(delay),
    }
    child.kill(&format!("round {round}"))
}

/// What one round's messages say: updates per name, chunks swept.
#[derive(Default)]
struct RoundLog {
    swept: u64,
    acked_updates: u64,
}

/// Applies the child's messages to what the parent knows of each name.
fn follow(known: &mut BTreeMap<&'static str, Known>, messages: &[String]) -> RoundLog {
    let mut log = RoundLog::default();
    for message in messages {
        let words: Vec<&str> = message.split(' ').collect();
        let entry = |text: &str| NAMES.iter().copied().find(|n| *n == text).unwrap();
        match words[..] {
            ["mput", text, version] => {
                known.entry(entry(text)).or_default().in_flight =
                    Some(Some(version.parse().unwrap()));
            }
            ["mack", text, version, ref rest @ ..] => {
                let version: u64 = version.parse().unwrap();
                let missing: BTreeSet<u64> = rest
                    .first()
                    .filter(|list| !list.is_empty())
                    .map(|list| list.split(',').map(|p| p.parse().unwrap()).collect())
                    .unwrap_or_default();
                let present = version_chunks(version)
                    .into_iter()
                    .filter(|p| !missing.contains(p))
                    .collect();
                let known = known.entry(entry(text)).or_default();
                assert_eq!(known.in_flight, Some(Some(version)), "{message}");
                *known = Known {
                    acked: Some((version, present)),
                    in_flight: None,
                };
                log.acked_updates += 1;
            }
            ["mdel", text] => known.entry(entry(text)).or_default().in_flight = Some(None),
            ["dack", text] => {
                *known.entry(entry(text)).or_default() = Known::default();
                log.acked_updates += 1;
            }
            ["put", text, p] => {
                let p: u64 = p.parse().unwrap();
                let known = known.entry(entry(text)).or_default();
                let (version, present) = known.acked.as_mut().expect("an upload follows a put");
                assert!(version_chunks(*version).contains(&p), "{message}");
                present.insert(p);
            }
            ["swept", n] => log.swept += n.parse::<u64>().unwrap(),
            _ => {}
        }
    }
    log
}

/// The checks after a restart; returns how many manifests were found at the update in
/// flight rather than at the acknowledged version.
fn check_after_restart(
    store: &Store<UringEngine>,
    known: &mut BTreeMap<&'static str, Known>,
    round: u64,
) -> u64 {
    let pool: Vec<(ChunkId, Vec<u8>)> = (0..POOL).map(pool_chunk).collect();
    let live = manifests(store);
    let mut took_in_flight = 0;
    for text in NAMES {
        let found = live.get(&name(text)).cloned();
        let known = known.entry(text).or_default();
        let as_version = |version: Option<u64>| {
            version.map(|v| {
                version_chunks(v)
                    .iter()
                    .map(|&p| pool[p as usize].0)
                    .collect::<Vec<_>>()
            })
        };
        let acked = known.acked.as_ref().map(|(v, _)| *v);
        if found == as_version(acked) {
            known.in_flight = None;
            continue;
        }
        let in_flight = known.in_flight.take().unwrap_or_else(|| {
            panic!(
                "round {round}: manifest {text} has {:?} ids; the acknowledged version {acked:?} and nothing in flight",
                found.as_ref().map(Vec::len)
            )
        });
        assert!(
            found == as_version(in_flight),
            "round {round}: manifest {text} ({:?} ids) is neither version {acked:?} nor the update in flight ({in_flight:?}): torn",
            found.as_ref().map(Vec::len)
        );
        known.acked = in_flight.map(|v| (v, BTreeSet::new()));
        took_in_flight += 1;
    }
    assert_eq!(
        live.keys().map(|n| n.as_str()).collect::<BTreeSet<_>>(),
        (known.iter())
            .filter(|(_, k)| k.acked.is_some())
            .map(|(n, _)| *n)
            .collect::<BTreeSet<_>>(),
        "round {round}: only the test's names are live"
    );

    let counts = implied_counts(live.values());
    let stats = store.gc_stats();
    assert_eq!(
        stats.manifests,
        live.len() as u64,
        "round {round}: {stats:?}"
    );
    assert_eq!(
        stats.referenced_chunks,
        counts.len() as u64,
        "round {round}: {stats:?}"
    );
    run(async {
        let local = store.local().unwrap();
        for (p, (id, bytes)) in pool.iter().enumerate() {
            let state = store.chunk_refs(id).unwrap();
            let count = counts.get(id).copied().unwrap_or(0);
            assert_eq!(
                state.refs(),
                count,
                "round {round}: chunk {p}: {state:?}, but {count} live manifests name it"
            );
            let stored = local.lookup(id).unwrap().is_some();
            if let RefState::Expired { .. } = state {
                assert!(stored, "round {round}: chunk {p} is expired but not stored");
            }
            if count > 0 && stored {
                let read = local
                    .read(id, 0..bytes.len() as u64)
                    .await
                    .unwrap_or_else(|e| panic!("round {round}: referenced chunk {p}: {e}"));
                assert!(read.to_vec() == *bytes, "round {round}: chunk {p} differs");
            }
        }
        for (text, known) in known.iter_mut() {
            let Some((version, present)) = &mut known.acked else {
                continue;
            };
            for &p in present.iter() {
                let stored = local.lookup(&pool[p as usize].0).unwrap().is_some();
                assert!(
                    stored,
                    "round {round}: chunk {p} of manifest {text} (version {version:#x}), acknowledged stored, is gone"
                );
            }
            // What is stored of a live manifest stays: it is pinned from now on.
            for p in version_chunks(*version) {
                if local.lookup(&pool[p as usize].0).unwrap().is_some() {
                    present.insert(p);
                }
            }
        }
    });
    took_in_flight
}

#[test]
fn killed_manifest_updates_and_sweeps_keep_counts_and_chunks_uring() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(SEED);
    let mut known: BTreeMap<&'static str, Known> = BTreeMap::new();
    let (mut swept, mut updates, mut in_flight_at_kill, mut took_in_flight) = (0, 0, 0, 0);
    for round in 0..ROUNDS {
        // Rounds 3, 11 and 19 (odd: `gc_unreferenced` expires chunks at open) die while
        // the store opens.
        let kill = if round % 8 == 3 {
            Kill::WhileOpening(Duration::from_millis(rng.below(40)))
        } else {
            Kill::After(Duration::from_millis(
                KILL_DELAY_MS_MIN + rng.below(KILL_DELAY_MS_MAX),
            ))
        };
        let messages = run_child(dir.path(), round, kill);
        let log = follow(&mut known, &messages);
        let pending = known.values().filter(|k| k.in_flight.is_some()).count();
        eprintln!(
            "round {round}: killed {kill:?}, {} updates acknowledged, {pending} in flight, {} chunks swept",
            log.acked_updates, log.swept
        );
        swept += log.swept;
        updates += log.acked_updates;
        in_flight_at_kill += pending;
        let (store, _) = Store::open(store_config(dir.path(), round), &UringEngine)
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        took_in_flight += check_after_restart(&store, &mut known, round);
    }
    eprintln!(
        "{updates} updates acknowledged, {in_flight_at_kill} in flight at a kill ({took_in_flight} of them found applied), {swept} chunks swept"
    );
    assert!(swept > 0, "sweeps deleted chunks during the rounds");
    assert!(updates > 100, "{updates} manifest updates acknowledged");
    // Coverage, not correctness: some kills must land during an update. Each of the four
    // workers has one update in flight at a time, acknowledged in milliseconds; measured
    // 7-15 in flight at a kill over the 24 rounds (about half the rounds catch one).
    assert!(
        in_flight_at_kill >= 3,
        "{in_flight_at_kill} updates in flight at a kill"
    );
}

//! Crashes at random moments lose nothing acknowledged and never make a chunk read wrong.
//!
//! *Killed writer* (io_uring, real files): this test binary re-executes itself as a child
//! ([`child_writer`]) that puts chunks, deletes some, and prints a line after each `put`
//! or `delete` returned; the parent SIGKILLs it at a seeded random moment (sometimes while
//! it is still opening the store), then opens the store itself and checks that every
//! acknowledged chunk reads back byte-exact, that every acknowledged delete is gone, and
//! that every chunk the catalog lists reads back as bytes that hash to its id. Rounds
//! continue on the same store.
//!
//! *Power loss* (simulated engine, in-process): puts run until a seeded number have been
//! acknowledged, then every device fails at once and drops each write not yet flushed;
//! after a reopen every acknowledged put must still read back.

mod common;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use chunkd::chunk::ChunkId;
use chunkd::erasure::Scheme;
use chunkd::store::device::sim::SimEngine;
use chunkd::store::device::uring::UringEngine;
use chunkd::store::{
    DEFAULT_MAX_CHUNK_BYTES, Engine, LocalStore, OpenReport, PutOutcome, Store, StoreConfig,
    StoreError, VerifiedChunk,
};
use common::child::{ChildRun, said, say};
use common::{Rng, config, run};
use futures_util::StreamExt;

const SEED: u64 = 0xc4a5_0001;
/// Tells the child test where the store is; without it the child test does nothing.
const ENV_DIR: &str = "CHUNKD_CRASH_TEST_STORE";
/// The first sequence number the child writes.
const ENV_FIRST: &str = "CHUNKD_CRASH_TEST_FIRST_SEQ";
/// Sequence numbers per round: round `r` writes chunks `r * SEQS_PER_ROUND ..`.
const SEQS_PER_ROUND: u64 = 100_000;
/// Most chunks the child puts in one round; then it idles until it is killed.
const PUTS_PER_ROUND_MAX: u64 = 400;
const CHILD_IN_FLIGHT: usize = 8;
const ROUNDS: u64 = 24;
const KILL_DELAY_MS_MAX: u64 = 300;
const DEVICE_MIB: u64 = 512;
/// Set (to anything) for a child that writes into a store far smaller than what it puts,
/// so it evicts all the time, and pins some of its chunks.
const ENV_EVICT: &str = "CHUNKD_CRASH_TEST_EVICT";
/// Devices of the eviction rounds: the store holds a few hundred test chunks, fewer than
/// two rounds put.
const EVICT_DEVICE_MIB: u64 = 8;

fn store_config(dir: &Path, evict: bool) -> StoreConfig {
    config(
        dir,
        if evict { EVICT_DEVICE_MIB } else { DEVICE_MIB },
        Scheme::DEFAULT,
    )
}

/// Whether the child pins chunk `seq` (in the eviction rounds): one in eight. A pinned
/// chunk is pinned before its put is acknowledged and never deleted.
fn pinned(seq: u64) -> bool {
    seq.is_multiple_of(8)
}

/// Chunk `seq` of these tests: as long as `common::chunk_len` draws it but at least 8
/// bytes, the first 8 being `seq`, so no two are alike and a delete of one never takes
/// another acknowledged chunk with it.
fn unique_chunk(seq: u64) -> (ChunkId, Vec<u8>) {
    let len = common::chunk_len(SEED, seq).max(8);
    let mut bytes = common::chunk_bytes(SEED, seq, len);
    bytes[..8].copy_from_slice(&seq.to_le_bytes());
    (ChunkId::of(&bytes), bytes)
}

/// Whether the child deletes chunk `seq` once its put is acknowledged: about one in four.
fn deleted_after_put(seq: u64) -> bool {
    common::chunk_bytes(SEED ^ 0xde1e7e, seq, 1)[0] < 64
}

/// The child: puts chunks `first..`, printing `put {seq}` after each put returns and
/// `del {seq}` after each delete returns, until the parent kills it.
#[test]
#[ignore = "the child of killed_writers_lose_nothing_acknowledged_uring"]
fn child_writer() {
    let Ok(dir) = std::env::var(ENV_DIR) else {
        return;
    };
    let first: u64 = std::env::var(ENV_FIRST).unwrap().parse().unwrap();
    let evict = std::env::var(ENV_EVICT).is_ok();
    say("opening");
    let (store, _) = Store::open(store_config(Path::new(&dir), evict), &UringEngine).unwrap();
    say("open");
    run(async {
        let local = store.local().unwrap();
        futures_util::stream::iter(first..first + PUTS_PER_ROUND_MAX)
            .for_each_concurrent(CHILD_IN_FLIGHT, |seq| {
                let (local, store) = (&local, &store);
                async move {
                    let (id, bytes) = unique_chunk(seq);
                    let verified =
                        VerifiedChunk::from_slice(&bytes, Scheme::DEFAULT, DEFAULT_MAX_CHUNK_BYTES)
                            .unwrap();
                    local.put(verified).await.unwrap();
                    if evict && pinned(seq) {
                        assert!(store.set_pinned(&id, true), "{seq} is stored");
                    }
                    say(&format!("put {seq}"));
                    if evict {
                        let flash = store.flash_stats();
                        say(&format!(
                            "evicted {}",
                            flash.evicted_put + flash.evicted_watermark
                        ));
                    }
                    if deleted_after_put(seq) && !(evict && pinned(seq)) {
                        // With eviction the chunk may be gone already.
                        assert!(local.delete(&id).await.unwrap() || evict);
                        say(&format!("del {seq}"));
                    }
                }
            })
            .await;
        say("idle");
        // Killed long before this ends; the limit only keeps a forgotten child from lingering.
        tokio::time::sleep(Duration::from_secs(60)).await;
    });
}

/// What the parent knows: chunks whose put or delete the child acknowledged.
#[derive(Default)]
struct Acknowledged {
    puts: BTreeSet<u64>,
    deletes: BTreeSet<u64>,
    /// Acknowledged puts whose delete may have been under way at the kill: each may be
    /// stored or not (and if it is, the walk of the catalog checks its bytes).
    maybe_deleted: BTreeSet<u64>,
    /// Chunks evicted before the kill, as the child last said (eviction rounds).
    evicted: u64,
}

impl Acknowledged {
    fn extend(&mut self, round: Acknowledged) {
        self.puts.extend(round.puts);
        self.deletes.extend(round.deletes);
        self.maybe_deleted.extend(round.maybe_deleted);
    }
}

/// How a round ends the child.
#[derive(Debug)]
enum Kill {
    /// As soon as it says it is opening the store.
    WhileOpening,
    /// This long after it was started.
    After(Duration),
    /// Once it has evicted and acknowledged this many more puts (or gone idle).
    WhileEvicting(u64),
}

/// Runs one child from `first` and kills it as `kill` says; returns its acknowledgements
/// and whether it had opened the store.
fn run_child(dir: &Path, first: u64, kill: &Kill, evict: bool) -> (Acknowledged, bool) {
    let mut env = vec![
        (ENV_DIR, dir.display().to_string()),
        (ENV_FIRST, first.to_string()),
    ];
    if evict {
        env.push((ENV_EVICT, "1".to_owned()));
    }
    let mut child = ChildRun::spawn("child_writer", &env);
    match kill {
        Kill::WhileOpening => child.wait_until_opening(),
        Kill::After(delay) => child.sleep_until(*delay),
        Kill::WhileEvicting(puts) => {
            let mut after = None::<u64>;
            while after.is_none_or(|n| n < *puts) {
                let line = child.next_line("the child goes on putting");
                let message = said(&line).unwrap_or_default();
                if message == "idle" {
                    break;
                }
                if message.starts_with("evicted ") && message != "evicted 0" {
                    after.get_or_insert(0);
                }
                if let (Some(n), true) = (&mut after, message.starts_with("put ")) {
                    *n += 1;
                }
            }
        }
    }
    let said_messages = child.kill("a writer round");
    let mut acked = Acknowledged::default();
    for message in &said_messages {
        if let Some(seq) = message.strip_prefix("put ") {
            acked.puts.insert(seq.parse().unwrap());
        } else if let Some(seq) = message.strip_prefix("del ") {
            acked.deletes.insert(seq.parse().unwrap());
        } else if let Some(count) = message.strip_prefix("evicted ") {
            acked.evicted = acked.evicted.max(count.parse().unwrap());
        }
    }
    acked.maybe_deleted = (acked.puts.iter().copied())
        .filter(|&seq| deleted_after_put(seq) && !acked.deletes.contains(&seq))
        .collect();
    let opened = said_messages.iter().any(|message| message == "open");
    (acked, opened)
}

/// Reads every chunk the catalog lists; each must come back as bytes that hash to its id.
/// Returns the listed ids with the bytes' lengths.
async fn check_every_listed_chunk<E: Engine>(
    store: &Store<E>,
    local: &LocalStore<E>,
) -> BTreeMap<ChunkId, u64> {
    let listed: BTreeMap<ChunkId, u64> =
        store.list(None, usize::MAX).unwrap().into_iter().collect();
    for (id, &len) in &listed {
        match local.read(id, 0..len).await {
            Ok(read) => {
                let bytes = read.to_vec();
                assert_eq!(bytes.len() as u64, len, "chunk {id}");
                assert!(id.verifies(&bytes), "chunk {id} read back as other bytes");
            }
            // Every listed chunk was flushed before it was listed: even a clean error
            // would mean an acknowledged write was lost.
            Err(e) => panic!("listed chunk {id} cannot be read: {e}"),
        }
    }
    listed
}

/// Checks the model against the store: every acknowledged put that no delete may have
/// followed is stored with its exact bytes, and every acknowledged delete is gone.
///
/// Chunks of this round (`fresh`) are read again and compared byte for byte. Older ones
/// need only be listed: the walk of the catalog just read them back as bytes that hash to
/// their id, and the id is the hash of the bytes that were put. `ids` keeps the id of
/// every acknowledged put from the round it was fresh in.
async fn check_acknowledged<E: Engine>(
    local: &LocalStore<E>,
    listed: &BTreeMap<ChunkId, u64>,
    acked: &Acknowledged,
    fresh: std::ops::Range<u64>,
    ids: &mut BTreeMap<u64, ChunkId>,
) {
    let kept = |seq: &u64| !acked.deletes.contains(seq) && !acked.maybe_deleted.contains(seq);
    for &seq in acked.puts.range(fresh) {
        let (id, bytes) = unique_chunk(seq);
        ids.insert(seq, id);
        if kept(&seq) {
            assert!(
                listed.contains_key(&id),
                "acknowledged chunk {seq} is listed"
            );
            let read = local
                .read(&id, 0..bytes.len() as u64)
                .await
                .unwrap_or_else(|e| panic!("acknowledged chunk {seq}: {e}"));
            assert!(read.to_vec() == bytes, "acknowledged chunk {seq} differs");
        }
    }
    for seq in acked.puts.iter().filter(|seq| kept(seq)) {
        assert!(
            listed.contains_key(&ids[seq]),
            "acknowledged chunk {seq} is listed"
        );
    }
    for seq in &acked.deletes {
        let id = ids[seq];
        assert!(!listed.contains_key(&id), "deleted chunk {seq} is listed");
        assert_eq!(local.lookup(&id).unwrap(), None, "deleted chunk {seq}");
        assert!(matches!(
            local.read(&id, 0..1).await,
            Err(StoreError::NotFound)
        ));
    }
}

/// The checks after every restart: the store opened with no refill pending, every chunk
/// the catalog lists reads back as bytes that hash to its id, and the model's acknowledged
/// puts and deletes hold (this round's puts byte for byte).
fn check_after_restart<E: Engine>(
    store: &Store<E>,
    report: &OpenReport,
    round: u64,
    acked: &Acknowledged,
    ids: &mut BTreeMap<u64, ChunkId>,
) {
    assert!(report.refilling.is_empty(), "round {round}: {report:?}");
    let fresh = round * SEQS_PER_ROUND..(round + 1) * SEQS_PER_ROUND;
    run(async {
        let local = store.local().unwrap();
        let listed = check_every_listed_chunk(store, &local).await;
        assert_eq!(report.chunks, listed.len(), "round {round}");
        check_acknowledged(&local, &listed, acked, fresh, ids).await;
    });
}

#[test]
fn killed_writers_lose_nothing_acknowledged_uring() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(SEED);
    let mut acked = Acknowledged::default();
    let (mut killed_while_writing, mut killed_starting) = (0, 0);
    let mut ids = BTreeMap::new();
    for round in 0..ROUNDS {
        let kill = match round % 8 {
            0 => Kill::WhileOpening,
            _ => Kill::After(Duration::from_millis(rng.below(KILL_DELAY_MS_MAX + 1))),
        };
        let (this_round, opened) = run_child(dir.path(), round * SEQS_PER_ROUND, &kill, false);
        eprintln!(
            "round {round}: killed {kill:?}, {} puts and {} deletes acknowledged{}",
            this_round.puts.len(),
            this_round.deletes.len(),
            if opened {
                ""
            } else {
                ", before the store was open"
            }
        );
        killed_starting += usize::from(!opened);
        killed_while_writing += usize::from(!this_round.puts.is_empty());
        acked.extend(this_round);

        let opened = Store::open(store_config(dir.path(), false), &UringEngine);
        let (store, report) = opened.unwrap_or_else(|e| panic!("round {round} ({kill:?}): {e}"));
        check_after_restart(&store, &report, round, &acked, &mut ids);
    }
    assert!(
        killed_while_writing >= ROUNDS as usize / 2 && !acked.deletes.is_empty(),
        "most rounds were killed while writing: {killed_while_writing} of {ROUNDS}"
    );
    assert!(
        killed_starting >= 3,
        "{killed_starting} rounds killed during start-up"
    );
}

/// Kills during heavy eviction: the child writes into a store a fraction of the size of
/// what it puts, so it evicts all along, and the kill lands in the middle of it. After
/// each restart every chunk the catalog lists reads back as bytes that hash to its id,
/// every chunk the child pinned this round (never evicted) is there byte for byte, and
/// every acknowledged delete is gone. (Pins live in memory: an earlier round's pins are
/// gone after a restart, and so may its chunks be.)
#[test]
fn killed_writers_during_heavy_eviction_lose_nothing_pinned_uring() {
    const EVICT_ROUNDS: u64 = 10;
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(SEED ^ 0xe1c7);
    let mut deletes = BTreeSet::new();
    let mut killed_evicting = 0;
    for round in 0..EVICT_ROUNDS {
        let kill = Kill::WhileEvicting(rng.below(100));
        let (acked, _) = run_child(dir.path(), round * SEQS_PER_ROUND, &kill, true);
        eprintln!(
            "eviction round {round}: killed {kill:?}, {} puts acknowledged, {} evicted",
            acked.puts.len(),
            acked.evicted
        );
        killed_evicting +=
            usize::from(acked.evicted > 0 && (acked.puts.len() as u64) < PUTS_PER_ROUND_MAX);
        deletes.extend(acked.deletes.iter().copied());
        let (store, report) = Store::open(store_config(dir.path(), true), &UringEngine)
            .unwrap_or_else(|e| panic!("eviction round {round}: {e}"));
        assert!(report.refilling.is_empty(), "round {round}: {report:?}");
        run(async {
            let local = store.local().unwrap();
            let listed = check_every_listed_chunk(&store, &local).await;
            assert_eq!(report.chunks, listed.len(), "round {round}");
            for &seq in acked.puts.iter().filter(|&&seq| pinned(seq)) {
                let (id, bytes) = unique_chunk(seq);
                let read = local
                    .read(&id, 0..bytes.len() as u64)
                    .await
                    .unwrap_or_else(|e| panic!("round {round}: pinned chunk {seq}: {e}"));
                assert!(read.to_vec() == bytes, "pinned chunk {seq} differs");
            }
            for &seq in &deletes {
                let id = unique_chunk(seq).0;
                assert!(!listed.contains_key(&id), "deleted chunk {seq} is listed");
            }
        });
    }
    assert!(
        killed_evicting >= EVICT_ROUNDS as usize / 2,
        "most rounds were killed while evicting: {killed_evicting} of {EVICT_ROUNDS}"
    );
}

/// The bug: a kill while the very first start-up was creating the catalog left a
/// `catalog.redb` without redb's magic number (redb writes it last), which every later
/// start refused as "not a redb database". Now the catalog is built under a temporary
/// name and renamed into place; a temporary file left by such a kill is started over.
#[test]
fn a_catalog_creation_cut_short_is_started_over() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 64, Scheme::DEFAULT);
    // What redb leaves when killed before its magic number is written: zeroed pages.
    let leftover = dir.path().join("catalog.redb.new");
    std::fs::write(&leftover, vec![0u8; 73_728]).unwrap();
    let engine = SimEngine::new(SEED);
    let (store, report) = Store::open(cfg.clone(), &engine).unwrap();
    assert!(report.created);
    assert!(!leftover.exists());
    drop(store);
    let (_, report) = Store::open(cfg, &engine).unwrap();
    assert!(!report.created && report.refilling.is_empty(), "{report:?}");
}

/// Every device fails at once and loses the writes it had not flushed, as on power loss:
/// first they all fail (so the commit thread cannot flush, and so commit, anything more),
/// then the unflushed writes are dropped.
fn power_loss(engine: &SimEngine, cfg: &StoreConfig) {
    for device in &cfg.devices {
        engine.device(&device.path).set_lost(true);
    }
    engine.crash();
}

#[test]
fn power_loss_keeps_every_acknowledged_put_sim() {
    const ROUNDS: u64 = 6;
    const PUTS_PER_ROUND: u64 = 300;
    let dir = tempfile::tempdir().unwrap();
    let engine = SimEngine::new(SEED);
    let cfg = config(dir.path(), 256, Scheme::DEFAULT);
    let mut rng = Rng::new(SEED ^ 0x9);
    let mut acked = Acknowledged::default();
    let mut lost_in_flight = 0;
    let mut ids = BTreeMap::new();
    for round in 0..ROUNDS {
        let (store, _) = Store::open(cfg.clone(), &engine).unwrap();
        let crash_after = rng.below(PUTS_PER_ROUND / 2) + 1;
        let acked_now = RefCell::new(Vec::new());
        let crashed = Cell::new(false);
        let failed = run(async {
            let local = store.local().unwrap();
            let failed = Cell::new(0);
            let first = round * SEQS_PER_ROUND;
            futures_util::stream::iter(first..first + PUTS_PER_ROUND)
                .for_each_concurrent(32, |seq| {
                    let local = &local;
                    let (acked_now, crashed, failed) = (&acked_now, &crashed, &failed);
                    let (engine, cfg) = (&engine, &cfg);
                    async move {
                        if crashed.get() {
                            return;
                        }
                        let bytes = unique_chunk(seq).1;
                        let verified = VerifiedChunk::from_slice(
                            &bytes,
                            Scheme::DEFAULT,
                            DEFAULT_MAX_CHUNK_BYTES,
                        )
                        .unwrap();
                        match local.put(verified).await {
                            Ok(outcome) => {
                                assert_eq!(outcome, PutOutcome::Created);
                                acked_now.borrow_mut().push(seq);
                                if acked_now.borrow().len() as u64 == crash_after {
                                    power_loss(engine, cfg);
                                    crashed.set(true);
                                }
                            }
                            // After the power loss puts fail on the dead devices, or
                            // find too few of them left online.
                            Err(StoreError::Io(_) | StoreError::Unavailable { .. })
                                if crashed.get() =>
                            {
                                failed.set(failed.get() + 1)
                            }
                            Err(e) => panic!("chunk {seq}: {e}"),
                        }
                    }
                })
                .await;
            failed.get()
        });
        assert!(crashed.get(), "round {round}: the power failed");
        lost_in_flight += failed;
        drop(store);
        for device in &cfg.devices {
            engine.device(&device.path).set_lost(false);
        }
        acked.puts.extend(acked_now.into_inner());

        let (store, report) = Store::open(cfg.clone(), &engine).unwrap();
        check_after_restart(&store, &report, round, &acked, &mut ids);
    }
    assert!(
        lost_in_flight > 0,
        "some puts were in flight at the power loss"
    );
}

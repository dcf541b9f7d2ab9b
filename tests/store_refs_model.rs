//! The model test of manifests, reference counts and GC (issue 13): seeded random
//! interleavings of manifest puts (new and replacing), manifest deletes, chunk puts, whole
//! reads and deletes, sweeps, GC-clock advances and restarts, on a store small enough that
//! PUTs evict, each step checked against an in-memory model of what the store must hold.
//! Run in five modes ([`Mode`]): eviction only in PUTs (exact), the background evictor,
//! `gc_unreferenced`, no pinning, and the evictor with `gc_unreferenced`.
//!
//! The model knows the manifests, and for each chunk of a pool of [`POOL`] whether it is
//! stored and whether (and since when) it is expired. What it cannot predict is which
//! unreferenced chunks eviction takes: after every step it asks the store which pool
//! chunks are still there and lets an unreferenced one go, but only in a step that may
//! evict — a PUT, when the background evictor is off. A chunk a live manifest names and
//! that was stored going missing, at any step, is the failure this test exists for.
//!
//! Checked after every step: which chunks are stored; `chunk_refs` of every pool chunk
//! (the count, or the expiry time, or unreferenced); `manifest()` of every name and
//! `manifest_names()`; and `gc_stats()`. Checked at the step: each manifest put's answer
//! (`created`, `chunks`, `distinct`, `missing` in order), each chunk put's outcome, each
//! read's bytes, each delete's answer, each sweep's report, that a 507 comes only when
//! everything left in the store is referenced (and says how much is pinned), and that a
//! PUT evicts expired chunks before any other.
//!
//! Where the store is asynchronous or lazy by design, the model follows it and says so:
//! a read's cancellation of an expiry is recorded by the commit thread in the background
//! ([`Model::cancel`]); an expired chunk that is evicted or deleted loses its expiry with
//! it ([`Model::removed`]).
//!
//! A failure names the seed and step and prints the steps that led to it, with the
//! command that replays that seed printing every step and the model's state.

mod common;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::path::Path;
use std::time::Duration;

use chunkd::chunk::ChunkId;
use chunkd::erasure::Scheme;
use chunkd::store::device::sim::SimEngine;
use chunkd::store::{
    GcClock, GcStats, LocalStore, PutOutcome, RefState, Store, StoreConfig, StoreError,
};
use common::refs::{distinct_chunk, first_occurrences, name, put_bytes, reads_back};
use common::{Rng, config, run};

/// Chunks the steps choose from.
const POOL: usize = 40;
/// Pool chunks `0..PUTTABLE` may be put; the rest are only ever named by manifests, so
/// they are always missing.
const PUTTABLE: usize = 36;
/// Longest pool chunk: with [`DEVICE_MIB`] the store holds about half the pool.
const CHUNK_LEN_MAX: u64 = 1 << 20;
const DEVICE_MIB: u64 = 2;
const NAMES: [&str; 4] = ["alpha", "beta.v2", "gamma_3", "delta-4"];
/// Longest manifest a step puts (repeats included).
const MANIFEST_LEN_MAX: u64 = 24;
const GRACE: Duration = Duration::from_secs(10);
const GRACE_MS: u64 = GRACE.as_millis() as u64;
/// The manual GC clock starts at a realistic time (2023-11-14), not at zero.
const CLOCK_START_MS: u64 = 1_700_000_000_000;
/// Replays one seed, printing every step.
const ENV_SEED: &str = "CHUNKD_MODEL_SEED";
/// Steps of the failure report: the last ones before the failing step.
const TRACE_SHOWN: usize = 40;

/// Who may evict, and so when the model must accept an unreferenced chunk's absence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Eviction {
    /// Only a PUT that finds no room (watermarks at zero: the evictor never starts). Every
    /// other step is exact: nothing changes in the store but what the step does.
    InPutsOnly,
    /// The background evictor too, at any moment (default watermarks): checks that read
    /// the store twice retry when an eviction fell between the reads.
    Anytime,
}

/// The store's settings a run checks, and who evicts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Mode {
    eviction: Eviction,
    /// Chunks no manifest names expire when stored and at open (`gc_unreferenced`).
    gc_unreferenced: bool,
    /// A referenced chunk is never evicted (`pin_referenced`); off, it may be, like any.
    pin_referenced: bool,
}

impl Mode {
    const fn new(eviction: Eviction) -> Mode {
        Mode {
            eviction,
            gc_unreferenced: false,
            pin_referenced: true,
        }
    }

    fn anytime(&self) -> bool {
        self.eviction == Eviction::Anytime
    }
}

/// One step.
#[derive(Clone, Debug)]
enum Op {
    /// Manifest `NAMES[name]` listing these pool chunks, in order.
    PutManifest {
        name: usize,
        chunks: Vec<usize>,
    },
    DeleteManifest {
        name: usize,
    },
    PutChunk(usize),
    ReadChunk(usize),
    /// An operator's removal of a chunk (`LocalStore::delete`).
    DeleteChunk(usize),
    Sweep,
    Advance(Duration),
    Restart,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::PutManifest { name, chunks } => {
                write!(f, "put manifest {} = {chunks:?}", NAMES[*name])
            }
            Op::DeleteManifest { name } => write!(f, "delete manifest {}", NAMES[*name]),
            Op::PutChunk(i) => write!(f, "put chunk {i}"),
            Op::ReadChunk(i) => write!(f, "read chunk {i}"),
            Op::DeleteChunk(i) => write!(f, "delete chunk {i}"),
            Op::Sweep => write!(f, "sweep"),
            Op::Advance(by) => write!(f, "advance the clock {}s", by.as_secs()),
            Op::Restart => write!(f, "restart"),
        }
    }
}

/// Counters `gc_stats` keeps since the store was opened.
#[derive(Clone, Copy, Debug, Default)]
struct Session {
    expired_reads: u64,
    sweeps: u64,
    swept_chunks: u64,
    swept_bytes: u64,
}

/// An expiry a read (or PUT) cancelled that the commit thread may not have recorded yet.
#[derive(Clone, Copy, Debug)]
struct PendingCancel {
    chunk: usize,
    /// When the chunk had expired.
    since_ms: u64,
    /// Commit round trips since (see [`Model::commit_round_trip`]).
    trips: u8,
}

/// What the store must hold.
struct Model {
    mode: Mode,
    pool: Vec<(ChunkId, Vec<u8>)>,
    /// Live manifests by name index, as pool indexes in order.
    manifests: BTreeMap<usize, Vec<usize>>,
    stored: Vec<bool>,
    /// When each chunk's count fell to zero, while it waits for a sweep.
    expired: Vec<Option<u64>>,
    now_ms: u64,
    session: Session,
    /// Expiries reads (and PUTs) cancelled since the last sweep.
    cancelled_since_sweep: u64,
    /// Chunks whose cancelled expiry the commit thread may not have recorded yet, with the
    /// commit round trips since (see [`Model::commit_round_trip`]).
    pending_cancels: Vec<PendingCancel>,
}

/// What one seed's run went through, summed over seeds to show the test reached every
/// path it means to check.
#[derive(Clone, Copy, Debug, Default)]
struct Coverage {
    steps: u64,
    restarts: u64,
    /// Chunks the model saw evicted, and referenced ones among them (pinning off).
    evicted: u64,
    evicted_referenced: u64,
    no_space: u64,
    /// 507s while an unreferenced chunk was held only because the commit thread had not
    /// yet recorded the cancellation of its expiry.
    no_space_while_cancel_pending: u64,
    swept: u64,
    /// Reads of expired chunks (each cancelled a deletion).
    expired_reads: u64,
    /// Manifest puts that replaced one, and that named missing chunks.
    replaced: u64,
    missing: u64,
    /// Stored, referenced chunks seen at a check: pinned ones eviction had to skip.
    pinned: u64,
}

impl Coverage {
    fn add(&mut self, other: Coverage) {
        self.steps += other.steps;
        self.restarts += other.restarts;
        self.evicted += other.evicted;
        self.evicted_referenced += other.evicted_referenced;
        self.no_space += other.no_space;
        self.no_space_while_cancel_pending += other.no_space_while_cancel_pending;
        self.swept += other.swept;
        self.expired_reads += other.expired_reads;
        self.replaced += other.replaced;
        self.missing += other.missing;
        self.pinned += other.pinned;
    }
}

impl Model {
    fn new(seed: u64, mode: Mode) -> Model {
        let mut rng = Rng::new(seed ^ 0x9001);
        let pool = (0..POOL as u64)
            .map(|n| {
                // Mostly large chunks (eviction pressure), some small and odd-sized ones.
                let len = match rng.below(4) {
                    0 => 1 + rng.below(64 << 10),
                    _ => (64 << 10) + rng.below(CHUNK_LEN_MAX - (64 << 10)),
                };
                distinct_chunk(seed, n, len as usize)
            })
            .collect();
        Model {
            mode,
            pool,
            manifests: BTreeMap::new(),
            stored: vec![false; POOL],
            expired: vec![None; POOL],
            now_ms: CLOCK_START_MS,
            session: Session::default(),
            cancelled_since_sweep: 0,
            pending_cancels: Vec::new(),
        }
    }

    /// The store was opened again: counters start afresh, every cancellation is recorded
    /// (the commit thread handled every request before it ended), and with
    /// `gc_unreferenced` every stored chunk no manifest names and not expired expires now.
    fn reopened(&mut self) {
        self.session = Session::default();
        self.pending_cancels.clear();
        if self.mode.gc_unreferenced {
            for (i, refs) in self.refs().into_iter().enumerate() {
                if self.stored[i] && refs == 0 && self.expired[i].is_none() {
                    self.expired[i] = Some(self.now_ms);
                }
            }
        }
    }

    /// Whether eviction may take chunk `i` (with `refs`): unreferenced, or pinning off.
    fn evictable(&self, i: usize, refs: &[u32]) -> bool {
        refs[i] == 0 || !self.mode.pin_referenced
    }

    /// The model's state in one line, for replays.
    fn describe(&self) -> String {
        let stored: Vec<usize> = (0..POOL).filter(|&i| self.stored[i]).collect();
        let expired: Vec<String> = (0..POOL)
            .filter_map(|i| {
                let since = self.expired[i]?;
                Some(format!("{i}@-{}s", (self.now_ms - since) / 1000))
            })
            .collect();
        format!(
            "stored {stored:?}, expired {expired:?}, refs {:?}, cancels pending {:?}",
            self.refs(),
            self.pending_cancels
        )
    }

    /// A read or PUT cancelled chunk `i`'s expiry: counted, and pending until the commit
    /// thread has surely recorded it.
    fn cancel(&mut self, i: usize) {
        let since_ms = self.expired[i].take().expect("an expired chunk");
        self.session.expired_reads += 1;
        self.cancelled_since_sweep += 1;
        self.pending_cancels.retain(|p| p.chunk != i);
        self.pending_cancels.push(PendingCancel {
            chunk: i,
            since_ms,
            trips: 0,
        });
    }

    /// Chunk `i`'s cancellation, if it is pending.
    fn pending(&self, i: usize) -> Option<&PendingCancel> {
        self.pending_cancels.iter().find(|p| p.chunk == i)
    }

    /// A manifest or sweep request made its round trip through the commit thread. A
    /// cancelled expiry is recorded there in the background, at the end of the batch its
    /// request lands in — possibly after the answer to a request of that batch: two round
    /// trips later it has surely been recorded, and the chunk is back in the eviction
    /// policy.
    fn commit_round_trip(&mut self) {
        for pending in &mut self.pending_cancels {
            pending.trips += 1;
        }
        self.pending_cancels.retain(|p| p.trips < 2);
    }

    fn len(&self, i: usize) -> u64 {
        self.pool[i].1.len() as u64
    }

    /// The reference count of every pool chunk: one per live manifest naming it.
    fn refs(&self) -> Vec<u32> {
        let mut refs = vec![0; POOL];
        for chunks in self.manifests.values() {
            for i in first_occurrences(chunks) {
                refs[i] += 1;
            }
        }
        refs
    }

    /// Puts (`Some`) or deletes (`None`) manifest `name`: a count rising from zero cancels
    /// an expiry; one falling to zero expires the chunk now if it is stored.
    fn set_manifest(&mut self, name: usize, chunks: Option<Vec<usize>>) {
        let before = self.refs();
        match chunks {
            Some(chunks) => self.manifests.insert(name, chunks),
            None => self.manifests.remove(&name),
        };
        let after = self.refs();
        for i in 0..POOL {
            if before[i] == 0 && after[i] > 0 {
                self.expired[i] = None;
            } else if before[i] > 0 && after[i] == 0 {
                self.expired[i] = self.stored[i].then_some(self.now_ms);
            }
        }
    }

    /// The chunk is gone (evicted or deleted). An expiry it had ends with it, in the
    /// removal's own transaction (a cancellation still pending has nothing left to do).
    fn removed(&mut self, i: usize) {
        self.stored[i] = false;
        self.expired[i] = None;
        self.pending_cancels.retain(|p| p.chunk != i);
    }

    fn ref_state(&self, i: usize, refs: &[u32]) -> RefState {
        match (refs[i], self.expired[i]) {
            (0, Some(since_ms)) => RefState::Expired { since_ms },
            (0, None) => RefState::Unreferenced,
            (refs, _) => RefState::Referenced { refs },
        }
    }

    /// Expiries a sweep now must end (stored chunks among them it must delete).
    fn due(&self) -> Vec<usize> {
        (0..POOL)
            .filter(|&i| self.expired[i].is_some_and(|t| self.now_ms - t >= GRACE_MS))
            .collect()
    }

    /// What `gc_stats` must say.
    fn gc_stats(&self, store: &Store<SimEngine>) -> GcStats {
        let refs = self.refs();
        let referenced_stored: Vec<usize> = (0..POOL)
            .filter(|&i| refs[i] > 0 && self.stored[i])
            .collect();
        let expired: Vec<usize> = (0..POOL)
            .filter(|&i| self.stored[i] && self.expired[i].is_some())
            .collect();
        let bytes = |chunks: &[usize]| chunks.iter().map(|&i| self.len(i)).sum::<u64>();
        let pinned = store.config().pin_referenced;
        GcStats {
            manifests: self.manifests.len() as u64,
            referenced_chunks: refs.iter().filter(|&&r| r > 0).count() as u64,
            referenced_stored_chunks: referenced_stored.len() as u64,
            referenced_stored_bytes: bytes(&referenced_stored),
            pinned_chunks: if pinned {
                referenced_stored.len() as u64
            } else {
                0
            },
            pinned_bytes: if pinned { bytes(&referenced_stored) } else { 0 },
            expired_chunks: expired.len() as u64,
            expired_bytes: bytes(&expired),
            expired_reads: self.session.expired_reads,
            sweeps: self.session.sweeps,
            swept_chunks: self.session.swept_chunks,
            swept_bytes: self.session.swept_bytes,
            // Timings: nothing to predict.
            sweep_micros: 0,
            last_sweep_micros: 0,
        }
    }
}

/// Draws the next step.
fn next_op(rng: &mut Rng, model: &Model) -> Op {
    match rng.below(100) {
        0..20 => {
            let name = rng.below(NAMES.len() as u64) as usize;
            let chunks = match model.manifests.get(&name) {
                // Half the replacements keep most of the old list, as a re-pushed image does.
                Some(old) if rng.below(2) == 0 => {
                    let mut chunks: Vec<usize> =
                        old.iter().copied().filter(|_| rng.below(4) != 0).collect();
                    for _ in 0..rng.below(5) {
                        let at = rng.below(chunks.len() as u64 + 1) as usize;
                        chunks.insert(at, rng.below(POOL as u64) as usize);
                    }
                    chunks
                }
                _ => {
                    let mut chunks: Vec<usize> = Vec::new();
                    for _ in 0..rng.below(MANIFEST_LEN_MAX + 1) {
                        let repeat = !chunks.is_empty() && rng.below(5) == 0;
                        chunks.push(if repeat {
                            chunks[rng.below(chunks.len() as u64) as usize]
                        } else {
                            rng.below(POOL as u64) as usize
                        });
                    }
                    chunks
                }
            };
            Op::PutManifest { name, chunks }
        }
        20..27 => Op::DeleteManifest {
            name: rng.below(NAMES.len() as u64) as usize,
        },
        27..52 => Op::PutChunk(rng.below(PUTTABLE as u64) as usize),
        52..66 => {
            // Half the reads go to an expired chunk when there is one: the reads that
            // cancel deletions.
            let expired: Vec<usize> = (0..POOL)
                .filter(|&i| model.stored[i] && model.expired[i].is_some())
                .collect();
            Op::ReadChunk(if expired.is_empty() || rng.below(2) == 0 {
                rng.below(POOL as u64) as usize
            } else {
                expired[rng.below(expired.len() as u64) as usize]
            })
        }
        66..70 => Op::DeleteChunk(rng.below(POOL as u64) as usize),
        70..79 => Op::Sweep,
        79..97 => Op::Advance(Duration::from_secs(1 + rng.below(15))),
        _ => Op::Restart,
    }
}

fn store_config(dir: &Path, mode: Mode, clock: &GcClock) -> StoreConfig {
    let mut cfg = config(dir, DEVICE_MIB, Scheme::DEFAULT);
    cfg.gc_grace = GRACE;
    // Sweeps happen only as steps, so the model knows when.
    cfg.gc_interval = Duration::ZERO;
    cfg.gc_unreferenced = mode.gc_unreferenced;
    cfg.pin_referenced = mode.pin_referenced;
    cfg.gc_clock = clock.clone();
    if mode.eviction == Eviction::InPutsOnly {
        cfg.evict_low_watermark_percent = 0;
        cfg.evict_high_watermark_percent = 0;
    }
    cfg
}

/// One step's context for failure messages.
struct Step<'a> {
    seed: u64,
    number: u64,
    op: &'a Op,
    mode: Mode,
}

impl fmt::Display for Step<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "seed {:#x} ({:?}), step {}: {}",
            self.seed, self.mode, self.number, self.op
        )
    }
}

/// Runs `op` and checks its answer against the model, which it then updates.
async fn apply(
    store: &Store<SimEngine>,
    local: &LocalStore<SimEngine>,
    model: &mut Model,
    clock: &GcClock,
    step: &Step<'_>,
    coverage: &mut Coverage,
) {
    let anytime = step.mode.anytime();
    let refs = model.refs();
    match step.op {
        Op::PutManifest { name: n, chunks } => {
            let ids: Vec<ChunkId> = chunks.iter().map(|&i| model.pool[i].0).collect();
            let answer = store
                .put_manifest(&name(NAMES[*n]), ids)
                .await
                .unwrap_or_else(|e| panic!("{step}: {e}"));
            let distinct = first_occurrences(chunks);
            assert_eq!(
                answer.created,
                !model.manifests.contains_key(n),
                "{step}: created"
            );
            assert_eq!(answer.chunks, chunks.len(), "{step}: chunks");
            assert_eq!(answer.distinct, distinct.len(), "{step}: distinct");
            let missing: Vec<usize> = answer
                .missing
                .iter()
                .map(|id| {
                    distinct
                        .iter()
                        .copied()
                        .find(|&i| model.pool[i].0 == *id)
                        .unwrap_or_else(|| panic!("{step}: missing {id} is not in the manifest"))
                })
                .collect();
            let expected: Vec<usize> = distinct
                .iter()
                .copied()
                .filter(|&i| !model.stored[i])
                .collect();
            if anytime {
                // The evictor may have taken unreferenced chunks since the last check; the
                // rest of the answer must be exact, in the manifest's order.
                let in_order: Vec<usize> = distinct
                    .iter()
                    .copied()
                    .filter(|i| missing.contains(i))
                    .collect();
                assert_eq!(
                    missing, in_order,
                    "{step}: missing, in first-occurrence order"
                );
                for &i in &expected {
                    assert!(missing.contains(&i), "{step}: chunk {i} is not stored");
                }
                for &i in &missing {
                    if model.stored[i] {
                        if model.mode.pin_referenced {
                            assert_eq!(refs[i], 0, "{step}: referenced chunk {i} said missing");
                        }
                        model.removed(i);
                        coverage.evicted += 1;
                    }
                }
            } else {
                assert_eq!(missing, expected, "{step}: missing");
            }
            coverage.replaced += u64::from(!answer.created);
            coverage.missing += u64::from(!missing.is_empty());
            model.set_manifest(*n, Some(chunks.clone()));
            model.commit_round_trip();
        }
        Op::DeleteManifest { name: n } => {
            let existed = store
                .delete_manifest(&name(NAMES[*n]))
                .await
                .unwrap_or_else(|e| panic!("{step}: {e}"));
            assert_eq!(existed, model.manifests.contains_key(n), "{step}: existed");
            model.set_manifest(*n, None);
            model.commit_round_trip();
        }
        Op::PutChunk(i) => {
            let i = *i;
            match put_bytes(local, &model.pool[i].1).await {
                Ok(PutOutcome::Created) => {
                    if model.stored[i] {
                        assert!(
                            anytime && model.evictable(i, &refs),
                            "{step}: created, but it was stored ({} refs)",
                            refs[i]
                        );
                        coverage.evicted += 1;
                    }
                    // New, so not expired — unless no manifest names it and
                    // `gc_unreferenced` expires such chunks when stored.
                    model.stored[i] = true;
                    model.expired[i] =
                        (model.mode.gc_unreferenced && refs[i] == 0).then_some(model.now_ms);
                }
                Ok(PutOutcome::AlreadyPresent) => {
                    assert!(
                        model.stored[i],
                        "{step}: already present, but it was not stored"
                    );
                    // The store counts a PUT of an expired chunk as a read of it: both
                    // say something still uses it.
                    if model.expired[i].is_some() {
                        model.cancel(i);
                    }
                }
                Err(StoreError::NoSpace {
                    pinned_chunks,
                    pinned_bytes,
                    ..
                }) if !model.stored[i] || anytime => {
                    coverage.no_space += 1;
                    if model.stored[i] {
                        model.removed(i);
                    }
                    assert_only_referenced_left(local, model, step, coverage);
                    // The 507 says how much is pinned (one group: all of it).
                    let expected = model.gc_stats(store);
                    assert_eq!(
                        (pinned_chunks, pinned_bytes),
                        (expected.pinned_chunks, expected.pinned_bytes),
                        "{step}: the 507's pinned chunks and bytes"
                    );
                }
                Err(e) => panic!("{step}: {e}"),
            }
        }
        Op::ReadChunk(i) => {
            let (id, bytes) = &model.pool[*i];
            match reads_back(local, id, bytes).await {
                Ok(exact) => {
                    assert!(exact, "{step}: read back other bytes");
                    assert!(model.stored[*i], "{step}: read a chunk that is not stored");
                    if model.expired[*i].is_some() {
                        model.cancel(*i);
                        coverage.expired_reads += 1;
                    }
                }
                Err(StoreError::NotFound) => {
                    assert!(
                        !model.stored[*i] || (anytime && model.evictable(*i, &refs)),
                        "{step}: not found, but it is stored ({} refs)",
                        refs[*i]
                    );
                    model.removed(*i);
                }
                Err(e) => panic!("{step}: {e}"),
            }
        }
        Op::DeleteChunk(i) => {
            let existed = local
                .delete(&model.pool[*i].0)
                .await
                .unwrap_or_else(|e| panic!("{step}: {e}"));
            if existed || !anytime || !model.evictable(*i, &refs) {
                assert_eq!(existed, model.stored[*i], "{step}: existed");
            }
            model.removed(*i);
        }
        Op::Sweep => {
            let ended = model.due();
            let due: Vec<usize> = ended.iter().copied().filter(|&i| model.stored[i]).collect();
            // Expiries left, stale ones included (the store counts its expiry table).
            let remaining = model.expired.iter().filter(|e| e.is_some()).count() - ended.len();
            let remaining = remaining as u64;
            let evicted_before = evicted(store);
            let report = store
                .sweep()
                .await
                .unwrap_or_else(|e| panic!("{step}: {e}"));
            let due_bytes: u64 = due.iter().map(|&i| model.len(i)).sum();
            if !anytime || evicted(store) == evicted_before {
                assert_eq!(report.swept_chunks, due.len() as u64, "{step}: {report:?}");
                assert_eq!(report.swept_bytes, due_bytes, "{step}: {report:?}");
                // A cancellation by a read is committed after the read, in the background:
                // one still queued when the sweep finishes is counted as remaining.
                assert!(
                    (remaining..=remaining + model.cancelled_since_sweep)
                        .contains(&report.expired_remaining),
                    "{step}: {report:?}, {remaining} expiries remain ({} cancelled lately)",
                    model.cancelled_since_sweep
                );
            } else {
                assert!(
                    report.swept_chunks <= due.len() as u64,
                    "{step}: {report:?}"
                );
                assert!(report.swept_bytes <= due_bytes, "{step}: {report:?}");
                assert!(
                    report.expired_remaining <= remaining + model.cancelled_since_sweep,
                    "{step}: {report:?}"
                );
            }
            for i in ended {
                model.stored[i] = false;
                model.expired[i] = None;
            }
            // Cancellations a sweep finds still unrecorded are among those since the last.
            assert!(
                report.cancelled <= model.cancelled_since_sweep,
                "{step}: {report:?}, {} cancelled since the last sweep",
                model.cancelled_since_sweep
            );
            model.cancelled_since_sweep = 0;
            model.commit_round_trip();
            model.session.sweeps += 1;
            model.session.swept_chunks += report.swept_chunks;
            model.session.swept_bytes += report.swept_bytes;
            coverage.swept += report.swept_chunks;
        }
        Op::Advance(by) => {
            clock.advance(*by);
            model.now_ms += by.as_millis() as u64;
        }
        Op::Restart => unreachable!("the caller restarts"),
    }
}

/// Chunks the store has evicted since it opened.
fn evicted(store: &Store<SimEngine>) -> u64 {
    let flash = store.flash_stats();
    flash.evicted_put + flash.evicted_watermark
}

/// After a 507: the PUT evicted all it could, so every chunk still stored is one eviction
/// may not take — referenced (pinned) — or one whose cancelled expiry the commit thread
/// has not recorded yet (no eviction takes it meanwhile: see [`Model::cancel`]; such a 507
/// is counted). With the background evictor on, a chunk it is evicting at that moment is
/// skipped too: it must be gone within a second. (The store has one group: see
/// [`run_seed`].)
fn assert_only_referenced_left(
    local: &LocalStore<SimEngine>,
    model: &Model,
    step: &Step<'_>,
    coverage: &mut Coverage,
) {
    let refs = model.refs();
    let started = std::time::Instant::now();
    loop {
        let left: Vec<usize> = (0..POOL)
            .filter(|&i| model.evictable(i, &refs) && model.stored[i])
            .filter(|&i| local.lookup(&model.pool[i].0).unwrap().is_some())
            .collect();
        let (pending, others): (Vec<usize>, Vec<usize>) =
            left.iter().partition(|&&i| model.pending(i).is_some());
        if others.is_empty() {
            coverage.no_space_while_cancel_pending += u64::from(!pending.is_empty());
            return;
        }
        if step.mode.eviction == Eviction::InPutsOnly || started.elapsed() > Duration::from_secs(1)
        {
            let sizes: Vec<u64> = others.iter().map(|&i| model.len(i)).collect();
            panic!(
                "{step}: 507, yet unreferenced chunks {others:?} ({sizes:?} bytes) are still stored; {}",
                model.describe()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Brings the model up to date with evictions (asking the store which chunks it holds) and
/// fails when anything else changed: a referenced chunk gone, an unreferenced one gone in
/// a step that cannot evict, a chunk stored that the model says is not.
fn sync(
    local: &LocalStore<SimEngine>,
    model: &mut Model,
    may_evict: bool,
    step: &Step<'_>,
    coverage: &mut Coverage,
) {
    for (i, refs) in model.refs().into_iter().enumerate() {
        let stored = local.lookup(&model.pool[i].0).unwrap().is_some();
        if model.stored[i] && !stored {
            assert!(
                refs == 0 || !model.mode.pin_referenced,
                "{step}: chunk {i}, named by {refs} live manifests and stored, is gone"
            );
            coverage.evicted_referenced += u64::from(refs > 0);
            assert!(
                may_evict,
                "{step}: unreferenced chunk {i} is gone, in a step that cannot evict (expired: {:?})",
                model.expired[i]
            );
            model.removed(i);
            coverage.evicted += 1;
        }
        assert!(
            !stored || model.stored[i],
            "{step}: chunk {i} is stored, but the model says it is not"
        );
        coverage.pinned += u64::from(stored && refs > 0);
    }
}

/// Compares what the store reports with the model: reference states, manifests, stats.
fn compare(store: &Store<SimEngine>, model: &Model) -> Result<(), String> {
    let refs = model.refs();
    for i in 0..POOL {
        let state = store
            .chunk_refs(&model.pool[i].0)
            .map_err(|e| format!("chunk_refs of chunk {i}: {e}"))?;
        let expected = model.ref_state(i, &refs);
        // The cancellation lives in the chunk's index entry until the commit thread
        // records it; once the chunk is removed (DELETE) before that, `chunk_refs` shows
        // the old expiry again for a moment.
        let removed_while_pending = !model.stored[i]
            && expected == RefState::Unreferenced
            && model.pending(i).is_some_and(|p| {
                state
                    == RefState::Expired {
                        since_ms: p.since_ms,
                    }
            });
        if state != expected && !removed_while_pending {
            return Err(format!(
                "chunk {i} (stored: {}): chunk_refs is {state:?}, the model says {expected:?}",
                model.stored[i]
            ));
        }
    }
    let names = store.manifest_names().map_err(|e| e.to_string())?;
    let expected: Vec<_> = model.manifests.keys().map(|&n| name(NAMES[n])).collect();
    let mut expected_sorted = expected.clone();
    expected_sorted.sort();
    if names != expected_sorted {
        return Err(format!(
            "manifest_names() is {names:?}, the model has {expected_sorted:?}"
        ));
    }
    for (n, text) in NAMES.iter().enumerate() {
        let stored = store.manifest(&name(text)).map_err(|e| e.to_string())?;
        let expected = model
            .manifests
            .get(&n)
            .map(|chunks| chunks.iter().map(|&i| model.pool[i].0).collect::<Vec<_>>());
        if stored != expected {
            return Err(format!(
                "manifest {text}: the store has {:?} ids, the model {:?}",
                stored.map(|s| s.len()),
                expected.map(|e| e.len())
            ));
        }
    }
    let stats = store.gc_stats();
    let expected = GcStats {
        sweep_micros: stats.sweep_micros,
        last_sweep_micros: stats.last_sweep_micros,
        ..model.gc_stats(store)
    };
    if stats != expected {
        return Err(format!(
            "gc_stats is\n  {stats:?}\nthe model says\n  {expected:?}"
        ));
    }
    Ok(())
}

/// The check after every step: sync with evictions, then compare. With the background
/// evictor on, an eviction may fall between reading a chunk's presence and its state or
/// the stats; a mismatch is then read again after a short wait (bounded).
fn check(
    store: &Store<SimEngine>,
    local: &LocalStore<SimEngine>,
    model: &mut Model,
    may_evict: bool,
    step: &Step<'_>,
    coverage: &mut Coverage,
) {
    const TRIES: usize = 50;
    for attempt in 1.. {
        let before = evicted(store);
        sync(local, model, may_evict, step, coverage);
        match compare(store, model) {
            Ok(()) => return,
            Err(e) if step.mode.anytime() && attempt < TRIES => {
                if evicted(store) == before {
                    std::thread::sleep(Duration::from_millis(2));
                }
                let _ = e;
            }
            Err(e) => panic!("{step}: {e}"),
        }
    }
}

/// After a restart: the store lists exactly the chunks the model holds (when nothing
/// evicts behind its back) and every referenced stored chunk reads back byte for byte.
/// (Reads of referenced chunks change no expiry.)
async fn check_reopened(
    store: &Store<SimEngine>,
    local: &LocalStore<SimEngine>,
    model: &Model,
    step: &Step<'_>,
) {
    let refs = model.refs();
    if step.mode.eviction == Eviction::InPutsOnly {
        let listed = store.list(None, usize::MAX).unwrap().len();
        let expected = model.stored.iter().filter(|&&s| s).count();
        assert_eq!(listed, expected, "{step}: chunks listed after the restart");
    }
    for i in (0..POOL).filter(|&i| refs[i] > 0 && model.stored[i]) {
        let (id, bytes) = &model.pool[i];
        match reads_back(local, id, bytes).await {
            Ok(true) => {}
            Ok(false) => panic!("{step}: referenced chunk {i} reads back other bytes"),
            Err(e) => panic!("{step}: referenced chunk {i} after the restart: {e}"),
        }
    }
}

/// Runs one seed: `steps` steps, restarting the store whenever a step says so.
fn run_seed(
    seed: u64,
    steps: u64,
    mode: Mode,
    trace: &RefCell<Vec<String>>,
    verbose: bool,
) -> Coverage {
    let dir = tempfile::tempdir().unwrap();
    let engine = SimEngine::new(seed);
    let clock = GcClock::manual(CLOCK_START_MS);
    let cfg = store_config(dir.path(), mode, &clock);
    let mut model = Model::new(seed, mode);
    let mut rng = Rng::new(seed);
    let mut coverage = Coverage::default();
    let mut number = 0;
    let restart = Op::Restart;
    while number < steps {
        let step = Step {
            seed,
            number,
            op: &restart,
            mode,
        };
        let (store, _) =
            Store::open(cfg.clone(), &engine).unwrap_or_else(|e| panic!("{step}: {e}"));
        // One group: a 507 then means nothing in the whole store could be evicted.
        assert_eq!(store.geometry().groups(), 1);
        model.reopened();
        run(async {
            let local = store.local().unwrap();
            check(
                &store,
                &local,
                &mut model,
                mode.anytime(),
                &step,
                &mut coverage,
            );
            check_reopened(&store, &local, &model, &step).await;
            while number < steps {
                let op = next_op(&mut rng, &model);
                let line = format!("step {number}: {op}");
                if verbose {
                    eprintln!("{line}\n  before: {}", model.describe());
                }
                trace.borrow_mut().push(line);
                number += 1;
                coverage.steps += 1;
                if let Op::Restart = op {
                    coverage.restarts += 1;
                    return;
                }
                let step = Step {
                    seed,
                    number: number - 1,
                    op: &op,
                    mode,
                };
                let before = EvictionWitness::before(&model, &op);
                apply(&store, &local, &mut model, &clock, &step, &mut coverage).await;
                let may_evict = mode.anytime() || matches!(op, Op::PutChunk(_));
                check(&store, &local, &mut model, may_evict, &step, &mut coverage);
                if mode.eviction == Eviction::InPutsOnly {
                    before.check(&model, &step);
                }
            }
        });
    }
    coverage
}

/// What a PUT step may evict, to check that expired chunks go first: the chunks stored
/// before it, and the expired ones among them (not those whose cancellation is pending:
/// eviction skips them until it is recorded).
struct EvictionWitness {
    stored: Vec<bool>,
    expired: Vec<usize>,
    put: Option<usize>,
}

impl EvictionWitness {
    fn before(model: &Model, op: &Op) -> EvictionWitness {
        let pending = |i: usize| model.pending(i).is_some();
        EvictionWitness {
            stored: model.stored.clone(),
            expired: (0..POOL)
                .filter(|&i| model.stored[i] && model.expired[i].is_some() && !pending(i))
                .collect(),
            put: match op {
                Op::PutChunk(i) => Some(*i),
                _ => None,
            },
        }
    }

    /// Fails if the step evicted a chunk that was not expired while an expired one stayed.
    fn check(&self, model: &Model, step: &Step<'_>) {
        let Some(put) = self.put else { return };
        let evicted: Vec<usize> = (0..POOL)
            .filter(|&i| i != put && self.stored[i] && !model.stored[i])
            .collect();
        let not_expired: Vec<&usize> = evicted
            .iter()
            .filter(|i| !self.expired.contains(i))
            .collect();
        let expired_left: Vec<&usize> = self.expired.iter().filter(|&&i| model.stored[i]).collect();
        assert!(
            not_expired.is_empty() || expired_left.is_empty(),
            "{step}: evicted {not_expired:?}, not expired, while expired {expired_left:?} stayed"
        );
    }
}

/// Runs `seeds` (or only the seed in `CHUNKD_MODEL_SEED`, printing each step), each for
/// `steps` steps; a failure prints its seed and the steps that led to it.
fn run_seeds(test: &str, seeds: std::ops::Range<u64>, steps: u64, mode: Mode) -> Coverage {
    let only = std::env::var(ENV_SEED).ok().map(|text| {
        let text = text.trim_start_matches("0x");
        u64::from_str_radix(text, 16).unwrap_or_else(|e| panic!("{ENV_SEED}={text}: {e}"))
    });
    let seeds: Vec<u64> = match only {
        Some(seed) => vec![seed],
        None => seeds.map(|n| 0x4ef5_0000 + n).collect(),
    };
    let mut total = Coverage::default();
    for seed in seeds {
        let trace = RefCell::new(Vec::new());
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            run_seed(seed, steps, mode, &trace, only.is_some())
        }));
        match outcome {
            Ok(coverage) => total.add(coverage),
            Err(panic) => {
                let trace = trace.into_inner();
                let shown = trace.len().saturating_sub(TRACE_SHOWN);
                eprintln!(
                    "seed {seed:#x} ({mode:?}) failed at step {}; the steps before it:\n  {}\n\
                     replay: {ENV_SEED}={seed:#x} cargo test --test store_refs_model -- --exact {test} --nocapture",
                    trace.len().saturating_sub(1),
                    trace[shown..].join("\n  ")
                );
                resume_unwind(panic);
            }
        }
    }
    eprintln!("{test}: {total:?}");
    total
}

/// Whether a single seed is being replayed (the coverage bounds are for whole runs).
fn replaying() -> bool {
    std::env::var(ENV_SEED).is_ok()
}

/// The main model test: eviction only in PUTs, so every other step must change exactly
/// what it says, and the model's expectations are exact.
#[test]
fn manifests_counts_and_sweeps_follow_the_model_with_put_eviction() {
    let test = "manifests_counts_and_sweeps_follow_the_model_with_put_eviction";
    let total = run_seeds(test, 0..40, 250, Mode::new(Eviction::InPutsOnly));
    if !replaying() {
        // The run reached every path it checks.
        assert!(total.restarts >= 40, "{total:?}");
        assert!(total.evicted > 100 && total.pinned > 1000, "{total:?}");
        assert!(total.swept > 50 && total.expired_reads > 10, "{total:?}");
        assert!(total.replaced > 100 && total.missing > 100, "{total:?}");
        assert!(total.no_space > 0, "{total:?}");
    }
}

/// The same with the background evictor at work: a referenced chunk is never evicted,
/// whenever the evictor runs.
#[test]
fn manifests_counts_and_sweeps_follow_the_model_with_the_background_evictor() {
    let test = "manifests_counts_and_sweeps_follow_the_model_with_the_background_evictor";
    let total = run_seeds(test, 100..112, 250, Mode::new(Eviction::Anytime));
    if !replaying() {
        assert!(total.evicted > 20 && total.pinned > 500, "{total:?}");
        assert!(total.swept > 10, "{total:?}");
    }
}

/// `gc_unreferenced`: chunks no manifest names expire when stored and at every open, so
/// sweeps delete them too unless read.
#[test]
fn manifests_counts_and_sweeps_follow_the_model_with_gc_unreferenced() {
    let test = "manifests_counts_and_sweeps_follow_the_model_with_gc_unreferenced";
    let mode = Mode {
        gc_unreferenced: true,
        ..Mode::new(Eviction::InPutsOnly)
    };
    let total = run_seeds(test, 200..212, 250, mode);
    if !replaying() {
        assert!(total.swept > 50 && total.expired_reads > 10, "{total:?}");
    }
}

/// Without pinning (a node with an origin): referenced chunks may be evicted like any
/// other; counts and expiries still follow the manifests.
#[test]
fn manifests_counts_and_sweeps_follow_the_model_without_pinning() {
    let test = "manifests_counts_and_sweeps_follow_the_model_without_pinning";
    let mode = Mode {
        pin_referenced: false,
        ..Mode::new(Eviction::InPutsOnly)
    };
    let total = run_seeds(test, 300..312, 250, mode);
    if !replaying() {
        assert!(total.evicted_referenced > 10, "{total:?}");
    }
}

/// The background evictor and `gc_unreferenced` together: expiries at every PUT and open,
/// evictions at any moment, the pins holding throughout.
#[test]
fn manifests_counts_and_sweeps_follow_the_model_with_the_evictor_and_gc_unreferenced() {
    let test = "manifests_counts_and_sweeps_follow_the_model_with_the_evictor_and_gc_unreferenced";
    let mode = Mode {
        gc_unreferenced: true,
        ..Mode::new(Eviction::Anytime)
    };
    let total = run_seeds(test, 400..408, 250, mode);
    if !replaying() {
        assert!(total.evicted > 20 && total.swept > 20, "{total:?}");
    }
}

//! The operations on manifests and GC that [`Store`] offers, what a read of an expired
//! chunk does, and the periodic sweeper.
//!
//! Each durable operation is a request to the commit thread (`commit_refs`), awaited on a
//! oneshot channel, so a core never blocks on a catalog commit; reads of manifests are one
//! short catalog read transaction. A sweep is a series of commit-thread transactions of up
//! to `SWEEP_BATCH` expiries each; the sweeper thread (`chunkd-gc`) runs one every
//! `gc_interval`, pausing between batches so that PUT commits queued behind it wait at
//! most one batch.
//!
//! **Architecture invariant:** manifests and counts change only on the commit thread.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam::channel::Sender;
use tokio::sync::oneshot;

use super::commit::Request;
use super::commit_refs::{RefsRequest, SWEEP_BATCH, SweepBatch};
use super::device::Engine;
use super::error::StoreError;
use super::handle::{LocalStore, Store};
use super::index::key_of;
use super::refs::{GcStats, ManifestName, ManifestPut, RefState, SweepReport};
use super::state::Shared;
use crate::chunk::ChunkId;

/// Pause of the periodic sweeper between two batches: at most ~20 batches (20,480
/// deletions) a second, leaving the commit thread to PUTs in between.
const SWEEPER_PAUSE: Duration = Duration::from_millis(50);

impl<E: Engine> Store<E> {
    /// Stores manifest `name` listing `chunks` (in order, repeats allowed), replacing any
    /// manifest of that name; counts change by the difference. Answers which distinct
    /// chunks the store does not hold.
    pub async fn put_manifest(
        &self,
        name: &ManifestName,
        chunks: Vec<ChunkId>,
    ) -> Result<ManifestPut, StoreError> {
        let name = name.as_str().to_owned();
        ask(self.commits(), |reply| RefsRequest::PutManifest {
            name,
            ids: chunks,
            reply,
        })
        .await
    }

    /// The chunks manifest `name` lists, in order, or `None` if there is no such manifest.
    pub fn manifest(&self, name: &ManifestName) -> Result<Option<Vec<ChunkId>>, StoreError> {
        Ok(self.shared().catalog.manifest(name.as_str())?)
    }

    /// Deletes manifest `name`: each distinct chunk it listed loses one reference. Returns
    /// whether it existed.
    pub async fn delete_manifest(&self, name: &ManifestName) -> Result<bool, StoreError> {
        let name = name.as_str().to_owned();
        ask(self.commits(), |reply| RefsRequest::DeleteManifest {
            name,
            reply,
        })
        .await
    }

    /// The names of every live manifest, sorted.
    pub fn manifest_names(&self) -> Result<Vec<ManifestName>, StoreError> {
        let names = self.shared().catalog.manifest_names()?;
        // Names were checked when their manifests were put.
        Ok(names
            .iter()
            .filter_map(|name| ManifestName::parse(name).ok())
            .collect())
    }

    /// Sweeps now: deletes every expired chunk whose grace has passed (by the GC clock).
    pub async fn sweep(&self) -> Result<SweepReport, StoreError> {
        let started = Instant::now();
        let mut report = SweepReport::default();
        loop {
            let batch = ask(self.commits(), |reply| RefsRequest::Sweep { reply }).await?;
            if !report.add(&batch) {
                break;
            }
        }
        finish_sweep(self.shared(), report, started)
    }

    /// Where chunk `id` stands with respect to the manifests (it need not be stored).
    pub fn chunk_refs(&self, id: &ChunkId) -> Result<RefState, StoreError> {
        let shared = self.shared();
        let Some(count) = shared.catalog.count(id)? else {
            return Ok(RefState::Unreferenced);
        };
        if count.refs > 0 {
            return Ok(RefState::Referenced { refs: count.refs });
        }
        let used = shared
            .index
            .get_with_flags(key_of(id))
            .is_some_and(|(_, flags)| flags.cancelled);
        Ok(if used {
            RefState::Unreferenced
        } else {
            RefState::Expired {
                since_ms: count.expired_at_ms,
            }
        })
    }

    /// Counts of manifests, references, pins, expiries and sweeps.
    pub fn gc_stats(&self) -> GcStats {
        let shared = self.shared();
        let tally = shared.index.tally();
        let gc = &shared.gc;
        let load = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
        GcStats {
            manifests: load(&gc.manifests),
            referenced_chunks: load(&gc.referenced),
            referenced_stored_chunks: tally.referenced.chunks,
            referenced_stored_bytes: tally.referenced.bytes,
            pinned_chunks: tally.pinned.chunks,
            pinned_bytes: tally.pinned.bytes,
            expired_chunks: tally.expired.chunks,
            expired_bytes: tally.expired.bytes,
            expired_reads: load(&gc.expired_reads),
            sweeps: load(&gc.sweeps),
            swept_chunks: load(&gc.swept_chunks),
            swept_bytes: load(&gc.swept_bytes),
            sweep_micros: load(&gc.sweep_micros),
            last_sweep_micros: load(&gc.last_sweep_micros),
        }
    }
}

impl<E: Engine> LocalStore<E> {
    /// A read (or a PUT) used chunk `id`, which is expired: counted, logged, and its
    /// deletion cancelled — unless a sweep or an eviction is removing it right now.
    pub(super) fn expired_read(&self, id: &ChunkId) {
        let shared = &*self.shared;
        shared.gc.expired_reads.fetch_add(1, Ordering::Relaxed);
        if shared.index.cancel_expiry(key_of(id)) {
            tracing::warn!(
                chunk = %id,
                "a chunk no manifest names was read during its grace period; its deletion is \
                 cancelled (is a manifest missing?)"
            );
            let _ = self
                .store
                .commits()
                .send(Request::Refs(RefsRequest::Unexpire { id: *id }));
        } else {
            tracing::warn!(chunk = %id, "a chunk no manifest names was read while being removed");
        }
    }
}

impl SweepReport {
    /// Adds a batch; returns whether the sweep should go on (a full batch that ended some).
    fn add(&mut self, batch: &SweepBatch) -> bool {
        self.swept_chunks += batch.swept_chunks;
        self.swept_bytes += batch.swept_bytes;
        self.cancelled += batch.cancelled;
        batch.found == SWEEP_BATCH && batch.ended > 0
    }
}

/// Counts a finished sweep and fills in what remains expired.
fn finish_sweep<E: Engine>(
    shared: &Shared<E>,
    mut report: SweepReport,
    started: Instant,
) -> Result<SweepReport, StoreError> {
    report.duration = started.elapsed();
    report.expired_remaining = shared.catalog.expiries()?;
    let gc = &shared.gc;
    let micros = report.duration.as_micros() as u64;
    gc.sweeps.fetch_add(1, Ordering::Relaxed);
    gc.swept_chunks
        .fetch_add(report.swept_chunks, Ordering::Relaxed);
    gc.swept_bytes
        .fetch_add(report.swept_bytes, Ordering::Relaxed);
    gc.sweep_micros.fetch_add(micros, Ordering::Relaxed);
    gc.last_sweep_micros.store(micros, Ordering::Relaxed);
    if report.swept_chunks > 0 || report.cancelled > 0 {
        tracing::info!(
            swept_chunks = report.swept_chunks,
            swept_bytes = report.swept_bytes,
            cancelled = report.cancelled,
            expired_remaining = report.expired_remaining,
            "gc sweep"
        );
    }
    Ok(report)
}

/// Sends a request to the commit thread and waits for its answer.
async fn ask<T>(
    commits: &Sender<Request>,
    request: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> RefsRequest,
) -> Result<T, StoreError> {
    let (reply, answer) = oneshot::channel();
    commits
        .send(Request::Refs(request(reply)))
        .map_err(|_| StoreError::Catalog("the commit thread has stopped".into()))?;
    answer
        .await
        .map_err(|_| StoreError::Catalog("the commit thread dropped a request".into()))?
}

/// The periodic sweeper: a thread that sweeps every `gc_interval`.
pub(super) struct Sweeper {
    stop: Arc<AtomicBool>,
    wake: Sender<()>,
    thread: Option<JoinHandle<()>>,
}

impl Sweeper {
    /// Starts the sweeper, unless `gc_interval` is zero.
    pub(super) fn spawn<E: Engine>(
        shared: Arc<Shared<E>>,
        commits: Sender<Request>,
    ) -> Option<Sweeper> {
        let interval = shared.config.gc_interval;
        if interval.is_zero() {
            return None;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let (wake, wakes) = crossbeam::channel::bounded::<()>(1);
        let thread = std::thread::Builder::new()
            .name("chunkd-gc".into())
            .spawn(move || {
                while !stopped.load(Ordering::Acquire) {
                    let _ = wakes.recv_timeout(interval);
                    if stopped.load(Ordering::Acquire) {
                        break;
                    }
                    if let Err(error) = sweep_blocking(&shared, &commits, &stopped) {
                        tracing::error!(%error, "periodic gc sweep failed");
                    }
                }
            })
            .expect("the sweeper thread starts");
        Some(Sweeper {
            stop,
            wake,
            thread: Some(thread),
        })
    }
}

impl Drop for Sweeper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.wake.try_send(());
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the sweeper thread panicked");
        }
    }
}

/// One sweep from the sweeper thread, pausing between batches.
fn sweep_blocking<E: Engine>(
    shared: &Shared<E>,
    commits: &Sender<Request>,
    stop: &AtomicBool,
) -> Result<(), StoreError> {
    let started = Instant::now();
    let mut report = SweepReport::default();
    loop {
        let (reply, answer) = oneshot::channel();
        commits
            .send(Request::Refs(RefsRequest::Sweep { reply }))
            .map_err(|_| StoreError::Catalog("the commit thread has stopped".into()))?;
        let batch = answer
            .blocking_recv()
            .map_err(|_| StoreError::Catalog("the commit thread dropped a request".into()))??;
        if !report.add(&batch) || stop.load(Ordering::Acquire) {
            break;
        }
        std::thread::sleep(SWEEPER_PAUSE);
    }
    finish_sweep(shared, report, started).map(|_| ())
}

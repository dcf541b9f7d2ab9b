//! The periodic sweeper (`chunkd-gc`): a thread that sweeps every `gc_interval`, pausing
//! between batches so that PUT commits queued behind a sweep wait at most one batch; and
//! what every sweep does when it ends (counters, a log line).
//!
//! **Architecture invariant:** a sweep only asks the commit thread; it changes nothing
//! itself but counters.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam::channel::Sender;
use tokio::sync::oneshot;

use super::background::Background;
use super::commit::Request;
use super::commit_refs::{RefsRequest, SWEEP_BATCH, SweepBatch};
use super::device::Engine;
use super::error::StoreError;
use super::refs::SweepReport;
use super::state::Shared;

/// Pause of the periodic sweeper between two batches: at most ~20 batches (20,480
/// deletions) a second, leaving the commit thread to PUTs in between.
const SWEEPER_PAUSE: Duration = Duration::from_millis(50);

impl SweepReport {
    /// Adds a batch; returns whether the sweep should go on (a full batch that ended some).
    pub(super) fn add(&mut self, batch: &SweepBatch) -> bool {
        self.swept_chunks += batch.swept_chunks;
        self.swept_bytes += batch.swept_bytes;
        self.cancelled += batch.cancelled;
        batch.found == SWEEP_BATCH && batch.ended > 0
    }
}

/// Counts a finished sweep and fills in what remains expired.
pub(super) fn finish_sweep<E: Engine>(
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

/// Starts the periodic sweeper (`chunkd-gc`), a thread that sweeps every `gc_interval`,
/// unless that is zero.
pub(super) fn spawn_sweeper<E: Engine>(
    shared: Arc<Shared<E>>,
    commits: Sender<Request>,
) -> Option<Background> {
    let interval = shared.config.gc_interval;
    if interval.is_zero() {
        return None;
    }
    let (wake, wakes) = crossbeam::channel::bounded::<()>(1);
    Some(Background::spawn(
        "chunkd-gc",
        interval,
        wake,
        wakes,
        move |stop| {
            if let Err(error) = sweep_blocking(&shared, &commits, stop) {
                tracing::error!(%error, "periodic gc sweep failed");
            }
        },
    ))
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

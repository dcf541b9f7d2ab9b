//! A bounded pool that runs one job per chunk on every core: sealing when packing,
//! verifying and opening when unpacking.
//!
//! The calling thread produces the jobs (it reads the input in order) and consumes the
//! results; `available_parallelism` workers do the CPU work in between. At most
//! `2 × workers` jobs wait in the queue, so memory stays bounded by a few chunks per core
//! however large the image is. The first error stops new jobs and is returned once the
//! jobs already started have finished.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, Ordering};

use crossbeam::channel;

use super::error::ImageError;

/// Jobs queued per worker: enough that a worker never waits for the reader, few enough to
/// bound memory (a pack job holds one 512 KiB chunk).
const QUEUED_JOBS_PER_WORKER: usize = 2;

/// Runs `work` on every job on all cores and feeds each result to `on_result` in the
/// calling thread, in completion order (not job order).
pub(super) fn run<J, R>(
    jobs: impl Iterator<Item = Result<J, ImageError>>,
    work: impl Fn(J) -> Result<R, ImageError> + Sync,
    mut on_result: impl FnMut(R),
) -> Result<(), ImageError>
where
    J: Send,
    R: Send,
{
    let workers = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
    let (job_tx, job_rx) = channel::bounded::<J>(workers * QUEUED_JOBS_PER_WORKER);
    // Unbounded, but results are small and the job queue bounds how far workers run ahead.
    let (result_tx, result_rx) = channel::unbounded::<Result<R, ImageError>>();
    let failed = AtomicBool::new(false);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            let (job_rx, result_tx, work, failed) =
                (job_rx.clone(), result_tx.clone(), &work, &failed);
            scope.spawn(move || {
                for job in job_rx {
                    if failed.load(Ordering::Relaxed) {
                        continue; // drain without working: an earlier job failed
                    }
                    let result = work(job);
                    if result.is_err() {
                        failed.store(true, Ordering::Relaxed);
                    }
                    // The receiver lives until the scope ends, so this cannot fail.
                    let _ = result_tx.send(result);
                }
            });
        }
        drop(result_tx);
        let mut first_error = None;
        let mut take = |result: Result<R, ImageError>| match result {
            Ok(value) => on_result(value),
            Err(error) => {
                first_error.get_or_insert(error);
            }
        };
        for job in jobs {
            match job {
                Ok(job) if !failed.load(Ordering::Relaxed) => {
                    // Workers hold the receiver until the queue closes, so this cannot fail.
                    let _ = job_tx.send(job);
                }
                Ok(_) => break,
                Err(error) => {
                    failed.store(true, Ordering::Relaxed);
                    take(Err(error));
                    break;
                }
            }
            while let Ok(result) = result_rx.try_recv() {
                take(result);
            }
        }
        drop(job_tx);
        for result in result_rx {
            take(result);
        }
        first_error.map_or(Ok(()), Err)
    })
}

//! A bounded pool that runs one job per chunk on every core: sealing when packing,
//! verifying and opening when unpacking.
//!
//! The calling thread produces the jobs (it reads the input in order) and consumes the
//! results; `available_parallelism` workers do the CPU work in between. At most
//! `2 × workers` jobs wait in the queue, so memory stays bounded by a few chunks per core
//! however large the image is. An error stops the jobs after it; the jobs before it still
//! run, and the error of the earliest failing job (in input order) is returned, so an
//! image with a chunk missing at two offsets names the first one, whichever worker
//! noticed first.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};

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
    let (job_tx, job_rx) = channel::bounded::<(usize, J)>(workers * QUEUED_JOBS_PER_WORKER);
    // Unbounded, but results are small and the job queue bounds how far workers run ahead.
    let (result_tx, result_rx) = channel::unbounded::<(usize, Result<R, ImageError>)>();
    // The input position of the earliest job known to have failed (`usize::MAX`: none).
    let failed_at = AtomicUsize::new(usize::MAX);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            let (job_rx, result_tx, work, failed_at) =
                (job_rx.clone(), result_tx.clone(), &work, &failed_at);
            scope.spawn(move || {
                for (at, job) in job_rx {
                    if at > failed_at.load(Ordering::SeqCst) {
                        continue; // drain without working: an earlier job failed
                    }
                    let result = work(job);
                    if result.is_err() {
                        failed_at.fetch_min(at, Ordering::SeqCst);
                    }
                    // The receiver lives until the scope ends, so this cannot fail.
                    let _ = result_tx.send((at, result));
                }
            });
        }
        drop(result_tx);
        let mut first_error: Option<(usize, ImageError)> = None;
        let mut take = |(at, result): (usize, Result<R, ImageError>)| match result {
            Ok(value) => on_result(value),
            Err(error) if first_error.as_ref().is_none_or(|(first, _)| at < *first) => {
                first_error = Some((at, error));
            }
            Err(_) => {}
        };
        for (at, job) in jobs.enumerate() {
            if failed_at.load(Ordering::SeqCst) != usize::MAX {
                break;
            }
            match job {
                // Workers hold the receiver until the queue closes, so this cannot fail.
                Ok(job) => {
                    let _ = job_tx.send((at, job));
                }
                Err(error) => {
                    failed_at.fetch_min(at, Ordering::SeqCst);
                    take((at, Err(error)));
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
        first_error.map_or(Ok(()), |(_, error)| Err(error))
    })
}

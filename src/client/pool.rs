//! Runs a command's transfers on a bounded number of threads.
//!
//! Each of `parallel` threads takes the next job index from a shared counter, so at most
//! `parallel` requests are in flight and no queue holds more than a counter. After the
//! first failure no new job starts; jobs already running finish, and the error of the
//! earliest failing job (by index) is returned, so the message names the first chunk in
//! image order that failed, whichever thread saw it.
//!
//! Each thread owns a state (`S::default()`) that its jobs share: a buffer reused from
//! chunk to chunk, so a transfer does not allocate (and fault in) a fresh 512 KiB.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Runs `work(state, index)` for every index in `0..jobs` on at most `parallel` threads,
/// each with its own `state`.
pub fn run<S: Default, E: Send>(
    jobs: usize,
    parallel: usize,
    work: impl Fn(&mut S, usize) -> Result<(), E> + Sync,
) -> Result<(), E> {
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let first_error: Mutex<Option<(usize, E)>> = Mutex::new(None);
    let threads = parallel.clamp(1, jobs.max(1));
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                let mut state = S::default();
                while !stop.load(Ordering::Relaxed) {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if index >= jobs {
                        break;
                    }
                    if let Err(error) = work(&mut state, index) {
                        stop.store(true, Ordering::Relaxed);
                        // A poisoned lock means another worker panicked; the scope
                        // re-raises that panic, so this error no longer matters.
                        if let Ok(mut first) = first_error.lock()
                            && first.as_ref().is_none_or(|(at, _)| index < *at)
                        {
                            *first = Some((index, error));
                        }
                    }
                }
            });
        }
    });
    match first_error.into_inner() {
        Ok(Some((_, error))) => Err(error),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_job_runs_once_with_at_most_parallel_at_a_time() {
        let done: Vec<AtomicUsize> = (0..200).map(|_| AtomicUsize::new(0)).collect();
        let (running, peak) = (AtomicUsize::new(0), AtomicUsize::new(0));
        run::<(), ()>(done.len(), 4, |(), i| {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            std::thread::yield_now();
            done[i].fetch_add(1, Ordering::SeqCst);
            running.fetch_sub(1, Ordering::SeqCst);
            Ok(())
        })
        .unwrap();
        assert!(done.iter().all(|d| d.load(Ordering::SeqCst) == 1));
        let peak = peak.load(Ordering::SeqCst);
        assert!((1..=4).contains(&peak), "peak {peak}");
    }

    #[test]
    fn the_earliest_failing_job_is_reported_and_later_jobs_stop() {
        let started = AtomicUsize::new(0);
        let result = run(10_000, 3, |(), i| {
            started.fetch_add(1, Ordering::SeqCst);
            if i == 7 || i == 9 { Err(i) } else { Ok(()) }
        });
        assert_eq!(result, Err(7));
        // Jobs started after the failure was seen are at most one per thread.
        assert!(started.load(Ordering::SeqCst) < 100);
    }

    #[test]
    fn no_jobs_is_success() {
        assert_eq!(run::<(), ()>(0, 8, |(), _| unreachable!()), Ok(()));
    }

    #[test]
    fn each_thread_keeps_its_state_from_job_to_job() {
        let total = AtomicUsize::new(0);
        run::<usize, ()>(100, 3, |jobs_here, _| {
            *jobs_here += 1;
            total.fetch_max(*jobs_here, Ordering::SeqCst);
            Ok(())
        })
        .unwrap();
        // Some thread ran at least a third of the jobs on one state.
        assert!(total.load(Ordering::SeqCst) >= 34);
    }
}

//! Thread-per-core: one OS thread per core, each running its own tokio-uring runtime (so
//! its own io_uring), optionally pinned to its core. Work never migrates between threads.
//!
//! **Architecture invariant:** knows nothing of what runs on the cores (no store, no HTTP):
//! it starts the threads and runtimes, pins them, and returns what each core's future
//! returned; nothing it starts outlives [`run`].

use std::future::Future;
use std::num::NonZeroUsize;

/// Cores this process may use.
pub fn available() -> usize {
    std::thread::available_parallelism().map_or(1, NonZeroUsize::get)
}

/// Runs `body(core)` on `count` threads, each inside its own tokio-uring runtime with a
/// submission queue of `ring_entries`, and returns their results in core order. When `pin`
/// is set, thread `core` is pinned to CPU `core % available()`.
pub fn run<T, F, Fut>(count: usize, pin: bool, ring_entries: u32, body: F) -> Vec<T>
where
    T: Send,
    F: Fn(usize) -> Fut + Sync,
    Fut: Future<Output = T>,
{
    assert!(count > 0, "at least one core");
    std::thread::scope(|scope| {
        let threads: Vec<_> = (0..count)
            .map(|core| {
                let body = &body;
                std::thread::Builder::new()
                    .name(format!("chunkd-core-{core}"))
                    .spawn_scoped(scope, move || {
                        if pin {
                            pin_to(core % available());
                        }
                        tokio_uring::builder()
                            .entries(ring_entries)
                            .start(body(core))
                    })
                    .expect("a core thread starts")
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().expect("a core thread does not panic"))
            .collect()
    })
}

/// Pins the calling thread to `cpu`; a failure is logged, not fatal (containers may forbid
/// it).
fn pin_to(cpu: usize) {
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu);
    // `None`: the calling thread.
    if let Err(error) = rustix::thread::sched_setaffinity(None, &set) {
        tracing::warn!(cpu, %error, "could not pin thread to its core");
    }
}

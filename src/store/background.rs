//! A store thread of its own that wakes on a signal or a period, does one pass of work,
//! and stops (joined) when its handle is dropped: the evictor (`chunkd-evict`) and the GC
//! sweeper (`chunkd-gc`).
//!
//! **Architecture invariant:** dropping the handle stops the thread and waits for it, so a
//! store's threads never outlive it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam::channel::{Receiver, Sender};

/// A running background thread.
pub(super) struct Background {
    name: &'static str,
    stop: Arc<AtomicBool>,
    wake: Sender<()>,
    thread: Option<JoinHandle<()>>,
}

impl Background {
    /// Starts thread `name`, which runs `pass(&stop)` each time it is woken through `wakes`
    /// (the receiving end of `wake`) or `every` has passed without a wake, until the handle
    /// is dropped. A long pass checks `stop` to end early.
    pub(super) fn spawn(
        name: &'static str,
        every: Duration,
        wake: Sender<()>,
        wakes: Receiver<()>,
        mut pass: impl FnMut(&AtomicBool) + Send + 'static,
    ) -> Background {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                while !stopped.load(Ordering::Acquire) {
                    let _ = wakes.recv_timeout(every);
                    if stopped.load(Ordering::Acquire) {
                        break;
                    }
                    pass(&stopped);
                }
            })
            .unwrap_or_else(|error| panic!("the {name} thread starts: {error}"));
        Background {
            name,
            stop,
            wake,
            thread: Some(thread),
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.wake.try_send(());
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!(thread = self.name, "a store thread panicked");
        }
    }
}

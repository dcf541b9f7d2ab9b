//! [`Maintenance`]: the store's background work — refill, queued repairs and the scrub
//! (`task`) — on a thread of the store's own, started with [`Store::start_maintenance`]
//! and stopped when the handle is dropped.
//!
//! The thread runs a tokio-uring runtime, as a core does: the io_uring engine's device
//! ring is per thread and its reaper is woken through the runtime's epoll
//! (`device::ring`), and the simulated engine's latency sleeps on the runtime's timer.
//! The repair I/O so goes through a ring of its own and never shares a core's.
//!
//! **Architecture invariant:** one maintenance task per store; the HTTP cores never run
//! it, so a slow repair never holds up a request.

use std::thread::JoinHandle;

use tokio::sync::oneshot;

use crate::store::device::Engine;
use crate::store::handle::Store;

/// The running background work of a store. Dropping it stops the work (an I/O in flight
/// completes first) and waits for its thread.
#[must_use = "dropping the handle stops the maintenance"]
pub struct Maintenance {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

// A server keeps the handle beside the store in state all its threads share.
const _: fn() = || {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Maintenance>();
};

impl<E: Engine> Store<E> {
    /// Starts refill, queued repairs and (when configured) the scrub on a thread named
    /// `chunkd-repair`, until the returned handle is dropped. Call once per store: a
    /// second call starts a thread that finds the repair queue taken and ends at once.
    pub fn start_maintenance(&self) -> std::io::Result<Maintenance> {
        let store = self.clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("chunkd-repair".into())
            .spawn(move || {
                tokio_uring::start(async move {
                    let local = match store.local() {
                        Ok(local) => local,
                        Err(error) => {
                            tracing::error!(%error, "the repair thread cannot open the devices; no background repair");
                            return;
                        }
                    };
                    tokio::select! {
                        () = local.run_repairs() => {}
                        _ = stopped => {}
                    }
                });
            })?;
        Ok(Maintenance {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Maintenance {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the repair thread panicked");
        }
    }
}

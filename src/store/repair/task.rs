//! The repair task: refill first, then queued repairs and (between them, when enabled) a
//! slow scrub of every chunk, until the store is closed.
//!
//! **Architecture invariant:** one task per store (the queue's receiver is taken once);
//! repaired shards are flushed whenever the queue runs empty.

use std::sync::atomic::Ordering;

use tokio::sync::mpsc;

use super::rate::RateLimit;
use super::scrub::ScrubCursor;
use crate::store::commit::flush_devices;
use crate::store::device::Engine;
use crate::store::handle::LocalStore;

impl<E: Engine> LocalStore<E> {
    /// Runs refill, then queued repairs and (between them, when enabled) a slow scrub of
    /// every chunk, until the store is closed. A server starts it on the store's own
    /// thread with `Store::start_maintenance`;
    /// tests may run it on their own runtime. Run it once per store: a second call
    /// returns at once.
    pub async fn run_repairs(&self) {
        let Some(mut queue) = self.store.repairs().take_receiver() else {
            return;
        };
        let config = &self.shared.config;
        let mut limit = RateLimit::new(config.repair_bytes_per_second);
        self.refill(&mut queue, &mut limit).await;
        let mut scrub = ScrubCursor::new(config.scrub_bytes_per_second);
        loop {
            let queued = match queue.try_recv() {
                Ok(id) => Some(id),
                Err(mpsc::error::TryRecvError::Disconnected) => return,
                Err(mpsc::error::TryRecvError::Empty) => None,
            };
            if let Some(id) = queued {
                self.repair_limited(&id, &mut limit).await;
                continue;
            }
            // Nothing queued: make what was repaired durable, then scrub or wait.
            self.flush_repairs().await;
            if config.scrub_bytes_per_second > 0 {
                self.scrub_step(&mut scrub).await;
            } else {
                match queue.recv().await {
                    Some(id) => self.repair_limited(&id, &mut limit).await,
                    None => return,
                }
            }
        }
    }

    /// Flushes devices that repairs wrote to (the commit thread only flushes for PUTs).
    async fn flush_repairs(&self) {
        let shared = self.shared.clone();
        if !shared
            .devices
            .iter()
            .any(|d| d.dirty.load(Ordering::Acquire))
        {
            return;
        }
        let flushed = tokio::task::spawn_blocking(move || flush_devices(&shared)).await;
        if let Ok(Err(error)) = flushed {
            tracing::warn!(%error, "flushing repaired shards failed");
            // A failed flush may have taken a device offline: have it recorded for refill.
            self.store.record_refills();
        }
    }
}

//! The repair task: refill first, then queued repairs and (between them, when enabled) a
//! slow scrub of every chunk, until the store is closed; every `device_probe_interval` it
//! probes the devices errors took offline, and refills those that answer.
//!
//! **Architecture invariant:** one task per store (the queue's receiver is taken once);
//! repaired shards are flushed whenever the queue runs empty.

use std::sync::atomic::Ordering;

use tokio::sync::mpsc;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::probe::{probe_offline, probe_wait};
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
        let probe_every = config.device_probe_interval;
        let mut next_probe = Instant::now() + probe_every;
        let mut probing = None;
        loop {
            if !probe_every.is_zero() && Instant::now() >= next_probe {
                next_probe = Instant::now() + probe_every;
                if self.probe_devices(&mut probing).await {
                    self.refill(&mut queue, &mut limit).await;
                }
            }
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
                let probe = async {
                    if probe_every.is_zero() {
                        std::future::pending::<()>().await;
                    }
                    tokio::time::sleep_until(next_probe).await;
                };
                tokio::select! {
                    queued = queue.recv() => match queued {
                        Some(id) => self.repair_limited(&id, &mut limit).await,
                        None => return,
                    },
                    () = probe => {}
                }
            }
        }
    }

    /// Probes the devices errors took offline (off this thread: it blocks); returns
    /// whether any came back and needs its refill. A probe still blocked after
    /// `probe_wait` (a device that hangs rather than fails) is left running in `probing`
    /// and no other is started until it ends, so repairs and the scrub go on meanwhile.
    async fn probe_devices(&self, probing: &mut Option<oneshot::Receiver<Vec<usize>>>) -> bool {
        if let Some(mut running) = probing.take() {
            return match running.try_recv() {
                Ok(back) => !back.is_empty(),
                Err(oneshot::error::TryRecvError::Closed) => false,
                Err(oneshot::error::TryRecvError::Empty) => {
                    tracing::warn!("a device probe is still blocked; no new probe until it ends");
                    *probing = Some(running);
                    false
                }
            };
        }
        // A thread of its own, not the runtime's blocking pool: a runtime waits for its
        // blocking tasks when it is dropped, so a hung probe would hang the store's shutdown.
        let (done, mut probe) = oneshot::channel();
        let shared = self.shared.clone();
        let spawned = std::thread::Builder::new()
            .name("chunkd-probe".into())
            .spawn(move || {
                let _ = done.send(probe_offline(&shared));
            });
        if let Err(error) = spawned {
            tracing::warn!(%error, "device probe skipped: no thread for it");
            return false;
        }
        let wait = probe_wait(self.shared.config.device_probe_interval);
        match tokio::time::timeout(wait, &mut probe).await {
            Ok(back) => back.is_ok_and(|devices| !devices.is_empty()),
            Err(_) => {
                tracing::warn!(?wait, "a device probe is blocked; repairs go on without it");
                *probing = Some(probe);
                false
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

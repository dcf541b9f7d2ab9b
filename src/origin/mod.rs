//! Read-through from an origin (`--origin`): a GET or HEAD of a chunk the node does not
//! hold fetches it whole from S3, an HTTP server or a directory, verifies its BLAKE3 hash
//! against the id, stores it and answers as for a stored chunk (`http::fill` drives that;
//! this module fetches and coalesces).
//!
//! ```text
//! core: miss ─▶ Origin::join(id) ─▶ Leader ─▶ (core task) Origin::fetch ─▶ publish ─▶ store ─▶ drop flight
//!                                 └▶ Waiter ─▶ woken with the leader's outcome
//! origin runtime: slot (--origin-concurrency) ─▶ Source::fetch (object_store) ─▶ verify
//! ```
//!
//! Files: `config` (the flags, the origin URL), `source` (the `object_store` client and one
//! verified fetch), `flight` (coalescing), `error` (why a fill failed, and its status).
//!
//! The origin's HTTP stack (reqwest on tokio) runs on a runtime of its own — two worker
//! threads named `chunkd-origin` — not on the cores' io_uring runtimes: a fetch's leader
//! may be on any core and its waiters on all of them, and the cores never wait on sockets
//! they do not own. A core awaits a fetch's join handle, which wakes it from the origin's
//! thread.
//!
//! **Architecture invariant:** nothing unverified leaves this module — a fetched chunk is
//! a [`crate::store::VerifiedChunk`], so no byte of it is served or stored unless it
//! hashes to the id — and every fetch is bounded: at most `--origin-concurrency` in
//! flight, each within `--origin-timeout`, retries included.

mod config;
mod error;
mod flight;
mod source;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub use config::{Location, OriginConfig, parse_location};
pub use error::FillError;
pub use flight::{Filled, Flight, Flights, Joined, Outcome, Settled, Waiting};
use source::Source;

use crate::chunk::ChunkId;
use crate::erasure::Scheme;
use crate::store::{AlignedBuf, VerifiedChunk};

/// Threads of the origin's runtime: fetches are network waits and a hash each, so two
/// keep a 2-core node's origin traffic moving without taking the cores' place.
const RUNTIME_THREADS: usize = 2;

/// Most origin 404s remembered (`--origin-not-found-ttl`); more are not remembered until
/// some expire.
const NOT_FOUND_MAX: usize = 100_000;

/// Fills in flight (leading or queued for a fetch slot) per slot of
/// `--origin-concurrency`: a miss beyond them is answered 503 at once. A fill's leader
/// goes on when its client leaves, so without this bound a client sending misses of
/// distinct ids and leaving could queue one task per request for `--origin-timeout`.
const FLIGHTS_PER_SLOT: usize = 16;

/// A verified chunk from the origin, with the fetch slot it holds until dropped.
pub struct Fetched {
    pub chunk: VerifiedChunk,
    pub slot: OwnedSemaphorePermit,
}

/// The node's origin.
pub struct Origin {
    source: Arc<Source>,
    runtime: Option<tokio::runtime::Runtime>,
    slots: Arc<Semaphore>,
    flights: Flights,
    /// Most flights at once (`FLIGHTS_PER_SLOT` per slot).
    max_flights: usize,
    timeout: Duration,
    not_found_ttl: Duration,
    /// Chunks the origin lately said it does not have, and until when that is believed.
    not_found: Mutex<NotFound>,
    durable_fills: bool,
    /// Fetches started (each one origin request, its retries aside).
    fetches: AtomicU64,
}

impl Origin {
    /// The origin `config` names (`None` without `--origin`), for chunks laid out for
    /// `scheme` of at most `max_chunk_bytes`.
    pub fn new(
        config: &OriginConfig,
        scheme: Scheme,
        max_chunk_bytes: u32,
    ) -> Result<Option<Origin>, String> {
        let Some(location) = config.origin.clone() else {
            return Ok(None);
        };
        if config.origin_concurrency == 0 {
            return Err("--origin-concurrency must be at least 1".into());
        }
        let source = Source::new(config, location, scheme, max_chunk_bytes)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(RUNTIME_THREADS)
            .thread_name("chunkd-origin")
            .enable_all()
            .build()
            .map_err(|e| format!("starting the origin's threads: {e}"))?;
        Ok(Some(Origin {
            source: Arc::new(source),
            runtime: Some(runtime),
            slots: Arc::new(Semaphore::new(config.origin_concurrency)),
            flights: Flights::default(),
            max_flights: config.origin_concurrency.saturating_mul(FLIGHTS_PER_SLOT),
            timeout: config.origin_timeout,
            not_found_ttl: config.origin_not_found_ttl,
            not_found: Mutex::new(NotFound {
                entries: HashMap::new(),
                pruned: Instant::now(),
            }),
            durable_fills: config.origin_durable_fills,
            fetches: AtomicU64::new(0),
        }))
    }

    /// Where misses are filled from.
    pub fn location(&self) -> &Location {
        self.source.location()
    }

    /// Whether fills wait for a device flush (`--origin-durable-fills`).
    pub fn durable_fills(&self) -> bool {
        self.durable_fills
    }

    /// What a request that missed `id` does: lead its fill or wait for the one in flight;
    /// or `NotFound` at once when the origin said so within `--origin-not-found-ttl`; or
    /// `Busy` when as many fills are in flight as the node allows.
    pub fn join(&self, id: &ChunkId) -> Result<Joined, FillError> {
        if !self.not_found_ttl.is_zero() {
            let mut not_found = self.not_found.lock().unwrap_or_else(|e| e.into_inner());
            match not_found.entries.get(id) {
                Some(&until) if Instant::now() < until => {
                    crate::metrics_origin::not_found_cached();
                    return Err(FillError::NotFound);
                }
                Some(_) => {
                    not_found.entries.remove(id);
                }
                None => {}
            }
        }
        let joined = self.flights.join(id, self.max_flights);
        match &joined {
            Some(Joined::Waiter(_)) => crate::metrics_origin::coalesced(),
            Some(Joined::Leader(_)) => {}
            None => crate::metrics_origin::too_many_fills(),
        }
        joined.ok_or(FillError::Busy)
    }

    /// Resolves when the fill of `id` in flight, if any, has ended (see
    /// [`Flights::settled`]).
    pub fn settled(&self, id: &ChunkId) -> Option<Settled> {
        self.flights.settled(id)
    }

    /// Fills in flight now.
    pub fn fills_in_flight(&self) -> usize {
        self.flights.len()
    }

    /// Fetches this origin has started (the node-wide metric counts every node's).
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// Fetches chunk `id` on the origin's runtime, waiting for a slot first; the verified
    /// chunk, or why not, within `--origin-timeout` in all. Counted in the metrics. The
    /// chunk comes with its slot: the caller holds it until the chunk is stored, so at most
    /// `--origin-concurrency` fetched chunks are held at once, however slow the stores.
    /// The chunk is received into `buffer` (`LocalStore::fill_buffer`, from the calling
    /// core's pool), which comes back with a failure when the fetch did not use it.
    pub async fn fetch(
        &self,
        id: ChunkId,
        buffer: AlignedBuf,
    ) -> Result<Fetched, (FillError, Option<AlignedBuf>)> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let source = self.source.clone();
        let slots = self.slots.clone();
        let timeout = self.timeout;
        let runtime = self
            .runtime
            .as_ref()
            .expect("the runtime lives as long as the origin");
        let fetch = runtime.spawn(async move {
            let mut buffer = Some(buffer);
            let started = Instant::now();
            let deadline = tokio::time::Instant::now() + timeout;
            let Ok(Ok(slot)) = tokio::time::timeout_at(deadline, slots.acquire_owned()).await
            else {
                crate::metrics_origin::fetched(Err(&FillError::Busy), started.elapsed());
                return Err((FillError::Busy, buffer));
            };
            let waited = started.elapsed();
            let fetched = tokio::time::timeout_at(deadline, source.fetch(&id, &mut buffer))
                .await
                .unwrap_or_else(|_| {
                    // A fetch that spent most of its time waiting for a slot timed out
                    // because the node is at --origin-concurrency, not because the
                    // origin is slow: the client should come back (503, Retry-After).
                    if waited >= timeout / 2 {
                        return Err(FillError::Busy);
                    }
                    Err(FillError::Timeout {
                        url: source.url_of(&id),
                        timeout,
                    })
                });
            let len = fetched.as_ref().map(|c| c.bytes().len() as u64);
            crate::metrics_origin::fetched(len, started.elapsed());
            match fetched {
                Ok(chunk) => Ok(Fetched { chunk, slot }),
                Err(error) => Err((error, buffer)),
            }
        });
        let fetched = fetch.await.unwrap_or(Err((FillError::Abandoned, None)));
        match &fetched {
            Err((FillError::NotFound, _)) => self.remember_not_found(&id),
            Err((mismatch @ FillError::Mismatch { .. }, _)) => {
                tracing::warn!(%id, error = %mismatch, "origin sent wrong bytes; nothing stored");
            }
            Err((FillError::Busy, _)) => {}
            Err((error, _)) => tracing::warn!(%id, %error, "fill from the origin failed"),
            Ok(_) => {}
        }
        fetched
    }

    fn remember_not_found(&self, id: &ChunkId) {
        if self.not_found_ttl.is_zero() {
            return;
        }
        let now = Instant::now();
        let mut not_found = self.not_found.lock().unwrap_or_else(|e| e.into_inner());
        if not_found.entries.len() >= NOT_FOUND_MAX {
            // Pruned at most once a TTL (a full walk is about a millisecond, under the
            // lock every miss takes); meanwhile a full memory remembers nothing more.
            if not_found.pruned + self.not_found_ttl > now {
                return;
            }
            not_found.entries.retain(|_, until| *until > now);
            not_found.pruned = now;
        }
        if not_found.entries.len() < NOT_FOUND_MAX {
            not_found.entries.insert(*id, now + self.not_found_ttl);
        }
    }
}

/// The origin's remembered 404s.
struct NotFound {
    /// Chunk → until when its 404 is believed.
    entries: HashMap<ChunkId, Instant>,
    /// When expired entries were last removed.
    pruned: Instant,
}

impl Drop for Origin {
    fn drop(&mut self) {
        // Dropping a runtime waits for its tasks, which must not happen inside another
        // runtime (a core's, at shutdown): let its threads go in the background.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

//! Closed-loop load on the store: a fixed number of requests in flight on each core for a
//! fixed time, counting bytes and recording each request's latency.

use std::cell::RefCell;
use std::future::Future;
use std::ops::Range;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use futures_util::future::{LocalBoxFuture, join_all};
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};

use crate::chunk::ChunkId;
use crate::cores;
use crate::store::device::uring::UringEngine;
use crate::store::{Engine, LocalStore, Store};
use crate::xorshift::XorShift;

/// Submission queue entries of each benchmark core's ring.
pub const RING_ENTRIES: u32 = 512;

/// What one load run measured.
#[derive(Clone, Debug, Default)]
pub struct Measured {
    pub bytes: u64,
    pub ops: u64,
    pub elapsed: Duration,
    /// Latency of every request, in microseconds.
    pub latencies_us: Vec<u32>,
    pub errors: u64,
    /// The first error, to show why requests failed.
    pub first_error: Option<String>,
}

impl Measured {
    pub fn bytes_per_second(&self) -> f64 {
        self.bytes as f64 / self.elapsed.as_secs_f64()
    }

    pub fn percentile_us(&self, p: f64) -> f64 {
        let mut sorted = self.latencies_us.clone();
        sorted.sort_unstable();
        sorted
            .get(((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1)))
            .map_or(0.0, |&v| f64::from(v))
    }

    /// Adds another core's figures (run side by side, so the elapsed time is the longest).
    pub fn merge(mut self, other: Measured) -> Measured {
        self.bytes += other.bytes;
        self.ops += other.ops;
        self.errors += other.errors;
        self.first_error = self.first_error.or(other.first_error);
        self.elapsed = self.elapsed.max(other.elapsed);
        self.latencies_us.extend(other.latencies_us);
        self
    }
}

/// `len` bytes of pseudo-random content for chunk `n`: fast to make, distinct per `n`.
pub fn pseudo_random_bytes(n: u64, len: usize) -> Vec<u8> {
    XorShift::new((n + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1).bytes(len)
}

/// Keeps `in_flight` requests made by `request` going for `duration`; `request` returns the
/// bytes it moved, or an error.
pub async fn closed_loop<F, Fut>(in_flight: usize, duration: Duration, request: F) -> Measured
where
    F: Fn(&mut XorShift) -> Fut,
    Fut: Future<Output = Result<u64, String>>,
{
    let measured = Rc::new(RefCell::new(Measured::default()));
    let started = Instant::now();
    let workers = (0..in_flight).map(|task| {
        let (measured, request) = (measured.clone(), &request);
        async move {
            let mut rng = XorShift::new(
                0x9e37_79b9_7f4a_7c15 ^ (task as u64 + 1).wrapping_mul(0xff51_afd7_ed55_8ccd),
            );
            while started.elapsed() < duration {
                let op_started = Instant::now();
                let result = request(&mut rng).await;
                let latency = op_started.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
                let mut m = measured.borrow_mut();
                match result {
                    Ok(bytes) => {
                        m.bytes += bytes;
                        m.ops += 1;
                        m.latencies_us.push(latency);
                    }
                    Err(error) => {
                        m.errors += 1;
                        m.first_error.get_or_insert(error);
                    }
                }
            }
        }
    });
    join_all(workers).await;
    let mut measured = Rc::try_unwrap(measured)
        .expect("all tasks finished")
        .into_inner();
    measured.elapsed = started.elapsed();
    measured
}

/// A job for one core: given that core's store handle, the work to run there.
type Job = Box<dyn FnOnce(Rc<LocalStore<UringEngine>>) -> LocalBoxFuture<'static, ()> + Send>;

/// Core threads that live for a whole benchmark, each holding one store handle, as a
/// serving node's cores do: what a handle caches (verified shard headers, I/O buffers)
/// carries over from one measurement to the next instead of starting empty each time.
pub struct Workers {
    jobs: Vec<UnboundedSender<Job>>,
    threads: Option<JoinHandle<()>>,
}

impl Workers {
    /// Starts `cores` pinned core threads (one io_uring each) on `store`.
    pub fn start(store: &Store<UringEngine>, cores: usize) -> Workers {
        assert!(cores > 0, "at least one core");
        let (jobs, receivers): (Vec<_>, Vec<_>) =
            (0..cores).map(|_| unbounded_channel::<Job>()).unzip();
        let receivers = Mutex::new(receivers.into_iter().map(Some).collect::<Vec<_>>());
        let store = store.clone();
        let threads = std::thread::spawn(move || {
            cores::run(cores, true, RING_ENTRIES, |core| {
                let mut jobs = receivers.lock().expect("not poisoned")[core]
                    .take()
                    .expect("each core takes its own queue");
                let local = Rc::new(store.local().expect("device handles open"));
                async move {
                    while let Some(job) = jobs.recv().await {
                        job(local.clone()).await;
                    }
                }
            });
        });
        Workers {
            jobs,
            threads: Some(threads),
        }
    }

    /// Number of core threads.
    pub fn cores(&self) -> usize {
        self.jobs.len()
    }

    /// Runs `body(core, handle)` on the first `count` cores at once; returns the results in
    /// core order.
    pub fn run<T, F, Fut>(&self, count: usize, body: F) -> Vec<T>
    where
        T: Send + 'static,
        F: Fn(usize, Rc<LocalStore<UringEngine>>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = T> + 'static,
    {
        assert!(
            (1..=self.cores()).contains(&count),
            "1 to {} cores",
            self.cores()
        );
        let body = Arc::new(body);
        let (results, received) = std::sync::mpsc::channel();
        for (core, jobs) in self.jobs.iter().take(count).enumerate() {
            let (body, results) = (body.clone(), results.clone());
            let job: Job = Box::new(move |local| {
                Box::pin(async move {
                    let _ = results.send((core, body(core, local).await));
                })
            });
            jobs.send(job).expect("core threads run until dropped");
        }
        drop(results);
        let mut per_core: Vec<(usize, T)> = received.iter().collect();
        assert_eq!(per_core.len(), count, "a core thread failed");
        per_core.sort_by_key(|(core, _)| *core);
        per_core.into_iter().map(|(_, result)| result).collect()
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        // Closing the queues ends the core threads.
        self.jobs.clear();
        if let Some(threads) = self.threads.take() {
            let _ = threads.join();
        }
    }
}

/// PUTs chunks `numbers` (see [`puts`]) from every core of `workers`, each taking every
/// n-th number with `in_flight` at once; returns every id stored and the figures of all
/// cores.
pub fn puts_on_cores(
    workers: &Workers,
    numbers: Range<u64>,
    chunk_bytes: usize,
    in_flight: usize,
) -> (Vec<(ChunkId, u64)>, Measured) {
    let started = Instant::now();
    let cores = workers.cores();
    let per_core = workers.run(cores, move |core, local| {
        let mine: Vec<u64> = numbers.clone().skip(core).step_by(cores).collect();
        async move { puts(&local, mine, chunk_bytes, in_flight).await }
    });
    let mut all_ids = Vec::new();
    let mut total = Measured::default();
    for (ids, measured) in per_core {
        all_ids.extend(ids);
        total = total.merge(measured);
    }
    total.elapsed = started.elapsed();
    (all_ids, total)
}

/// PUTs generated chunks `numbers` (each `chunk_bytes` of [`pseudo_random_bytes`]) with
/// `in_flight` at once; returns the ids stored and the write figures.
pub async fn puts<E: Engine>(
    local: &LocalStore<E>,
    numbers: Vec<u64>,
    chunk_bytes: usize,
    in_flight: usize,
) -> (Vec<(ChunkId, u64)>, Measured) {
    use futures_util::stream::{self, StreamExt};
    let mut measured = Measured::default();
    let mut ids = Vec::with_capacity(numbers.len());
    let mut puts = stream::iter(numbers)
        .map(|n| async move {
            let bytes = pseudo_random_bytes(n, chunk_bytes);
            let chunk = local.chunk_buffer(bytes.len() as u64).map(|mut buffer| {
                buffer
                    .extend(&bytes)
                    .expect("the buffer has exactly this length");
                buffer
                    .finish(&ChunkId::of(&bytes))
                    .expect("the id was computed from these bytes")
            });
            let started = Instant::now();
            let result = match chunk {
                Ok(chunk) => local.put(chunk).await.map(|_| ChunkId::of(&bytes)),
                Err(error) => Err(error),
            };
            (result, started.elapsed())
        })
        .buffer_unordered(in_flight);
    while let Some((result, latency)) = puts.next().await {
        match result {
            Ok(id) => {
                measured.ops += 1;
                measured.bytes += chunk_bytes as u64;
                measured
                    .latencies_us
                    .push(latency.as_micros().min(u128::from(u32::MAX)) as u32);
                ids.push((id, chunk_bytes as u64));
            }
            Err(error) => {
                measured.errors += 1;
                measured.first_error.get_or_insert(error.to_string());
            }
        }
    }
    (ids, measured)
}

/// Reads `range_of(chunk, rng)` of random chunks from `ids` with `in_flight` requests.
pub async fn reads<E: Engine>(
    local: &LocalStore<E>,
    ids: &[(ChunkId, u64)],
    in_flight: usize,
    duration: Duration,
    range_of: impl Fn(u64, &mut XorShift) -> Range<u64>,
) -> Measured {
    closed_loop(in_flight, duration, |rng| {
        let (id, len) = ids[rng.next_u64() as usize % ids.len()];
        let range = range_of(len, rng);
        async move {
            let bytes = local.read(&id, range).await.map_err(|e| e.to_string())?;
            Ok(bytes.segments.iter().map(|s| s.len() as u64).sum())
        }
    })
    .await
}

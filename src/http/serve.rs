//! `chunkd serve`: refuses an address something else listens on, binds one listener per
//! core, starts the cores (answering `/healthz`, and `/readyz` with 503, at once), opens
//! the store on io_uring, prints `listening on http://ADDR` (the one line on stdout, only
//! once the store is open), turns ready, and waits for the signals that stop it.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::error::ServeError;
use super::listen::{bind, ensure_address_free, run_core};
use super::node::Node;
use super::signals::wait_for_signals;
use crate::config::ServeConfig;
use crate::metrics::Metrics;
use crate::origin::Origin;
use crate::store::device::uring::UringEngine;
use crate::store::{Maintenance, Store, StoreConfig};

/// Submission-queue entries of each core's ring.
const RING_ENTRIES: u32 = 1024;

/// Runs the node until it is told to stop.
pub fn serve(config: ServeConfig, metrics: Metrics) -> Result<(), ServeError> {
    let store_config = config
        .store()
        .map_err(|e| ServeError::Config(format!("{e:#}")))?;
    if config.cores == 0 {
        return Err(ServeError::Config("--cores must be at least 1".into()));
    }
    ensure_address_free(config.listen)?;
    // The first bind settles the port (port 0 picks a free one); the others share it.
    let first = bind(config.listen)?;
    let address = first.local_addr().map_err(|source| ServeError::Bind {
        address: config.listen,
        source,
    })?;
    let mut listeners = vec![Some(first)];
    for _ in 1..config.cores {
        listeners.push(Some(bind(address)?));
    }
    let listeners = Mutex::new(listeners);
    let max_chunk_bytes = u32::try_from(config.max_chunk_bytes).expect("checked by store()");
    let origin = Origin::new(&config.origin, config.scheme, max_chunk_bytes)
        .map_err(|e| ServeError::Config(format!("--origin: {e}")))?;
    let node = Arc::new(Node::<UringEngine>::new(config, metrics).with_origin(origin));
    tracing::info!(listen = %address, cores = node.config.cores, "bound; opening the store");

    let (cores_done_tx, cores_done_rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::scope(|scope| {
        let node_for_cores = node.clone();
        let listeners = &listeners;
        let cores = scope.spawn(move || {
            let node = node_for_cores;
            crate::cores::run(
                node.config.cores,
                node.config.pin_cores,
                RING_ENTRIES,
                |core| {
                    let listener = listeners.lock().expect("not poisoned")[core]
                        .take()
                        .expect("one listener per core");
                    run_core(core, node.clone(), listener)
                },
            );
            let _ = cores_done_tx.send(());
        });
        // The store's background repair runs until the cores have stopped: dropping the
        // handle then stops it and waits for its thread.
        let opened = open_store(&node, store_config);
        match &opened {
            // One stable line on stdout for scripts and tests that asked for port 0,
            // printed once start-up can no longer fail.
            Ok(_) => println!("listening on http://{address}"),
            // main prints the error, once.
            Err(_) => node.begin_shutdown(),
        }
        let waited = wait_for_signals(&node, cores_done_rx);
        cores.join().expect("the core threads do not panic");
        opened.and(waited) // drops the maintenance handle, which stops the repair thread
    })?;
    tracing::info!("stopped");
    Ok(())
}

/// Opens the store, starts its background repair (refill, queued repairs, scrub) on the
/// store's own thread, and hands the store to the cores.
fn open_store(node: &Node<UringEngine>, config: StoreConfig) -> Result<Maintenance, ServeError> {
    let started = Instant::now();
    let (store, report) = Store::open(config, &UringEngine)?;
    let capacity = store.capacity();
    let geometry = store.geometry();
    tracing::info!(
        devices = ?store.config().devices.iter().map(ToString::to_string).collect::<Vec<_>>(),
        scheme = %format!("{}+{}", geometry.scheme.data_shards(), geometry.scheme.parity_shards()),
        capacity_bytes = capacity.total_bytes,
        free_bytes = capacity.free_bytes,
        chunks = report.chunks,
        created = report.created,
        refilling = ?report.refilling,
        recovery_ms = report.recovery.as_millis() as u64,
        open_ms = started.elapsed().as_millis() as u64,
        "store ready"
    );
    let maintenance = store.start_maintenance().map_err(ServeError::Maintenance)?;
    node.store_opened(store);
    Ok(maintenance)
}

//! What every core of a node shares: the configuration, the metrics recorder, the store
//! (set once recovery is done), the shutdown signal and the count of open connections.
//!
//! Generic over the store's device engine, so the same node runs on io_uring in the binary
//! and on the simulated engine in the in-process tests.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::sync::watch;

use crate::config::ServeConfig;
use crate::metrics::Metrics;
use crate::store::{Engine, Store};

/// What all cores share.
pub struct Node<E: Engine> {
    pub config: ServeConfig,
    pub metrics: Metrics,
    /// Set once recovery is done.
    pub store: OnceLock<Store<E>>,
    pub shutting_down: AtomicBool,
    /// False when the node listens beyond loopback with no token and no explicit opt-in.
    pub open_writes: bool,
    connections: AtomicUsize,
    /// `true` once shutdown has begun.
    shutdown: watch::Sender<bool>,
}

impl<E: Engine> Node<E> {
    /// A node with no store yet: it answers `/healthz`, and `/readyz` with 503.
    pub fn new(config: ServeConfig, metrics: Metrics) -> Node<E> {
        let open_writes = config.write_token.is_some()
            || config.allow_unauthenticated_writes
            || config.listen.ip().is_loopback();
        if !open_writes {
            tracing::warn!(listen = %config.listen, "no write token and not on loopback: writes will be refused");
        }
        Node {
            config,
            metrics,
            store: OnceLock::new(),
            shutting_down: AtomicBool::new(false),
            open_writes,
            connections: AtomicUsize::new(0),
            shutdown: watch::channel(false).0,
        }
    }

    /// Makes the opened store the node's: `/readyz` turns 200 and the chunk routes serve.
    pub fn store_opened(&self, store: Store<E>) {
        let _ = self.store.set(store);
    }

    /// Stops accepting; open connections finish their requests and close.
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        self.shutdown.send_replace(true);
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Relaxed)
    }

    /// Watches for shutdown (`true`).
    pub fn watch_shutdown(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Counts a new connection in, unless the node has `--max-connections` open already.
    pub fn admit_connection(&self) -> bool {
        if self.connections.fetch_add(1, Ordering::Relaxed) >= self.config.max_connections {
            self.connections.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Counts an admitted connection out.
    pub fn connection_closed(&self) {
        self.connections.fetch_sub(1, Ordering::Relaxed);
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }
}

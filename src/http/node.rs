//! What every core of a node shares: the configuration, the metrics recorder, the store
//! (set once recovery is done), the shutdown signal and the count of open connections.
//!
//! Generic over the store's device engine, so the same node runs on io_uring in the binary
//! and on the simulated engine in the in-process tests.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::watch;

use crate::cache::memory::MemoryTier;
use crate::config::ServeConfig;
use crate::metrics::Metrics;
use crate::origin::Origin;
use crate::store::{Engine, Store};

/// What all cores share.
pub struct Node<E: Engine> {
    pub config: ServeConfig,
    pub metrics: Metrics,
    /// Set once recovery is done.
    pub store: OnceLock<Store<E>>,
    /// Where misses are filled from (`--origin`), if anywhere.
    pub origin: Option<Origin>,
    /// The memory tier, sized when the store opens (its default follows flash capacity).
    /// Shared with the store's sweep listener (see [`Node::store_opened`]).
    memory: OnceLock<Arc<MemoryTier>>,
    pub shutting_down: AtomicBool,
    /// False when the node listens beyond loopback with no token and no explicit opt-in.
    pub open_writes: bool,
    connections: AtomicUsize,
    /// Open connections by client address (only addresses with some open).
    clients: Mutex<HashMap<IpAddr, usize>>,
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
            origin: None,
            memory: OnceLock::new(),
            shutting_down: AtomicBool::new(false),
            open_writes,
            connections: AtomicUsize::new(0),
            clients: Mutex::new(HashMap::new()),
            shutdown: watch::channel(false).0,
        }
    }

    /// The node, filling misses from `origin`.
    pub fn with_origin(mut self, origin: Option<Origin>) -> Node<E> {
        if let Some(origin) = &origin {
            tracing::info!(origin = %origin.location(), "misses are filled from the origin");
        }
        self.origin = origin;
        self
    }

    /// Makes the opened store the node's: `/readyz` turns 200 and the chunk routes serve.
    pub fn store_opened(&self, store: Store<E>) {
        let capacity = memory_capacity(&self.config, store.capacity().total_bytes);
        let memory = Arc::new(MemoryTier::new(capacity));
        if self.memory.set(memory.clone()).is_ok() && capacity > 0 {
            tracing::info!(
                bytes = capacity,
                admission = %self.config.memory_admission,
                "memory tier"
            );
            // A chunk a sweep deleted leaves memory too, as a DELETE's does, after its
            // removal from flash (so a GET that read flash before does not admit it again:
            // the tier's epoch). The listener holds the tier, not the node: the store keeps
            // its listener, and must not keep the node alive.
            store.on_swept(move |id| {
                memory.remove(id);
            });
        }
        let _ = self.store.set(store);
    }

    /// The memory tier, once the store is open and unless `--memory-cache 0`.
    pub fn memory(&self) -> Option<&MemoryTier> {
        self.memory
            .get()
            .map(|m| &**m)
            .filter(|m| m.capacity_bytes() > 0)
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

    /// Counts a connection in over the limit: one that takes the place of an idle
    /// connection being closed (whose count goes when its task ends).
    pub fn admit_in_place_of_idle(&self) {
        self.connections.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an admitted connection out.
    pub fn connection_closed(&self) {
        self.connections.fetch_sub(1, Ordering::Relaxed);
    }

    /// Counts a new connection from `peer` in, unless it has
    /// `--max-connections-per-client` open already (always true with no address).
    pub fn admit_client(&self, peer: Option<IpAddr>) -> bool {
        let Some(address) = peer else {
            return true;
        };
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        let open = clients.entry(address).or_insert(0);
        if *open >= self.config.max_connections_per_client {
            if *open == 0 {
                clients.remove(&address);
            }
            return false;
        }
        *open += 1;
        true
    }

    /// Counts a connection from `peer` admitted by [`Node::admit_client`] out.
    pub fn client_closed(&self, peer: Option<IpAddr>) {
        let Some(address) = peer else {
            return;
        };
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(open) = clients.get_mut(&address) {
            *open -= 1;
            if *open == 0 {
                clients.remove(&address);
            }
        }
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }
}

/// The memory tier's bound: `--memory-cache` when given, else a tenth of the flash
/// capacity (the paper's cache servers keep about 10 % of their capacity in memory),
/// at most a quarter of the machine's RAM (`MemTotal`): the rest is for the store's I/O
/// buffer regions (up to 1 GiB), the in-flight bodies (`--max-inflight-bytes-per-core`,
/// 256 MiB a core), the index, responses still sending evicted entries, and the system.
pub fn memory_capacity(config: &ServeConfig, flash_bytes: u64) -> u64 {
    if let Some(bytes) = config.memory_cache {
        return bytes;
    }
    let tenth = flash_bytes / 10;
    match ram_bytes() {
        Some(ram) => tenth.min(ram / 4),
        None => tenth,
    }
}

/// `MemTotal` from /proc/meminfo.
fn ram_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The client a connection from `address` counts against for the per-client limits: an
/// IPv4 address itself (an IPv4-mapped IPv6 address as its IPv4 address), an IPv6 address
/// by its /64 — a single IPv6 host is usually given a whole /64, so counting addresses
/// one by one would let it open unlimited connections and budget shares.
pub fn client_of(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from_bits(
                v6.to_bits() & !u128::from(u64::MAX),
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv6_client_is_its_slash_64_and_ipv4_is_itself() {
        let client = |text: &str| client_of(text.parse().unwrap()).to_string();
        assert_eq!(client("192.0.2.7"), "192.0.2.7");
        assert_eq!(client("::ffff:192.0.2.7"), "192.0.2.7");
        assert_eq!(client("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::");
        assert_eq!(client("2001:db8:1:2:ffff:1:2:3"), "2001:db8:1:2::");
        assert_ne!(client("2001:db8:1:3::1"), client("2001:db8:1:2::1"));
    }
}

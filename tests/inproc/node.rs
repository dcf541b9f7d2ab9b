//! A node on the simulated engine: the `serve` configuration parsed from flags as the
//! binary parses them, a store opened in memory (five devices, 4 + 1) and the `Node` the
//! binary's cores share. Its devices can be corrupted, lost or taken offline.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use chunkd::chunk::ChunkId;
use chunkd::config::ServeConfig;
use chunkd::http::{CoreServer, Node};
use chunkd::metrics::Metrics;
use chunkd::origin::Origin;
use chunkd::store::device::sim::{SimDevice, SimEngine};
use chunkd::store::{ShardLocation, Store, StoreConfig};
use clap::Parser;

/// Seeds the simulated engine's faults (none unless a test sets a plan).
const SEED: u64 = 0x4e77_0001;

/// `chunkd serve`'s flags, parsed as the binary parses them.
#[derive(Parser)]
struct Flags {
    #[command(flatten)]
    serve: ServeConfig,
}

/// The process-wide metrics recorder, installed once for every test in this binary (so
/// counters are shared between tests running at once: compare before and after, never
/// absolute values).
pub fn metrics() -> Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS
        .get_or_init(|| Metrics::install().expect("the first install"))
        .clone()
}

/// A node on simulated devices.
pub struct TestNode {
    pub node: Arc<Node<SimEngine>>,
    pub engine: SimEngine,
    dir: tempfile::TempDir,
}

impl TestNode {
    /// A ready node with 64 MiB devices and `flags` (as on `chunkd serve`'s command line).
    pub fn start(flags: &[&str]) -> TestNode {
        TestNode::with_devices(flags, 64)
    }

    /// A ready node with devices of `device_mib` MiB.
    pub fn with_devices(flags: &[&str], device_mib: u64) -> TestNode {
        let node = TestNode::recovering(flags);
        node.open_store(device_mib);
        node
    }

    /// A node whose store is not open yet (still recovering).
    pub fn recovering(flags: &[&str]) -> TestNode {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let config = serve_config(dir.path(), flags);
        let max_chunk_bytes = u32::try_from(config.max_chunk_bytes).expect("below 4 GiB");
        let origin =
            Origin::new(&config.origin, config.scheme, max_chunk_bytes).expect("a valid origin");
        TestNode {
            node: Arc::new(Node::new(config, metrics()).with_origin(origin)),
            engine: SimEngine::new(SEED),
            dir,
        }
    }

    /// A ready node with devices of `device_mib` MiB, whose store configuration `tweak`
    /// adjusts after the flags: for what no flag sets, such as a manual GC clock.
    pub fn with_store(
        flags: &[&str],
        device_mib: u64,
        tweak: impl FnOnce(&mut StoreConfig),
    ) -> TestNode {
        let node = TestNode::recovering(flags);
        node.open_store_with(device_mib, tweak);
        node
    }

    /// Opens the store on the simulated devices and hands it to the node.
    pub fn open_store(&self, device_mib: u64) {
        self.open_store_with(device_mib, |_| {});
    }

    /// As [`TestNode::open_store`], with the store configuration adjusted by `tweak`.
    pub fn open_store_with(&self, device_mib: u64, tweak: impl FnOnce(&mut StoreConfig)) {
        let mut config = self.node.config.store().expect("a valid store config");
        for device in &mut config.devices {
            device.size_bytes = Some(device_mib << 20);
        }
        tweak(&mut config);
        let (store, _) = Store::open(config, &self.engine).expect("the store opens");
        self.node.store_opened(store);
    }

    /// The node's store.
    pub fn store(&self) -> &Store<SimEngine> {
        self.node.store.get().expect("the store is open")
    }

    /// Core 0's server. Make it inside [`super::run`], and keep it while its connections
    /// are used: dropping it shuts them down gracefully, as at the node's shutdown.
    pub fn server(&self) -> CoreServer<SimEngine> {
        CoreServer::new(self.node.clone(), 0)
    }

    /// Where shard `shard` of chunk `id` lies, and its device.
    pub fn shard(&self, id: &str, shard: usize) -> (Arc<SimDevice>, ShardLocation) {
        let id: ChunkId = id.parse().expect("a chunk id");
        let at = self
            .store()
            .shard_locations(&id)
            .expect("the catalog reads")
            .expect("the chunk is stored")[shard];
        let path = &self.store().config().devices[at.device].path;
        (self.engine.device(path), at)
    }

    /// Flips 64 bytes of shard `shard`'s data at `offset` into it.
    pub fn corrupt_shard(&self, id: &str, shard: usize, offset: u64) {
        let (device, at) = self.shard(id, shard);
        device.corrupt(at.data_offset_bytes() + offset, 64);
    }

    /// The data directory (holds the catalog).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// The `serve` configuration for `flags`, with the data directory in `dir`. The memory
/// tier is off unless `flags` set `--memory-cache`: most tests are about what the store
/// does on a read (faults, rebuilds), which a memory hit would skip;
/// `http_inproc_memory.rs` tests the tier.
fn serve_config(dir: &Path, flags: &[&str]) -> ServeConfig {
    let data_dir = dir.to_str().expect("a UTF-8 temporary path");
    let memory = if flags.iter().any(|f| f.starts_with("--memory-cache")) {
        None
    } else {
        Some("--memory-cache=0")
    };
    let fixed = ["chunkd", "--data-dir", data_dir];
    Flags::try_parse_from(fixed.iter().chain(memory.iter()).chain(flags))
        .unwrap_or_else(|e| panic!("flags {flags:?}: {e}"))
        .serve
}

//! The node's configuration: one set of keys, each settable as a `chunkd serve` flag, as a
//! `CHUNKD_*` environment variable, or in a TOML file (`--config`), in that order of
//! precedence over the documented defaults (`chunkd serve --help` lists them all).
//!
//! The file's keys are the flags' long names (`max-connections = 5000`, or with `_`).
//! Rather than a second parser, file values are turned into flags and the command line is
//! parsed again, so a value is checked the same way wherever it comes from, and a key the
//! command line or environment already set is left alone.
//!
//! **Architecture invariant:** no I/O beyond reading the `--config` file it is given, no
//! state, nothing started: it only turns text into settings (sizes and durations through
//! [`crate::units`]) and hands the store its part as a [`StoreConfig`].

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, Args};

use crate::cache::memory_admission::{MemoryAdmission, parse_admission};
use crate::erasure::Scheme;
use crate::origin::OriginConfig;
use crate::store::{DeviceSpec, StoreConfig};
use crate::units::{parse_duration, parse_percent, parse_size};

/// Why the configuration could not be used; each names the file or flag to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("max-chunk-bytes must be below 4 GiB")]
    MaxChunkBytesTooLarge,
    #[error("reading {}: {cause}", path.display())]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{}: {cause}", path.display())]
    Toml {
        path: PathBuf,
        cause: toml::de::Error,
    },
    #[error("{}: unknown setting {key:?} (see chunkd serve --help)", path.display())]
    UnknownSetting { path: PathBuf, key: String },
    #[error("{}: setting {key:?} cannot be {kind}", path.display())]
    WrongType {
        path: PathBuf,
        key: String,
        kind: &'static str,
    },
    #[error("{}: setting {key:?} = {value}: {cause}", path.display())]
    BadValue {
        path: PathBuf,
        key: String,
        value: String,
        cause: String,
    },
    #[error(
        "{devices} device(s) for {shards} shards a chunk ({scheme}): some chunks would keep two \
         shards on one device, so losing that device could lose them; configure at least \
         {shards} devices, or pass --allow-fewer-devices-than-shards"
    )]
    TooFewDevices {
        devices: usize,
        shards: usize,
        scheme: Scheme,
    },
    #[error("evict-low-watermark ({low}%) is above evict-high-watermark ({high}%)")]
    Watermarks { low: u8, high: u8 },
}

/// Settings of `chunkd serve`.
#[derive(Args, Clone, Debug)]
pub struct ServeConfig {
    /// TOML file with any of these settings (keys are the long flag names).
    #[arg(long, env = "CHUNKD_CONFIG")]
    pub config: Option<PathBuf>,

    /// Address to listen on (one SO_REUSEPORT listener per core).
    #[arg(long, env = "CHUNKD_LISTEN", default_value = "127.0.0.1:7070")]
    pub listen: SocketAddr,

    /// Directory for the catalog (and the embedded default devices).
    #[arg(long, env = "CHUNKD_DATA_DIR", default_value = "chunkd-data")]
    pub data_dir: PathBuf,

    /// A device as PATH[:SIZE] (block device, or file created and preallocated to SIZE);
    /// repeat for each. Default: five 1 GiB files under DATA_DIR/devices.
    #[arg(long = "device", env = "CHUNKD_DEVICES", value_delimiter = ',')]
    pub devices: Vec<DeviceSpec>,

    /// Erasure scheme K+M: K data and M parity shards per chunk (fixed at creation).
    #[arg(long, env = "CHUNKD_SCHEME", default_value = "4+1")]
    pub scheme: Scheme,

    /// Worker threads, one per core, each with its own io_uring and listener.
    #[arg(long, env = "CHUNKD_CORES", default_value_t = crate::cores::available())]
    pub cores: usize,

    /// Pin each worker thread to its core.
    #[arg(long, env = "CHUNKD_PIN_CORES", value_parser = BoolishValueParser::new())]
    pub pin_cores: bool,

    /// Largest chunk a PUT may store.
    #[arg(long, env = "CHUNKD_MAX_CHUNK_BYTES", default_value = "1M", value_parser = parse_size)]
    pub max_chunk_bytes: u64,

    /// Bearer token that PUT, DELETE and other writes must present.
    #[arg(long, env = "CHUNKD_WRITE_TOKEN", hide_env_values = true)]
    pub write_token: Option<String>,

    /// Accept writes without a token even when the listen address (--listen) is not a
    /// loopback address.
    #[arg(long, env = "CHUNKD_ALLOW_UNAUTHENTICATED_WRITES", value_parser = BoolishValueParser::new())]
    pub allow_unauthenticated_writes: bool,

    /// Most bytes of request line and headers together (HTTP/1.1; HTTP/2 header list).
    #[arg(long, env = "CHUNKD_MAX_HEADER_BYTES", default_value = "64K", value_parser = parse_size)]
    pub max_header_bytes: u64,

    /// Most header fields in a request.
    #[arg(long, env = "CHUNKD_MAX_HEADERS", default_value_t = 100)]
    pub max_headers: usize,

    /// Time a client has to send a request's header section: from the accept (a
    /// connection that sends nothing is closed then), or on a keep-alive connection from
    /// the request's first byte; on HTTP/2, the preface and first SETTINGS frame.
    #[arg(long, env = "CHUNKD_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub header_read_timeout: Duration,

    /// Time an idle keep-alive connection (or a stalled request body) is kept.
    #[arg(long, env = "CHUNKD_IDLE_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// Most open connections on the node. At the limit an idle keep-alive connection
    /// (one that has had a request, and has none now) is closed to make room, as nginx
    /// does; with none idle, the new connection is closed at once.
    #[arg(long, env = "CHUNKD_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,

    /// Most open connections from one client (an IPv4 address, or an IPv6 /64); more are
    /// closed at once (nginx's
    /// limit_conn, off there by default). A tenth of the default --max-connections, so it
    /// takes ten addresses to fill the node, while one client needs few connections
    /// (HTTP/2 carries 256 streams on each).
    #[arg(
        long,
        env = "CHUNKD_MAX_CONNECTIONS_PER_CLIENT",
        default_value_t = 1_000
    )]
    pub max_connections_per_client: usize,

    /// Most bytes of request and response bodies in flight per core; requests beyond wait.
    #[arg(long, env = "CHUNKD_MAX_INFLIGHT_BYTES_PER_CORE", default_value = "256M", value_parser = parse_size)]
    pub max_inflight_bytes_per_core: u64,

    /// Most bytes of one client address's request and response bodies in flight per core
    /// (a quarter of the default core budget: no one address can take a core's budget;
    /// nginx has no such byte share, its limit_conn counts connections).
    #[arg(long, env = "CHUNKD_MAX_INFLIGHT_BYTES_PER_CLIENT", default_value = "64M", value_parser = parse_size)]
    pub max_inflight_bytes_per_client: u64,

    /// Most bytes of one connection's request and response bodies in flight (16 chunks of
    /// 1 MiB: more than a 10 Gb/s link's bandwidth-delay product at 10 ms; its requests
    /// beyond wait without holding any of the core's budget).
    #[arg(long, env = "CHUNKD_MAX_INFLIGHT_BYTES_PER_CONNECTION", default_value = "16M", value_parser = parse_size)]
    pub max_inflight_bytes_per_connection: u64,

    /// Time a response may go without progress before its connection is cut and the
    /// budget it holds freed: on HTTP/1.1 any bytes written; on HTTP/2 the response's own
    /// body taking its next segment (at most a shard, 256 KiB of a 1 MiB chunk in 4+1), as
    /// PINGs and other streams' frames do not count. nginx's send_timeout is 60 s; ours is
    /// 30 s because a response is at most one chunk and holds budget while it waits.
    #[arg(long, env = "CHUNKD_SEND_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub send_timeout: Duration,

    /// Time a request body may take in all, from its headers to its last byte, before a
    /// 408 (a trickling body holds budget; the idle timeout still applies between reads).
    /// nginx's client_body_timeout (60 s) runs between reads only, which a body sending a
    /// byte every few seconds never trips; 60 s for the whole body asks at most
    /// 17 KiB/s of a 1 MiB chunk.
    #[arg(long, env = "CHUNKD_BODY_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub body_timeout: Duration,

    /// Longest time the rest of a refused request body (401, 413) is read and dropped
    /// while the answer goes out, so a client still sending reads the answer instead of a
    /// reset. nginx's lingering_time is 30 s; a refused chunk is at most a few MiB, which
    /// takes well under 5 s on any link a cache tier serves.
    #[arg(long, env = "CHUNKD_LINGERING_TIME", default_value = "5s", value_parser = parse_duration)]
    pub lingering_time: Duration,

    /// Most bytes of a refused request body read and dropped (see --lingering-time): a
    /// few times the largest chunk, enough for a client that sent a chunk slightly too big.
    #[arg(long, env = "CHUNKD_LINGERING_BYTES", default_value = "8M", value_parser = parse_size)]
    pub lingering_bytes: u64,

    /// Most concurrent HTTP/2 streams per connection.
    #[arg(long, env = "CHUNKD_MAX_STREAMS_PER_CONNECTION", default_value_t = 256)]
    pub max_streams_per_connection: u32,

    /// Time in-flight requests get to finish after SIGTERM/SIGINT.
    #[arg(long, env = "CHUNKD_SHUTDOWN_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,

    /// Log one line per request. (Like every on/off setting here, the environment
    /// variable takes 1/0, true/false, yes/no or on/off.)
    #[arg(long, env = "CHUNKD_ACCESS_LOG", value_parser = BoolishValueParser::new())]
    pub access_log: bool,

    /// Bytes per second that background repair and refill may use.
    #[arg(long, env = "CHUNKD_REPAIR_RATE", default_value = "64M", value_parser = parse_size)]
    pub repair_rate: u64,

    /// Bytes per second the background scrub reads to re-verify every shard (parity too)
    /// and repair what it finds; 0 turns it off.
    #[arg(long, env = "CHUNKD_SCRUB_RATE", default_value = "8M", value_parser = parse_size)]
    pub scrub_rate: u64,

    /// Verified shard headers each core caches for range reads.
    #[arg(long, env = "CHUNKD_HEADER_CACHE_ENTRIES", default_value_t = 65_536)]
    pub header_cache_entries: usize,

    /// Failed I/Os on distinct extents of a device, with no success between them, after
    /// which it is taken offline (repeated failures of one bad extent count once).
    #[arg(long, env = "CHUNKD_DEVICE_ERROR_LIMIT", default_value_t = 8)]
    pub device_error_limit: u32,

    /// Format a device whose superblock names another chunkd store, erasing that store's
    /// data on it, instead of refusing to start.
    #[arg(long, env = "CHUNKD_REFORMAT_FOREIGN_DEVICES", value_parser = BoolishValueParser::new())]
    pub reformat_foreign_devices: bool,

    /// How long to wait for a device another process holds before refusing it as in use
    /// (a node that just exited releases its devices a moment after it is gone).
    #[arg(long, env = "CHUNKD_DEVICE_LOCK_WAIT", default_value = "5s", value_parser = parse_duration)]
    pub device_lock_wait: Duration,

    /// Allow fewer devices than shards a chunk (K+M): some chunks then keep two shards on
    /// one device, and losing that device can lose them.
    #[arg(long, env = "CHUNKD_ALLOW_FEWER_DEVICES_THAN_SHARDS", value_parser = BoolishValueParser::new())]
    pub allow_fewer_devices_than_shards: bool,

    /// How often a device that errors took offline is probed (one 4 KiB read) and, when
    /// it answers again, brought back and refilled without a restart; 0 never probes.
    #[arg(long, env = "CHUNKD_DEVICE_PROBE_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    pub device_probe_interval: Duration,

    /// Free space of a device group (percent of it) below which chunks are evicted in the
    /// background, least worth keeping first (free flash caches nothing, so little is kept
    /// free; a PUT that finds no room evicts for itself anyway).
    #[arg(long, env = "CHUNKD_EVICT_LOW_WATERMARK", default_value = "2%", value_parser = parse_percent)]
    pub evict_low_watermark: u8,

    /// Free space (percent of a group) the background eviction frees up to once started:
    /// the gap to the low watermark is what one run evicts.
    #[arg(long, env = "CHUNKD_EVICT_HIGH_WATERMARK", default_value = "5%", value_parser = parse_percent)]
    pub evict_high_watermark: u8,

    /// Never evict: a PUT into a full node is refused with 507, as a store (not a cache)
    /// would.
    #[arg(long, env = "CHUNKD_NO_EVICTION", value_parser = BoolishValueParser::new())]
    pub no_eviction: bool,

    /// Largest manifest a PUT may store, as JSON (about 67 bytes a chunk id: 8M lists
    /// 125,000 chunks, a 60 GB image of 512 KiB chunks). Read within --body-timeout. A
    /// manifest's counts change in one catalog transaction that chunk PUTs wait behind
    /// (about 3 µs an id put, 8 µs an id replaced): raise it with that in mind.
    #[arg(long, env = "CHUNKD_MAX_MANIFEST_BYTES", default_value = "8M", value_parser = parse_size)]
    pub max_manifest_bytes: u64,

    /// Most manifests the node keeps; a PUT of a new one beyond it gets 507 (replacing an
    /// existing one is always allowed). Bounds the catalog a writer can grow and the
    /// listing of GET /v1/manifests.
    #[arg(long, env = "CHUNKD_MAX_MANIFESTS", default_value_t = crate::store::DEFAULT_MAX_MANIFESTS)]
    pub max_manifests: u64,

    /// How long a chunk stays after the last manifest naming it is deleted or replaced,
    /// before a sweep deletes it; a read meanwhile cancels the deletion and is counted (an
    /// alarm: something still uses it). Also time to put a replacing manifest again.
    #[arg(long, env = "CHUNKD_GC_GRACE", default_value = "10m", value_parser = parse_duration)]
    pub gc_grace: Duration,

    /// How often the node sweeps expired chunks by itself; 0 sweeps only on POST /v1/gc.
    #[arg(long, env = "CHUNKD_GC_INTERVAL", default_value = "60s", value_parser = parse_duration)]
    pub gc_interval: Duration,

    /// Sweep chunks no manifest names too (after the grace period, unless read first),
    /// instead of leaving them to eviction.
    #[arg(long, env = "CHUNKD_GC_UNREFERENCED", value_parser = BoolishValueParser::new())]
    pub gc_unreferenced: bool,

    /// Bytes of chunks kept in memory in front of flash (the memory tier); 0 turns it off.
    /// Default: a tenth of the flash capacity (what the paper's cache servers keep in
    /// memory), at most a quarter of the machine's RAM (the rest is for I/O buffers,
    /// in-flight bodies, the index and the system).
    #[arg(long, env = "CHUNKD_MEMORY_CACHE", value_parser = parse_size)]
    pub memory_cache: Option<u64>,

    /// When a chunk enters the memory tier: `put` (when stored), `hit` (when read whole
    /// from flash for the second time lately: a doorkeeper of one key per 128 KiB of
    /// --memory-cache), both (`put,hit`, the default) or `none`. A PUT here is a cache
    /// fill, which reads follow; the doorkeeper spares a scan or a working set far larger
    /// than memory a copy per read (measured: admitting every flash read took 512 KiB GETs
    /// from flash to 0.60x nginx O_DIRECT), and S3-FIFO's small queue keeps what is
    /// admitted and not read again out of its main queue. A range read never admits (it
    /// did not read the whole chunk).
    #[arg(long, env = "CHUNKD_MEMORY_ADMISSION", default_value = "put,hit", value_parser = parse_admission)]
    pub memory_admission: MemoryAdmission,

    /// How memory-tier hits reach a client's socket: `write` (the default: copied into the
    /// socket by writev, as flash reads are) or `sendfile` (the kernel attaches the tier's
    /// memfd pages to the socket, as nginx's sendfile does from the page cache). Measured
    /// here (tuning/nginx_vs_chunkd.sh hot cases, same runs), `write` was the faster:
    /// 1.76-2.18x nginx-sendfile for 512 KiB GETs against 1.20-1.65x with `sendfile`,
    /// whose splice looks up and references the memfd's 4 KiB pages one by one (a quarter
    /// of the node's CPU in `filemap_get_entry`).
    #[arg(long, env = "CHUNKD_MEMORY_SEND", default_value = "write", value_parser = ["sendfile", "write"])]
    pub memory_send: String,

    /// Where misses are filled from (`--origin` and its settings).
    #[command(flatten)]
    pub origin: OriginConfig,
}

impl ServeConfig {
    /// The store part of the configuration.
    pub fn store(&self) -> Result<StoreConfig, ConfigError> {
        let mut store = StoreConfig::embedded_default(&self.data_dir);
        if !self.devices.is_empty() {
            store.devices = self.devices.clone();
        }
        store.scheme = self.scheme;
        let shards = self.scheme.total_shards();
        if store.devices.len() < shards && !self.allow_fewer_devices_than_shards {
            return Err(ConfigError::TooFewDevices {
                devices: store.devices.len(),
                shards,
                scheme: self.scheme,
            });
        }
        store.reformat_foreign_devices = self.reformat_foreign_devices;
        store.device_lock_wait = self.device_lock_wait;
        store.max_chunk_bytes =
            u32::try_from(self.max_chunk_bytes).map_err(|_| ConfigError::MaxChunkBytesTooLarge)?;
        store.repair_bytes_per_second = self.repair_rate;
        store.scrub_bytes_per_second = self.scrub_rate;
        store.header_cache_entries = self.header_cache_entries;
        store.device_error_limit = self.device_error_limit.max(1);
        store.device_probe_interval = self.device_probe_interval;
        if self.evict_low_watermark > self.evict_high_watermark {
            return Err(ConfigError::Watermarks {
                low: self.evict_low_watermark,
                high: self.evict_high_watermark,
            });
        }
        store.eviction = !self.no_eviction;
        store.evict_low_watermark_percent = self.evict_low_watermark;
        store.evict_high_watermark_percent = self.evict_high_watermark;
        store.gc_grace = self.gc_grace;
        store.max_manifests = self.max_manifests;
        store.gc_interval = self.gc_interval;
        store.gc_unreferenced = self.gc_unreferenced;
        // Without an origin a chunk a manifest names may be the only copy: eviction may not
        // take it. With one, it can be filled again, so eviction treats it as any other.
        store.pin_referenced = self.origin.origin.is_none();
        Ok(store)
    }
}

/// The command-line arguments to append so that the file at `path` supplies every setting
/// that `matches` (the parsed `serve` arguments) took from its default.
pub fn file_arguments(
    path: &Path,
    command: &clap::Command,
    matches: &ArgMatches,
) -> Result<Vec<OsString>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|cause| ConfigError::Read {
        path: path.to_path_buf(),
        cause,
    })?;
    let table: toml::Table = toml::from_str(&text).map_err(|cause| ConfigError::Toml {
        path: path.to_path_buf(),
        cause,
    })?;
    let mut extra = Vec::new();
    for (key, value) in table {
        let wanted = key.replace('-', "_");
        let arg = command
            .get_arguments()
            .find(|a| a.get_id().as_str() == wanted || a.get_long() == Some(key.as_str()))
            .filter(|a| a.get_id() != "config")
            .ok_or_else(|| ConfigError::UnknownSetting {
                path: path.to_path_buf(),
                key: key.clone(),
            })?;
        let id = arg.get_id().as_str();
        if matches!(
            matches.value_source(id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        ) {
            continue;
        }
        let values = match value {
            toml::Value::Array(items) => items,
            single => vec![single],
        };
        for value in values {
            let text = match value {
                toml::Value::Boolean(b) => b.to_string(),
                toml::Value::String(s) => s,
                toml::Value::Integer(n) => n.to_string(),
                toml::Value::Float(x) => x.to_string(),
                other => {
                    return Err(ConfigError::WrongType {
                        path: path.to_path_buf(),
                        key,
                        kind: other.type_str(),
                    });
                }
            };
            if let Some(flag) = file_value(path, &key, command, arg, &text)? {
                extra.push(flag);
            }
        }
    }
    Ok(extra)
}

/// The flag for `key = text` from the file, checked here with the setting's own parser so
/// that an error names the file and key rather than the flag the value would become.
/// An on/off setting takes what its environment variable takes (true, 1, yes, ...).
fn file_value(
    path: &Path,
    key: &str,
    command: &clap::Command,
    arg: &clap::Arg,
    text: &str,
) -> Result<Option<OsString>, ConfigError> {
    let long = arg.get_long().expect("every setting has a long flag");
    let bad = |cause: clap::Error| ConfigError::BadValue {
        path: path.to_path_buf(),
        key: key.to_owned(),
        value: text.to_owned(),
        cause: std::error::Error::source(&cause)
            .map(ToString::to_string)
            .unwrap_or_else(|| cause.kind().to_string()),
    };
    if matches!(arg.get_action(), ArgAction::SetTrue) {
        let on = clap::builder::TypedValueParser::parse_ref(
            &BoolishValueParser::new(),
            command,
            None,
            std::ffi::OsStr::new(text),
        )
        .map_err(bad)?;
        return Ok(on.then(|| format!("--{long}").into()));
    }
    let flag = format!("--{long}={text}");
    command
        .clone()
        .ignore_errors(false)
        .try_get_matches_from([command.get_name(), flag.as_str()])
        .map_err(bad)?;
    Ok(Some(flag.into()))
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;

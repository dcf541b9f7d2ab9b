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

use clap::parser::ValueSource;
use clap::{ArgMatches, Args};

use crate::erasure::Scheme;
use crate::store::{DeviceSpec, StoreConfig};
use crate::units::{parse_duration, parse_size};

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
    #[arg(long, env = "CHUNKD_PIN_CORES")]
    pub pin_cores: bool,

    /// Largest chunk a PUT may store.
    #[arg(long, env = "CHUNKD_MAX_CHUNK_BYTES", default_value = "1M", value_parser = parse_size)]
    pub max_chunk_bytes: u64,

    /// Bearer token that PUT, DELETE and other writes must present.
    #[arg(long, env = "CHUNKD_WRITE_TOKEN", hide_env_values = true)]
    pub write_token: Option<String>,

    /// Accept writes without a token even when listening beyond loopback.
    #[arg(long, env = "CHUNKD_ALLOW_UNAUTHENTICATED_WRITES")]
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

    /// Most open connections from one client address; more are closed at once (nginx's
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

    /// Log one line per request.
    #[arg(long, env = "CHUNKD_ACCESS_LOG")]
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

    /// I/O errors in a row after which a device is taken offline.
    #[arg(long, env = "CHUNKD_DEVICE_ERROR_LIMIT", default_value_t = 8)]
    pub device_error_limit: u32,
}

impl ServeConfig {
    /// The store part of the configuration.
    pub fn store(&self) -> Result<StoreConfig, ConfigError> {
        let mut store = StoreConfig::embedded_default(&self.data_dir);
        if !self.devices.is_empty() {
            store.devices = self.devices.clone();
        }
        store.scheme = self.scheme;
        store.max_chunk_bytes =
            u32::try_from(self.max_chunk_bytes).map_err(|_| ConfigError::MaxChunkBytesTooLarge)?;
        store.repair_bytes_per_second = self.repair_rate;
        store.scrub_bytes_per_second = self.scrub_rate;
        store.header_cache_entries = self.header_cache_entries;
        store.device_error_limit = self.device_error_limit.max(1);
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
        let long = arg.get_long().expect("every setting has a long flag");
        let values = match value {
            toml::Value::Array(items) => items,
            single => vec![single],
        };
        for value in values {
            match value {
                toml::Value::Boolean(true) => extra.push(format!("--{long}").into()),
                toml::Value::Boolean(false) => {}
                toml::Value::String(s) => extra.push(format!("--{long}={s}").into()),
                toml::Value::Integer(n) => extra.push(format!("--{long}={n}").into()),
                toml::Value::Float(x) => extra.push(format!("--{long}={x}").into()),
                other => {
                    return Err(ConfigError::WrongType {
                        path: path.to_path_buf(),
                        key,
                        kind: other.type_str(),
                    });
                }
            }
        }
    }
    Ok(extra)
}

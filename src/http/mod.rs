//! The HTTP server: `chunkd serve`. One thread per core, each with its own tokio-uring
//! runtime, its own SO_REUSEPORT listener and its own store handle; hyper serves HTTP/1.1
//! and h2c (told apart per connection) with the routes of `shared/design/api.md`.
//!
//! Start-up: the listeners are bound first (so a taken port fails at once), the cores start
//! answering `/healthz` (200) and `/readyz` (503) while the store recovers, then `/readyz`
//! turns 200. Shutdown: the first SIGTERM or SIGINT stops accepting, lets in-flight
//! requests finish within `--shutdown-timeout` and exits 0; a second signal exits at once.
//!
//! The node is generic over the store's device engine: the binary serves a store on
//! io_uring, the in-process tests one on the simulated engine, through the same
//! [`CoreServer`] over any byte stream.
//!
//! Files, from the process down to one request:
//! - `serve` (start-up, the store opened on io_uring), `signals`, `listen` (each core's
//!   listener and accept loop), `node` (what the cores share), `error`;
//! - `connection` (one core's [`CoreServer`]: hyper over a stream), `conn` (a connection's
//!   socket and watchdog), `context` (what one core's handlers share);
//! - `service` (routing and per-request bookkeeping), then one file per command: `get`
//!   (GET and HEAD) with `fill` (a miss filled from the origin), `put`, `delete`, `meta`, `manifests` (`/v1/manifests`), `gc`
//!   (`POST /v1/gc`), `ops` (`/metrics`, `/healthz`, `/readyz`), with `chunks` (the
//!   method dispatch of a chunk's path), `target` (its id and store), `auth` (the write
//!   token), `upload` (a write's body: its declared length, time limits, and what becomes
//!   of it when refused), `linger` (a refused body drained while its answer goes out);
//! - leaves: `reply` (answers and error bodies), `body` (zero-copy response bodies),
//!   `budget` (the in-flight byte budget's core, client and connection shares),
//!   `multipart` (multipart/byteranges), `sendfile` (the client socket, which sends the
//!   memory tier's bytes with `sendfile` from its memfd arena).
//!
//! **Architecture invariant:** handlers never block their core: store I/O goes through the
//! core's io_uring; the only blocking work (catalog commits) happens on the commit thread.
//! This module may not reach into the store's internals: it uses `Store` and `LocalStore`
//! only.

mod auth;
mod body;
mod budget;
mod chunks;
mod conn;
mod connection;
mod context;
mod delete;
mod error;
mod fill;
mod gc;
mod get;
mod linger;
mod listen;
mod manifests;
mod meta;
mod multipart;
mod node;
mod ops;
mod put;
mod reply;
mod sendfile;
mod serve;
mod service;
mod signals;
mod target;
mod upload;

pub use connection::CoreServer;
pub use context::CoreContext;
pub use error::ServeError;
pub use node::{Node, memory_capacity};
pub use serve::serve;

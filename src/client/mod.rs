//! The client of a node: `chunkd push` puts a packed image (`crate::image`) on a node,
//! uploading only the chunks it lacks; `chunkd fetch` rebuilds the image, or a byte range
//! of it, from a node, verifying every chunk.
//!
//! **Architecture invariant:** no key and no plaintext ever leaves the machine — only
//! chunk ids and sealed chunk bytes are sent; every byte written to an output has been
//! checked against its chunk id (BLAKE3) and its key (the AEAD tag) first; and every
//! transfer is bounded (`--parallel` requests in flight, a bounded number of retries).
//!
//! Files: `args` (the shared command-line arguments), `nodes` (node URLs), `retry` (when
//! and where a failed request goes again: pure), `transport` (one request with failover
//! and retries), `pool` (bounded worker threads), `plan` (which chunks a byte range needs:
//! pure), `name` (the default manifest name), `push`, `fetch`, `progress`, `error`.

mod args;
mod error;
mod fetch;
mod name;
mod nodes;
mod plan;
mod pool;
mod progress;
mod push;
mod retry;
mod transport;

pub use args::{DEFAULT_PARALLEL, NodeArgs};
pub use error::ClientError;
pub use fetch::{FetchOptions, FetchReport, fetch};
pub use name::manifest_name;
pub use nodes::Nodes;
pub use plan::{ByteRange, resolve_range};
pub use push::{PushOptions, PushReport, push};
pub use retry::{Attempts, Failure, Next, RetryPolicy};
pub use transport::{Answer, Body, Method, Transport};

//! Background repair, scrub and refill, at a bounded rate.
//!
//! *Repair*: a read that had to rebuild a shard (it failed with EIO or a checksum) queues the
//! chunk (`queue`); the repair task reads all its shards, rebuilds the bad ones and writes
//! them back in place (`chunk`). In place is safe: the space belongs to this chunk's
//! record, and the shard is rewritten with the very bytes and header it should hold. Before
//! writing, the task checks the chunk is still indexed with the same generation, and it holds
//! a `grace` pass from lookup to write, so a chunk deleted meanwhile is never written over a
//! successor.
//!
//! *Scrub* (`scrub`): between queued repairs, every chunk of the catalog is repaired in turn
//! at its own rate, so latent sector errors and corrupt parity, which reads never look at,
//! are found.
//!
//! *Refill* (`refill`): a device that was new or replaced at start-up is walked chunk by
//! chunk through the catalog and every shard it should hold is repaired the same way; then
//! it is flushed and online, and the catalog stops listing it as refilling. Until then its
//! bad shards are expected, so they do not count towards taking it offline, and a restart
//! resumes the refill.
//!
//! *Probe* (`probe`): a device that errors took offline is probed now and then; when it
//! answers with this store's superblock it comes back as refilling, and the refill rewrites
//! what changed while it was out — no restart needed.
//!
//! `task` is the loop that runs them all (refill first, then queued repairs and scrub),
//! paced by `rate`; `maintenance` runs that loop on a thread of the store's own
//! ([`Maintenance`]); `snapshot` reports the store's health with the queue's length.
//!
//! **Architecture invariant:** repair I/O never exceeds its configured bandwidth; the queue
//! is bounded, and a full queue drops the request and counts it (the chunk is rebuilt again
//! on its next read, and queued again).

pub(super) mod chunk;
mod maintenance;
mod probe;
pub(super) mod queue;
mod rate;
mod refill;
mod scrub;
pub(super) mod snapshot;
mod task;

pub use chunk::{RepairOutcome, ShardHealth};
pub use maintenance::Maintenance;

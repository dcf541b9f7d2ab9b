//! [`Rebuilds`]: the shard windows being rebuilt on one core, so that concurrent reads of
//! one bad window share one rebuild — the first reader rebuilds it, the others wait and
//! get a copy of its bytes (a copy of at most one shard's window costs far less than
//! reading `k` other shards again).
//!
//! **Architecture invariant:** one per core, borrowed only between awaits; a reader that
//! waits never depends on a rebuild that can no longer finish — when the one leading it
//! gives up or is dropped, its waiters are told (their channel closes) and rebuild
//! themselves.

use std::collections::HashMap;

use tokio::sync::oneshot;

use super::aligned::AlignedBuf;

/// One shard window of one stored copy of a chunk.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub(super) struct RebuildKey {
    /// The chunk's index key and the generation of its stored copy.
    pub(super) key: u64,
    pub(super) generation: u64,
    pub(super) shard: usize,
    /// The window's bytes in the shard.
    pub(super) start: usize,
    pub(super) end: usize,
}

/// What a reader about to rebuild a window should do.
pub(super) enum Turn {
    /// Rebuild it, then [`Rebuilds::finish`] and hand the bytes to the waiters.
    Lead,
    /// Another reader is rebuilding it: wait for its bytes (an error: rebuild it yourself).
    Wait(oneshot::Receiver<AlignedBuf>),
}

/// The windows being rebuilt on this core, with the readers waiting for each.
#[derive(Default)]
pub(super) struct Rebuilds {
    waiting: HashMap<RebuildKey, Vec<oneshot::Sender<AlignedBuf>>>,
}

impl Rebuilds {
    /// Leads the rebuild of `key`, or waits for the one under way.
    pub(super) fn join(&mut self, key: RebuildKey) -> Turn {
        match self.waiting.get_mut(&key) {
            Some(waiters) => {
                let (sender, receiver) = oneshot::channel();
                waiters.push(sender);
                Turn::Wait(receiver)
            }
            None => {
                self.waiting.insert(key, Vec::new());
                Turn::Lead
            }
        }
    }

    /// Ends the rebuild of `key`; returns the readers waiting for it (dropping them tells
    /// them to rebuild it themselves).
    pub(super) fn finish(&mut self, key: &RebuildKey) -> Vec<oneshot::Sender<AlignedBuf>> {
        self.waiting.remove(key).unwrap_or_default()
    }
}

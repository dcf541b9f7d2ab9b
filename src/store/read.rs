//! The read path: the byte range of a chunk is mapped to the data shards that hold it, each
//! shard's 4 KiB-aligned window is read and verified, and any window that cannot be read
//! soundly is rebuilt from the same window of `k` other shards.
//!
//! A full 512 KiB read at k = 4 is four 128 KiB reads when this core has the shards'
//! headers cached (see `header_cache`), four 132 KiB reads (header and data are adjacent,
//! read together) otherwise. A range inside one shard reads just its window, plus the
//! header when it is not cached. When a shard's device
//! is known to be offline, the shards that rebuild it are read in the same first round, so
//! a degraded read takes no extra round trip; a full-chunk read then costs the same I/O as
//! a healthy one (parity takes the lost shard's place).
//!
//! Concurrent reads of one bad window on a core share its rebuild (`rebuilds`); a window
//! that could not be read soundly queues its chunk for repair once (the queue holds each
//! chunk at most once).
//!
//! The bytes returned are slices of the read buffers themselves ([`bytes::Bytes`] owning
//! the aligned buffer): nothing is copied on the way to the socket.

use std::cell::RefCell;
use std::ops::Range;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use futures_util::future::join_all;

use super::aligned::AlignedBuf;
use super::device::{Engine, submit_together};
use super::error::StoreError;
use super::fetch::{Fault, Window};
use super::handle::LocalStore;
use super::index::{Hit, key_of};
use super::rebuilds::{RebuildKey, Rebuilds, Turn};
use super::state::lock;
use super::stripe::Stripe;
use crate::chunk::ChunkId;
use crate::erasure::ShardSet;

/// Bytes of a chunk, as read.
#[derive(Debug)]
pub struct ChunkBytes {
    /// Length of the whole chunk.
    pub chunk_len_bytes: u64,
    /// The requested range, in order, in as many pieces as there were shards to read.
    pub segments: Vec<Bytes>,
}

impl ChunkBytes {
    /// The requested bytes joined into one vector (copies; for tests and tools).
    pub fn to_vec(&self) -> Vec<u8> {
        self.segments
            .iter()
            .flat_map(|s| s.iter().copied())
            .collect()
    }
}

/// Sound windows gathered while serving one read, each with its shard.
type Gathered = Vec<(usize, Window)>;

impl<E: Engine> LocalStore<E> {
    /// The length of chunk `id` if it is stored, confirmed against the catalog's full id;
    /// reads no shard.
    pub fn lookup(&self, id: &ChunkId) -> Result<Option<u64>, StoreError> {
        let shared = &*self.shared;
        if shared.index.get(key_of(id)).is_none() {
            return Ok(None);
        }
        Ok(shared
            .catalog
            .get(id)?
            .map(|record| u64::from(record.len_bytes)))
    }

    /// True when `id` is stored but known lost (fewer than `k` sound shards with every
    /// device answering): a PUT of it should store it again.
    pub fn is_lost(&self, id: &ChunkId) -> bool {
        lock(&self.shared.unrecoverable).contains(id)
    }

    /// The length of the chunk indexed under `id`'s key, from memory only. The full id is
    /// confirmed by the read that follows (see `index` for why that is enough).
    pub fn indexed_len(&self, id: &ChunkId) -> Option<u64> {
        self.shared
            .index
            .get(key_of(id))
            .map(|e| u64::from(e.len_bytes))
    }

    /// A hit on chunk `id` served by a tier in front of flash (the memory tier): counted
    /// for flash's eviction policy too, so a chunk hot in memory is not the first to leave
    /// flash (and is still there after a restart empties memory). A hit on an expired
    /// chunk cancels its deletion (see `refs`): every answer about a stored chunk that
    /// reads no shard (HEAD, 304, 412, 416) should call this.
    pub fn touch(&self, id: &ChunkId) {
        if self.shared.index.hit(key_of(id)) == Hit::Expired {
            self.expired_read(id);
        }
    }

    /// A request for a chunk flash does not hold, answered without a read: a flash miss.
    pub fn count_miss(&self) {
        self.shared.flash.misses.add(1);
    }

    /// Reads bytes `range` of chunk `id`, verified, rebuilding what it must. Counts a
    /// flash hit (for the eviction policy too) or miss.
    pub async fn read(&self, id: &ChunkId, range: Range<u64>) -> Result<ChunkBytes, StoreError> {
        let read = self.read_uncounted(id, range).await;
        let flash = &self.shared.flash;
        match &read {
            Ok(_) => {
                flash.hits.add(1);
                // An expired chunk's cancellation was made before the I/O (below).
                self.shared.index.hit(key_of(id));
            }
            Err(StoreError::NotFound) => {
                flash.misses.add(1);
            }
            Err(_) => {}
        }
        read
    }

    /// As [`LocalStore::read`], counting nothing: for the further ranges of one request
    /// (one request is one hit for the policy and the metrics). A read of an expired chunk
    /// still cancels its deletion (see `refs`).
    pub async fn read_uncounted(
        &self,
        id: &ChunkId,
        range: Range<u64>,
    ) -> Result<ChunkBytes, StoreError> {
        // Held until the last I/O of this record: its space is not reused meanwhile.
        let _pass = self.shared.grace.enter();
        let (entry, flags) = self
            .shared
            .index
            .get_with_flags(key_of(id))
            .ok_or(StoreError::NotFound)?;
        // Cancelled before the I/O, not after: a sweep that claims the chunk meanwhile
        // would delete a chunk this read then serves. (A sweep that claimed it first
        // wins; the read is still counted as an alarm.)
        if flags.expired && !flags.cancelled {
            self.expired_read(id);
        }
        let stripe = self.stripe(id, entry);
        let layout = stripe.layout;
        let len_bytes = layout.chunk_len_bytes();
        if range.start > range.end || range.end > len_bytes {
            return Err(StoreError::BadRange {
                start: range.start,
                end: range.end,
                len_bytes,
            });
        }
        let spans: Vec<_> = layout.spans(range).collect();
        let mut plan: Vec<(usize, Range<usize>)> =
            spans.iter().map(|s| (s.shard, s.aligned())).collect();
        plan.extend(substitutes(&stripe, &plan));
        let results = submit_together(join_all(
            plan.iter()
                .map(|(shard, window)| stripe.fetch(*shard, window.clone())),
        ))
        .await;
        let mut gathered: Gathered = Vec::with_capacity(plan.len());
        let mut faults = Vec::new();
        for ((shard, window), result) in plan.into_iter().zip(results) {
            match result {
                Ok(sound) => gathered.push((shard, sound)),
                Err(Fault::OtherChunk) => return Err(StoreError::NotFound),
                Err(fault) => faults.push((shard, window, fault)),
            }
        }
        for span in &spans {
            let window = span.aligned();
            if find(&gathered, span.shard, &window).is_none() {
                let fault = faults
                    .iter()
                    .find(|(s, w, _)| *s == span.shard && *w == window)
                    .map_or(Fault::Offline, |(_, _, f)| f.clone());
                self.rebuild_shared(&stripe, span.shard, window, fault, &mut gathered)
                    .await?;
            }
        }
        let segments = spans
            .iter()
            .map(|span| {
                let window = span.aligned();
                let at = find(&gathered, span.shard, &window)
                    .expect("every span's window was read or rebuilt");
                let (_, sound) = gathered.swap_remove(at);
                let start = span.shard_offset_bytes;
                sound.into_bytes(start..start + span.len_bytes)
            })
            .collect();
        Ok(ChunkBytes {
            chunk_len_bytes: len_bytes,
            segments,
        })
    }

    /// As [`LocalStore::rebuild`], sharing the work with concurrent reads of the same
    /// window on this core: the first rebuilds, the others wait for a copy of its bytes.
    async fn rebuild_shared(
        &self,
        stripe: &Stripe<'_, E>,
        lost: usize,
        window: Range<usize>,
        fault: Fault,
        gathered: &mut Gathered,
    ) -> Result<(), StoreError> {
        let key = RebuildKey {
            key: stripe.entry.key,
            generation: stripe.entry.generation,
            shard: lost,
            start: window.start,
            end: window.end,
        };
        let turn = self.rebuilds.borrow_mut().join(key);
        if let Turn::Wait(rebuilt) = turn {
            if let Ok(buf) = rebuilt.await {
                let range = window;
                gathered.push((
                    lost,
                    Window {
                        buf,
                        data_start: 0,
                        range,
                    },
                ));
                return Ok(());
            }
            // The reader leading it failed or went away: rebuild it here.
            return self.rebuild(stripe, lost, window, fault, gathered).await;
        }
        let leading = Leading {
            rebuilds: &self.rebuilds,
            key,
        };
        let rebuilt = self
            .rebuild(stripe, lost, window.clone(), fault, gathered)
            .await;
        let waiters = self.rebuilds.borrow_mut().finish(&leading.key);
        if rebuilt.is_ok() && !waiters.is_empty() {
            let at = find(gathered, lost, &window).expect("the rebuilt window was gathered");
            let bytes = gathered[at].1.bytes_mut(window.clone());
            for waiter in waiters {
                let mut copy = AlignedBuf::scratch(window.len());
                copy.copy_from_slice(bytes);
                let _ = waiter.send(copy);
            }
        }
        rebuilt
    }

    /// Rebuilds `window` of shard `lost` from the same window of `k` other shards found in
    /// `gathered` or read now, and adds it to `gathered`.
    async fn rebuild(
        &self,
        stripe: &Stripe<'_, E>,
        lost: usize,
        window: Range<usize>,
        fault: Fault,
        gathered: &mut Gathered,
    ) -> Result<(), StoreError> {
        let shared = &*self.shared;
        let scheme = shared.config.scheme;
        let (k, w) = (scheme.data_shards(), scheme.total_shards());
        let sound = |gathered: &Gathered| {
            (0..w)
                .filter(|&s| s != lost && find(gathered, s, &window).is_some())
                .count()
        };
        let mut causes = vec![format!("shard {lost}: {fault}")];
        gather_sources(stripe, lost, &window, gathered, &mut causes).await;
        let healthy = sound(gathered);
        if healthy < k {
            shared
                .counters
                .chunks_unreadable
                .fetch_add(1, Ordering::Relaxed);
            if stripe.usable_shards().len() == w {
                // Every device answered: the repair confirms the chunk lost and drops it,
                // so later reads answer 404 without touching a device.
                self.store.repairs().push(*stripe.id, &shared.counters);
            }
            return Err(StoreError::Unreadable {
                healthy,
                needed: k,
                cause: causes.join("; "),
            });
        }
        let chosen: Vec<Option<usize>> = (0..w)
            .map(|s| {
                if s == lost {
                    None
                } else {
                    find(gathered, s, &window)
                }
            })
            .collect();
        let present = (0..w)
            .filter(|&s| chosen[s].is_some())
            .fold(ShardSet::empty(), ShardSet::with);
        let mut output = Window::scratch(window.clone());
        {
            let mut views: Vec<&mut [u8]> = (0..w).map(|_| &mut [][..]).collect();
            for (at, (shard, sound)) in gathered.iter_mut().enumerate() {
                if chosen[*shard] == Some(at) {
                    views[*shard] = sound.bytes_mut(window.clone());
                }
            }
            views[lost] = output.bytes_mut(window.clone());
            self.codec
                .borrow_mut()
                .rebuild(&mut views, present, ShardSet::single(lost))
                .expect("k sound shards were gathered");
        }
        shared
            .counters
            .shards_rebuilt
            .fetch_add(1, Ordering::Relaxed);
        if !matches!(fault, Fault::Offline) {
            self.store.repairs().push(*stripe.id, &shared.counters);
        }
        gathered.push((lost, output));
        Ok(())
    }
}

/// Reads `window` of shards not yet in `gathered` (`lost` aside), as few at a time as
/// could still make `k` sound ones, until there are `k` or none is left to try; adds the
/// sound ones to `gathered` and why the others failed to `causes`.
async fn gather_sources<E: Engine>(
    stripe: &Stripe<'_, E>,
    lost: usize,
    window: &Range<usize>,
    gathered: &mut Gathered,
    causes: &mut Vec<String>,
) {
    let (k, w) = (stripe.scheme().data_shards(), stripe.width());
    let sound = |gathered: &Gathered| {
        (0..w)
            .filter(|&s| s != lost && find(gathered, s, window).is_some())
            .count()
    };
    let untried: Vec<usize> = (0..w)
        .filter(|&s| s != lost && find(gathered, s, window).is_none())
        .collect();
    let mut untried = untried.into_iter();
    while sound(gathered) < k {
        let batch: Vec<usize> = untried.by_ref().take(k - sound(gathered)).collect();
        if batch.is_empty() {
            break;
        }
        let results = submit_together(join_all(
            batch.iter().map(|&s| stripe.fetch(s, window.clone())),
        ))
        .await;
        for (shard, result) in batch.into_iter().zip(results) {
            match result {
                Ok(sound) => gathered.push((shard, sound)),
                Err(fault) => causes.push(format!("shard {shard}: {fault}")),
            }
        }
    }
}

/// Leading a shared rebuild: dropped before it finishes (its read cancelled), it ends the
/// rebuild so its waiters rebuild the window themselves.
struct Leading<'a> {
    rebuilds: &'a RefCell<Rebuilds>,
    key: RebuildKey,
}

impl Drop for Leading<'_> {
    fn drop(&mut self) {
        drop(self.rebuilds.borrow_mut().finish(&self.key));
    }
}

/// Where in `gathered` a sound window of `shard` covering `window` is.
fn find(gathered: &Gathered, shard: usize, window: &Range<usize>) -> Option<usize> {
    gathered
        .iter()
        .position(|(s, w)| *s == shard && w.covers(window))
}

/// Extra windows to read in the first round, because a planned shard's device is
/// offline: enough other shards of the same window to rebuild it.
fn substitutes<E: Engine>(
    stripe: &Stripe<'_, E>,
    plan: &[(usize, Range<usize>)],
) -> Vec<(usize, Range<usize>)> {
    let (k, w) = (stripe.scheme().data_shards(), stripe.width());
    let online = |s: usize| stripe.usable(s);
    let mut extra: Vec<(usize, Range<usize>)> = Vec::new();
    for (lost, window) in plan.iter().filter(|(s, _)| !online(*s)) {
        let covered = |s: usize, extra: &[(usize, Range<usize>)]| {
            plan.iter()
                .chain(extra)
                .any(|(p, r)| *p == s && r.start <= window.start && window.end <= r.end)
        };
        let mut sources = (0..w)
            .filter(|&s| s != *lost && online(s) && covered(s, &extra))
            .count();
        for s in (0..w).filter(|&s| s != *lost && online(s)) {
            if sources >= k {
                break;
            }
            if !covered(s, &extra) {
                extra.push((s, window.clone()));
                sources += 1;
            }
        }
    }
    extra
}

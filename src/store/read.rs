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
//! The bytes returned are slices of the read buffers themselves ([`bytes::Bytes`] owning
//! the aligned buffer): nothing is copied on the way to the socket.

use std::ops::Range;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use futures_util::future::join_all;

use super::aligned::AlignedBuf;
use super::device::submit_together;
use super::geometry::Placement;
use super::header_cache::{CachedHeader, HeaderKey};
use super::health::DeviceState;
use super::index::{Entry, key_of};
use super::shard::{self, HEADER_BYTES, ShardError, ShardIdentity};
use super::{Engine, Failure, LocalStore, StoreError};
use crate::chunk::ChunkId;
use crate::erasure::{Layout, ShardSet};

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

/// Why one shard window could not be used.
#[derive(Debug, Clone)]
pub(super) enum Fault {
    /// Its device is offline: not even tried.
    Offline,
    /// The device failed the read.
    Io(String),
    /// The header or a block did not verify.
    Corrupt(String),
    /// A sound header of a different chunk sharing the index key: the requested chunk is
    /// not stored.
    OtherChunk,
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fault::Offline => f.write_str("device offline"),
            Fault::Io(error) => write!(f, "I/O error: {error}"),
            Fault::Corrupt(error) => write!(f, "{error}"),
            Fault::OtherChunk => f.write_str("holds another chunk"),
        }
    }
}

/// One shard window, read and verified (or rebuilt).
pub(super) struct Window {
    pub(super) buf: AlignedBuf,
    /// Where in `buf` the window's first byte is (after the header when read together).
    pub(super) data_start: usize,
    pub(super) range: Range<usize>,
}

impl Window {
    /// A window to rebuild into: its bytes are unspecified until the rebuild overwrites
    /// them all.
    pub(super) fn scratch(range: Range<usize>) -> Window {
        Window {
            buf: AlignedBuf::scratch(range.len()),
            data_start: 0,
            range,
        }
    }

    fn covers(&self, range: &Range<usize>) -> bool {
        self.range.start <= range.start && range.end <= self.range.end
    }

    /// The bytes of `within`, a part of this window.
    pub(super) fn bytes_mut(&mut self, within: Range<usize>) -> &mut [u8] {
        debug_assert!(self.covers(&within));
        let start = self.data_start + within.start - self.range.start;
        &mut self.buf[start..start + within.len()]
    }

    fn into_bytes(self, within: Range<usize>) -> Bytes {
        debug_assert!(self.covers(&within));
        let start = self.data_start + within.start - self.range.start;
        Bytes::from_owner(self.buf).slice(start..start + within.len())
    }
}

/// Where a shard read takes the shard's header from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum HeaderSource {
    CacheFirst,
    Device,
}

/// Sound windows gathered while serving one read, each with its shard.
type Pool = Vec<(usize, Window)>;

/// What every shard read of one chunk needs to know.
pub(super) struct Target<'a> {
    pub(super) id: &'a ChunkId,
    pub(super) entry: Entry,
    pub(super) layout: Layout,
    pub(super) placement: Placement,
}

impl<E: Engine> LocalStore<E> {
    /// The length of chunk `id` if it is stored, confirmed against the catalog's full id;
    /// reads no shard.
    pub fn lookup(&self, id: &ChunkId) -> Result<Option<u64>, StoreError> {
        let core = &self.store.inner.core;
        if core.index.get(key_of(id)).is_none() {
            return Ok(None);
        }
        Ok(core
            .catalog
            .get(id)?
            .map(|record| u64::from(record.len_bytes)))
    }

    /// True when `id` is stored but known lost (fewer than `k` sound shards with every
    /// device answering): a PUT of it should store it again.
    pub fn is_lost(&self, id: &ChunkId) -> bool {
        super::lock(&self.store.inner.core.unrecoverable).contains(id)
    }

    /// The length of the chunk indexed under `id`'s key, from memory only. The full id is
    /// confirmed by the read that follows (see `index` for why that is enough).
    pub fn indexed_len(&self, id: &ChunkId) -> Option<u64> {
        self.store
            .inner
            .core
            .index
            .get(key_of(id))
            .map(|e| u64::from(e.len_bytes))
    }

    /// Reads bytes `range` of chunk `id`, verified, rebuilding what it must.
    pub async fn read(&self, id: &ChunkId, range: Range<u64>) -> Result<ChunkBytes, StoreError> {
        let core = &self.store.inner.core;
        let entry = core.index.get(key_of(id)).ok_or(StoreError::NotFound)?;
        let layout = Layout::new(core.config.scheme, u64::from(entry.len_bytes));
        let len_bytes = layout.chunk_len_bytes();
        if range.start > range.end || range.end > len_bytes {
            return Err(StoreError::BadRange {
                start: range.start,
                end: range.end,
                len_bytes,
            });
        }
        let target = Target {
            id,
            entry,
            layout,
            placement: core.geometry.placement(id),
        };
        let spans: Vec<_> = layout.spans(range).collect();
        let mut plan: Vec<(usize, Range<usize>)> =
            spans.iter().map(|s| (s.shard, s.aligned())).collect();
        plan.extend(self.substitutes(&target, &plan));
        let results = submit_together(join_all(
            plan.iter()
                .map(|(shard, window)| self.fetch(&target, *shard, window.clone())),
        ))
        .await;
        let mut pool: Pool = Vec::with_capacity(plan.len());
        let mut faults = Vec::new();
        for ((shard, window), result) in plan.into_iter().zip(results) {
            match result {
                Ok(sound) => pool.push((shard, sound)),
                Err(Fault::OtherChunk) => return Err(StoreError::NotFound),
                Err(fault) => faults.push((shard, window, fault)),
            }
        }
        for span in &spans {
            let window = span.aligned();
            if find(&pool, span.shard, &window).is_none() {
                let fault = faults
                    .iter()
                    .find(|(s, w, _)| *s == span.shard && *w == window)
                    .map_or(Fault::Offline, |(_, _, f)| f.clone());
                self.rebuild(&target, span.shard, window, fault, &mut pool)
                    .await?;
            }
        }
        let segments = spans
            .iter()
            .map(|span| {
                let window = span.aligned();
                let at = find(&pool, span.shard, &window)
                    .expect("every span's window was read or rebuilt");
                let (_, sound) = pool.swap_remove(at);
                let start = span.shard_offset_bytes;
                sound.into_bytes(start..start + span.len_bytes)
            })
            .collect();
        Ok(ChunkBytes {
            chunk_len_bytes: len_bytes,
            segments,
        })
    }

    /// Extra windows to read in the first round, because a planned shard's device is
    /// offline: enough other shards of the same window to rebuild it.
    fn substitutes(
        &self,
        target: &Target<'_>,
        plan: &[(usize, Range<usize>)],
    ) -> Vec<(usize, Range<usize>)> {
        let core = &self.store.inner.core;
        let (k, w) = (
            core.config.scheme.data_shards(),
            core.config.scheme.total_shards(),
        );
        let online = |s: usize| {
            core.devices[core.geometry.shard_address(target.placement, s, 0).0]
                .counters
                .usable()
        };
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

    /// Reads and verifies `window` of shard `shard`.
    pub(super) async fn fetch(
        &self,
        target: &Target<'_>,
        shard: usize,
        window: Range<usize>,
    ) -> Result<Window, Fault> {
        self.fetch_with(target, shard, window, HeaderSource::CacheFirst)
            .await
    }

    /// Reads and verifies `window` of shard `shard`, taking its header from this core's
    /// cache when `source` allows and it is there, from the device otherwise. Repair and
    /// scrub read the header from the device: a header corrupted after it was cached must
    /// be found.
    pub(super) async fn fetch_with(
        &self,
        target: &Target<'_>,
        shard: usize,
        window: Range<usize>,
        source: HeaderSource,
    ) -> Result<Window, Fault> {
        let core = &self.store.inner.core;
        let (device, base) =
            core.geometry
                .shard_address(target.placement, shard, target.entry.offset_blocks);
        let slot = &core.devices[device];
        if !slot.counters.usable() {
            return Err(Fault::Offline);
        }
        let key = HeaderKey {
            key: target.entry.key,
            shard: shard as u8,
            generation: target.entry.generation,
        };
        let cached = match source {
            HeaderSource::CacheFirst => self.headers.borrow_mut().get(&key),
            HeaderSource::Device => None,
        };
        let data_offset = base + (HEADER_BYTES + window.start) as u64;
        let read = match &cached {
            Some(_) => {
                let (result, data) = self
                    .read_at(device, AlignedBuf::scratch(window.len()), data_offset)
                    .await;
                result.map(|()| (None, data, 0))
            }
            None if window.start == 0 => {
                let (result, buf) = self
                    .read_at(
                        device,
                        AlignedBuf::scratch(HEADER_BYTES + window.len()),
                        base,
                    )
                    .await;
                result.map(|()| (None, buf, HEADER_BYTES))
            }
            None => {
                let header = self.read_at(device, AlignedBuf::scratch(HEADER_BYTES), base);
                let data = self.read_at(device, AlignedBuf::scratch(window.len()), data_offset);
                let ((header_result, header), (data_result, data)) =
                    futures_util::future::join(header, data).await;
                header_result
                    .and(data_result)
                    .map(|()| (Some(header), data, 0))
            }
        };
        let (header, buf, data_start) = match read {
            Ok(read) => read,
            Err(error) => {
                core.device_failed(device, Failure::Read, &error);
                return Err(Fault::Io(format!("{}: {error}", slot.spec)));
            }
        };
        let data = &buf[data_start..data_start + window.len()];
        let verified = match &cached {
            Some(cached) => self.verify_cached(target, cached, window.start, data),
            None => {
                let header = header.as_deref().unwrap_or(&buf[..HEADER_BYTES]);
                self.verify(target, shard, header, window.start, data)
                    .map(|crcs| {
                        self.headers.borrow_mut().insert(
                            key,
                            CachedHeader {
                                id: *target.id,
                                block_crcs: crcs.into(),
                            },
                        );
                    })
            }
        };
        match verified {
            Ok(()) => slot.counters.succeeded(),
            Err(fault) => {
                // A refilling device holds nothing sound until the refill reaches each
                // chunk: its bad shards are expected, not a sign of failure, and must not
                // take it offline (the refill skips an offline device).
                let refilling = slot.counters.state() == DeviceState::Refilling;
                if matches!(fault, Fault::Corrupt(_)) && !refilling {
                    core.device_failed(device, Failure::Checksum, &fault);
                }
                return Err(fault);
            }
        }
        Ok(Window {
            buf,
            data_start,
            range: window,
        })
    }

    /// Checks a header read from the device, then `data`; returns the block checksums.
    fn verify(
        &self,
        target: &Target<'_>,
        shard: usize,
        header: &[u8],
        window_start: usize,
        data: &[u8],
    ) -> Result<Vec<u32>, Fault> {
        let scheme = self.store.inner.core.config.scheme;
        let expected = ShardIdentity {
            id: *target.id,
            chunk_len_bytes: target.entry.len_bytes,
            generation: target.entry.generation,
            shard_index: shard as u8,
            data_shards: scheme.data_shards() as u8,
            parity_shards: scheme.parity_shards() as u8,
            shard_len_bytes: target.layout.shard_len_bytes() as u32,
        };
        let verified = match shard::verify_header(header, &expected) {
            Ok(verified) => verified,
            Err(ShardError::Mismatch { found, .. })
                if found.id != *target.id
                    && key_of(&found.id) == target.entry.key
                    && found.generation == target.entry.generation =>
            {
                return Err(Fault::OtherChunk);
            }
            Err(error) => return Err(Fault::Corrupt(error.to_string())),
        };
        let crcs = verified.block_crcs();
        shard::verify_blocks(&crcs, window_start / shard::BLOCK_BYTES, data)
            .map_err(|e| Fault::Corrupt(e.to_string()))?;
        Ok(crcs)
    }

    /// Checks `data` against a header this core verified earlier.
    fn verify_cached(
        &self,
        target: &Target<'_>,
        cached: &CachedHeader,
        window_start: usize,
        data: &[u8],
    ) -> Result<(), Fault> {
        if cached.id != *target.id {
            return Err(Fault::OtherChunk);
        }
        shard::verify_blocks(&cached.block_crcs, window_start / shard::BLOCK_BYTES, data)
            .map_err(|e| Fault::Corrupt(e.to_string()))
    }

    /// Rebuilds `window` of shard `lost` from the same window of `k` other shards found in
    /// `pool` or read now, and adds it to `pool`.
    async fn rebuild(
        &self,
        target: &Target<'_>,
        lost: usize,
        window: Range<usize>,
        fault: Fault,
        pool: &mut Pool,
    ) -> Result<(), StoreError> {
        let core = &self.store.inner.core;
        let scheme = core.config.scheme;
        let (k, w) = (scheme.data_shards(), scheme.total_shards());
        let sound = |pool: &Pool| {
            (0..w)
                .filter(|&s| s != lost && find(pool, s, &window).is_some())
                .count()
        };
        let mut causes = vec![format!("shard {lost}: {fault}")];
        let untried: Vec<usize> = (0..w)
            .filter(|&s| s != lost && find(pool, s, &window).is_none())
            .collect();
        let mut untried = untried.into_iter();
        while sound(pool) < k {
            let batch: Vec<usize> = untried.by_ref().take(k - sound(pool)).collect();
            if batch.is_empty() {
                break;
            }
            let results = submit_together(join_all(
                batch.iter().map(|&s| self.fetch(target, s, window.clone())),
            ))
            .await;
            for (shard, result) in batch.into_iter().zip(results) {
                match result {
                    Ok(sound) => pool.push((shard, sound)),
                    Err(fault) => causes.push(format!("shard {shard}: {fault}")),
                }
            }
        }
        let healthy = sound(pool);
        if healthy < k {
            core.counters
                .chunks_unreadable
                .fetch_add(1, Ordering::Relaxed);
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
                    find(pool, s, &window)
                }
            })
            .collect();
        let present = (0..w)
            .filter(|&s| chosen[s].is_some())
            .fold(ShardSet::empty(), ShardSet::with);
        let mut output = Window::scratch(window.clone());
        {
            let mut views: Vec<&mut [u8]> = (0..w).map(|_| &mut [][..]).collect();
            for (at, (shard, sound)) in pool.iter_mut().enumerate() {
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
        core.counters.shards_rebuilt.fetch_add(1, Ordering::Relaxed);
        if !matches!(fault, Fault::Offline) {
            self.store.inner.repairs.push(*target.id, &core.counters);
        }
        pool.push((lost, output));
        Ok(())
    }
}

/// Where in `pool` a sound window of `shard` covering `window` is.
fn find(pool: &Pool, shard: usize, window: &Range<usize>) -> Option<usize> {
    pool.iter()
        .position(|(s, w)| *s == shard && w.covers(window))
}

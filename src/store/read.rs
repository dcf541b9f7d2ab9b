//! The read path: the byte range of a chunk is mapped to the data shards that hold it, each
//! shard's 4 KiB-aligned window is read with its header and verified, and any window that
//! cannot be read soundly is rebuilt from the same window of `k` other shards.
//!
//! A full 512 KiB read at k = 4 is four 132 KiB reads (header and data are adjacent). A
//! range read inside one shard is two reads of that shard (header, window) unless the window
//! starts at the shard's first byte. With one shard lost the read costs the same number of
//! I/Os: parity takes the lost shard's place, and XOR rebuilds its window.
//!
//! The bytes returned are slices of the read buffers themselves ([`bytes::Bytes`] owning
//! the aligned buffer): nothing is copied on the way to the socket.

use std::ops::Range;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use futures_util::future::join_all;

use super::aligned::AlignedBuf;
use super::device::Device;
use super::geometry::Placement;
use super::health::DeviceState;
use super::index::{Entry, key_of};
use super::shard::{self, HEADER_BYTES, ShardError, ShardIdentity};
use super::{Engine, LocalStore, StoreError};
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

/// One shard window, read and verified.
pub(super) struct Window {
    pub(super) buf: AlignedBuf,
    /// Where in `buf` the window's first byte is (after the header when read together).
    pub(super) data_start: usize,
    pub(super) range: Range<usize>,
}

impl Window {
    /// A zeroed window, to rebuild into.
    pub(super) fn zeroed(range: Range<usize>) -> Window {
        Window {
            buf: AlignedBuf::zeroed(range.len()),
            data_start: 0,
            range,
        }
    }

    /// The bytes of `within`, a part of this window.
    pub(super) fn bytes_mut(&mut self, within: Range<usize>) -> &mut [u8] {
        debug_assert!(within.start >= self.range.start && within.end <= self.range.end);
        let start = self.data_start + within.start - self.range.start;
        &mut self.buf[start..start + within.len()]
    }
}

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
        let first_try = join_all(
            spans
                .iter()
                .map(|span| self.fetch(&target, span.shard, span.aligned())),
        )
        .await;
        if first_try
            .iter()
            .any(|r| matches!(r, Err(Fault::OtherChunk)))
        {
            return Err(StoreError::NotFound);
        }
        let mut windows: Vec<Option<Window>> = (0..core.config.scheme.total_shards())
            .map(|_| None)
            .collect();
        let mut faults = Vec::new();
        for (span, result) in spans.iter().zip(first_try) {
            match result {
                Ok(window) => windows[span.shard] = Some(window),
                Err(fault) => faults.push((span.shard, span.aligned(), fault)),
            }
        }
        for (shard, window, fault) in faults {
            windows[shard] = Some(
                self.rebuild(&target, shard, window, fault, &mut windows)
                    .await?,
            );
        }
        let mut segments = Vec::with_capacity(spans.len());
        let mut owned: Vec<Option<Bytes>> = windows
            .into_iter()
            .map(|w| {
                w.map(|w| {
                    Bytes::from_owner(w.buf).slice(w.data_start..w.data_start + w.range.len())
                })
            })
            .collect();
        for span in &spans {
            let window = span.aligned();
            let bytes = owned[span.shard]
                .take()
                .expect("every span's window was read or rebuilt");
            let start = span.shard_offset_bytes - window.start;
            segments.push(bytes.slice(start..start + span.len_bytes));
        }
        Ok(ChunkBytes {
            chunk_len_bytes: len_bytes,
            segments,
        })
    }

    /// Reads and verifies `window` of shard `shard`.
    pub(super) async fn fetch(
        &self,
        target: &Target<'_>,
        shard: usize,
        window: Range<usize>,
    ) -> Result<Window, Fault> {
        let core = &self.store.inner.core;
        let (device, base) =
            core.geometry
                .shard_address(target.placement, shard, target.entry.offset_blocks);
        let slot = &core.devices[device];
        if !slot.counters.usable() {
            return Err(Fault::Offline);
        }
        let io = &self.devices[device];
        let header_offset = base;
        let data_offset = base + (HEADER_BYTES + window.start) as u64;
        let (header_buf, data_buf) = if window.start == 0 {
            let (result, buf) = io
                .read_at(
                    AlignedBuf::zeroed(HEADER_BYTES + window.len()),
                    header_offset,
                )
                .await;
            (result.map(|()| buf), None)
        } else {
            let header = io.read_at(AlignedBuf::zeroed(HEADER_BYTES), header_offset);
            let data = io.read_at(AlignedBuf::zeroed(window.len()), data_offset);
            let ((header_result, header), (data_result, data)) =
                futures_util::future::join(header, data).await;
            (header_result.and(data_result).map(|()| header), Some(data))
        };
        let header_buf = match header_buf {
            Ok(buf) => buf,
            Err(error) => {
                if slot
                    .counters
                    .failed(&slot.counters.read_errors, core.config.device_error_limit)
                {
                    tracing::error!(device = %slot.spec, %error, "device taken offline after repeated errors");
                }
                return Err(Fault::Io(format!("{}: {error}", slot.spec)));
            }
        };
        let data = data_buf.as_deref().unwrap_or(&header_buf[HEADER_BYTES..]);
        match self.verify(
            target,
            shard,
            &header_buf[..HEADER_BYTES],
            window.start,
            data,
        ) {
            Ok(()) => slot.counters.succeeded(),
            Err(fault) => {
                // A refilling device holds nothing sound until the refill reaches each
                // chunk: its bad shards are expected, not a sign of failure, and must not
                // take it offline (the refill skips an offline device).
                let refilling = slot.counters.state() == DeviceState::Refilling;
                if matches!(fault, Fault::Corrupt(_)) && !refilling {
                    slot.counters.failed(
                        &slot.counters.checksum_errors,
                        core.config.device_error_limit,
                    );
                }
                return Err(fault);
            }
        }
        Ok(match data_buf {
            Some(buf) => Window {
                buf,
                data_start: 0,
                range: window,
            },
            None => Window {
                buf: header_buf,
                data_start: HEADER_BYTES,
                range: window,
            },
        })
    }

    fn verify(
        &self,
        target: &Target<'_>,
        shard: usize,
        header: &[u8],
        window_start: usize,
        data: &[u8],
    ) -> Result<(), Fault> {
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
        verified
            .verify_blocks(window_start / shard::BLOCK_BYTES, data)
            .map_err(|e| Fault::Corrupt(e.to_string()))
    }

    /// Rebuilds `window` of shard `lost` from the same window of `k` other shards, reading
    /// only what the windows already in `have` do not cover.
    async fn rebuild(
        &self,
        target: &Target<'_>,
        lost: usize,
        window: Range<usize>,
        fault: Fault,
        have: &mut [Option<Window>],
    ) -> Result<Window, StoreError> {
        let core = &self.store.inner.core;
        let scheme = core.config.scheme;
        let (k, w) = (scheme.data_shards(), scheme.total_shards());
        let covers = |h: &Option<Window>| {
            h.as_ref()
                .is_some_and(|h| h.range.start <= window.start && window.end <= h.range.end)
        };
        let mut fetched: Vec<Option<Window>> = (0..w).map(|_| None).collect();
        let sound = |fetched: &[Option<Window>], have: &[Option<Window>]| {
            (0..w)
                .filter(|&s| s != lost && (fetched[s].is_some() || covers(&have[s])))
                .count()
        };
        let mut causes = vec![format!("shard {lost}: {fault}")];
        let mut candidates = (0..w).filter(|&s| s != lost && !covers(&have[s]));
        while sound(&fetched, have) < k {
            let batch: Vec<usize> = candidates
                .by_ref()
                .take(k - sound(&fetched, have))
                .collect();
            if batch.is_empty() {
                break;
            }
            let results =
                join_all(batch.iter().map(|&s| self.fetch(target, s, window.clone()))).await;
            for (shard, result) in batch.into_iter().zip(results) {
                match result {
                    Ok(window) => fetched[shard] = Some(window),
                    Err(fault) => causes.push(format!("shard {shard}: {fault}")),
                }
            }
        }
        let healthy = sound(&fetched, have);
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
        let present = (0..w)
            .filter(|&s| s != lost && (fetched[s].is_some() || covers(&have[s])))
            .fold(ShardSet::empty(), ShardSet::with);
        fetched[lost] = Some(Window::zeroed(window.clone()));
        {
            let mut views: Vec<&mut [u8]> = have
                .iter_mut()
                .zip(fetched.iter_mut())
                .map(|(had, got)| match (had, got) {
                    (_, Some(got)) => got.bytes_mut(window.clone()),
                    (Some(had), None)
                        if had.range.start <= window.start && window.end <= had.range.end =>
                    {
                        had.bytes_mut(window.clone())
                    }
                    _ => &mut [][..],
                })
                .collect();
            self.codec
                .borrow_mut()
                .rebuild(&mut views, present, ShardSet::single(lost))
                .expect("k sound shards were gathered");
        }
        core.counters.shards_rebuilt.fetch_add(1, Ordering::Relaxed);
        if !matches!(fault, Fault::Offline) {
            self.store.inner.repairs.push(*target.id, &core.counters);
        }
        Ok(fetched[lost]
            .take()
            .expect("the rebuilt window was placed there"))
    }
}

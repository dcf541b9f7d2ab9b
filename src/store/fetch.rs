//! Reading one window of one shard, verified: the [`Window`] of bytes that passed the
//! shard's header and block checksums, or the [`Fault`] that says why not.
//!
//! The header comes from this core's cache when it is there (a range read of a hot shard
//! then fetches only its data window), from the device otherwise — read together with the
//! data when the window starts the shard (header and data are adjacent), in parallel with
//! it when not. Repair and scrub always read the header from the device, so a header
//! corrupted after it was cached is found.
//!
//! **Architecture invariant:** no byte leaves here that did not pass its block checksums
//! against a header verified for exactly this chunk, shard and generation.

use std::ops::Range;

use bytes::Bytes;

use super::aligned::AlignedBuf;
use super::device::Engine;
use super::header_cache::{CachedHeader, HeaderKey};
use super::index::key_of;
use super::shard::{self, CHECKSUM_BLOCK_BYTES, HEADER_BYTES, ShardError};
use super::stripe::Stripe;

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

    /// Whether this window holds all of `range`.
    pub(super) fn covers(&self, range: &Range<usize>) -> bool {
        self.range.start <= range.start && range.end <= self.range.end
    }

    /// The bytes of `within`, a part of this window.
    pub(super) fn bytes_mut(&mut self, within: Range<usize>) -> &mut [u8] {
        debug_assert!(self.covers(&within));
        let start = self.data_start + within.start - self.range.start;
        &mut self.buf[start..start + within.len()]
    }

    /// The bytes of `within`, a part of this window, owning the buffer (no copy).
    pub(super) fn into_bytes(self, within: Range<usize>) -> Bytes {
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

impl<E: Engine> Stripe<'_, E> {
    /// Reads and verifies `window` of shard `shard`.
    pub(super) async fn fetch(&self, shard: usize, window: Range<usize>) -> Result<Window, Fault> {
        self.fetch_with(shard, window, HeaderSource::CacheFirst)
            .await
    }

    /// Reads and verifies `window` of shard `shard`, taking its header from this core's
    /// cache when `source` allows and it is there, from the device otherwise.
    ///
    /// Kept whole (~80 lines): the three ways to get the header (cached; read with the data
    /// in one I/O; read beside it in parallel) each end in the same verification, and
    /// reading them side by side shows that no path returns bytes unverified.
    pub(super) async fn fetch_with(
        &self,
        shard: usize,
        window: Range<usize>,
        source: HeaderSource,
    ) -> Result<Window, Fault> {
        if !self.usable(shard) {
            return Err(Fault::Offline);
        }
        let local = self.local;
        let (device, base) = self.address(shard);
        let key = HeaderKey {
            key: self.entry.key,
            shard: shard as u8,
            generation: self.entry.generation,
        };
        let cached = match source {
            HeaderSource::CacheFirst => local.headers.borrow_mut().get(&key),
            HeaderSource::Device => None,
        };
        let data_offset = base + (HEADER_BYTES + window.start) as u64;
        let read = match &cached {
            Some(_) => {
                let (result, data) = local
                    .read_at(device, AlignedBuf::scratch(window.len()), data_offset)
                    .await;
                result.map(|()| (None, data, 0))
            }
            None if window.start == 0 => {
                let (result, buf) = local
                    .read_at(
                        device,
                        AlignedBuf::scratch(HEADER_BYTES + window.len()),
                        base,
                    )
                    .await;
                result.map(|()| (None, buf, HEADER_BYTES))
            }
            None => {
                let header = local.read_at(device, AlignedBuf::scratch(HEADER_BYTES), base);
                let data = local.read_at(device, AlignedBuf::scratch(window.len()), data_offset);
                let ((header_result, header), (data_result, data)) =
                    futures_util::future::join(header, data).await;
                header_result
                    .and(data_result)
                    .map(|()| (Some(header), data, 0))
            }
        };
        let (header, buf, data_start) = match read {
            Ok(read) => read,
            Err(error) => return Err(Fault::Io(self.read_failed(shard, &error))),
        };
        let data = &buf[data_start..data_start + window.len()];
        let verified = match &cached {
            Some(cached) => self.verify_cached(cached, window.start, data),
            None => {
                let header = header.as_deref().unwrap_or(&buf[..HEADER_BYTES]);
                self.verify(shard, header, window.start, data).map(|crcs| {
                    local.headers.borrow_mut().insert(
                        key,
                        CachedHeader {
                            id: *self.id,
                            block_crcs: crcs.into(),
                        },
                    );
                })
            }
        };
        match &verified {
            Ok(()) => self.checked(shard, None),
            Err(fault @ Fault::Corrupt(_)) => self.checked(shard, Some(fault)),
            Err(_) => {}
        }
        verified.map(|()| Window {
            buf,
            data_start,
            range: window,
        })
    }

    /// Checks a header read from the device, then `data`; returns the block checksums.
    fn verify(
        &self,
        shard: usize,
        header: &[u8],
        window_start: usize,
        data: &[u8],
    ) -> Result<Vec<u32>, Fault> {
        let verified = match shard::verify_header(header, &self.identity(shard)) {
            Ok(verified) => verified,
            Err(ShardError::Mismatch { found, .. })
                if found.id != *self.id
                    && key_of(&found.id) == self.entry.key
                    && found.generation == self.entry.generation =>
            {
                return Err(Fault::OtherChunk);
            }
            Err(error) => return Err(Fault::Corrupt(error.to_string())),
        };
        let crcs = verified.block_crcs();
        shard::verify_blocks(&crcs, window_start / CHECKSUM_BLOCK_BYTES, data)
            .map_err(|e| Fault::Corrupt(e.to_string()))?;
        Ok(crcs)
    }

    /// Checks `data` against a header this core verified earlier.
    fn verify_cached(
        &self,
        cached: &CachedHeader,
        window_start: usize,
        data: &[u8],
    ) -> Result<(), Fault> {
        if cached.id != *self.id {
            return Err(Fault::OtherChunk);
        }
        shard::verify_blocks(
            &cached.block_crcs,
            window_start / CHECKSUM_BLOCK_BYTES,
            data,
        )
        .map_err(|e| Fault::Corrupt(e.to_string()))
    }
}

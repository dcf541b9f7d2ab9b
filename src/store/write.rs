//! The write path: a verified chunk becomes `k + m` shards written in one round of parallel
//! writes, then a record committed by the commit thread.
//!
//! Each shard is written as `[header | data]` in one vectored write at the chunk's offset in
//! its partition. The data shards are slices of the chunk's own buffer (it arrives laid out
//! as padded data shards), so only the parity and the headers are new memory.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use futures_util::future::join_all;
use tokio::sync::oneshot;

use super::aligned::{AlignedBuf, SharedSlice};
use super::catalog::{Applied, Record};
use super::commit::{Reply, Request};
use super::device::submit_together;
use super::geometry::BLOCK_BYTES;
use super::index::key_of;
use super::shard::{self, HEADER_BYTES, ShardIdentity};
use super::{Engine, Failure, LocalStore, StoreError, VerifiedChunk, lock};
use crate::chunk::ChunkId;
use crate::erasure::{Layout, Scheme};

/// What a PUT did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PutOutcome {
    /// Stored now.
    Created,
    /// Was already stored; nothing was written.
    AlreadyPresent,
}

/// Blocks one shard of a chunk of `len_bytes` occupies: its header plus its data.
pub fn extent_blocks(scheme: Scheme, len_bytes: u64) -> u32 {
    let layout = Layout::new(scheme, len_bytes);
    ((HEADER_BYTES + layout.shard_len_bytes()) as u64 / BLOCK_BYTES) as u32
}

impl<E: Engine> LocalStore<E> {
    /// Stores `chunk` durably. Returns once it would survive a crash.
    pub async fn put(&self, chunk: VerifiedChunk) -> Result<PutOutcome, StoreError> {
        let core = &self.store.inner.core;
        if core.index.get(key_of(chunk.id())).is_some() {
            match core.catalog.get(chunk.id())? {
                None => return Err(StoreError::PrefixTaken),
                Some(_) if !lock(&core.unrecoverable).contains(chunk.id()) => {
                    return Ok(PutOutcome::AlreadyPresent);
                }
                // Known lost: forget the broken copy, then store this one as new.
                Some(_) => {
                    self.delete(chunk.id()).await?;
                    lock(&core.unrecoverable).remove(chunk.id());
                }
            }
        }
        let (id, data, layout) = chunk.into_parts();
        let placement = core.geometry.placement(&id);
        let blocks = extent_blocks(core.config.scheme, layout.chunk_len_bytes());
        let allocated = lock(&core.space[placement.group]).allocate(blocks, Instant::now());
        let Some(offset_blocks) = allocated else {
            let largest = lock(&core.space[placement.group]).largest_free_blocks();
            return Err(StoreError::NoSpace {
                len_bytes: layout.chunk_len_bytes(),
                largest_free_bytes: u64::from(largest) * BLOCK_BYTES,
            });
        };
        let record = Record {
            generation: core.generation.fetch_add(1, Ordering::Relaxed),
            offset_blocks,
            len_bytes: layout.chunk_len_bytes() as u32,
        };
        if let Err(error) = self.write_shards(&id, data, &layout, &record).await {
            lock(&core.space[placement.group]).free_now(offset_blocks, blocks);
            return Err(error);
        }
        match self
            .commit(|reply| Request::Insert {
                id,
                record,
                blocks,
                reply,
            })
            .await?
        {
            Applied::Inserted => Ok(PutOutcome::Created),
            Applied::AlreadyPresent => Ok(PutOutcome::AlreadyPresent),
            Applied::PrefixTaken => Err(StoreError::PrefixTaken),
            other => unreachable!("an insert cannot be {other:?}"),
        }
    }

    /// Removes `id`; returns whether it was stored.
    pub async fn delete(&self, id: &ChunkId) -> Result<bool, StoreError> {
        match self
            .commit(|reply| Request::Remove { id: *id, reply })
            .await?
        {
            Applied::Removed(_) => Ok(true),
            Applied::NotFound => Ok(false),
            other => unreachable!("a removal cannot be {other:?}"),
        }
    }

    /// Sends a request to the commit thread and waits for its answer.
    async fn commit(&self, request: impl FnOnce(Reply) -> Request) -> Result<Applied, StoreError> {
        let (reply, answer) = oneshot::channel();
        let request = request(reply);
        let commits = self
            .store
            .inner
            .commits
            .as_ref()
            .expect("the channel lives as long as the store");
        commits
            .send(request)
            .map_err(|_| StoreError::Catalog("the commit thread has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Catalog("the commit thread dropped a request".into()))?
    }

    /// Computes parity and headers and writes every shard on a usable device, all at once.
    async fn write_shards(
        &self,
        id: &ChunkId,
        data: AlignedBuf,
        layout: &Layout,
        record: &Record,
    ) -> Result<(), StoreError> {
        let core = &self.store.inner.core;
        let scheme = core.config.scheme;
        let (k, w) = (scheme.data_shards(), scheme.total_shards());
        let shard_len = layout.shard_len_bytes();
        let placement = core.geometry.placement(id);
        let usable: Vec<bool> = (0..w)
            .map(|i| {
                core.devices[core.geometry.shard_address(placement, i, 0).0]
                    .counters
                    .usable()
            })
            .collect();
        let online = usable.iter().filter(|&&u| u).count();
        if online < k {
            return Err(StoreError::Unavailable { online, needed: k });
        }

        let mut parity = AlignedBuf::scratch(shard_len * scheme.parity_shards());
        if shard_len > 0 {
            let data_shards: Vec<&[u8]> = data.chunks(shard_len).take(k).collect();
            let mut parity_shards: Vec<&mut [u8]> = parity.chunks_mut(shard_len).collect();
            self.codec
                .borrow_mut()
                .encode(&data_shards, &mut parity_shards);
        }
        let (data, parity) = (Arc::new(data), Arc::new(parity));
        let shard_data = |i: usize| {
            let (buf, index) = if i < k { (&data, i) } else { (&parity, i - k) };
            SharedSlice::new(buf.clone(), index * shard_len..(index + 1) * shard_len)
        };
        let mut headers = AlignedBuf::scratch(HEADER_BYTES * w);
        for (i, header) in headers.chunks_mut(HEADER_BYTES).enumerate() {
            let identity = ShardIdentity {
                id: *id,
                chunk_len_bytes: record.len_bytes,
                generation: record.generation,
                shard_index: i as u8,
                data_shards: k as u8,
                parity_shards: scheme.parity_shards() as u8,
                shard_len_bytes: shard_len as u32,
            };
            shard::encode_header(&identity, &shard_data(i), header);
        }
        let headers = Arc::new(headers);

        let writes = (0..w).filter(|&i| usable[i]).map(|i| {
            let (device, offset) = core
                .geometry
                .shard_address(placement, i, record.offset_blocks);
            let header =
                SharedSlice::new(headers.clone(), i * HEADER_BYTES..(i + 1) * HEADER_BYTES);
            let parts = if shard_len == 0 {
                vec![header]
            } else {
                vec![header, shard_data(i)]
            };
            async move { (device, self.write_at(device, parts, offset).await) }
        });
        let mut first_error = None;
        for (device, result) in submit_together(join_all(writes)).await {
            let slot = &core.devices[device];
            match result {
                Ok(()) => {
                    slot.counters.succeeded();
                    slot.dirty.store(true, Ordering::Release);
                }
                Err(error) => {
                    core.device_failed(device, Failure::Write, &error);
                    first_error.get_or_insert(StoreError::Io(format!(
                        "writing to {}: {error}",
                        slot.spec
                    )));
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

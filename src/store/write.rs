//! The write path: a verified chunk becomes `k + m` shards written in one round of parallel
//! writes, then a record committed by the commit thread.
//!
//! Each shard is written as `[header | data]` in one vectored write at the chunk's offset in
//! its partition. The data shards are slices of the chunk's own buffer (it arrives laid out
//! as padded data shards), so only the parity and the headers are new memory.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::oneshot;

use super::aligned::{AlignedBuf, SharedSlice};
use super::catalog::{Applied, Record};
use super::chunk_buffer::VerifiedChunk;
use super::commit::{Reply, Request};
use super::device::Engine;
use super::error::StoreError;
use super::handle::LocalStore;
use super::index::{Entry, key_of};
use super::shard::{self, HEADER_BYTES, extent_blocks};
use super::state::lock;
use super::stripe::Stripe;
use crate::chunk::ChunkId;

/// What a PUT did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PutOutcome {
    /// Stored now.
    Created,
    /// Was already stored; nothing was written.
    AlreadyPresent,
}

impl<E: Engine> LocalStore<E> {
    /// Stores `chunk` durably. Returns once it would survive a crash.
    pub async fn put(&self, chunk: VerifiedChunk) -> Result<PutOutcome, StoreError> {
        self.insert(chunk, true, false).await
    }

    /// Stores `chunk` filled from an origin: as [`LocalStore::put`], but its commit does
    /// not wait for a device flush (the origin holds the data). It survives the process
    /// being killed — its shards are in the kernel's hands and its record committed — but
    /// a power loss before the devices' next flush may lose it: its shards then fail
    /// verification when read, so it is treated as lost (a miss, filled again), never
    /// served wrong. With `replace`, a stored copy of it — one that could not be read, so
    /// the fill was asked for — is removed and this one stored in its place. With `flush`
    /// (`--origin-durable-fills`) it waits for the flush as a PUT does.
    pub async fn put_filled(
        &self,
        chunk: VerifiedChunk,
        replace: bool,
        flush: bool,
    ) -> Result<PutOutcome, StoreError> {
        self.insert(chunk, flush, replace).await
    }

    /// Makes every completed shard write durable: flushes the devices written since their
    /// last flush (fills write without one), through the commit thread; nothing when no
    /// device has writes pending. A durable PUT answered "already stored" calls this, since
    /// what it found may be an unflushed fill.
    pub async fn flush_written(&self) -> Result<(), StoreError> {
        let shared = &*self.shared;
        if !shared
            .devices
            .iter()
            .any(|d| d.dirty.load(Ordering::Acquire))
        {
            return Ok(());
        }
        self.ask_commit(|reply| Request::Flush { reply }).await
    }

    /// Stores `chunk`; with `flush`, only once the devices are flushed; with `replace`,
    /// in place of a stored copy.
    async fn insert(
        &self,
        chunk: VerifiedChunk,
        flush: bool,
        replace: bool,
    ) -> Result<PutOutcome, StoreError> {
        let shared = &*self.shared;
        if shared.index.get(key_of(chunk.id())).is_some() {
            match shared.catalog.get(chunk.id())? {
                // Not in the catalog: another chunk with the same 64-bit prefix, or this
                // one's removal (a sweep, an eviction, a DELETE) committed and not yet
                // applied to the index. The insert's commit tells them apart (it checks
                // the prefix in its transaction, after any removal before it): store it
                // as new. Answering 409 here refused PUTs racing a sweep of their chunk.
                None => {}
                Some(_) if !replace && !lock(&shared.unrecoverable).contains(chunk.id()) => {
                    // A PUT of an expired chunk uses it as a read does.
                    self.touch(chunk.id());
                    if flush {
                        // What is stored may be a fill, not yet flushed.
                        self.flush_written().await?;
                    }
                    return Ok(PutOutcome::AlreadyPresent);
                }
                // Known lost, or unreadable and replaced by a fill: forget the broken copy —
                // only the copy seen here, never one a concurrent PUT has just stored —
                // then store this one as new.
                Some(broken) => {
                    self.remove(chunk.id(), Some(broken.generation)).await?;
                    lock(&shared.unrecoverable).remove(chunk.id());
                }
            }
        }
        let (id, data, layout) = chunk.into_parts();
        let placement = shared.geometry.placement(&id);
        let blocks = extent_blocks(shared.config.scheme, layout.chunk_len_bytes());
        let offset_blocks = match self.allocate(placement.group, blocks) {
            Some(offset) => offset,
            None => {
                self.make_room(placement.group, blocks, layout.chunk_len_bytes())
                    .await?
            }
        };

        let record = Record {
            generation: shared.generation.fetch_add(1, Ordering::Relaxed),
            offset_blocks,
            len_bytes: layout.chunk_len_bytes() as u32,
        };
        let entry = Entry {
            key: key_of(&id),
            generation: record.generation,
            offset_blocks,
            len_bytes: record.len_bytes,
        };
        let written = self.write_shards(&self.stripe(&id, entry), data).await;
        if let Err(error) = written {
            // Every write has completed (failed or not): no I/O can land there later.
            lock(&shared.groups[placement.group])
                .space
                .free_now(offset_blocks, blocks);
            return Err(error);
        }
        match self
            .commit(|reply| Request::Insert {
                id,
                record,
                blocks,
                flush,
                reply,
            })
            .await?
        {
            Applied::Inserted(_) => Ok(PutOutcome::Created),
            Applied::AlreadyPresent => Ok(PutOutcome::AlreadyPresent),
            Applied::PrefixTaken => Err(StoreError::PrefixTaken),
            other => unreachable!("an insert cannot be {other:?}"),
        }
    }

    /// Removes `id`; returns whether it was stored.
    pub async fn delete(&self, id: &ChunkId) -> Result<bool, StoreError> {
        self.remove(id, None).await
    }

    /// Removes `id` — only the copy written as `generation` when one is given; returns
    /// whether it was removed.
    pub(super) async fn remove(
        &self,
        id: &ChunkId,
        generation: Option<u64>,
    ) -> Result<bool, StoreError> {
        match self
            .commit(|reply| Request::Remove {
                id: *id,
                generation,
                reply,
            })
            .await?
        {
            Applied::Removed(_) => Ok(true),
            Applied::NotFound => Ok(false),
            other => unreachable!("a removal cannot be {other:?}"),
        }
    }

    /// Sends a request to the commit thread and waits for its answer.
    async fn commit(&self, request: impl FnOnce(Reply) -> Request) -> Result<Applied, StoreError> {
        self.ask_commit(request).await
    }

    /// Sends the commit thread the request `request` makes with a reply channel, and waits
    /// for the answer on it.
    async fn ask_commit<T>(
        &self,
        request: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Request,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        let request = request(reply);
        self.store
            .commits()
            .send(request)
            .map_err(|_| StoreError::Catalog("the commit thread has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Catalog("the commit thread dropped a request".into()))?
    }

    /// Computes parity and headers and writes every shard on a usable device, all at once.
    async fn write_shards(
        &self,
        stripe: &Stripe<'_, E>,
        data: AlignedBuf,
    ) -> Result<(), StoreError> {
        let scheme = stripe.scheme();
        let (k, w) = (scheme.data_shards(), scheme.total_shards());
        let shard_len = stripe.layout.shard_len_bytes();
        let usable = stripe.usable_shards();
        if usable.len() < k {
            return Err(StoreError::Unavailable {
                online: usable.len(),
                needed: k,
            });
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
            shard::encode_header(&stripe.identity(i), &shard_data(i), header);
        }
        let headers = Arc::new(headers);

        let writes = usable
            .iter()
            .map(|i| {
                let header =
                    SharedSlice::new(headers.clone(), i * HEADER_BYTES..(i + 1) * HEADER_BYTES);
                let parts = if shard_len == 0 {
                    vec![header]
                } else {
                    vec![header, shard_data(i)]
                };
                (i, parts)
            })
            .collect();
        let mut results = stripe.write(writes).await.into_iter();
        match results.find_map(|(_, result)| result.err()) {
            Some(error) => Err(StoreError::Io(error)),
            None => Ok(()),
        }
    }
}

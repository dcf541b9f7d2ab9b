//! Manifests, reference counts and expiries in the catalog, changed in the same redb
//! transactions as the chunk records (see `refs` for the rules).
//!
//! Tables:
//! - `manifests`: name → the ids it lists, 32 bytes each, in order (repeats kept).
//! - `refs`: full id → count (`u32`) and, when the count is zero, the time it fell there
//!   (`u64` milliseconds, the GC clock): 12 bytes. An id with a count ≥ 1 is *referenced*
//!   (stored or not); an entry with count 0 is an *expiry*: a stored chunk no manifest names
//!   any more, to be swept once its grace has passed. No entry: unreferenced.
//! - `expiry`: (time big-endian ‖ id) → nothing: the expiries in time order, so a sweep
//!   reads only those due.
//!
//! Each distinct id of a manifest counts once. A count that falls to zero expires the chunk
//! if it is stored and forgets the id if not (nothing to delete).
//!
//! **Architecture invariant:** only the commit thread writes these tables (through
//! `catalog`), so a check and the change it guards are never separated by another writer.

use std::collections::HashSet;

use redb::{ReadableTable, ReadableTableMetadata, Table, TableDefinition, WriteTransaction};

use super::catalog_tables::{CHUNKS, Record};
use super::refs::ManifestPut;
use crate::chunk::ChunkId;

pub(super) const MANIFESTS: TableDefinition<&str, &[u8]> = TableDefinition::new("manifests");
pub(super) const REFS: TableDefinition<&[u8; 32], &[u8; 12]> = TableDefinition::new("refs");
pub(super) const EXPIRY: TableDefinition<&[u8; 40], ()> = TableDefinition::new("expiry");

type Refs<'t> = Table<'t, &'static [u8; 32], &'static [u8; 12]>;
type Expiry<'t> = Table<'t, &'static [u8; 40], ()>;
type Chunks<'t> = Table<'t, &'static [u8; 32], &'static [u8; 16]>;

/// A `refs` entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Count {
    pub(super) refs: u32,
    /// When the count fell to zero (meaningful only at zero).
    pub(super) expired_at_ms: u64,
}

impl Count {
    fn encode(self) -> [u8; 12] {
        let mut out = [0u8; 12];
        out[..4].copy_from_slice(&self.refs.to_le_bytes());
        out[4..].copy_from_slice(&self.expired_at_ms.to_le_bytes());
        out
    }

    pub(super) fn decode(bytes: &[u8; 12]) -> Count {
        Count {
            refs: u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes")),
            expired_at_ms: u64::from_le_bytes(bytes[4..].try_into().expect("8 bytes")),
        }
    }
}

/// What a change of counts did to *stored* chunks, for the index to follow once committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Transition {
    /// Now referenced (it was not): pin it, and cancel its expiry if it had one.
    Referenced(ChunkId),
    /// Its count fell to zero: expired.
    Expired(ChunkId),
}

/// The effects of one manifest change.
#[derive(Debug, Default)]
pub(super) struct Changed {
    pub(super) transitions: Vec<Transition>,
    /// Change in the number of referenced ids (stored or not).
    pub(super) referenced_delta: i64,
}

/// Creates the tables (in the transaction that creates the catalog's others).
pub(super) fn create_tables(txn: &WriteTransaction) -> Result<(), redb::Error> {
    txn.open_table(MANIFESTS)?;
    txn.open_table(REFS)?;
    txn.open_table(EXPIRY)?;
    Ok(())
}

fn expiry_key(at_ms: u64, id: &[u8; 32]) -> [u8; 40] {
    let mut key = [0u8; 40];
    key[..8].copy_from_slice(&at_ms.to_be_bytes());
    key[8..].copy_from_slice(id);
    key
}

fn count_of(refs: &Refs<'_>, id: &[u8; 32]) -> Result<Option<Count>, redb::Error> {
    Ok(refs.get(id)?.map(|c| Count::decode(c.value())))
}

/// The distinct ids of `ids`, in first-occurrence order.
fn distinct(ids: &[ChunkId]) -> Vec<ChunkId> {
    let mut seen = HashSet::with_capacity(ids.len());
    ids.iter().filter(|id| seen.insert(**id)).copied().collect()
}

fn decode_ids(bytes: &[u8]) -> Vec<ChunkId> {
    bytes
        .chunks_exact(32)
        .map(|id| ChunkId::from_bytes(id.try_into().expect("32 bytes")))
        .collect()
}

/// The tables a change of chunks or counts needs, open in one write transaction (once
/// for a whole commit batch).
pub(super) struct Counts<'t> {
    refs: Refs<'t>,
    expiry: Expiry<'t>,
    pub(super) chunks: Chunks<'t>,
    now_ms: u64,
    changed: Changed,
}

impl<'t> Counts<'t> {
    pub(super) fn open(txn: &'t WriteTransaction, now_ms: u64) -> Result<Counts<'t>, redb::Error> {
        Ok(Counts {
            refs: txn.open_table(REFS)?,
            expiry: txn.open_table(EXPIRY)?,
            chunks: txn.open_table(CHUNKS)?,
            now_ms,
            changed: Changed::default(),
        })
    }

    fn stored(&self, id: &ChunkId) -> Result<bool, redb::Error> {
        Ok(self.chunks.get(id.as_bytes())?.is_some())
    }

    /// One more reference to `id` (`stored`: whether the chunk is).
    fn add(&mut self, id: &ChunkId, stored: bool) -> Result<(), redb::Error> {
        let key = id.as_bytes();
        let refs = match count_of(&self.refs, key)? {
            Some(count) if count.refs > 0 => count.refs + 1,
            Some(expired) => {
                self.expiry
                    .remove(&expiry_key(expired.expired_at_ms, key))?;
                1
            }
            None => 1,
        };
        if refs == 1 {
            self.changed.referenced_delta += 1;
            if stored {
                self.changed.transitions.push(Transition::Referenced(*id));
            }
        }
        let count = Count {
            refs,
            expired_at_ms: 0,
        };
        self.refs.insert(key, &count.encode())?;
        Ok(())
    }

    /// One reference fewer to `id`; at zero the chunk expires (or is forgotten if absent).
    fn drop_one(&mut self, id: &ChunkId) -> Result<(), redb::Error> {
        let key = id.as_bytes();
        let Some(count) = count_of(&self.refs, key)?.filter(|c| c.refs > 0) else {
            // Counts follow manifests exactly; an absent count would be a bug, not a state.
            tracing::error!(chunk = %id, "a manifest named a chunk with no reference count");
            return Ok(());
        };
        if count.refs > 1 {
            let fewer = Count {
                refs: count.refs - 1,
                ..count
            };
            self.refs.insert(key, &fewer.encode())?;
            return Ok(());
        }
        self.changed.referenced_delta -= 1;
        if self.stored(id)? {
            self.expire(id)?;
            self.changed.transitions.push(Transition::Expired(*id));
        } else {
            self.refs.remove(key)?;
        }
        Ok(())
    }

    /// Records `id` as expired now.
    fn expire(&mut self, id: &ChunkId) -> Result<(), redb::Error> {
        let key = id.as_bytes();
        let count = Count {
            refs: 0,
            expired_at_ms: self.now_ms,
        };
        self.refs.insert(key, &count.encode())?;
        self.expiry.insert(&expiry_key(self.now_ms, key), ())?;
        Ok(())
    }
}

/// Stores manifest `name` (replacing any), changing counts by the difference.
pub(super) fn put_manifest(
    txn: &WriteTransaction,
    name: &str,
    ids: &[ChunkId],
    now_ms: u64,
) -> Result<(ManifestPut, Changed), redb::Error> {
    let mut manifests = txn.open_table(MANIFESTS)?;
    let old = manifests.get(name)?.map(|bytes| decode_ids(bytes.value()));
    let new = distinct(ids);
    let old_set: HashSet<ChunkId> = old.iter().flatten().copied().collect();
    let new_set: HashSet<ChunkId> = new.iter().copied().collect();
    let mut counts = Counts::open(txn, now_ms)?;
    // Additions first: an id moving between manifests never passes through zero.
    let mut missing = Vec::new();
    for id in &new {
        let stored = counts.stored(id)?;
        if !stored {
            missing.push(*id);
        }
        if !old_set.contains(id) {
            counts.add(id, stored)?;
        }
    }
    for id in distinct(old.as_deref().unwrap_or_default()) {
        if !new_set.contains(&id) {
            counts.drop_one(&id)?;
        }
    }
    let bytes: Vec<u8> = ids.iter().flat_map(|id| *id.as_bytes()).collect();
    manifests.insert(name, bytes.as_slice())?;
    let put = ManifestPut {
        created: old.is_none(),
        chunks: ids.len(),
        distinct: new.len(),
        missing,
    };
    Ok((put, counts.changed))
}

/// Deletes manifest `name`; `None` when there is none.
pub(super) fn delete_manifest(
    txn: &WriteTransaction,
    name: &str,
    now_ms: u64,
) -> Result<Option<Changed>, redb::Error> {
    let mut manifests = txn.open_table(MANIFESTS)?;
    let Some(old) = manifests
        .remove(name)?
        .map(|bytes| decode_ids(bytes.value()))
    else {
        return Ok(None);
    };
    let mut counts = Counts::open(txn, now_ms)?;
    for id in distinct(&old) {
        counts.drop_one(&id)?;
    }
    Ok(Some(counts.changed))
}

/// What the refs say about a chunk being inserted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Inserted {
    pub(super) referenced: bool,
    pub(super) expired: bool,
}

/// Called in the transaction that inserts `id`: whether it is referenced; a stale expiry
/// (the chunk was removed while expired and is stored afresh) is dropped; with
/// `expire_unreferenced` an unreferenced chunk expires now.
pub(super) fn on_insert(
    counts: &mut Counts<'_>,
    id: &ChunkId,
    expire_unreferenced: bool,
) -> Result<Inserted, redb::Error> {
    let key = id.as_bytes();
    match count_of(&counts.refs, key)? {
        Some(count) if count.refs > 0 => {
            return Ok(Inserted {
                referenced: true,
                expired: false,
            });
        }
        Some(stale) => {
            counts.refs.remove(key)?;
            counts
                .expiry
                .remove(&expiry_key(stale.expired_at_ms, key))?;
        }
        None => {}
    }
    if expire_unreferenced {
        counts.expire(id)?;
    }
    Ok(Inserted {
        referenced: false,
        expired: expire_unreferenced,
    })
}

/// Whether a live manifest names `id`.
pub(super) fn is_referenced(counts: &Counts<'_>, id: &[u8; 32]) -> Result<bool, redb::Error> {
    Ok(count_of(&counts.refs, id)?.is_some_and(|c| c.refs > 0))
}

/// Called in the transaction that removes stored chunk `id` (a DELETE, an eviction, a
/// loss): its expiry, if it has one, ends with it; a reference count stays (a manifest
/// still names the id, and its next put reports it missing).
pub(super) fn on_remove(counts: &mut Counts<'_>, id: &[u8; 32]) -> Result<(), redb::Error> {
    if let Some(count) = count_of(&counts.refs, id)?
        && count.refs == 0
    {
        counts.refs.remove(id)?;
        counts.expiry.remove(&expiry_key(count.expired_at_ms, id))?;
    }
    Ok(())
}

/// Cancels `id`'s expiry (a read used it): it becomes unreferenced. Returns whether it was
/// expired.
pub(super) fn unexpire(txn: &WriteTransaction, id: &ChunkId) -> Result<bool, redb::Error> {
    let mut refs = txn.open_table(REFS)?;
    let mut expiry = txn.open_table(EXPIRY)?;
    let key = id.as_bytes();
    match count_of(&refs, key)? {
        Some(count) if count.refs == 0 => {
            refs.remove(key)?;
            expiry.remove(&expiry_key(count.expired_at_ms, key))?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// An expiry that is due.
#[derive(Clone, Copy, Debug)]
pub(super) struct Due {
    pub(super) id: ChunkId,
    pub(super) expired_at_ms: u64,
    /// The chunk's record if it is still stored.
    pub(super) record: Option<Record>,
}

/// Up to `limit` expiries at or before `cutoff_ms`, oldest first.
pub(super) fn due(
    txn: &WriteTransaction,
    cutoff_ms: u64,
    limit: usize,
) -> Result<Vec<Due>, redb::Error> {
    let expiry = txn.open_table(EXPIRY)?;
    let chunks = txn.open_table(CHUNKS)?;
    let last = expiry_key(cutoff_ms, &[0xff; 32]);
    let mut found = Vec::new();
    for row in expiry.range::<&[u8; 40]>(..=&last)?.take(limit) {
        let (key, _) = row?;
        let key = key.value();
        let id: [u8; 32] = key[8..].try_into().expect("32 bytes");
        let expired_at_ms = u64::from_be_bytes(key[..8].try_into().expect("8 bytes"));
        let record = chunks.get(&id)?.map(|r| Record::decode(r.value()));
        found.push(Due {
            id: ChunkId::from_bytes(id),
            expired_at_ms,
            record,
        });
    }
    Ok(found)
}

/// Ends a due expiry: forgets it, and with `delete` removes the chunk's record too
/// (returning it). The count is checked again: only an expiry still at zero with the same
/// time is ended.
pub(super) fn end_expiry(
    txn: &WriteTransaction,
    due: &Due,
    delete: bool,
) -> Result<Option<Record>, redb::Error> {
    let mut refs = txn.open_table(REFS)?;
    let mut expiry = txn.open_table(EXPIRY)?;
    let key = due.id.as_bytes();
    expiry.remove(&expiry_key(due.expired_at_ms, key))?;
    let current = count_of(&refs, key)?;
    if current
        != Some(Count {
            refs: 0,
            expired_at_ms: due.expired_at_ms,
        })
    {
        return Ok(None);
    }
    refs.remove(key)?;
    if !delete {
        return Ok(None);
    }
    let mut chunks = txn.open_table(CHUNKS)?;
    Ok(chunks.remove(key)?.map(|r| Record::decode(r.value())))
}

/// Expiries not yet ended.
pub(super) fn expiries(txn: &redb::ReadTransaction) -> Result<u64, redb::Error> {
    Ok(txn.open_table(EXPIRY)?.len()?)
}

/// The ids manifest `name` lists, in order.
pub(super) fn manifest(
    txn: &redb::ReadTransaction,
    name: &str,
) -> Result<Option<Vec<ChunkId>>, redb::Error> {
    let manifests = txn.open_table(MANIFESTS)?;
    Ok(manifests.get(name)?.map(|bytes| decode_ids(bytes.value())))
}

/// Every manifest's name, sorted.
pub(super) fn manifest_names(txn: &redb::ReadTransaction) -> Result<Vec<String>, redb::Error> {
    let manifests = txn.open_table(MANIFESTS)?;
    let mut names = Vec::new();
    for row in manifests.iter()? {
        names.push(row?.0.value().to_owned());
    }
    Ok(names)
}

/// `id`'s count, if it has an entry.
pub(super) fn count(
    txn: &redb::ReadTransaction,
    id: &ChunkId,
) -> Result<Option<Count>, redb::Error> {
    let refs = txn.open_table(REFS)?;
    Ok(refs.get(id.as_bytes())?.map(|c| Count::decode(c.value())))
}

/// Calls `visit` for every stored chunk, in id order, with its `refs` entry if it has one
/// (for the index at open); returns the number of referenced ids (stored or not) and of
/// manifests. The `refs` table is walked alongside the chunks, both in id order, so
/// nothing is held but the two cursors.
pub(super) fn for_each_counted(
    txn: &redb::ReadTransaction,
    mut visit: impl FnMut(ChunkId, Record, Option<Count>),
) -> Result<(u64, u64), redb::Error> {
    let refs_table = txn.open_table(REFS)?;
    let mut refs = refs_table.iter()?.peekable();
    let mut referenced = 0u64;
    // The next `refs` entry, counted as it is passed.
    let mut next_count = |below_or_at: &[u8; 32]| -> Result<Option<Count>, redb::Error> {
        while let Some(row) = refs.next_if(|row| match row {
            Ok((id, _)) => id.value() <= below_or_at,
            Err(_) => true,
        }) {
            let (id, count) = row?;
            let count = Count::decode(count.value());
            referenced += u64::from(count.refs > 0);
            if id.value() == below_or_at {
                return Ok(Some(count));
            }
        }
        Ok(None)
    };
    for row in txn.open_table(CHUNKS)?.iter()? {
        let (id, record) = row?;
        let count = next_count(id.value())?;
        visit(
            ChunkId::from_bytes(*id.value()),
            Record::decode(record.value()),
            count,
        );
    }
    next_count(&[0xff; 32])?;
    let manifests = txn.open_table(MANIFESTS)?.len()?;
    Ok((referenced, manifests))
}

/// Expires now every stored chunk with no `refs` entry (`gc_unreferenced` turned on);
/// returns them.
pub(super) fn expire_unreferenced(
    txn: &WriteTransaction,
    now_ms: u64,
) -> Result<Vec<ChunkId>, redb::Error> {
    let mut counts = Counts::open(txn, now_ms)?;
    let mut unreferenced = Vec::new();
    for row in counts.chunks.iter()? {
        let (id, _) = row?;
        let id = *id.value();
        if counts.refs.get(&id)?.is_none() {
            unreferenced.push(ChunkId::from_bytes(id));
        }
    }
    for id in &unreferenced {
        counts.expire(id)?;
    }
    Ok(unreferenced)
}

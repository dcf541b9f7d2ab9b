//! The catalog: the durable record of which chunks the store holds and where, in `redb`
//! (a crash-safe embedded B-tree: copy-on-write pages, checksummed commits, one fsync per
//! durable commit), at `{data_dir}/catalog.redb`.
//!
//! A chunk is *stored* exactly when its record is in the catalog. Records are written only
//! after the chunk's shards are on the devices (see `commit`), so a crash at any moment
//! leaves either no record — the half-written shards are in space no record claims, free
//! again at the next start — or a record whose shards are all there.
//!
//! Tables: `chunks` maps the full 32-byte id to a 16-byte record (generation, offset,
//! length); `meta` holds the store's UUID and geometry, and the devices still being
//! refilled; `manifests`, `refs` and `expiry` hold the manifests and reference counts
//! (`catalog_refs`), changed in the same transactions as the records.
//!
//! **Architecture invariant:** the only module that touches the catalog file.

use std::path::Path;

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

use super::catalog_refs::{self, Changed, Count, Counts, Due, Inserted};
pub use super::catalog_tables::Record;
use super::catalog_tables::{CHUNKS, key_bounds, prefix_bounds};
use super::geometry::{SUPERBLOCK_BYTES, Superblock};
use super::refs::ManifestPut;
use crate::chunk::ChunkId;

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const META_SUPERBLOCK: &str = "superblock";
/// Indexes of the devices not yet refilled (u32 little-endian each).
const META_REFILLING: &str = "refilling";
/// The store UUID chosen by a format in progress, recorded before any superblock is
/// written, so that a restart can tell its own half-written superblocks from another
/// store's devices.
const META_FORMAT_UUID: &str = "format-uuid";

/// One change in a commit.
pub enum Change {
    /// Store a new chunk, unless it or another chunk with its 64-bit prefix is there.
    Insert(ChunkId, Record),
    /// Forget a chunk; with a generation, only if it is still the copy that generation
    /// wrote (a chunk found lost is dropped without touching a fresh copy stored since).
    Remove(ChunkId, Option<u64>),
    /// Forget the chunk whose index key is the first (a `u64` of its id's first 8 bytes)
    /// if it is still the copy the generation wrote: an eviction, which knows only the key.
    Evict(u64, u64),
}

/// What a change did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// Stored; what the manifests say of it (see `catalog_refs::on_insert`).
    Inserted(Inserted),
    /// The chunk was already stored (by an earlier or concurrent PUT): nothing changed.
    AlreadyPresent,
    /// Another chunk has the same 64-bit id prefix; this one cannot be indexed.
    PrefixTaken,
    Removed(Record),
    NotFound,
    /// An eviction refused: a live manifest names the chunk and pinning is on.
    Kept,
}

/// What commits need to know about references: the time, and the settings that decide
/// whether a new chunk expires at once and whether a referenced one may be evicted.
#[derive(Clone, Copy, Debug)]
pub struct RefRules {
    pub now_ms: u64,
    pub expire_unreferenced: bool,
    pub pin_referenced: bool,
}

/// The open catalog.
pub struct Catalog {
    db: Database,
    /// Serialises read-modify-write updates of the meta table (refilling devices), which
    /// the commit thread and the repair task both make.
    meta_updates: std::sync::Mutex<()>,
}

impl Catalog {
    /// Opens or creates the catalog file.
    pub fn open(path: &Path) -> Result<Catalog, redb::Error> {
        if !path.exists() {
            create_atomically(path)?;
        }
        let db = Database::create(path)?;
        let txn = db.begin_write()?;
        txn.open_table(CHUNKS)?;
        txn.open_table(META)?;
        catalog_refs::create_tables(&txn)?;
        txn.commit()?;
        Ok(Catalog {
            db,
            meta_updates: std::sync::Mutex::new(()),
        })
    }

    /// The store's identity and geometry, once the store has been formatted.
    pub fn superblock(&self) -> Result<Option<Superblock>, redb::Error> {
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(META)?;
        Ok(meta
            .get(META_SUPERBLOCK)?
            .and_then(|bytes| Superblock::decode(bytes.value())))
    }

    /// Records the store's identity and geometry (at format time).
    pub fn set_superblock(&self, superblock: &Superblock) -> Result<(), redb::Error> {
        let txn = self.db.begin_write()?;
        txn.open_table(META)?
            .insert(META_SUPERBLOCK, &superblock.encode()[..SUPERBLOCK_BYTES])?;
        txn.commit()?;
        Ok(())
    }

    /// The store UUID a format chose before writing superblocks (`None` before any format).
    pub fn format_uuid(&self) -> Result<Option<[u8; 16]>, redb::Error> {
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(META)?;
        Ok(meta
            .get(META_FORMAT_UUID)?
            .and_then(|bytes| bytes.value().try_into().ok()))
    }

    /// Records the store UUID a format is about to write into superblocks.
    pub fn set_format_uuid(&self, uuid: &[u8; 16]) -> Result<(), redb::Error> {
        let txn = self.db.begin_write()?;
        txn.open_table(META)?.insert(META_FORMAT_UUID, &uuid[..])?;
        txn.commit()?;
        Ok(())
    }

    /// Indexes of the devices that were replaced and are not refilled yet. A device here
    /// may have a sound superblock, but not yet every shard it should hold.
    pub fn refilling(&self) -> Result<Vec<u32>, redb::Error> {
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(META)?;
        let Some(bytes) = meta.get(META_REFILLING)? else {
            return Ok(Vec::new());
        };
        Ok(bytes
            .value()
            .chunks_exact(4)
            .map(|d| u32::from_le_bytes(d.try_into().expect("4 bytes")))
            .collect())
    }

    /// Adds `device` to the devices to refill (durably): it went offline, so chunks written
    /// meanwhile lack its shards, and the next start must refill it.
    pub fn add_refilling(&self, device: u32) -> Result<(), redb::Error> {
        let _one_at_a_time = self.meta_updates.lock().unwrap_or_else(|p| p.into_inner());
        let mut devices = self.refilling()?;
        if !devices.contains(&device) {
            devices.push(device);
            self.set_refilling(&devices)?;
        }
        Ok(())
    }

    /// Removes `done` from the devices to refill (durably).
    pub fn remove_refilling(&self, done: &[u32]) -> Result<(), redb::Error> {
        let _one_at_a_time = self.meta_updates.lock().unwrap_or_else(|p| p.into_inner());
        let still: Vec<u32> = self
            .refilling()?
            .into_iter()
            .filter(|d| !done.contains(d))
            .collect();
        self.set_refilling(&still)
    }

    /// Records, durably, which devices are not refilled yet.
    pub fn set_refilling(&self, devices: &[u32]) -> Result<(), redb::Error> {
        let bytes: Vec<u8> = devices.iter().flat_map(|d| d.to_le_bytes()).collect();
        let txn = self.db.begin_write()?;
        txn.open_table(META)?
            .insert(META_REFILLING, bytes.as_slice())?;
        txn.commit()?;
        Ok(())
    }

    /// Calls `visit` for every stored chunk, in id order, with its reference count entry
    /// if it has one; returns the number of referenced ids (stored or not) and manifests.
    /// One read transaction: the two tables are walked side by side, both in id order.
    pub fn for_each(
        &self,
        visit: impl FnMut(ChunkId, Record, Option<Count>),
    ) -> Result<(u64, u64), redb::Error> {
        catalog_refs::for_each_counted(&self.db.begin_read()?, visit)
    }

    /// Calls `visit` for up to `limit` chunks with ids after `after`, in id order; returns
    /// the last id visited. Lets background work walk the catalog in short read
    /// transactions.
    pub fn for_each_after(
        &self,
        after: Option<ChunkId>,
        limit: usize,
        mut visit: impl FnMut(ChunkId, Record),
    ) -> Result<Option<ChunkId>, redb::Error> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(CHUNKS)?;
        let rows = match after {
            Some(id) => table.range::<&[u8; 32]>((
                std::ops::Bound::Excluded(id.as_bytes()),
                std::ops::Bound::Unbounded,
            ))?,
            None => table.range::<&[u8; 32]>(..)?,
        };
        let mut last = None;
        for row in rows.take(limit) {
            let (id, record) = row?;
            let id = ChunkId::from_bytes(*id.value());
            visit(id, Record::decode(record.value()));
            last = Some(id);
        }
        Ok(last)
    }

    /// The record of `id`.
    pub fn get(&self, id: &ChunkId) -> Result<Option<Record>, redb::Error> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(CHUNKS)?;
        Ok(table
            .get(id.as_bytes())?
            .map(|record| Record::decode(record.value())))
    }

    /// Applies `changes` in one durable transaction (one fsync for the lot) and returns
    /// what each did.
    pub fn commit(&self, changes: &[Change], rules: RefRules) -> Result<Vec<Applied>, redb::Error> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        let applied = {
            let mut tables = Counts::open(&txn, rules.now_ms)?;
            changes
                .iter()
                .map(|change| apply(&mut tables, change, rules))
                .collect::<Result<Vec<_>, redb::Error>>()?
        };
        txn.commit()?;
        Ok(applied)
    }

    /// Stores a manifest in one durable transaction (see `catalog_refs::put_manifest`).
    pub(super) fn put_manifest(
        &self,
        name: &str,
        ids: &[ChunkId],
        now_ms: u64,
    ) -> Result<(ManifestPut, Changed), redb::Error> {
        let txn = self.begin_durable()?;
        let done = catalog_refs::put_manifest(&txn, name, ids, now_ms)?;
        txn.commit()?;
        Ok(done)
    }

    /// Deletes a manifest in one durable transaction; `None` when there is none.
    pub(super) fn delete_manifest(
        &self,
        name: &str,
        now_ms: u64,
    ) -> Result<Option<Changed>, redb::Error> {
        let txn = self.begin_durable()?;
        let done = catalog_refs::delete_manifest(&txn, name, now_ms)?;
        txn.commit()?;
        Ok(done)
    }

    /// Cancels the expiries of `ids` (reads used them) in one transaction.
    pub(super) fn unexpire(&self, ids: &[ChunkId]) -> Result<Vec<bool>, redb::Error> {
        let txn = self.begin_durable()?;
        let done = ids
            .iter()
            .map(|id| catalog_refs::unexpire(&txn, id))
            .collect::<Result<Vec<_>, _>>()?;
        txn.commit()?;
        Ok(done)
    }

    /// One sweep batch, one durable transaction: up to `limit` expiries due by `cutoff_ms`.
    /// `claim` is asked for each one whose chunk is stored, before it is removed:
    /// `Some(true)` to delete it, `Some(false)` when a read cancelled its deletion (it
    /// stays, unreferenced), `None` to leave the expiry for a later sweep.
    pub(super) fn sweep(
        &self,
        cutoff_ms: u64,
        limit: usize,
        mut claim: impl FnMut(&Due) -> Option<bool>,
    ) -> Result<Swept, redb::Error> {
        let txn = self.begin_durable()?;
        let due = catalog_refs::due(&txn, cutoff_ms, limit)?;
        let mut swept = Swept {
            found: due.len(),
            ..Swept::default()
        };
        for one in &due {
            let delete = match one.record {
                Some(_) => match claim(one) {
                    Some(delete) => delete,
                    None => continue,
                },
                None => false,
            };
            swept.ended += 1;
            if one.record.is_some() && !delete {
                swept.cancelled += 1;
            }
            if let Some(record) = catalog_refs::end_expiry(&txn, one, delete)? {
                swept.deleted.push((one.id, record));
            }
        }
        txn.commit()?;
        Ok(swept)
    }

    /// Expires every stored chunk no manifest names (`gc_unreferenced` at open).
    pub(super) fn expire_unreferenced(&self, now_ms: u64) -> Result<Vec<ChunkId>, redb::Error> {
        let txn = self.begin_durable()?;
        let done = catalog_refs::expire_unreferenced(&txn, now_ms)?;
        txn.commit()?;
        Ok(done)
    }

    /// The ids manifest `name` lists, in order.
    pub(super) fn manifest(&self, name: &str) -> Result<Option<Vec<ChunkId>>, redb::Error> {
        catalog_refs::manifest(&self.db.begin_read()?, name)
    }

    /// Every manifest's name, sorted.
    pub(super) fn manifest_names(&self) -> Result<Vec<String>, redb::Error> {
        catalog_refs::manifest_names(&self.db.begin_read()?)
    }

    /// `id`'s reference count entry.
    pub(super) fn count(&self, id: &ChunkId) -> Result<Option<Count>, redb::Error> {
        catalog_refs::count(&self.db.begin_read()?, id)
    }

    /// Expiries not yet ended.
    pub(super) fn expiries(&self) -> Result<u64, redb::Error> {
        catalog_refs::expiries(&self.db.begin_read()?)
    }

    fn begin_durable(&self) -> Result<redb::WriteTransaction, redb::Error> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        Ok(txn)
    }
}

/// What one sweep batch did.
#[derive(Debug, Default)]
pub(super) struct Swept {
    /// Expiries due that it looked at, and those it ended (the others were left).
    pub(super) found: usize,
    pub(super) ended: usize,
    /// Chunks deleted, with their records.
    pub(super) deleted: Vec<(ChunkId, Record)>,
    /// Stored chunks whose deletion a read had cancelled.
    pub(super) cancelled: u64,
}

/// Creates an empty catalog at `path`, all or nothing: it is built under a temporary name
/// and renamed into place once whole. redb writes its magic number last when it creates a
/// file, and refuses to open a file without one, so a crash in the middle of
/// `Database::create` would leave a file that no later start could open.
fn create_atomically(path: &Path) -> Result<(), redb::Error> {
    let mut fresh = path.as_os_str().to_owned();
    fresh.push(".new");
    let fresh = std::path::PathBuf::from(fresh);
    // A leftover from a crash during an earlier creation.
    if let Err(error) = std::fs::remove_file(&fresh)
        && error.kind() != std::io::ErrorKind::NotFound
    {
        return Err(error.into());
    }
    let db = Database::create(&fresh)?;
    let txn = db.begin_write()?;
    txn.open_table(CHUNKS)?;
    txn.open_table(META)?;
    catalog_refs::create_tables(&txn)?;
    txn.commit()?;
    drop(db);
    std::fs::rename(&fresh, path)?;
    // Make the rename durable: sync the directory that holds the catalog.
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    std::fs::File::open(dir.unwrap_or(Path::new(".")))?.sync_all()?;
    Ok(())
}

fn apply(
    tables: &mut Counts<'_>,
    change: &Change,
    rules: RefRules,
) -> Result<Applied, redb::Error> {
    match change {
        Change::Insert(id, record) => {
            let table = &mut tables.chunks;
            if table.get(id.as_bytes())?.is_some() {
                return Ok(Applied::AlreadyPresent);
            }
            let (low, high) = prefix_bounds(id);
            if table.range::<&[u8; 32]>(&low..=&high)?.next().is_some() {
                return Ok(Applied::PrefixTaken);
            }
            table.insert(id.as_bytes(), &record.encode())?;
            let refs = catalog_refs::on_insert(tables, id, rules.expire_unreferenced)?;
            Ok(Applied::Inserted(refs))
        }
        Change::Remove(id, Some(generation)) => {
            let current = tables
                .chunks
                .get(id.as_bytes())?
                .map(|record| Record::decode(record.value()).generation);
            if current != Some(*generation) {
                return Ok(Applied::NotFound);
            }
            apply(tables, &Change::Remove(*id, None), rules)
        }
        Change::Evict(key, generation) => {
            let (low, high) = key_bounds(*key);
            let found = match tables.chunks.range::<&[u8; 32]>(&low..=&high)?.next() {
                Some(row) => {
                    let (id, record) = row?;
                    Some((*id.value(), Record::decode(record.value())))
                }
                None => None,
            };
            match found {
                Some((id, _))
                    if rules.pin_referenced && catalog_refs::is_referenced(tables, &id)? =>
                {
                    Ok(Applied::Kept)
                }
                Some((id, record)) if record.generation == *generation => {
                    tables.chunks.remove(&id)?;
                    catalog_refs::on_remove(tables, &id)?;
                    Ok(Applied::Removed(record))
                }
                _ => Ok(Applied::NotFound),
            }
        }
        Change::Remove(id, None) => {
            let Some(old) = tables
                .chunks
                .remove(id.as_bytes())?
                .map(|old| Record::decode(old.value()))
            else {
                return Ok(Applied::NotFound);
            };
            catalog_refs::on_remove(tables, id.as_bytes())?;
            Ok(Applied::Removed(old))
        }
    }
}

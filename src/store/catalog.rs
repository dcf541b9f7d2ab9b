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
//! refilled.
//!
//! **Architecture invariant:** the only module that touches the catalog file.

use std::path::Path;

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

use super::geometry::{SUPERBLOCK_BYTES, Superblock};
use crate::chunk::ChunkId;

const CHUNKS: TableDefinition<&[u8; 32], &[u8; 16]> = TableDefinition::new("chunks");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const META_SUPERBLOCK: &str = "superblock";
/// Indexes of the devices not yet refilled (u32 little-endian each).
const META_REFILLING: &str = "refilling";
/// The store UUID chosen by a format in progress, recorded before any superblock is
/// written, so that a restart can tell its own half-written superblocks from another
/// store's devices.
const META_FORMAT_UUID: &str = "format-uuid";

/// Where a stored chunk is, as the catalog keeps it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    pub generation: u64,
    pub offset_blocks: u32,
    pub len_bytes: u32,
}

impl Record {
    fn encode(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[0..8].copy_from_slice(&self.generation.to_le_bytes());
        out[8..12].copy_from_slice(&self.offset_blocks.to_le_bytes());
        out[12..16].copy_from_slice(&self.len_bytes.to_le_bytes());
        out
    }

    fn decode(bytes: &[u8; 16]) -> Record {
        Record {
            generation: u64::from_le_bytes(bytes[0..8].try_into().expect("8 bytes")),
            offset_blocks: u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes")),
            len_bytes: u32::from_le_bytes(bytes[12..16].try_into().expect("4 bytes")),
        }
    }
}

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
    Inserted,
    /// The chunk was already stored (by an earlier or concurrent PUT): nothing changed.
    AlreadyPresent,
    /// Another chunk has the same 64-bit id prefix; this one cannot be indexed.
    PrefixTaken,
    Removed(Record),
    NotFound,
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

    /// Calls `visit` for every stored chunk, in id order.
    pub fn for_each(&self, mut visit: impl FnMut(ChunkId, Record)) -> Result<(), redb::Error> {
        let txn = self.db.begin_read()?;
        for row in txn.open_table(CHUNKS)?.iter()? {
            let (id, record) = row?;
            visit(
                ChunkId::from_bytes(*id.value()),
                Record::decode(record.value()),
            );
        }
        Ok(())
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
    pub fn commit(&self, changes: &[Change]) -> Result<Vec<Applied>, redb::Error> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        let applied = {
            let mut table = txn.open_table(CHUNKS)?;
            changes
                .iter()
                .map(|change| apply(&mut table, change))
                .collect::<Result<Vec<_>, redb::Error>>()?
        };
        txn.commit()?;
        Ok(applied)
    }
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
    txn.commit()?;
    drop(db);
    std::fs::rename(&fresh, path)?;
    // Make the rename durable: sync the directory that holds the catalog.
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    std::fs::File::open(dir.unwrap_or(Path::new(".")))?.sync_all()?;
    Ok(())
}

fn apply(
    table: &mut redb::Table<&[u8; 32], &[u8; 16]>,
    change: &Change,
) -> Result<Applied, redb::Error> {
    match change {
        Change::Insert(id, record) => {
            if table.get(id.as_bytes())?.is_some() {
                return Ok(Applied::AlreadyPresent);
            }
            let (low, high) = prefix_bounds(id);
            if table.range::<&[u8; 32]>(&low..=&high)?.next().is_some() {
                return Ok(Applied::PrefixTaken);
            }
            table.insert(id.as_bytes(), &record.encode())?;
            Ok(Applied::Inserted)
        }
        Change::Remove(id, Some(generation)) => {
            let current = table
                .get(id.as_bytes())?
                .map(|record| Record::decode(record.value()).generation);
            if current != Some(*generation) {
                return Ok(Applied::NotFound);
            }
            apply(table, &Change::Remove(*id, None))
        }
        Change::Evict(key, generation) => {
            let (low, high) = key_bounds(*key);
            let found = match table.range::<&[u8; 32]>(&low..=&high)?.next() {
                Some(row) => {
                    let (id, record) = row?;
                    Some((*id.value(), Record::decode(record.value())))
                }
                None => None,
            };
            match found {
                Some((id, record)) if record.generation == *generation => {
                    table.remove(&id)?;
                    Ok(Applied::Removed(record))
                }
                _ => Ok(Applied::NotFound),
            }
        }
        Change::Remove(id, None) => Ok(match table.remove(id.as_bytes())? {
            Some(old) => Applied::Removed(Record::decode(old.value())),
            None => Applied::NotFound,
        }),
    }
}

/// The smallest and largest ids that share `id`'s first 8 bytes (the index key).
fn prefix_bounds(id: &ChunkId) -> ([u8; 32], [u8; 32]) {
    let key = u64::from_le_bytes(id.as_bytes()[..8].try_into().expect("8 bytes"));
    key_bounds(key)
}

/// The smallest and largest ids whose index key is `key`.
fn key_bounds(key: u64) -> ([u8; 32], [u8; 32]) {
    let (mut low, mut high) = ([0u8; 32], [0xffu8; 32]);
    low[..8].copy_from_slice(&key.to_le_bytes());
    high[..8].copy_from_slice(&key.to_le_bytes());
    (low, high)
}

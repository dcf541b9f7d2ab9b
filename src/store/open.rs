//! Start-up and recovery: open the devices and the catalog, format a new store or check an
//! existing one, load the catalog into the index and the free-space maps, start the commit
//! thread.
//!
//! Recovery needs no log replay: the catalog is crash-safe by itself and names every stored
//! chunk; whatever a crash left half-written lies in space no record claims and becomes free
//! again here. Loading is one pass over the catalog (see the closing note of the store
//! issue for the time it takes at 100k and 1M chunks).
//!
//! Devices: each carries a superblock (store UUID, its index, the geometry). A device with
//! no superblock in an existing store is a replacement: it is formatted and refilled in the
//! background. The catalog lists it as refilling from before its superblock is written
//! until its refill is durable, so a restart resumes an unfinished refill. A device of
//! another store, or in another position, is refused rather than overwritten (unless the
//! operator asked to reformat foreign devices), and so is a device listed twice.
//!
//! A new store's UUID is recorded in the catalog before any superblock is written: a
//! restart after a crash mid-format adopts superblocks with that UUID, and only those, so a
//! fresh data directory pointed at another store's devices is refused, not adopted.

use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ring::rand::SecureRandom;

use super::aligned::AlignedBuf;
use super::catalog::Catalog;
use super::commit;
use super::config::StoreConfig;
use super::device::{DeviceHandle, DeviceSpec, Engine, first_duplicate};
use super::error::StoreError;
use super::evict::spawn_evictor;
use super::flash::{FlashCounters, Group, loaded_group};
use super::geometry::{
    DEVICE_BLOCK_BYTES, Geometry, RESERVED_BLOCKS, SUPERBLOCK_BYTES, Superblock,
};
use super::handle::{Store, StoreInner};
use super::health::{DeviceCounters, DeviceState, StoreCounters};
use super::index::{Entry, Flags, GENERATION_LIMIT, Index, key_of};
use super::refs::GcCounters;
use super::repair::queue::Queue;
use super::shard::{BLOCKS_MAX, CHECKSUM_BLOCK_BYTES, extent_blocks};
use super::state::{DeviceSlot, Shared};
use super::sweeper::spawn_sweeper;

/// What opening the store found.
#[derive(Clone, Debug)]
pub struct OpenReport {
    /// True when the store was formatted now.
    pub created: bool,
    /// Chunks found in the catalog.
    pub chunks: usize,
    /// Time to load the catalog into memory.
    pub recovery: Duration,
    /// Devices that were new or replaced and are being refilled.
    pub refilling: Vec<String>,
}

impl<E: Engine> Store<E> {
    /// Opens (or creates) the store described by `config` on `engine`'s devices.
    pub fn open(config: StoreConfig, engine: &E) -> Result<(Store<E>, OpenReport), StoreError> {
        check_config(&config)?;
        check_distinct_devices(&config.devices)?;
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|e| setup(format!("creating {}: {e}", config.data_dir.display())))?;
        let catalog_path = config.data_dir.join("catalog.redb");
        let catalog = Catalog::open(&catalog_path).map_err(|e| catalog_error(&catalog_path, e))?;
        let mut handles = Vec::with_capacity(config.devices.len());
        for spec in &config.devices {
            handles.push(open_device(engine, spec, config.device_lock_wait)?);
        }
        let found: Vec<Option<Superblock>> = handles
            .iter()
            .map(read_superblock)
            .collect::<Result<_, _>>()?;
        let (superblock, states, created) = match catalog.superblock()? {
            Some(superblock) => {
                let states = check_devices(&config, &catalog, &handles, &found, &superblock)?;
                (superblock, states, false)
            }
            None => (
                format_store(&config, &catalog, &handles, &found)?,
                vec![DeviceState::Online; handles.len()],
                true,
            ),
        };
        let geometry = superblock.geometry;
        let devices = device_slots(&config, handles, &states);
        let started = Instant::now();
        if config.gc_unreferenced {
            let expired = catalog.expire_unreferenced(config.gc_clock.now_ms())?;
            if !expired.is_empty() {
                tracing::info!(
                    chunks = expired.len(),
                    "gc_unreferenced: chunks no manifest names expire now"
                );
            }
        }
        let loaded = load_catalog(&config, &geometry, &catalog)?;
        let recovery = started.elapsed();
        let refilling = devices
            .iter()
            .filter(|d| d.counters.state() == DeviceState::Refilling)
            .map(|d| d.spec.to_string())
            .collect();
        let chunks = loaded.index.len();
        let (evict_wake, evict_wakes) = crossbeam::channel::bounded(1);
        let shared = Arc::new(Shared {
            config,
            geometry,
            devices,
            index: loaded.index,
            groups: loaded.groups.into_iter().map(Mutex::new).collect(),
            chunks_per_group: loaded
                .chunks_per_group
                .into_iter()
                .map(AtomicU64::new)
                .collect(),
            catalog,
            generation: AtomicU64::new(loaded.next_generation),
            grace: Default::default(),
            counters: StoreCounters::default(),
            flash: FlashCounters::holding(loaded.bytes),
            gc: GcCounters {
                manifests: AtomicU64::new(loaded.manifests),
                referenced: AtomicU64::new(loaded.referenced),
                ..GcCounters::default()
            },
            swept: std::sync::OnceLock::new(),
            evict_wake: evict_wake.clone(),
            unrecoverable: Mutex::new(std::collections::HashSet::new()),
        });
        let (sender, receiver) = crossbeam::channel::unbounded();
        let committer = commit::spawn(shared.clone(), receiver);
        let evictor = spawn_evictor(shared.clone(), sender.clone(), evict_wakes, evict_wake);
        let sweeper = spawn_sweeper(shared.clone(), sender.clone());
        let store = Store::from_inner(StoreInner {
            shared,
            evictor: Some(evictor),
            sweeper,
            commits: Some(sender),
            committer: Some(committer),
            repairs: Queue::new(),
        });
        Ok((
            store,
            OpenReport {
                created,
                chunks,
                recovery,
                refilling,
            },
        ))
    }
}

/// Each device's slot: its spec, handle and health, starting in `states`.
fn device_slots<H>(
    config: &StoreConfig,
    handles: Vec<H>,
    states: &[DeviceState],
) -> Vec<DeviceSlot<H>> {
    config
        .devices
        .iter()
        .zip(handles)
        .zip(states)
        .map(|((spec, handle), state)| {
            let counters = DeviceCounters::default();
            counters.set_state(*state);
            DeviceSlot::new(spec.clone(), handle, counters)
        })
        .collect()
}

fn setup(message: String) -> StoreError {
    StoreError::Setup(message)
}

fn check_config(config: &StoreConfig) -> Result<(), StoreError> {
    if config.devices.is_empty() {
        return Err(setup("no devices configured".into()));
    }
    let largest_shard =
        crate::erasure::Layout::new(config.scheme, u64::from(config.max_chunk_bytes))
            .shard_len_bytes();
    if largest_shard / CHECKSUM_BLOCK_BYTES > BLOCKS_MAX {
        return Err(setup(format!(
            "max chunk of {} bytes makes {largest_shard}-byte shards with k = {}; a shard holds at most {} bytes",
            config.max_chunk_bytes,
            config.scheme.data_shards(),
            BLOCKS_MAX * CHECKSUM_BLOCK_BYTES
        )));
    }
    Ok(())
}

/// Opens `spec`, waiting up to `wait` while another process holds it (see
/// [`StoreConfig::device_lock_wait`]).
fn open_device<E: Engine>(
    engine: &E,
    spec: &DeviceSpec,
    wait: Duration,
) -> Result<E::Handle, StoreError> {
    /// Pause between attempts.
    const RETRY: Duration = Duration::from_millis(20);
    let started = Instant::now();
    loop {
        match engine.open(spec) {
            Err(e) if e.kind() == std::io::ErrorKind::ResourceBusy && started.elapsed() < wait => {
                std::thread::sleep(RETRY);
            }
            opened => return opened.map_err(|e| setup(format!("opening device {spec}: {e}"))),
        }
    }
}

/// The catalog's open error, naming its file; a lock held elsewhere is most likely another
/// node on the same data directory.
fn catalog_error(path: &Path, error: redb::Error) -> StoreError {
    match error {
        redb::Error::DatabaseAlreadyOpen => setup(format!(
            "the catalog {} is already open: is another chunkd running with this --data-dir?",
            path.display()
        )),
        other => StoreError::Catalog(format!("{}: {other}", path.display())),
    }
}

/// Refuses a device listed twice (the same path, or two paths to one file or block
/// device): the store would put two shards of a chunk, or two devices' data, in one place.
fn check_distinct_devices(devices: &[DeviceSpec]) -> Result<(), StoreError> {
    match first_duplicate(devices) {
        Some((first, second)) => Err(setup(format!(
            "devices {} and {} are the same device; list each device once",
            devices[first].path.display(),
            devices[second].path.display()
        ))),
        None => Ok(()),
    }
}

/// The refusal of a device that holds another store's superblock.
fn foreign_device(spec: &DeviceSpec, uuid: &[u8; 16], data_dir: &Path) -> StoreError {
    setup(format!(
        "device {spec} belongs to chunkd store {}, which the catalog in {} does not know \
         (is another chunkd using it, or is the device list wrong?); refusing to overwrite \
         it (--reformat-foreign-devices erases it and its data)",
        hex::encode(uuid),
        data_dir.display()
    ))
}

fn read_superblock<H: DeviceHandle>(handle: &H) -> Result<Option<Superblock>, StoreError> {
    let mut buf = AlignedBuf::zeroed(SUPERBLOCK_BYTES);
    handle
        .read_sync(&mut buf, 0)
        .map_err(|e| setup(format!("reading a superblock: {e}")))?;
    Ok(Superblock::decode(&buf))
}

fn write_superblock<H: DeviceHandle>(
    handle: &H,
    superblock: &Superblock,
) -> Result<(), StoreError> {
    let mut buf = AlignedBuf::zeroed(SUPERBLOCK_BYTES);
    buf.copy_from_slice(&superblock.encode());
    handle
        .write_sync(&buf, 0)
        .and_then(|()| handle.sync_data())
        .map_err(|e| setup(format!("writing a superblock: {e}")))
}

/// Checks an existing store's devices; formats replacements. Returns each device's state:
/// `Refilling` for a replacement formatted now or one whose refill had not finished.
fn check_devices<H: DeviceHandle>(
    config: &StoreConfig,
    catalog: &Catalog,
    handles: &[H],
    found: &[Option<Superblock>],
    store: &Superblock,
) -> Result<Vec<DeviceState>, StoreError> {
    let geometry = store.geometry;
    if geometry.device_count as usize != handles.len() || geometry.scheme != config.scheme {
        return Err(setup(format!(
            "the store in {} was created with {} devices and {}+{} shards; it is configured with {} devices and {}+{}",
            config.data_dir.display(),
            geometry.device_count,
            geometry.scheme.data_shards(),
            geometry.scheme.parity_shards(),
            handles.len(),
            config.scheme.data_shards(),
            config.scheme.parity_shards()
        )));
    }
    let needed_bytes = (RESERVED_BLOCKS
        + u64::from(geometry.partitions_per_device) * geometry.partition_blocks)
        * DEVICE_BLOCK_BYTES;
    let mut refilling = catalog.refilling()?;
    let mut states = Vec::with_capacity(handles.len());
    for (index, ((handle, found), spec)) in
        handles.iter().zip(found).zip(&config.devices).enumerate()
    {
        let state = match found {
            Some(sb) if sb.store_uuid == store.store_uuid && sb.device_index as usize == index => {
                if refilling.contains(&(index as u32)) {
                    DeviceState::Refilling
                } else {
                    DeviceState::Online
                }
            }
            Some(sb) if sb.store_uuid == store.store_uuid => {
                return Err(setup(format!(
                    "{spec} is device {} of this store, but is configured as device {index}",
                    sb.device_index
                )));
            }
            Some(sb) if !config.reformat_foreign_devices => {
                return Err(foreign_device(spec, &sb.store_uuid, &config.data_dir));
            }
            Some(_) | None => {
                if handle.size_bytes() < needed_bytes {
                    return Err(setup(format!(
                        "replacement device {spec} has {} bytes, needs {needed_bytes}",
                        handle.size_bytes()
                    )));
                }
                tracing::warn!(
                    device = %spec,
                    foreign = found.is_some(),
                    "device has no superblock of this store: formatting it as a replacement"
                );
                // Recorded before the superblock is written: a device with a superblock
                // is taken as whole unless the catalog says its refill is not done.
                if !refilling.contains(&(index as u32)) {
                    refilling.push(index as u32);
                    catalog.set_refilling(&refilling)?;
                }
                write_superblock(
                    handle,
                    &Superblock {
                        device_index: index as u32,
                        ..*store
                    },
                )?;
                DeviceState::Refilling
            }
        };
        states.push(state);
    }
    Ok(states)
}

/// Formats a new store (or finishes a format a crash interrupted).
fn format_store<H: DeviceHandle>(
    config: &StoreConfig,
    catalog: &Catalog,
    handles: &[H],
    found: &[Option<Superblock>],
) -> Result<Superblock, StoreError> {
    let mut has_chunks = false;
    catalog.for_each_after(None, 1, |_, _| has_chunks = true)?;
    if has_chunks {
        return Err(setup(
            "the catalog lists chunks but has no superblock: it is damaged".into(),
        ));
    }
    let sizes: Vec<u64> = handles.iter().map(|h| h.size_bytes()).collect();
    let min_partition = u64::from(extent_blocks(
        config.scheme,
        u64::from(config.max_chunk_bytes),
    ));
    let geometry = Geometry::new(&sizes, config.scheme, min_partition).ok_or_else(|| {
        setup(format!(
            "the devices are too small: the smallest has {} bytes, too few to hold one {}-byte chunk",
            sizes.iter().min().copied().unwrap_or(0),
            config.max_chunk_bytes
        ))
    })?;
    // A crash between writing superblocks and the catalog leaves superblocks with the UUID
    // this catalog recorded for its format: adopt them. Anything else is someone else's data.
    let pending = catalog.format_uuid()?;
    let uuid = match adoptable_uuid(found, geometry, pending) {
        Ok(()) => pending,
        Err(index) if config.reformat_foreign_devices => {
            tracing::warn!(device = %config.devices[index], "reformatting a device of another store");
            None
        }
        Err(index) => {
            let foreign = found[index].map(|sb| sb.store_uuid).unwrap_or_default();
            return Err(foreign_device(
                &config.devices[index],
                &foreign,
                &config.data_dir,
            ));
        }
    };
    let uuid = match uuid {
        Some(uuid) => uuid,
        None => {
            let uuid = random_uuid()?;
            catalog.set_format_uuid(&uuid)?;
            uuid
        }
    };
    for (index, handle) in handles.iter().enumerate() {
        write_superblock(
            handle,
            &Superblock {
                store_uuid: uuid,
                device_index: index as u32,
                geometry,
            },
        )?;
    }
    let superblock = Superblock {
        store_uuid: uuid,
        device_index: 0,
        geometry,
    };
    catalog.set_superblock(&superblock)?;
    Ok(superblock)
}

/// Whether every found superblock is one this catalog's interrupted format (`pending`)
/// wrote, in its right position and geometry; else the index of a device that is not.
fn adoptable_uuid(
    found: &[Option<Superblock>],
    geometry: Geometry,
    pending: Option<[u8; 16]>,
) -> Result<(), usize> {
    for (index, sb) in found.iter().enumerate() {
        let Some(sb) = sb else { continue };
        let fits = sb.geometry == geometry
            && sb.device_index as usize == index
            && pending == Some(sb.store_uuid);
        if !fits {
            return Err(index);
        }
    }
    Ok(())
}

fn random_uuid() -> Result<[u8; 16], StoreError> {
    let mut uuid = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut uuid)
        .map_err(|_| setup("no system randomness".into()))?;
    Ok(uuid)
}

struct Loaded {
    index: Index,
    groups: Vec<Group>,
    chunks_per_group: Vec<u64>,
    next_generation: u64,
    bytes: u64,
    /// Live manifests, and the ids they name (stored or not).
    manifests: u64,
    referenced: u64,
}

/// Builds the index and free space from the catalog.
fn load_catalog(
    config: &StoreConfig,
    geometry: &Geometry,
    catalog: &Catalog,
) -> Result<Loaded, StoreError> {
    let groups = geometry.groups();
    let index = Index::default();
    let mut used: Vec<Vec<(Entry, u32, Flags)>> = vec![Vec::new(); groups];
    let mut chunks_per_group = vec![0u64; groups];
    let mut next_generation = 1;
    let mut damaged = 0usize;
    let (referenced, manifests) = catalog.for_each(|id, record, count| {
        let group = geometry.placement(&id).group;
        let blocks = extent_blocks(config.scheme, u64::from(record.len_bytes));
        let fits = u64::from(record.offset_blocks) + u64::from(blocks) <= geometry.partition_blocks;
        let entry = Entry {
            key: key_of(&id),
            generation: record.generation,
            offset_blocks: record.offset_blocks,
            len_bytes: record.len_bytes,
        };
        if !fits || record.generation >= GENERATION_LIMIT || index.get(entry.key).is_some() {
            damaged += 1;
            return;
        }
        let flags = match count {
            Some(count) if count.refs > 0 => Flags {
                referenced: true,
                pinned: config.pin_referenced,
                ..Flags::default()
            },
            Some(_) => Flags {
                expired: true,
                ..Flags::default()
            },
            None => Flags::default(),
        };
        index.insert(entry, flags);
        used[group].push((entry, blocks, flags));
        chunks_per_group[group] += 1;
        next_generation = next_generation.max(record.generation + 1);
    })?;
    if damaged > 0 {
        tracing::error!(
            records = damaged,
            "catalog records that do not fit the geometry or share an index key were skipped"
        );
    }
    let bytes = used
        .iter()
        .flatten()
        .map(|(e, _, _)| u64::from(e.len_bytes))
        .sum();
    let groups = used
        .into_iter()
        .enumerate()
        .map(|(group, chunks)| {
            loaded_group(geometry.partition_blocks, chunks, config.scheme)
                .map_err(|e| setup(format!("catalog records of group {group} overlap: {e}")))
        })
        .collect::<Result<_, _>>()?;
    Ok(Loaded {
        index,
        groups,
        chunks_per_group,
        next_generation,
        bytes,
        manifests,
        referenced,
    })
}

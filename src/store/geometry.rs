//! Where shards go: the devices are cut into equal *partitions*, partitions are dealt into
//! *groups* of `k + m`, and every chunk lives in one group, its shards at the **same
//! offset** in each of the group's partitions. One offset per chunk is all the index keeps.
//!
//! With `n` devices and stripe width `w = k + m`, each device is cut into
//! `P = w / gcd(n, w)` partitions, giving `n·P` partitions and `n·P / w` groups. Partition
//! `j` is partition `j / n` of device `j % n`, and group `g` is partitions
//! `[g·w, (g+1)·w)`; any `w` consecutive partitions lie on `min(n, w)` distinct devices, so
//! with `n ≥ w` every shard of a chunk is on its own device. Worked examples (4 + 1):
//! 5 devices → 1 partition each, 1 group; 10 devices → 2 groups of 5 devices; 1 device → 5
//! partitions, 1 group; 2 devices → 5 partitions each, 2 groups spread 3 + 2 over them.
//!
//! A chunk's group and the rotation of its shards within the group (so parity is not
//! always on the same device) come from its id, so devices fill evenly and nothing about
//! placement needs storing. The first 1 MiB of every device holds its superblock.
//!
//! **Architecture invariant:** pure arithmetic and encoding; no I/O.

use super::aligned::IO_ALIGN_BYTES;
use crate::chunk::ChunkId;
use crate::erasure::Scheme;

/// The unit that all offsets and lengths on a device are counted in (4 KiB): one aligned
/// I/O unit, so every block offset is an O_DIRECT offset.
pub const DEVICE_BLOCK_BYTES: u64 = IO_ALIGN_BYTES as u64;
/// Blocks reserved at the start of every device for its superblock.
pub const RESERVED_BLOCKS: u64 = 256;
/// Bytes of the superblock: one aligned I/O unit.
pub const SUPERBLOCK_BYTES: usize = IO_ALIGN_BYTES;

// The superblock fits in the reserved blocks and is read with O_DIRECT.
const _: () = assert!(SUPERBLOCK_BYTES as u64 <= RESERVED_BLOCKS * DEVICE_BLOCK_BYTES);
const _: () = assert!(SUPERBLOCK_BYTES.is_multiple_of(IO_ALIGN_BYTES));

const SUPERBLOCK_MAGIC: &[u8; 8] = b"CHKDSUPR";
const SUPERBLOCK_VERSION: u32 = 1;

/// The fixed shape of a store: how many devices, which scheme, how partitions are cut.
/// Chosen when the store is created and never changed after.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub device_count: u32,
    pub scheme: Scheme,
    pub partitions_per_device: u32,
    pub partition_blocks: u64,
}

/// Where a chunk lives: its group and the rotation of its shards in the group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    pub group: usize,
    pub rotation: usize,
}

/// A device superblock: which store, which device, what shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Superblock {
    pub store_uuid: [u8; 16],
    pub device_index: u32,
    pub geometry: Geometry,
}

impl Geometry {
    /// The geometry for devices of `device_sizes_bytes` under `scheme`; `None` when the
    /// smallest device cannot hold one partition of at least `min_partition_blocks`.
    pub fn new(
        device_sizes_bytes: &[u64],
        scheme: Scheme,
        min_partition_blocks: u64,
    ) -> Option<Geometry> {
        let n = device_sizes_bytes.len();
        let w = scheme.total_shards();
        if n == 0 {
            return None;
        }
        let partitions = w / gcd(n, w);
        let smallest_blocks = device_sizes_bytes.iter().min().copied()? / DEVICE_BLOCK_BYTES;
        let partition_blocks = smallest_blocks.checked_sub(RESERVED_BLOCKS)? / partitions as u64;
        // Offsets are stored as u32 blocks: a partition is at most 16 TiB.
        let partition_blocks = partition_blocks.min(u64::from(u32::MAX));
        (partition_blocks >= min_partition_blocks).then_some(Geometry {
            device_count: n as u32,
            scheme,
            partitions_per_device: partitions as u32,
            partition_blocks,
        })
    }

    /// Number of groups.
    pub fn groups(&self) -> usize {
        self.device_count as usize * self.partitions_per_device as usize
            / self.scheme.total_shards()
    }

    /// The group and rotation of chunk `id`: from bytes of the id the index does not use.
    pub fn placement(&self, id: &ChunkId) -> Placement {
        let bytes = id.as_bytes();
        let group_hash = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes"));
        let rotation_hash = u64::from_le_bytes(bytes[16..24].try_into().expect("8 bytes"));
        Placement {
            group: (group_hash % self.groups() as u64) as usize,
            rotation: (rotation_hash % self.scheme.total_shards() as u64) as usize,
        }
    }

    /// Device and byte offset of shard `shard_index` of a chunk placed at `placement`,
    /// `offset_blocks` into its group's partitions.
    pub fn shard_address(
        &self,
        placement: Placement,
        shard_index: usize,
        offset_blocks: u32,
    ) -> (usize, u64) {
        let w = self.scheme.total_shards();
        let member = (shard_index + placement.rotation) % w;
        let (device, partition) = self.partition(placement.group * w + member);
        let block =
            RESERVED_BLOCKS + partition as u64 * self.partition_blocks + u64::from(offset_blocks);
        (device, block * DEVICE_BLOCK_BYTES)
    }

    /// Device and partition-on-device of partition `j`.
    fn partition(&self, j: usize) -> (usize, usize) {
        let n = self.device_count as usize;
        (j % n, j / n)
    }

    /// The devices holding a partition of `group`, in member order.
    pub fn group_devices(&self, group: usize) -> impl Iterator<Item = usize> + '_ {
        let w = self.scheme.total_shards();
        (group * w..(group + 1) * w).map(|j| self.partition(j).0)
    }
}

impl Superblock {
    /// Encodes into one 4 KiB block.
    pub fn encode(&self) -> [u8; SUPERBLOCK_BYTES] {
        let mut out = [0u8; SUPERBLOCK_BYTES];
        let g = &self.geometry;
        out[0..8].copy_from_slice(SUPERBLOCK_MAGIC);
        out[8..12].copy_from_slice(&SUPERBLOCK_VERSION.to_le_bytes());
        out[12..28].copy_from_slice(&self.store_uuid);
        out[28..32].copy_from_slice(&self.device_index.to_le_bytes());
        out[32..36].copy_from_slice(&g.device_count.to_le_bytes());
        out[36] = g.scheme.data_shards() as u8;
        out[37] = g.scheme.parity_shards() as u8;
        out[40..44].copy_from_slice(&g.partitions_per_device.to_le_bytes());
        out[44..52].copy_from_slice(&g.partition_blocks.to_le_bytes());
        let crc = crc32c::crc32c(&out[..SUPERBLOCK_BYTES - 4]);
        out[SUPERBLOCK_BYTES - 4..].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes a block; `None` when it is not a sound superblock (a new, zeroed or foreign
    /// device).
    pub fn decode(bytes: &[u8]) -> Option<Superblock> {
        let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
        if bytes.len() < SUPERBLOCK_BYTES
            || &bytes[0..8] != SUPERBLOCK_MAGIC
            || u32_at(8) != SUPERBLOCK_VERSION
        {
            return None;
        }
        if crc32c::crc32c(&bytes[..SUPERBLOCK_BYTES - 4]) != u32_at(SUPERBLOCK_BYTES - 4) {
            return None;
        }
        let scheme = Scheme::new(bytes[36] as usize, bytes[37] as usize).ok()?;
        Some(Superblock {
            store_uuid: bytes[12..28].try_into().expect("16 bytes"),
            device_index: u32_at(28),
            geometry: Geometry {
                device_count: u32_at(32),
                scheme,
                partitions_per_device: u32_at(40),
                partition_blocks: u64::from_le_bytes(bytes[44..52].try_into().expect("8 bytes")),
            },
        })
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    fn geometry(devices: usize, k: usize, m: usize) -> Geometry {
        Geometry::new(&vec![GIB; devices], Scheme::new(k, m).unwrap(), 1).unwrap()
    }

    #[test]
    fn worked_examples_from_the_module_doc() {
        for (devices, partitions, groups) in
            [(5, 1, 1), (10, 1, 2), (1, 5, 1), (2, 5, 2), (7, 5, 7)]
        {
            let g = geometry(devices, 4, 1);
            assert_eq!(
                (g.partitions_per_device as usize, g.groups()),
                (partitions, groups),
                "{devices} devices"
            );
        }
    }

    #[test]
    fn with_enough_devices_every_shard_is_on_its_own_device() {
        for devices in [5, 6, 7, 9, 10, 12] {
            let g = geometry(devices, 4, 1);
            for group in 0..g.groups() {
                let mut members: Vec<usize> = g.group_devices(group).collect();
                members.sort_unstable();
                members.dedup();
                assert_eq!(members.len(), 5, "{devices} devices, group {group}");
            }
        }
    }

    #[test]
    fn shards_of_one_chunk_never_share_a_place() {
        let g = geometry(2, 4, 1);
        for n in 0..50u32 {
            let placement = g.placement(&ChunkId::of(&n.to_le_bytes()));
            let mut places: Vec<_> = (0..5).map(|s| g.shard_address(placement, s, 3)).collect();
            places.sort_unstable();
            places.dedup();
            assert_eq!(places.len(), 5);
        }
    }

    #[test]
    fn partitions_start_after_the_reserved_area_and_do_not_overlap() {
        let g = geometry(1, 4, 1);
        let placement = Placement {
            group: 0,
            rotation: 0,
        };
        let (device, first) = g.shard_address(placement, 0, 0);
        assert_eq!((device, first), (0, RESERVED_BLOCKS * DEVICE_BLOCK_BYTES));
        let (_, second) = g.shard_address(placement, 1, 0);
        assert_eq!(second - first, g.partition_blocks * DEVICE_BLOCK_BYTES);
    }

    #[test]
    fn superblocks_round_trip_and_reject_damage() {
        let block = Superblock {
            store_uuid: [9; 16],
            device_index: 3,
            geometry: geometry(5, 4, 1),
        };
        let mut bytes = block.encode();
        assert_eq!(Superblock::decode(&bytes), Some(block));
        bytes[40] ^= 1;
        assert_eq!(Superblock::decode(&bytes), None);
        assert_eq!(Superblock::decode(&[0; SUPERBLOCK_BYTES]), None);
    }
}

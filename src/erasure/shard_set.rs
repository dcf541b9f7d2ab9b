//! [`ShardSet`]: a small set of shard indices, as a bit mask.

use std::fmt;

/// A set of shard indices `0..32`. A `u32` mask: copying and testing it costs nothing,
/// which matters on the read path where it is checked per request.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ShardSet(u32);

impl ShardSet {
    /// Most shards a chunk can have; the mask has one bit for each.
    pub const CAPACITY: usize = 32;

    /// The empty set.
    pub const fn empty() -> ShardSet {
        ShardSet(0)
    }

    /// `{0, 1, …, count - 1}`.
    pub const fn all(count: usize) -> ShardSet {
        assert!(count <= Self::CAPACITY);
        if count == Self::CAPACITY {
            ShardSet(u32::MAX)
        } else {
            ShardSet((1u32 << count) - 1)
        }
    }

    /// `{index}`.
    pub const fn single(index: usize) -> ShardSet {
        assert!(index < Self::CAPACITY);
        ShardSet(1 << index)
    }

    /// This set plus `index`.
    pub const fn with(self, index: usize) -> ShardSet {
        assert!(index < Self::CAPACITY);
        ShardSet(self.0 | 1 << index)
    }

    /// This set minus `index`.
    pub const fn without(self, index: usize) -> ShardSet {
        assert!(index < Self::CAPACITY);
        ShardSet(self.0 & !(1 << index))
    }

    /// True when `index` is in the set.
    pub const fn contains(self, index: usize) -> bool {
        index < Self::CAPACITY && self.0 & (1 << index) != 0
    }

    /// Number of indices in the set.
    pub const fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    /// True when the set has no index.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Indices in both sets.
    pub const fn intersection(self, other: ShardSet) -> ShardSet {
        ShardSet(self.0 & other.0)
    }

    /// Indices in `self` but not in `other`.
    pub const fn difference(self, other: ShardSet) -> ShardSet {
        ShardSet(self.0 & !other.0)
    }

    /// The raw mask (bit `i` is shard `i`), e.g. as a cache key.
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// The indices in increasing order.
    pub fn iter(self) -> impl Iterator<Item = usize> {
        (0..Self::CAPACITY).filter(move |&i| self.contains(i))
    }
}

impl fmt::Debug for ShardSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

//! [`FreeRuns`]: free runs of a linear space (blocks of a device group, bytes of the
//! memory tier's arena), allocated best-fit and coalesced when freed — the one allocator
//! both use.
//!
//! Best fit (the shortest run that fits, lowest offset first) keeps long runs whole for
//! long requests; freeing joins a run with its free neighbours, so the space never holds
//! two adjacent free runs.
//!
//! **Architecture invariant:** bookkeeping only: no I/O, no locks (its owners lock it),
//! and it never hands out a run that overlaps another taken one.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::{Add, Sub};

/// Free runs `(offset, len)` of a space measured in `T` (blocks, bytes).
#[derive(Debug, Default)]
pub struct FreeRuns<T> {
    by_offset: BTreeMap<T, T>,
    by_len: BTreeSet<(T, T)>,
}

impl<T> FreeRuns<T>
where
    T: Copy + Ord + Default + Add<Output = T> + Sub<Output = T>,
{
    /// Takes `len` from the shortest free run that holds it (lowest offset among equals)
    /// and returns its offset, or `None` when no free run is that long.
    pub fn take(&mut self, len: T) -> Option<T> {
        let &(found_len, offset) = self.by_len.range((len, T::default())..).next()?;
        self.remove(offset, found_len);
        if found_len > len {
            self.add(offset + len, found_len - len);
        }
        Some(offset)
    }

    /// Frees `len` at `offset` (which must not be free), joined with free neighbours.
    pub fn insert(&mut self, mut offset: T, mut len: T) {
        if let Some((&before, &before_len)) = self.by_offset.range(..offset).next_back()
            && before + before_len == offset
        {
            self.remove(before, before_len);
            offset = before;
            len = len + before_len;
        }
        if let Some(&after_len) = self.by_offset.get(&(offset + len)) {
            self.remove(offset + len, after_len);
            len = len + after_len;
        }
        self.add(offset, len);
    }

    /// The longest free run (`T::default()`, zero, when none is free).
    pub fn largest(&self) -> T {
        self.by_len.last().map_or(T::default(), |&(len, _)| len)
    }

    fn add(&mut self, offset: T, len: T) {
        self.by_offset.insert(offset, len);
        self.by_len.insert((len, offset));
    }

    fn remove(&mut self, offset: T, len: T) {
        self.by_offset.remove(&offset);
        self.by_len.remove(&(len, offset));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn best_fit_then_lowest_offset_and_freed_neighbours_join() {
        let mut runs = FreeRuns::<u32>::default();
        runs.insert(0, 10);
        runs.insert(20, 4);
        runs.insert(30, 4);
        assert_eq!(
            runs.take(3),
            Some(20),
            "the shortest run that fits, lowest first"
        );
        assert_eq!(runs.take(4), Some(30));
        assert_eq!(runs.take(11), None);
        assert_eq!(runs.largest(), 10);
        // 23..24 is free; freeing 20..23 and 24..30 joins them into 20..30.
        runs.insert(20, 3);
        runs.insert(24, 6);
        assert_eq!(runs.largest(), 10);
        runs.insert(10, 10);
        assert_eq!(runs.largest(), 30, "0..10, 10..20, 20..30 are one run");
        assert_eq!(runs.take(30), Some(0));
        assert_eq!(runs.largest(), 0);
    }
}

//! Free space in each group: best-fit allocation of runs of 4 KiB blocks, coalescing on
//! free, and *pending* space that waits for the reads and repairs that may still use it.
//!
//! Why pending: a read or a repair that looked a chunk up just before it was deleted or
//! evicted may still be fetching or writing its shards. Freed space is stamped with the
//! `grace` epoch and becomes allocatable only once every read and repair that could have
//! seen its record has ended (see `grace`), so no new chunk is written where such a
//! straggler still works. (Reads verify every header and block anyway; this keeps a
//! straggling *repair write* from landing on a new chunk.)
//!
//! Fragmentation: free runs are kept coalesced and allocation is best-fit (the smallest run
//! that fits, lowest offset first), which keeps large runs whole for large shards. When no
//! single run is long enough the allocation fails like a full store does, and
//! [`GroupSpace::largest_free_blocks`] reports how fragmented the group is.
//!
//! **Architecture invariant:** in memory only; rebuilt from the catalog at start-up.

use std::collections::VecDeque;
use std::time::Duration;

use crate::runs::FreeRuns;

/// The `Retry-After` of a PUT refused for space when no freed space is pending (nothing can
/// be evicted: every chunk is pinned or in use, or eviction is off): 60 s, a guess at how
/// long an operator or a delete takes to make room. Space pending a read in flight returns
/// within milliseconds and is answered with 1 s.
pub const QUARANTINE: Duration = Duration::from_secs(60);

/// The free space of one group's partitions, in blocks.
#[derive(Debug)]
pub struct GroupSpace {
    total_blocks: u64,
    runs: FreeRuns<u32>,
    free_blocks: u64,
    /// Freed runs `(stamp, start, len)` waiting for the reads that may use them, in stamp
    /// order.
    pending: VecDeque<(u64, u32, u32)>,
    pending_blocks: u64,
}

impl GroupSpace {
    /// A group of `total_blocks` with `used` runs `(start, len)` taken (in any order); fails
    /// when runs overlap or end past the group.
    pub fn new(total_blocks: u64, mut used: Vec<(u32, u32)>) -> Result<GroupSpace, String> {
        assert!(
            total_blocks <= u64::from(u32::MAX) + 1,
            "offsets are u32 blocks"
        );
        let mut space = GroupSpace {
            total_blocks,
            runs: FreeRuns::default(),
            free_blocks: 0,
            pending: VecDeque::new(),
            pending_blocks: 0,
        };
        used.sort_unstable();
        let mut next = 0u64;
        for (start, len) in used {
            if u64::from(start) < next {
                return Err(format!("runs overlap at block {start}"));
            }
            if u64::from(start) > next {
                space.insert_free(next as u32, (u64::from(start) - next) as u32);
            }
            next = u64::from(start) + u64::from(len);
        }
        if next > total_blocks {
            return Err(format!(
                "a run ends at block {next}, past the group's {total_blocks}"
            ));
        }
        if next < total_blocks {
            space.insert_free(next as u32, (total_blocks - next) as u32);
        }
        Ok(space)
    }

    /// Takes `len` contiguous blocks and returns their start, or `None` if no free run is
    /// long enough. Pending space stamped before `reusable_before` is released first.
    pub fn allocate(&mut self, len: u32, reusable_before: u64) -> Option<u32> {
        assert!(len > 0);
        self.release(reusable_before);
        let start = self.runs.take(len)?;
        self.free_blocks -= u64::from(len);
        Some(start)
    }

    /// Returns `len` blocks at `start` once no pass older than `stamp` runs (see `grace`).
    pub fn free(&mut self, start: u32, len: u32, stamp: u64) {
        self.pending.push_back((stamp, start, len));
        self.pending_blocks += u64::from(len);
    }

    /// Returns `len` blocks at `start` at once: only for space no one else can have seen
    /// (a write that failed before its chunk was ever visible).
    pub fn free_now(&mut self, start: u32, len: u32) {
        self.insert_free(start, len);
    }

    /// Makes pending space stamped before `reusable_before` allocatable.
    pub fn release(&mut self, reusable_before: u64) {
        while let Some(&(stamp, start, len)) = self.pending.front() {
            if stamp >= reusable_before {
                break;
            }
            self.pending.pop_front();
            self.pending_blocks -= u64::from(len);
            self.free_now(start, len);
        }
    }

    fn insert_free(&mut self, start: u32, len: u32) {
        debug_assert!(len > 0);
        self.runs.insert(start, len);
        self.free_blocks += u64::from(len);
    }

    /// Blocks in the group.
    pub fn total_blocks(&self) -> u64 {
        self.total_blocks
    }

    /// Blocks free now or once pending.
    pub fn free_blocks(&self) -> u64 {
        self.free_blocks + self.pending_blocks
    }

    /// Blocks freed by deletes or evictions and waiting for reads in flight: not usable yet.
    pub fn quarantined_blocks(&self) -> u64 {
        self.pending_blocks
    }

    /// How long until pending space can be reused: zero when some is pending (it returns
    /// as soon as the reads in flight end), `None` when none is.
    pub fn next_release(&self) -> Option<Duration> {
        self.pending.front().map(|_| Duration::ZERO)
    }

    /// The longest run that could be allocated now: the largest shard that fits.
    pub fn largest_free_blocks(&self) -> u32 {
        self.runs.largest()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_space_is_reported_apart_until_released() {
        let mut space = GroupSpace::new(100, vec![(0, 100)]).unwrap();
        assert_eq!(space.next_release(), None);
        space.free(10, 20, 5);
        assert_eq!(space.quarantined_blocks(), 20);
        assert_eq!(space.largest_free_blocks(), 0, "nothing usable yet");
        assert_eq!(space.next_release(), Some(Duration::ZERO));
        assert_eq!(space.allocate(20, 5), None, "stamp 5 is not before 5");
        assert_eq!(space.allocate(20, 6), Some(10));
        assert_eq!(space.quarantined_blocks(), 0);
        assert_eq!(space.next_release(), None);
    }

    #[test]
    fn used_runs_leave_the_gaps_free() {
        let space = GroupSpace::new(100, vec![(50, 10), (0, 5)]).unwrap();
        assert_eq!(space.free_blocks(), 85);
        assert_eq!(space.largest_free_blocks(), 45);
    }

    #[test]
    fn overlapping_runs_are_refused() {
        assert!(GroupSpace::new(100, vec![(0, 10), (5, 10)]).is_err());
        assert!(GroupSpace::new(100, vec![(95, 10)]).is_err());
    }

    #[test]
    fn best_fit_takes_the_smallest_run_that_fits() {
        let mut space = GroupSpace::new(100, vec![(10, 5), (20, 70)]).unwrap();
        // Free runs: [0,10) len 10, [15,20) len 5, [90,100) len 10.
        assert_eq!(space.allocate(4, 0), Some(15));
        assert_eq!(space.allocate(10, 0), Some(0));
        assert_eq!(space.allocate(11, 0), None);
        assert_eq!(space.allocate(10, 0), Some(90));
        assert_eq!(space.free_blocks(), 1);
    }

    #[test]
    fn freed_space_coalesces_but_only_once_released() {
        let mut space = GroupSpace::new(30, vec![]).unwrap();
        let a = space.allocate(10, 0).unwrap();
        let b = space.allocate(10, 0).unwrap();
        let c = space.allocate(10, 0).unwrap();
        space.free(a, 10, 1);
        space.free(c, 10, 1);
        space.free(b, 10, 2);
        assert_eq!(
            space.free_blocks(),
            30,
            "pending space still counts as free capacity"
        );
        assert_eq!(space.allocate(11, 2), None, "b is still pending");
        assert_eq!(space.allocate(30, 3), Some(0), "the three runs merged back");
    }

    #[test]
    fn free_now_coalesces_with_both_neighbours() {
        let mut space = GroupSpace::new(30, vec![(0, 30)]).unwrap();
        space.free_now(0, 10);
        space.free_now(20, 10);
        space.free_now(10, 10);
        assert_eq!(space.largest_free_blocks(), 30);
        assert_eq!(space.allocate(30, 0), Some(0));
    }
}

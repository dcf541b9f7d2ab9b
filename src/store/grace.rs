//! [`Grace`]: when space freed by a delete or an eviction may be written again — as soon
//! as no read or repair that could have looked up the old record is still running.
//!
//! A read or a repair holds a [`Pass`] from before its index lookup until its last I/O of
//! that record is done. A pass counts itself in its thread's slot under the parity of the
//! global epoch it saw. Space is freed *after* its index entry is removed and is stamped
//! with the epoch read then (`space` keeps it pending). The epoch moves from `e` to `e + 1`
//! only when no pass of parity `e - 1` is counted in any slot; so once the epoch is
//! `s + 2`, every pass counted at `s` or before has ended, and every pass still running
//! began its lookup after the removal and cannot hold the old record. Space stamped `s` is
//! then reusable: [`Grace::reusable_before`] tells the allocator which stamps are.
//!
//! Why not a time quarantine (what was here before issue 12): on a cache node that evicts
//! to make room, a 60 s quarantine would hold 60 s of PUT volume hostage; with this rule
//! space returns within the longest read in flight (milliseconds), and no slow read is
//! ever outrun by a clock.
//!
//! The read path takes no lock: entering is an atomic load and a `fetch_add` on the
//! thread's own cache line (slots are per thread, threads spread over [`SLOTS`]), leaving
//! a `fetch_sub`. Orderings are `SeqCst`: the argument above needs one total order of the
//! epoch loads, the slot counts and the index changes.
//!
//! A pass dropped while its I/O is still in the kernel (a cancelled future) ends early; for
//! reads that is harmless (the bytes are discarded, and every read verifies the header's
//! full id and generation anyway); repairs are cancelled only when the store shuts down.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::SeqCst};

use crossbeam::utils::CachePadded;

/// Slots of in-flight counts; threads beyond it share slots (a count, so sharing is only
/// a little contention). A power of two above any core count chunkd runs with.
pub(super) const SLOTS: usize = 64;

/// The epoch and the passes in flight.
pub(super) struct Grace {
    epoch: AtomicU64,
    slots: Box<[CachePadded<[AtomicU64; 2]>]>,
}

/// A read or repair in flight: space it might touch is not reused until it is dropped.
pub(super) struct Pass<'a> {
    count: &'a AtomicU64,
}

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        self.count.fetch_sub(1, SeqCst);
    }
}

impl Default for Grace {
    fn default() -> Grace {
        Grace {
            epoch: AtomicU64::new(2),
            slots: (0..SLOTS)
                .map(|_| CachePadded::new(Default::default()))
                .collect(),
        }
    }
}

thread_local! {
    static SLOT: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// This thread's slot, `0..SLOTS` (also used by counters every read bumps).
pub(super) fn slot() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    SLOT.with(|slot| {
        if slot.get() == usize::MAX {
            slot.set(NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % SLOTS);
        }
        slot.get()
    })
}

impl Grace {
    /// Registers a read or repair about to look a record up.
    pub(super) fn enter(&self) -> Pass<'_> {
        // Counted under the epoch it saw, and only if the epoch is still that one once
        // counted: otherwise a scanner that looked at the slots between the load and the
        // add could advance twice past a pass it never saw (and space stamped meanwhile
        // would be reused under it). Retried at most once per epoch change.
        let slot = &self.slots[slot()];
        loop {
            let epoch = self.epoch.load(SeqCst);
            let count = &slot[(epoch & 1) as usize];
            count.fetch_add(1, SeqCst);
            if self.epoch.load(SeqCst) == epoch {
                return Pass { count };
            }
            count.fetch_sub(1, SeqCst);
        }
    }

    /// The stamp for space freed now (after its index entry was removed).
    pub(super) fn stamp(&self) -> u64 {
        self.epoch.load(SeqCst)
    }

    /// Advances the epoch as far as the passes in flight allow (at most twice) and returns
    /// the bound below which stamps are reusable: space stamped `s < bound` is no longer
    /// reachable by any pass.
    pub(super) fn reusable_before(&self) -> u64 {
        for _ in 0..2 {
            let epoch = self.epoch.load(SeqCst);
            let older = ((epoch + 1) & 1) as usize;
            if self.slots.iter().any(|slot| slot[older].load(SeqCst) > 0) {
                break;
            }
            let _ = self
                .epoch
                .compare_exchange(epoch, epoch + 1, SeqCst, SeqCst);
        }
        self.epoch.load(SeqCst) - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn space_freed_while_a_pass_runs_waits_for_it() {
        let grace = Grace::default();
        let pass = grace.enter();
        let stamp = grace.stamp();
        for _ in 0..4 {
            assert!(
                grace.reusable_before() <= stamp,
                "a pass that may hold the record is still running"
            );
        }
        drop(pass);
        assert!(grace.reusable_before() > stamp);
    }

    #[test]
    fn overlapping_passes_do_not_starve_reuse() {
        let grace = Grace::default();
        let stamp = grace.stamp();
        let mut current = grace.enter();
        // Always one pass in flight, each begun before the last ends: the epoch still moves.
        for _ in 0..3 {
            let _ = grace.reusable_before();
            let next = grace.enter();
            drop(std::mem::replace(&mut current, next));
        }
        assert!(grace.reusable_before() > stamp);
        drop(current);
    }

    #[test]
    fn passes_on_other_threads_count() {
        let grace = std::sync::Arc::new(Grace::default());
        let (entered, wait) = std::sync::mpsc::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let other = grace.clone();
        let thread = std::thread::spawn(move || {
            let _pass = other.enter();
            entered.send(()).unwrap();
            released.recv().unwrap();
        });
        wait.recv().unwrap();
        let stamp = grace.stamp();
        assert!(grace.reusable_before() <= stamp);
        release.send(()).unwrap();
        thread.join().unwrap();
        assert!(grace.reusable_before() > stamp);
    }
}

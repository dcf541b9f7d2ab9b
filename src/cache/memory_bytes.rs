//! Where the memory tier's bytes live: an arena in a memfd, mapped once. Hits are sent
//! from the mapping with writev by default; with `--memory-send sendfile` a socket is
//! handed the arena's pages instead (see `http::sendfile`), as nginx sends from the page
//! cache — measured slower here (the memfd's 4 KiB pages are looked up one by one), so
//! not the default. Freed runs give their pages back to the system at once.
//!
//! Each admitted chunk is written (`pwrite`) into a run of the arena's 4 KiB pages and
//! handed out as a [`Bytes`] over the mapping. When the last clone of those `Bytes` is
//! dropped (the tier evicted the entry and no response still sends it), the run's pages
//! are **punched out of the memfd before the run is reused**: `sendfile` leaves references
//! to the pages in socket buffers, and rewriting a page still referenced there would
//! change bytes already "sent"; a punched page is detached from the file (the socket keeps
//! the old one) and the next write gets a fresh one.
//!
//! The arena's address space is twice the tier's bound plus slack (a memfd holds memory
//! only for pages written), so runs rarely fail to fit; when one does (fragmentation, or
//! many evicted entries still being sent), or the memfd cannot be made, the copy goes to
//! the heap instead: served the same, only copied on the way to the socket.
//!
//! Admission copies in every case: the store's read and PUT buffers come from
//! `store::aligned`'s huge-page regions (at most 1 GiB per process, recycled per thread),
//! which a tier holding them for an entry's life would starve.

use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use rustix::fs::{FallocateFlags, MemfdFlags};
use rustix::mm::{MapFlags, ProtFlags};

use crate::runs::FreeRuns;

/// The arena's page: runs are whole pages, so a punched hole frees exactly a run.
const PAGE_BYTES: usize = 4096;

/// Address space beyond twice the bound, for small tiers.
const SLACK_BYTES: usize = 64 << 20;

/// The tier's allocator of chunk copies.
#[derive(Debug)]
pub struct TierBytes {
    arena: Option<Arc<Arena>>,
}

/// A memfd mapped whole, and its free runs of pages.
#[derive(Debug)]
pub struct Arena {
    fd: OwnedFd,
    /// The mapping's address (a `usize`, so the arena is `Send` and `Sync`; the mapping
    /// is only read through runs a [`Run`] owns).
    base: usize,
    len: usize,
    free: Mutex<FreeRuns<usize>>,
}

/// One chunk's run of the arena, owned by the `Bytes` made over it.
struct Run {
    arena: Arc<Arena>,
    offset: usize,
    len: usize,
}

impl TierBytes {
    /// Copies for a tier bound to `capacity_bytes`: an arena when one can be made.
    pub fn new(capacity_bytes: u64) -> TierBytes {
        let wanted = usize::try_from(capacity_bytes)
            .unwrap_or(usize::MAX / 4)
            .saturating_mul(2)
            .saturating_add(SLACK_BYTES);
        let arena = match Arena::new(wanted.next_multiple_of(PAGE_BYTES)) {
            Ok(arena) => Some(Arc::new(arena)),
            Err(error) => {
                tracing::warn!(%error, "no memfd arena for the memory tier: its hits are copied to the socket");
                None
            }
        };
        TierBytes { arena }
    }

    /// Copies on the heap only (no arena).
    pub fn heap() -> TierBytes {
        TierBytes { arena: None }
    }

    /// The arena, if any.
    pub fn arena(&self) -> Option<&Arc<Arena>> {
        self.arena.as_ref()
    }

    /// One contiguous copy of `parts`, in order: in the arena if a run fits, else on the
    /// heap.
    pub fn copy(&self, parts: &[&[u8]]) -> Bytes {
        if let Some(bytes) = self.arena.as_ref().and_then(|a| Arena::copy(a, parts)) {
            return bytes;
        }
        let len = parts.iter().map(|p| p.len()).sum();
        let mut copy = BytesMut::with_capacity(len);
        for part in parts {
            copy.extend_from_slice(part);
        }
        copy.freeze()
    }
}

impl Arena {
    fn new(len: usize) -> std::io::Result<Arena> {
        let fd = rustix::fs::memfd_create("chunkd-memory-tier", MemfdFlags::CLOEXEC)?;
        rustix::fs::ftruncate(&fd, len as u64)?;
        // SAFETY: a new shared mapping of the whole memfd, at an address the kernel
        // chooses; it is unmapped only when the arena (and so every run) is dropped.
        let base = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                &fd,
                0,
            )?
        };
        let mut free = FreeRuns::default();
        free.insert(0, len);
        Ok(Arena {
            fd,
            base: base as usize,
            len,
            free: Mutex::new(free),
        })
    }

    /// The memfd and the offset in it of `len` bytes at `ptr`, when they lie in the arena.
    pub fn locate(&self, ptr: *const u8, len: usize) -> Option<(RawFd, u64)> {
        let at = (ptr as usize).checked_sub(self.base)?;
        (at.checked_add(len)? <= self.len).then(|| (self.fd.as_raw_fd(), at as u64))
    }

    /// `parts` written into a run of the arena, or `None` when no run fits.
    fn copy(arena: &Arc<Arena>, parts: &[&[u8]]) -> Option<Bytes> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let run_len = len.max(1).next_multiple_of(PAGE_BYTES);
        let offset = lock(&arena.free).take(run_len)?;
        let run = Run {
            arena: arena.clone(),
            offset,
            len: run_len,
        };
        let mut at = offset as u64;
        for part in parts {
            let mut written = 0;
            while written < part.len() {
                match rustix::io::pwrite(arena.fd.as_fd(), &part[written..], at) {
                    Ok(n) if n > 0 => {
                        written += n;
                        at += n as u64;
                    }
                    // Out of memory for the memfd's pages (or interrupted without
                    // progress): the run goes back (punched) and the copy to the heap.
                    _ => return None,
                }
            }
        }
        Some(Bytes::from_owner(run).slice(..len))
    }

    fn give_back(&self, offset: usize, len: usize) {
        // Detach the pages first (see the module doc): a socket may still hold them.
        let punched = rustix::fs::fallocate(
            &self.fd,
            FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE,
            offset as u64,
            len as u64,
        );
        if let Err(error) = punched {
            // Never reuse pages that could not be detached: the run is lost to the arena
            // (its address space only; the heap takes over if the arena fills).
            tracing::warn!(%error, "punching a memory-tier run failed: not reusing it");
            return;
        }
        lock(&self.free).insert(offset, len);
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`; every `Run` holds the arena, so none is left.
        let _ = unsafe { rustix::mm::munmap(self.base as *mut std::ffi::c_void, self.len) };
    }
}

impl AsRef<[u8]> for Run {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: the run lies inside the mapping (allocated from its free runs), which
        // lives as long as `self.arena`; no other run overlaps it, and its bytes were all
        // written before the `Bytes` over it was made and are never written again while
        // it lives.
        unsafe {
            std::slice::from_raw_parts((self.arena.base + self.offset) as *const u8, self.len)
        }
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        self.arena.give_back(self.offset, self.len);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_are_reused_only_after_they_are_freed_and_join_their_neighbours() {
        let mut free = FreeRuns::default();
        free.insert(0, 16 * PAGE_BYTES);
        let a = free.take(4 * PAGE_BYTES).unwrap();
        let b = free.take(4 * PAGE_BYTES).unwrap();
        assert_ne!(a, b);
        assert!(free.take(9 * PAGE_BYTES).is_none(), "only 8 pages are left");
        free.insert(a, 4 * PAGE_BYTES);
        free.insert(b, 4 * PAGE_BYTES);
        assert_eq!(free.take(16 * PAGE_BYTES), Some(0), "all joined again");
    }

    #[test]
    fn arena_copies_read_back_and_fall_back_to_the_heap_when_full() {
        let bytes = TierBytes::new(0);
        let Some(arena) = bytes.arena().cloned() else {
            return; // no memfd here: the heap path is what runs
        };
        let first = bytes.copy(&[b"hello ", b"arena"]);
        assert_eq!(&first[..], b"hello arena");
        assert!(arena.locate(first.as_ptr(), first.len()).is_some());
        let big = vec![7u8; SLACK_BYTES];
        let filler = bytes.copy(&[&big]);
        assert!(
            arena.locate(filler.as_ptr(), 1).is_none(),
            "did not fit: heap"
        );
        assert_eq!(&filler[..], &big[..]);
        drop(first);
        let again = bytes.copy(&[b"fresh"]);
        assert_eq!(&again[..], b"fresh");
        assert_eq!(arena.locate(again.as_ptr(), 5).map(|(_, at)| at), Some(0));
    }
}

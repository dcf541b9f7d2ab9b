//! Where the memory behind `aligned::AlignedBuf` comes from and goes back to: huge-page
//! *regions* (anonymous mappings aligned to 2 MiB and advised `MADV_HUGEPAGE`), carved into
//! buffers, and a per-thread pool of idle buffers with a bound on the bytes it keeps
//! resident. This file knows nothing of `AlignedBuf`: it deals in addresses and lengths
//! (multiples of 4096).
//!
//! **The bound on idle memory.** Region memory is never unmapped (a region's address range
//! is reused for as long as the process lives), but its *pages* go back to the kernel: a
//! thread keeps at most [`IDLE_BYTES_MAX`] (16 MiB) of idle buffers resident, and a buffer
//! dropped beyond that has its pages returned with `madvise(MADV_DONTNEED)` and waits,
//! empty, in the pool's `released` list; reusing it faults zeroed pages in again
//! (`MADV_HUGEPAGE` stays on the mapping). Idle general-allocator buffers count against
//! the same bound and are freed beyond it. Why a hard bound rather than decay over time:
//! it needs no clock or timer on the hot path and works on a core that goes quiet after a
//! burst (a decay checked on use would never run there), and it is the idle *fluctuation*
//! of a thread's buffers that it must cover, not its working set: buffers in flight are not
//! idle. 16 MiB is 31 idle 512 KiB chunk reads (528 KiB of buffers each) per thread: the
//! benchmark's deepest case (QD 32 of 512 KiB chunks, split over the cores) holds 8.3 MiB
//! per core on two cores and 16.5 MiB on one, so even when it pauses between rounds and
//! every buffer goes idle, its next round reuses warm buffers. After a burst (an attack
//! holding a core's 256 MiB in-flight budget), each core keeps ≤ 16 MiB.
//! The cost of the release falls on bursts only: a `madvise` per dropped buffer beyond the
//! bound, and when a huge page is shared with buffers that stay resident, the kernel maps
//! it with small pages from then on (until `khugepaged` collapses it again); buffers
//! released and reused in a later burst fault in 4 KiB or 2 MiB pages as the kernel can.
//!
//! A thread that ends returns the pages of its idle region buffers and hands them, with
//! the unused end of its region, to the next thread that needs one ([`Orphans`]). The
//! regions of the whole process are bounded ([`REGION_BYTES_MAX`]); past that, and for
//! buffers longer than a region, buffers come from the general allocator.

use std::alloc::{self, Layout};
use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::c_void;
use std::ops::Range;
use std::ptr::NonNull;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use rustix::mm;

/// Alignment of every buffer (`aligned::IO_ALIGN_BYTES`).
const ALIGN_BYTES: usize = crate::erasure::SHARD_ALIGN_BYTES;

// A huge page holds whole aligned buffers, so carving regions keeps every buffer aligned.
const _: () = assert!(HUGE_PAGE_BYTES.is_multiple_of(ALIGN_BYTES));

/// Bytes of idle buffers (region or general-allocator) each thread keeps resident; see
/// the module doc for the choice.
pub(crate) const IDLE_BYTES_MAX: usize = 16 << 20;
/// Size of a transparent huge page on x86-64 and of the alignment of every region.
pub(crate) const HUGE_PAGE_BYTES: usize = 2 << 20;
/// Bytes mapped per region.
pub(crate) const REGION_BYTES: usize = 8 << 20;
/// Bytes of regions the whole process may map.
const REGION_BYTES_MAX: usize = 1 << 30;

/// Bytes of regions mapped so far.
static REGION_BYTES_MAPPED: AtomicUsize = AtomicUsize::new(0);

/// Idle buffers of this thread, and the uncarved end of its current region.
#[derive(Default)]
struct BufferPool {
    /// Resident idle buffers, by length, each with whether it lies in a region.
    idle: HashMap<usize, Vec<(NonNull<u8>, bool)>>,
    /// Bytes of the buffers in `idle`: at most [`IDLE_BYTES_MAX`].
    idle_bytes: usize,
    /// Region buffers whose pages went back to the kernel, by length.
    released: HashMap<usize, Vec<NonNull<u8>>>,
    region_rest: Option<Range<usize>>,
}

/// Region memory left behind by threads that ended, for other threads to use. Its buffers
/// have had their pages returned.
#[derive(Default)]
struct Orphans {
    released: HashMap<usize, Vec<NonNull<u8>>>,
    rests: Vec<Range<usize>>,
}

// SAFETY: the pointers are to region memory nobody references; whoever takes one owns it.
unsafe impl Send for Orphans {}

/// Leftover ends of regions shorter than this are not kept: at most this much of a region
/// goes unused, and the list of leftovers stays short.
const REST_BYTES_MIN: usize = 64 << 10;

impl Orphans {
    /// Keeps the uncarved end of a region for shorter buffers. Its pages go back first:
    /// nothing was carved from it, but a huge page it shares with carved buffers was
    /// faulted in whole (8 MiB per 256 MiB of 528 KiB buffers, measured).
    fn keep_rest(&mut self, rest: Range<usize>) {
        if let Some(start) = NonNull::new(rest.start as *mut u8)
            && !rest.is_empty()
        {
            release_pages(start, rest.len());
        }
        if rest.len() >= REST_BYTES_MIN {
            self.rests.push(rest);
        }
    }
}

static ORPHANS: Mutex<Option<Orphans>> = Mutex::new(None);

thread_local! {
    static POOL: RefCell<BufferPool> = RefCell::new(BufferPool::default());
}

fn lock_orphans() -> std::sync::MutexGuard<'static, Option<Orphans>> {
    // The data is a set of free lists, consistent after any panic.
    ORPHANS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Returns the pages of `len` bytes of region memory at `ptr` to the kernel; the range
/// stays mapped and reads as zeros until written again.
fn release_pages(ptr: NonNull<u8>, len: usize) {
    // SAFETY: the range is region memory that nobody references (an idle buffer): dropping
    // its contents affects no live data. Advice only: if it fails, the pages stay resident.
    let _ = unsafe { mm::madvise(ptr.as_ptr().cast(), len, mm::Advice::LinuxDontNeed) };
}

/// Gives an idle region buffer (its pages already returned) to the threads that remain.
fn orphan(ptr: NonNull<u8>, len: usize) {
    let mut orphans = lock_orphans();
    let orphans = orphans.get_or_insert_with(Orphans::default);
    orphans.released.entry(len).or_default().push(ptr);
}

impl Drop for BufferPool {
    fn drop(&mut self) {
        for (&len, buffers) in &self.idle {
            for &(ptr, in_region) in buffers {
                if in_region {
                    release_pages(ptr, len);
                    orphan(ptr, len);
                } else {
                    heap_free(ptr, len);
                }
            }
        }
        let mut orphans = lock_orphans();
        let orphans = orphans.get_or_insert_with(Orphans::default);
        for (&len, buffers) in &self.released {
            orphans.released.entry(len).or_default().extend(buffers);
        }
        if let Some(rest) = self.region_rest.take() {
            orphans.keep_rest(rest);
        }
    }
}

impl BufferPool {
    /// A buffer of exactly `len` bytes (a multiple of 4096) from this thread's resident
    /// idle buffers, its released ones, its region, other threads' leftovers or a new
    /// region, in that order.
    fn take(&mut self, len: usize) -> Option<(NonNull<u8>, bool)> {
        if let Some((ptr, in_region)) = self.idle.get_mut(&len).and_then(Vec::pop) {
            self.idle_bytes -= len;
            return Some((ptr, in_region));
        }
        if let Some(ptr) = self.released.get_mut(&len).and_then(Vec::pop) {
            return Some((ptr, true));
        }
        if len > REGION_BYTES {
            return None;
        }
        if let Some(ptr) = self.carve(len) {
            return Some((ptr, true));
        }
        let mut orphans = lock_orphans();
        let orphans = orphans.get_or_insert_with(Orphans::default);
        if let Some(ptr) = orphans.released.get_mut(&len).and_then(Vec::pop) {
            return Some((ptr, true));
        }
        // This thread's region is too short for `len`: what is left of it goes to the
        // shared leftovers (for shorter buffers), and a leftover or a new region replaces it.
        let next = match orphans.rests.iter().position(|r| r.len() >= len) {
            Some(at) => orphans.rests.swap_remove(at),
            None => map_region()?,
        };
        if let Some(rest) = self.region_rest.replace(next) {
            orphans.keep_rest(rest);
        }
        self.carve(len).map(|ptr| (ptr, true))
    }

    /// The next `len` bytes of this thread's region, if it has that many left.
    fn carve(&mut self, len: usize) -> Option<NonNull<u8>> {
        let rest = self.region_rest.as_mut().filter(|r| r.len() >= len)?;
        let start = rest.start;
        rest.start += len;
        NonNull::new(start as *mut u8)
    }

    /// Keeps an idle buffer: resident while under the bound, else its pages go back.
    fn put(&mut self, ptr: NonNull<u8>, len: usize, in_region: bool) {
        if self.idle_bytes + len <= IDLE_BYTES_MAX {
            self.idle_bytes += len;
            self.idle.entry(len).or_default().push((ptr, in_region));
        } else if in_region {
            release_pages(ptr, len);
            self.released.entry(len).or_default().push(ptr);
        } else {
            heap_free(ptr, len);
        }
    }
}

/// Memory for a buffer of exactly `len` bytes (a multiple of 4096, not zero) whose bytes
/// are initialised, and whether it lies in a region.
pub(crate) fn take(len: usize) -> (NonNull<u8>, bool) {
    let pooled = POOL
        .try_with(|pool| pool.borrow_mut().take(len))
        .ok()
        .flatten();
    pooled.unwrap_or_else(|| (heap_allocate(len), false))
}

/// Gives back the memory of a buffer `take` returned, which nothing references any more.
pub(crate) fn give_back(ptr: NonNull<u8>, len: usize, in_region: bool) {
    let kept = POOL
        .try_with(|pool| pool.borrow_mut().put(ptr, len, in_region))
        .is_ok();
    if kept {
        return;
    }
    // This thread is ending.
    if in_region {
        release_pages(ptr, len);
        orphan(ptr, len);
    } else {
        heap_free(ptr, len);
    }
}

/// Bytes of idle buffers this thread keeps resident (at most [`IDLE_BYTES_MAX`]) and bytes
/// of idle region buffers whose pages it returned.
#[cfg(test)]
pub(crate) fn idle_bytes() -> (usize, usize) {
    POOL.with_borrow(|pool| {
        let released = pool.released.iter().map(|(len, v)| len * v.len()).sum();
        (pool.idle_bytes, released)
    })
}

fn heap_allocate(len: usize) -> NonNull<u8> {
    let layout = heap_layout(len);
    // SAFETY: the layout has a non-zero size. Zeroed, so the bytes are initialised.
    let ptr = unsafe { alloc::alloc_zeroed(layout) };
    NonNull::new(ptr).unwrap_or_else(|| alloc::handle_alloc_error(layout))
}

fn heap_free(ptr: NonNull<u8>, len: usize) {
    // SAFETY: allocated by `heap_allocate` with this length's layout, referenced by nobody.
    unsafe { alloc::dealloc(ptr.as_ptr(), heap_layout(len)) }
}

fn heap_layout(len: usize) -> Layout {
    Layout::from_size_align(len, ALIGN_BYTES).expect("buffer sizes are far below isize::MAX")
}

/// Maps a new region, if the process is under its bound; returns its address range.
pub(crate) fn map_region() -> Option<Range<usize>> {
    REGION_BYTES_MAPPED
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |mapped| {
            (mapped + REGION_BYTES <= REGION_BYTES_MAX).then_some(mapped + REGION_BYTES)
        })
        .ok()?;
    // Map a huge page more than needed and trim, so the region starts on a huge page.
    let mapped_len = REGION_BYTES + HUGE_PAGE_BYTES;
    // SAFETY: a fresh private anonymous mapping; no existing memory is affected.
    let mapped = unsafe {
        mm::mmap_anonymous(
            std::ptr::null_mut(),
            mapped_len,
            mm::ProtFlags::READ | mm::ProtFlags::WRITE,
            mm::MapFlags::PRIVATE,
        )
    };
    let Ok(base) = mapped else {
        REGION_BYTES_MAPPED.fetch_sub(REGION_BYTES, Ordering::Relaxed);
        return None;
    };
    let base = base as usize;
    let start = base.next_multiple_of(HUGE_PAGE_BYTES);
    let end = start + REGION_BYTES;
    // SAFETY: both ranges lie inside the mapping just made and outside the region kept;
    // nothing refers to them. Failing to unmap only leaves them mapped and unused.
    unsafe {
        if start > base {
            let _ = mm::munmap(base as *mut c_void, start - base);
        }
        if base + mapped_len > end {
            let _ = mm::munmap(end as *mut c_void, base + mapped_len - end);
        }
        // Advice only: without huge pages the region works on small pages.
        let _ = mm::madvise(
            start as *mut c_void,
            REGION_BYTES,
            mm::Advice::LinuxHugepage,
        );
    }
    Some(start..end)
}

//! [`AlignedBuf`]: heap memory whose address and length are multiples of 4096, as O_DIRECT
//! requires of every buffer it reads into or writes from, and [`SharedSlice`]: a range of
//! such a buffer shared between several in-flight writes.
//!
//! Buffers are recycled through a small per-thread pool: a read of a 512 KiB chunk would
//! otherwise allocate and zero 528 KiB per request, which measured as a visible share of a
//! core's time under load. A recycled buffer holds old bytes, so [`AlignedBuf::scratch`]
//! is only for buffers that are overwritten in full (device reads, parity, rebuilt
//! windows); [`AlignedBuf::zeroed`] gives zeros.
//!
//! **Huge pages.** New buffers are carved out of *regions*: anonymous mappings aligned to
//! 2 MiB and advised `MADV_HUGEPAGE`, so every buffer lies on transparent huge pages when
//! the kernel has them (`/sys/kernel/mm/transparent_hugepage/enabled` = `madvise` or
//! `always`). An O_DIRECT I/O pins each page of its buffer and hands the device one segment
//! per page: a 128 KiB read into 4 KiB pages is 32 pins and 32 segments, into a huge page
//! one. On the virtio disk of our test machines that is the difference between 0.6 and
//! 2 GB/s of 128 KiB reads (fio with and without huge-page buffers, ARCHITECTURE.md).
//! Buffers from the general allocator (jemalloc, even with `thp:always`) landed on huge
//! pages only by the luck of its allocation history: the same read loop measured 0.6 GB/s
//! in one process and 1.3 GB/s in another. Region memory is never unmapped: a region buffer that is dropped
//! goes to the dropping thread's pool, and a thread that ends hands its idle region buffers
//! and the unused end of its region to the next thread that needs one. The regions of the
//! whole process are bounded ([`REGION_BYTES_MAX`]); past that, and for buffers longer
//! than a region, buffers come from the general allocator.

use std::alloc::{self, Layout};
use std::collections::HashMap;
use std::ffi::c_void;
use std::ops::{Deref, DerefMut, Range};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rustix::mm;

/// Alignment of every I/O buffer, offset and length: the devices' physical block size,
/// the crate's one base alignment (`erasure::SHARD_ALIGN_BYTES`).
pub const IO_ALIGN_BYTES: usize = crate::erasure::SHARD_ALIGN_BYTES;

// A huge page holds whole aligned buffers, so carving regions keeps every buffer aligned.
const _: () = assert!(HUGE_PAGE_BYTES.is_multiple_of(IO_ALIGN_BYTES));

/// A 4096-aligned buffer whose bytes are all initialised. Its length is a multiple of
/// 4096.
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    len: usize,
    /// Carved from a region (never freed) rather than from the general allocator.
    in_region: bool,
}

// SAFETY: AlignedBuf owns its memory exclusively, like a Box<[u8]>.
unsafe impl Send for AlignedBuf {}
// SAFETY: shared references only allow reads, like &[u8].
unsafe impl Sync for AlignedBuf {}

/// Bytes of idle general-allocator buffers each thread keeps for reuse.
const POOL_BYTES_MAX: usize = 64 << 20;
/// Size of a transparent huge page on x86-64 and of the alignment of every region.
const HUGE_PAGE_BYTES: usize = 2 << 20;
/// Bytes mapped per region.
const REGION_BYTES: usize = 8 << 20;
/// Bytes of regions the whole process may map.
const REGION_BYTES_MAX: usize = 1 << 30;

/// Bytes of regions mapped so far.
static REGION_BYTES_MAPPED: AtomicUsize = AtomicUsize::new(0);

/// Buffers nobody is using, by length, each with whether it lies in a region.
type Idle = HashMap<usize, Vec<(NonNull<u8>, bool)>>;

/// Idle buffers of this thread, and the uncarved end of its current region.
#[derive(Default)]
struct BufferPool {
    idle: Idle,
    /// Bytes of idle general-allocator buffers in `idle`.
    heap_bytes: usize,
    region_rest: Option<Range<usize>>,
}

/// Region memory left behind by threads that ended, for other threads to use.
#[derive(Default)]
struct Orphans {
    idle: HashMap<usize, Vec<NonNull<u8>>>,
    rests: Vec<Range<usize>>,
}

// SAFETY: the pointers are to region memory nobody references; whoever takes one owns it.
unsafe impl Send for Orphans {}

/// Leftover ends of regions shorter than this are not kept: at most this much of a region
/// goes unused, and the list of leftovers stays short.
const REST_BYTES_MIN: usize = 64 << 10;

impl Orphans {
    fn keep_rest(&mut self, rest: Range<usize>) {
        if rest.len() >= REST_BYTES_MIN {
            self.rests.push(rest);
        }
    }
}

static ORPHANS: Mutex<Option<Orphans>> = Mutex::new(None);

thread_local! {
    static POOL: std::cell::RefCell<BufferPool> = std::cell::RefCell::new(BufferPool::default());
}

impl Drop for BufferPool {
    fn drop(&mut self) {
        let mut orphans = lock_orphans();
        let orphans = orphans.get_or_insert_with(Orphans::default);
        for (&len, buffers) in &self.idle {
            for &(ptr, in_region) in buffers {
                if in_region {
                    orphans.idle.entry(len).or_default().push(ptr);
                } else {
                    // SAFETY: allocated by `heap_allocate` with this length's layout.
                    unsafe { alloc::dealloc(ptr.as_ptr(), AlignedBuf::layout(len)) }
                }
            }
        }
        if let Some(rest) = self.region_rest.take() {
            orphans.keep_rest(rest);
        }
    }
}

fn lock_orphans() -> std::sync::MutexGuard<'static, Option<Orphans>> {
    // The data is a set of free lists, consistent after any panic.
    ORPHANS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl BufferPool {
    /// A buffer of exactly `len` bytes (a multiple of 4096) from this thread's idle
    /// buffers, its region, other threads' leftovers or a new region, in that order.
    fn take(&mut self, len: usize) -> Option<(NonNull<u8>, bool)> {
        if let Some((ptr, in_region)) = self.idle.get_mut(&len).and_then(Vec::pop) {
            if !in_region {
                self.heap_bytes -= len;
            }
            return Some((ptr, in_region));
        }
        if len > REGION_BYTES {
            return None;
        }
        if let Some(ptr) = self.carve(len) {
            return Some((ptr, true));
        }
        let mut orphans = lock_orphans();
        let orphans = orphans.get_or_insert_with(Orphans::default);
        if let Some(ptr) = orphans.idle.get_mut(&len).and_then(Vec::pop) {
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
}

/// Maps a new region, if the process is under its bound; returns its address range.
fn map_region() -> Option<Range<usize>> {
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

impl AlignedBuf {
    /// A buffer of `len_bytes` rounded up to a multiple of 4096, all zeros.
    pub fn zeroed(len_bytes: usize) -> AlignedBuf {
        let mut buf = AlignedBuf::scratch(len_bytes);
        buf.fill(0);
        buf
    }

    /// A buffer of `len_bytes` rounded up to a multiple of 4096 whose bytes are
    /// initialised but unspecified (a recycled buffer's old contents): for buffers that are
    /// overwritten in full before anything reads them.
    pub fn scratch(len_bytes: usize) -> AlignedBuf {
        // An empty buffer still owns one page (zero-sized allocations are not allowed).
        let len = len_bytes
            .next_multiple_of(IO_ALIGN_BYTES)
            .max(IO_ALIGN_BYTES);
        let pooled = POOL
            .try_with(|pool| pool.borrow_mut().take(len))
            .ok()
            .flatten();
        let (ptr, in_region) = pooled.unwrap_or_else(|| (Self::heap_allocate(len), false));
        AlignedBuf {
            ptr,
            len: len_bytes.next_multiple_of(IO_ALIGN_BYTES),
            in_region,
        }
    }

    fn heap_allocate(len: usize) -> NonNull<u8> {
        let layout = Self::layout(len);
        // SAFETY: the layout has a non-zero size. Zeroed, so the bytes are initialised.
        let ptr = unsafe { alloc::alloc_zeroed(layout) };
        NonNull::new(ptr).unwrap_or_else(|| alloc::handle_alloc_error(layout))
    }

    fn layout(len: usize) -> Layout {
        Layout::from_size_align(len, IO_ALIGN_BYTES).expect("buffer sizes are far below isize::MAX")
    }

    /// Length in bytes (a multiple of 4096).
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for a zero-length buffer.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// True when the buffer lies in a huge-page region (for tests and diagnostics).
    pub fn in_region(&self) -> bool {
        self.in_region
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // The memory behind a buffer is at least a page, even for an empty one.
        let (ptr, len, in_region) = (self.ptr, self.len.max(IO_ALIGN_BYTES), self.in_region);
        let kept = POOL
            .try_with(|pool| {
                let mut pool = pool.borrow_mut();
                if !in_region {
                    if pool.heap_bytes + len > POOL_BYTES_MAX {
                        return false;
                    }
                    pool.heap_bytes += len;
                }
                pool.idle.entry(len).or_default().push((ptr, in_region));
                true
            })
            .unwrap_or(false);
        if kept {
            return;
        }
        if in_region {
            // This thread is ending: the buffer goes to the threads that remain.
            let mut orphans = lock_orphans();
            let orphans = orphans.get_or_insert_with(Orphans::default);
            orphans.idle.entry(len).or_default().push(ptr);
        } else {
            // SAFETY: allocated in `heap_allocate` with exactly this layout.
            unsafe { alloc::dealloc(ptr.as_ptr(), Self::layout(len)) }
        }
    }
}

impl Deref for AlignedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `len` bytes were allocated and zero-initialised.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl DerefMut for AlignedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`, and `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl AsRef<[u8]> for AlignedBuf {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

/// An aligned range of a shared buffer, given to a write. Several writes can hold slices of
/// one buffer (the data shards of one chunk) at once; the buffer lives until the last ends.
#[derive(Clone)]
pub struct SharedSlice {
    buf: Arc<AlignedBuf>,
    range: Range<usize>,
}

impl SharedSlice {
    /// `range` of `buf`; its start and length must be multiples of 4096.
    pub fn new(buf: Arc<AlignedBuf>, range: Range<usize>) -> SharedSlice {
        assert!(
            range.start.is_multiple_of(IO_ALIGN_BYTES)
                && range.len().is_multiple_of(IO_ALIGN_BYTES)
        );
        assert!(range.end <= buf.len());
        SharedSlice { buf, range }
    }

    /// All of `buf`.
    pub fn whole(buf: Arc<AlignedBuf>) -> SharedSlice {
        let range = 0..buf.len();
        SharedSlice { buf, range }
    }
}

impl Deref for SharedSlice {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.buf[self.range.clone()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_aligned_rounded_and_zeroed_when_asked() {
        for len in [0, 1, 4095, 4096, 4097, 132 * 1024, 1 << 20] {
            let buf = AlignedBuf::zeroed(len);
            assert_eq!(buf.len(), len.next_multiple_of(IO_ALIGN_BYTES));
            assert_eq!(buf.as_ptr() as usize % IO_ALIGN_BYTES, 0);
            assert!(buf.iter().all(|&b| b == 0));
        }
    }

    #[test]
    fn regions_start_on_a_huge_page_and_are_advised() {
        let region = map_region().expect("the test process is far below the bound");
        assert_eq!(region.start % HUGE_PAGE_BYTES, 0);
        assert_eq!(region.len(), REGION_BYTES);
        // The whole region is usable memory.
        // SAFETY: the region was just mapped read-write and nothing else refers to it.
        let bytes =
            unsafe { std::slice::from_raw_parts_mut(region.start as *mut u8, region.len()) };
        bytes[0] = 1;
        bytes[REGION_BYTES - 1] = 2;
        assert_eq!((bytes[0], bytes[REGION_BYTES - 1]), (1, 2));
    }

    /// The `THPeligible` flag the kernel reports for the mapping holding `address`.
    fn huge_page_eligible(address: usize) -> Option<bool> {
        let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
        let mut inside = false;
        for line in smaps.lines() {
            let first = line.split_whitespace().next().unwrap_or("");
            if let Some((start, end)) = first.split_once('-')
                && let (Ok(start), Ok(end)) = (
                    usize::from_str_radix(start, 16),
                    usize::from_str_radix(end, 16),
                )
            {
                inside = (start..end).contains(&address);
                continue;
            }
            if inside && let Some(flag) = line.strip_prefix("THPeligible:") {
                return Some(flag.trim() == "1");
            }
        }
        None
    }

    #[test]
    fn region_buffers_are_eligible_for_huge_pages() {
        let thp = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
            .unwrap_or_default();
        if thp.is_empty() || thp.contains("[never]") {
            eprintln!("transparent huge pages are off on this machine: nothing to check");
            return;
        }
        let buf = std::thread::spawn(|| AlignedBuf::zeroed(128 << 10))
            .join()
            .unwrap();
        assert!(buf.in_region());
        assert_eq!(
            huge_page_eligible(buf.as_ptr() as usize),
            Some(true),
            "the kernel does not consider the region for huge pages"
        );
    }

    #[test]
    fn a_dropped_buffer_is_reused_by_its_thread() {
        std::thread::spawn(|| {
            let len = 41 * IO_ALIGN_BYTES;
            let first = AlignedBuf::scratch(len);
            assert!(first.in_region(), "a fresh thread carves from a region");
            let ptr = first.as_ptr();
            drop(first);
            let second = AlignedBuf::scratch(len);
            assert_eq!(second.as_ptr(), ptr);
            // A buffer of another length is other memory.
            let other = AlignedBuf::scratch(len + IO_ALIGN_BYTES);
            assert_ne!(other.as_ptr(), ptr);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn region_memory_outlives_the_thread_that_carved_it() {
        let len = 43 * IO_ALIGN_BYTES;
        // Carved and filled on one thread, dropped after that thread ended.
        let kept = std::thread::spawn(move || {
            let mut buf = AlignedBuf::scratch(len);
            buf.fill(7);
            buf
        })
        .join()
        .unwrap();
        assert!(kept.iter().all(|&b| b == 7));
        let ptr = kept.as_ptr() as usize;
        // Idle buffers of an ending thread go to the threads that remain.
        let handed_on = std::thread::spawn(move || {
            let buf = AlignedBuf::scratch(len * 2);
            let at = buf.as_ptr() as usize;
            drop(buf);
            at
        })
        .join()
        .unwrap();
        let reused = std::thread::spawn(move || AlignedBuf::scratch(len * 2).as_ptr() as usize)
            .join()
            .unwrap();
        assert_eq!(reused, handed_on);
        // Dropped here, the buffer joins this thread's pool.
        drop(kept);
        assert_eq!(AlignedBuf::scratch(len).as_ptr() as usize, ptr);
    }
}

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
//!
//! **Giving memory back.** A burst (a client holding hundreds of responses unread) can
//! leave a thread with a hundred megabytes of idle buffers. [`release_idle_regions`],
//! which each serving core calls every second, returns to the kernel every *whole region*
//! all of whose buffers have sat idle in this thread's pool for [`RELEASE_IDLE_AFTER`]:
//! its pages are dropped (`MADV_DONTNEED` over the whole region) and the region is carved
//! afresh. Only whole regions, because dropping part of a huge page splits it: the memory
//! then refaults as 4 KiB pages and O_DIRECT reads into it slow down several-fold. A
//! bound on idle bytes that dropped single buffers was tried and measured: it halved
//! 64 KiB range reads (ARCHITECTURE.md). Only after seconds of idleness, so a buffer in
//! steady use is never dropped and refaulted.

use std::alloc::{self, Layout};
use std::collections::HashMap;
use std::ffi::c_void;
use std::ops::{Deref, DerefMut, Range};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
    /// The region it was carved from (region memory is never freed), or `None` when it
    /// came from the general allocator.
    region: Option<RegionId>,
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

/// How many regions the process may map.
const REGIONS_MAX: usize = REGION_BYTES_MAX / REGION_BYTES;
/// How long every buffer of a region must have been idle before the region's pages are
/// given back: long against the gaps of steady traffic (a buffer reused within seconds is
/// never dropped), short against the 30 s after which an operator expects memory to have
/// come down after a burst.
pub const RELEASE_IDLE_AFTER: Duration = Duration::from_secs(10);

/// Which region a buffer or a rest lies in: an index into [`REGIONS`].
type RegionId = u16;

/// What the process knows of one region, for giving its pages back.
struct RegionSlot {
    /// Start address (0 until mapped).
    start: AtomicUsize,
    /// Bytes of buffers carved from it and not given back.
    carved: AtomicUsize,
    /// Uncarved ranges of it that some thread (or the orphans) may still carve from.
    rests: AtomicUsize,
}

#[allow(clippy::declare_interior_mutable_const)] // only to initialise the array below
const EMPTY_SLOT: RegionSlot = RegionSlot {
    start: AtomicUsize::new(0),
    carved: AtomicUsize::new(0),
    rests: AtomicUsize::new(0),
};
static REGIONS: [RegionSlot; REGIONS_MAX] = [EMPTY_SLOT; REGIONS_MAX];
/// Regions mapped so far (slots of [`REGIONS`] taken).
static REGIONS_MAPPED: AtomicUsize = AtomicUsize::new(0);

/// An uncarved range of a region.
#[derive(Clone, Debug)]
struct Rest {
    region: RegionId,
    range: Range<usize>,
}

/// Buffers nobody is using, by length, each with the region it lies in.
type Idle = HashMap<usize, Vec<(NonNull<u8>, Option<RegionId>)>>;

/// This thread's idle buffers of one region.
struct RegionIdle {
    bytes: usize,
    /// When a buffer of the region last went into or out of this pool.
    last_active: Instant,
}

/// Idle buffers of this thread, and the uncarved end of its current region.
#[derive(Default)]
struct BufferPool {
    idle: Idle,
    /// Bytes of idle general-allocator buffers in `idle`.
    heap_bytes: usize,
    /// Idle bytes in `idle` per region.
    region_idle: HashMap<RegionId, RegionIdle>,
    region_rest: Option<Rest>,
}

/// Region memory left behind by threads that ended, for other threads to use.
#[derive(Default)]
struct Orphans {
    idle: HashMap<usize, Vec<(NonNull<u8>, RegionId)>>,
    rests: Vec<Rest>,
}

// SAFETY: the pointers are to region memory nobody references; whoever takes one owns it.
unsafe impl Send for Orphans {}

/// Leftover ends of regions shorter than this are not kept: at most this much of a region
/// goes unused, and the list of leftovers stays short.
const REST_BYTES_MIN: usize = 64 << 10;

impl Orphans {
    fn keep_rest(&mut self, rest: Rest) {
        if rest.range.len() >= REST_BYTES_MIN {
            self.rests.push(rest);
        } else {
            REGIONS[usize::from(rest.region)]
                .rests
                .fetch_sub(1, Ordering::SeqCst);
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
            for &(ptr, region) in buffers {
                if let Some(region) = region {
                    orphans.idle.entry(len).or_default().push((ptr, region));
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
    fn take(&mut self, len: usize) -> Option<(NonNull<u8>, Option<RegionId>)> {
        if let Some((ptr, region)) = self.idle.get_mut(&len).and_then(Vec::pop) {
            match region {
                Some(region) => self.note_idle(region, |idle| idle - len),
                None => self.heap_bytes -= len,
            }
            return Some((ptr, region));
        }
        if len > REGION_BYTES {
            return None;
        }
        if let Some(carved) = self.carve(len) {
            return Some(carved);
        }
        let mut orphans = lock_orphans();
        let orphans = orphans.get_or_insert_with(Orphans::default);
        if let Some((ptr, region)) = orphans.idle.get_mut(&len).and_then(Vec::pop) {
            return Some((ptr, Some(region)));
        }
        // This thread's region is too short for `len`: what is left of it goes to the
        // shared leftovers (for shorter buffers), and a leftover or a new region replaces it.
        let next = match orphans.rests.iter().position(|r| r.range.len() >= len) {
            Some(at) => orphans.rests.swap_remove(at),
            None => map_region()?,
        };
        if let Some(rest) = self.region_rest.replace(next) {
            orphans.keep_rest(rest);
        }
        self.carve(len)
    }

    /// The next `len` bytes of this thread's region, if it has that many left.
    fn carve(&mut self, len: usize) -> Option<(NonNull<u8>, Option<RegionId>)> {
        let rest = self.region_rest.as_mut().filter(|r| r.range.len() >= len)?;
        let start = rest.range.start;
        rest.range.start += len;
        let region = rest.region;
        REGIONS[usize::from(region)]
            .carved
            .fetch_add(len, Ordering::SeqCst);
        NonNull::new(start as *mut u8).map(|ptr| (ptr, Some(region)))
    }

    /// Changes this pool's idle bytes of `region` and notes the activity.
    fn note_idle(&mut self, region: RegionId, change: impl FnOnce(usize) -> usize) {
        let now = Instant::now();
        let idle = self.region_idle.entry(region).or_insert(RegionIdle {
            bytes: 0,
            last_active: now,
        });
        idle.bytes = change(idle.bytes);
        idle.last_active = now;
    }

    /// Gives back the pages of every region all of whose buffers have been idle in this
    /// pool since `idle_since`; returns the bytes given back.
    fn release_regions(&mut self, idle_since: Instant) -> usize {
        let candidates: Vec<RegionId> = self
            .region_idle
            .iter()
            .filter(|(_, idle)| idle.last_active <= idle_since && idle.bytes > 0)
            .map(|(&region, _)| region)
            .collect();
        let mut released = 0;
        for region in candidates {
            if self.release_region(region) {
                released += REGION_BYTES;
            }
        }
        released
    }

    /// Gives back `region`'s pages if every buffer carved from it is idle in this pool and
    /// no other thread can carve from it; it then becomes an uncarved rest again.
    fn release_region(&mut self, region: RegionId) -> bool {
        let slot = &REGIONS[usize::from(region)];
        let mut orphans = lock_orphans();
        let orphans = orphans.get_or_insert_with(Orphans::default);
        // Rests of the region held by no thread are taken, so none can start carving from
        // them; a rest another thread holds means the region cannot be given back.
        let mine = usize::from(
            self.region_rest
                .as_ref()
                .is_some_and(|rest| rest.region == region),
        );
        let orphaned = orphans.rests.iter().filter(|r| r.region == region).count();
        let idle_bytes = self.region_idle.get(&region).map_or(0, |idle| idle.bytes);
        if slot.rests.load(Ordering::SeqCst) != mine + orphaned
            || slot.carved.load(Ordering::SeqCst) != idle_bytes
        {
            return false;
        }
        orphans.rests.retain(|r| r.region != region);
        for buffers in self.idle.values_mut() {
            buffers.retain(|&(_, r)| r != Some(region));
        }
        self.region_idle.remove(&region);
        let start = slot.start.load(Ordering::SeqCst);
        // SAFETY: the region is mapped and no buffer or rest of it is in use: every carved
        // buffer was idle in this pool and has just been forgotten, every rest is ours.
        // Its bytes become zeros, which no caller relies on either way.
        let _ = unsafe {
            mm::madvise(
                start as *mut c_void,
                REGION_BYTES,
                mm::Advice::LinuxDontNeed,
            )
        };
        slot.carved.store(0, Ordering::SeqCst);
        slot.rests.store(1, Ordering::SeqCst);
        let whole = Rest {
            region,
            range: start..start + REGION_BYTES,
        };
        if mine == 1 {
            self.region_rest = Some(whole);
        } else {
            orphans.rests.push(whole);
        }
        true
    }
}

/// Gives back to the kernel the pages of this thread's regions whose buffers have all been
/// idle here for [`RELEASE_IDLE_AFTER`]; returns the bytes given back. Serving cores call
/// it every second.
pub fn release_idle_regions() -> usize {
    release_regions_idle_since(Instant::now() - RELEASE_IDLE_AFTER)
}

fn release_regions_idle_since(idle_since: Instant) -> usize {
    POOL.try_with(|pool| pool.borrow_mut().release_regions(idle_since))
        .unwrap_or(0)
}

/// Maps a new region, if the process is under its bound.
fn map_region() -> Option<Rest> {
    let index = REGIONS_MAPPED
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |mapped| {
            (mapped < REGIONS_MAX).then_some(mapped + 1)
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
    // A slot whose mapping failed stays unused: the process is short of memory anyway.
    let base = mapped.ok()?;
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
    let slot = &REGIONS[index];
    slot.start.store(start, Ordering::SeqCst);
    slot.rests.store(1, Ordering::SeqCst);
    Some(Rest {
        region: index as RegionId,
        range: start..end,
    })
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
        let (ptr, region) = pooled.unwrap_or_else(|| (Self::heap_allocate(len), None));
        AlignedBuf {
            ptr,
            len: len_bytes.next_multiple_of(IO_ALIGN_BYTES),
            region,
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
        self.region.is_some()
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // The memory behind a buffer is at least a page, even for an empty one.
        let (ptr, len, region) = (self.ptr, self.len.max(IO_ALIGN_BYTES), self.region);
        let kept = POOL
            .try_with(|pool| {
                let mut pool = pool.borrow_mut();
                match region {
                    Some(region) => pool.note_idle(region, |idle| idle + len),
                    None if pool.heap_bytes + len > POOL_BYTES_MAX => return false,
                    None => pool.heap_bytes += len,
                }
                pool.idle.entry(len).or_default().push((ptr, region));
                true
            })
            .unwrap_or(false);
        if kept {
            return;
        }
        if let Some(region) = region {
            // This thread is ending: the buffer goes to the threads that remain.
            let mut orphans = lock_orphans();
            let orphans = orphans.get_or_insert_with(Orphans::default);
            orphans.idle.entry(len).or_default().push((ptr, region));
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
        let region = map_region()
            .expect("the test process is far below the bound")
            .range;
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

    #[test]
    fn a_region_idle_long_enough_is_given_back_and_carved_again() {
        std::thread::spawn(|| {
            // A buffer as long as a region has a region to itself.
            let mut whole = AlignedBuf::scratch(REGION_BYTES);
            assert!(whole.in_region());
            whole.fill(7);
            let ptr = whole.as_ptr();
            drop(whole);
            // Idle, but not for long enough: kept.
            let now = Instant::now();
            assert_eq!(release_regions_idle_since(now - RELEASE_IDLE_AFTER), 0);
            // Idle since before `now`: given back.
            assert_eq!(release_regions_idle_since(now), REGION_BYTES);
            let again = AlignedBuf::scratch(REGION_BYTES);
            assert_eq!(again.as_ptr(), ptr, "the region is carved afresh");
            assert!(
                again.iter().all(|&b| b == 0),
                "its pages were dropped, so they read as zeros"
            );
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_region_with_a_buffer_in_use_is_kept() {
        std::thread::spawn(|| {
            let len = 2 << 20;
            // Buffers carved one after another share a region, except across the start of
            // a new one: carve until the last two do (all held, so every region they lie
            // in has a buffer in use).
            let mut held = vec![AlignedBuf::scratch(len)];
            loop {
                held.push(AlignedBuf::scratch(len));
                let [.., before, last] = held.as_slice() else {
                    unreachable!()
                };
                if before.region.is_some() && before.region == last.region {
                    break;
                }
                assert!(held.len() < 8, "no two 2 MiB buffers in one 8 MiB region");
            }
            let mut idle = held.remove(held.len() - 2);
            idle.fill(7);
            let ptr = idle.as_ptr();
            drop(idle);
            assert_eq!(
                release_regions_idle_since(Instant::now()),
                0,
                "a buffer of the region is still in use"
            );
            let back = AlignedBuf::scratch(len);
            assert_eq!(back.as_ptr(), ptr);
            assert!(back.iter().all(|&b| b == 7), "its pages were kept");
            drop(held);
        })
        .join()
        .unwrap();
    }
}

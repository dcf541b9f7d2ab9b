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
//! in one process and 1.3 GB/s in another. `buffer_pool` holds the regions and the
//! per-thread pool, and bounds the idle memory each thread keeps resident (16 MiB): the
//! pages of idle buffers beyond that go back to the kernel, so memory comes back down after
//! a burst.

use std::ops::{Deref, DerefMut, Range};
use std::ptr::NonNull;
use std::sync::Arc;

use super::buffer_pool;

/// Alignment of every I/O buffer, offset and length: the devices' physical block size,
/// the crate's one base alignment (`erasure::SHARD_ALIGN_BYTES`).
pub const IO_ALIGN_BYTES: usize = crate::erasure::SHARD_ALIGN_BYTES;

/// A 4096-aligned buffer whose bytes are all initialised. Its length is a multiple of
/// 4096.
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    len: usize,
    /// Carved from a region (never unmapped) rather than from the general allocator.
    in_region: bool,
}

// SAFETY: AlignedBuf owns its memory exclusively, like a Box<[u8]>.
unsafe impl Send for AlignedBuf {}
// SAFETY: shared references only allow reads, like &[u8].
unsafe impl Sync for AlignedBuf {}

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
        let (ptr, in_region) = buffer_pool::take(len);
        AlignedBuf {
            ptr,
            len: len_bytes.next_multiple_of(IO_ALIGN_BYTES),
            in_region,
        }
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
        buffer_pool::give_back(ptr, len, in_region);
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
    use crate::store::buffer_pool::{HUGE_PAGE_BYTES, IDLE_BYTES_MAX, REGION_BYTES, map_region};

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

    #[test]
    fn idle_memory_beyond_the_bound_goes_back_after_a_burst() {
        std::thread::spawn(|| {
            // A burst: 256 MiB of 512 KiB buffers held at once, written, then dropped.
            let len = 512 << 10;
            let burst: Vec<AlignedBuf> = (0..512)
                .map(|_| {
                    let mut buf = AlignedBuf::scratch(len);
                    buf.fill(9);
                    buf
                })
                .collect();
            let in_regions = burst.iter().filter(|b| b.in_region()).count() * len;
            drop(burst);
            let (resident, released) = buffer_pool::idle_bytes();
            assert!(
                resident <= IDLE_BYTES_MAX,
                "{resident} bytes idle and resident"
            );
            assert!(
                resident >= IDLE_BYTES_MAX - len,
                "the pool keeps its working set"
            );
            assert!(
                released >= in_regions.saturating_sub(IDLE_BYTES_MAX),
                "{released} bytes released"
            );
            // Steady state after the burst reuses the warm buffers first, then the
            // released ones, before carving anything new.
            let again = AlignedBuf::scratch(len);
            assert_eq!(buffer_pool::idle_bytes(), (resident - len, released));
            drop(again);
            assert_eq!(buffer_pool::idle_bytes(), (resident, released));
        })
        .join()
        .unwrap();
    }
}

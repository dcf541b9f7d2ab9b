//! [`AlignedBuf`]: heap memory whose address and length are multiples of 4096, as O_DIRECT
//! requires of every buffer it reads into or writes from, and [`SharedSlice`]: a range of
//! such a buffer shared between several in-flight writes.
//!
//! Buffers are recycled through a small per-thread pool: a read of a 512 KiB chunk would
//! otherwise allocate and zero 528 KiB per request, which measured as a visible share of a
//! core's time under load. A recycled buffer holds old bytes, so [`AlignedBuf::scratch`]
//! is only for buffers that are overwritten in full (device reads, parity, rebuilt
//! windows); [`AlignedBuf::zeroed`] gives zeros.

use std::alloc::{self, Layout};
use std::ops::{Deref, DerefMut, Range};
use std::ptr::NonNull;
use std::sync::Arc;

/// Alignment of every I/O buffer, offset and length: the devices' physical block size.
pub const IO_ALIGN_BYTES: usize = 4096;

/// A zero-initialised, 4096-aligned heap buffer. Its length is a multiple of 4096.
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: AlignedBuf owns its allocation exclusively, like a Box<[u8]>.
unsafe impl Send for AlignedBuf {}
// SAFETY: shared references only allow reads, like &[u8].
unsafe impl Sync for AlignedBuf {}

/// Bytes of idle buffers each thread keeps for reuse.
const POOL_BYTES_MAX: usize = 64 << 20;

/// Idle buffers of this thread, by length.
#[derive(Default)]
struct Pool {
    idle: std::collections::HashMap<usize, Vec<NonNull<u8>>>,
    bytes: usize,
}

thread_local! {
    static POOL: std::cell::RefCell<Pool> = std::cell::RefCell::new(Pool::default());
}

impl Drop for Pool {
    fn drop(&mut self) {
        for (&len, buffers) in &self.idle {
            for ptr in buffers {
                // SAFETY: each was allocated by `allocate` with this length's layout.
                unsafe { alloc::dealloc(ptr.as_ptr(), AlignedBuf::layout(len)) }
            }
        }
    }
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
        let len = len_bytes.next_multiple_of(IO_ALIGN_BYTES);
        let recycled = POOL
            .try_with(|pool| {
                let mut pool = pool.borrow_mut();
                let ptr = pool.idle.get_mut(&len)?.pop()?;
                pool.bytes -= len;
                Some(ptr)
            })
            .ok()
            .flatten();
        let ptr = recycled.unwrap_or_else(|| Self::allocate(len));
        AlignedBuf { ptr, len }
    }

    fn allocate(len: usize) -> NonNull<u8> {
        // Zero-sized allocations are not allowed; an empty buffer still owns one page.
        let layout = Self::layout(len);
        // SAFETY: the layout has a non-zero size. Zeroed, so the bytes are initialised.
        let ptr = unsafe { alloc::alloc_zeroed(layout) };
        NonNull::new(ptr).unwrap_or_else(|| alloc::handle_alloc_error(layout))
    }

    fn layout(len: usize) -> Layout {
        Layout::from_size_align(len.max(IO_ALIGN_BYTES), IO_ALIGN_BYTES)
            .expect("buffer sizes are far below isize::MAX")
    }

    /// Length in bytes (a multiple of 4096).
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for a zero-length buffer.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        let (ptr, len) = (self.ptr, self.len);
        let kept = POOL
            .try_with(|pool| {
                let mut pool = pool.borrow_mut();
                if pool.bytes + len > POOL_BYTES_MAX {
                    return false;
                }
                pool.bytes += len;
                pool.idle.entry(len).or_default().push(ptr);
                true
            })
            .unwrap_or(false);
        if !kept {
            // SAFETY: allocated in `allocate` with exactly this layout.
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

// SAFETY: the pointer stays valid and unmoved while the buffer lives, whoever owns it, and
// all `len` bytes are initialised.
unsafe impl tokio_uring::buf::IoBuf for AlignedBuf {
    fn stable_ptr(&self) -> *const u8 {
        self.ptr.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len
    }
    fn bytes_total(&self) -> usize {
        self.len
    }
}

// SAFETY: as for IoBuf; the buffer is always fully initialised, so `set_init` has nothing
// to record.
unsafe impl tokio_uring::buf::IoBufMut for AlignedBuf {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.ptr.as_ptr()
    }
    unsafe fn set_init(&mut self, _pos: usize) {}
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

// SAFETY: the Arc keeps the allocation alive and unmoved while any slice exists, and the
// range lies within the initialised buffer (checked in `new`).
unsafe impl tokio_uring::buf::IoBuf for SharedSlice {
    fn stable_ptr(&self) -> *const u8 {
        self.buf[self.range.clone()].as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.range.len()
    }
    fn bytes_total(&self) -> usize {
        self.range.len()
    }
}

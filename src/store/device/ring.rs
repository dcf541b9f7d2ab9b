//! Each core's io_uring for device I/O, driven by us rather than by tokio-uring.
//!
//! tokio-uring queues an operation and hands it to the kernel only when its thread runs out
//! of tasks and parks. On this path that delay is the difference between matching fio and
//! not: 64 KiB O_DIRECT reads from one core, 32 in flight, ran at 1.3–1.4 GB/s through
//! tokio-uring and 2.3 GB/s here, where fio ran 2.4–2.6 GB/s (ARCHITECTURE.md, "The
//! device ring"). So this ring submits every operation the moment it is started — one
//! `io_uring_enter` each, or one for all the operations a [`submit_together`] poll starts
//! (a chunk's shard reads) — and learns of completions two ways: an operation that is
//! polled reaps whatever has completed (no system call), and a reaper task, woken through
//! the runtime's epoll when the ring has completions, reaps the rest while the core is
//! idle. tokio-uring still runs the core's executor and its network I/O.
//!
//! Memory lent to the kernel stays owned by the operation ([`Op`]) until the kernel is done
//! with it: an operation dropped before it completes parks that memory in its slot, and
//! the completion frees it. A ring with such operations outstanding waits for them before
//! it is dropped.

use std::any::Any;
use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use io_uring::{IoUring, squeue};
use slab::Slab;
use tokio::io::unix::AsyncFd;

/// Submission queue entries. Operations are submitted as they start, so the queue holds
/// one or two at a time; this is room, not a limit on operations in flight.
const SUBMISSION_ENTRIES: u32 = 64;

/// Completion queue entries. More operations than this may be in flight: the kernel keeps
/// completions that do not fit until they are reaped (IORING_FEAT_NODROP, Linux 5.5).
const COMPLETION_ENTRIES: u32 = 1024;

/// One core's ring. Not `Send`: it lives and dies on its thread.
pub(super) struct Ring {
    inner: RefCell<Inner>,
}

struct Inner {
    uring: IoUring,
    slots: Slab<Slot>,
    /// Whether a reaper task is alive on the runtime now running this thread.
    reaper_running: bool,
    /// Open [`submit_together`] polls: while above zero, started operations wait in the
    /// submission queue for the outermost to end.
    holds: u32,
    /// Wakers collected while reaping, woken after the ring is released (reused).
    to_wake: Vec<Waker>,
}

enum Slot {
    /// In the kernel; the waker of the task awaiting it, once polled.
    Waiting(Option<Waker>),
    /// Completed with this result (a byte count, or a negated errno).
    Done(i32),
    /// Its operation was dropped before completing: the memory the kernel may still write
    /// to or read from, freed by the completion.
    Abandoned(#[allow(dead_code)] Box<dyn Any>),
}

thread_local! {
    static CURRENT: RefCell<Option<Rc<Ring>>> = const { RefCell::new(None) };
}

impl Ring {
    /// This thread's ring, created on first use, with a reaper on the current runtime.
    /// Must be called on a tokio-uring runtime (as every device I/O is).
    pub(super) fn current() -> io::Result<Rc<Ring>> {
        let ring = CURRENT
            .try_with(|current| -> io::Result<Rc<Ring>> {
                let mut current = current.borrow_mut();
                if let Some(ring) = current.as_ref() {
                    return Ok(ring.clone());
                }
                let ring = Rc::new(Ring::new()?);
                *current = Some(ring.clone());
                Ok(ring)
            })
            .map_err(|_| io::Error::other("device I/O on a thread that is exiting"))??;
        if !ring.inner.borrow().reaper_running {
            ring.start_reaper()?;
        }
        Ok(ring)
    }

    fn new() -> io::Result<Ring> {
        let uring = IoUring::builder()
            .setup_cqsize(COMPLETION_ENTRIES)
            .setup_clamp()
            .build(SUBMISSION_ENTRIES)
            .map_err(|e| io::Error::new(e.kind(), format!("creating an io_uring: {e}")))?;
        if !uring.params().is_feature_nodrop() {
            return Err(io::Error::other(
                "the kernel's io_uring may drop completions (no IORING_FEAT_NODROP); Linux 5.5 or later is needed",
            ));
        }
        Ok(Ring {
            inner: RefCell::new(Inner {
                uring,
                slots: Slab::new(),
                reaper_running: false,
                holds: 0,
                to_wake: Vec::new(),
            }),
        })
    }

    /// Spawns the task that reaps completions when nothing else does: it sleeps in the
    /// runtime's epoll until the ring has completions. A runtime that ends drops the task,
    /// and the next operation on this thread starts another on the runtime then running.
    fn start_reaper(self: &Rc<Self>) -> io::Result<()> {
        // SAFETY: the descriptor is the ring's, and `Reaper` holds the ring, so it stays
        // open for as long as the registration.
        let reaper = unsafe {
            AsyncFd::register_with_interest(Reaper(self.clone()), tokio::io::Interest::READABLE)
        }
        .map_err(io::Error::from)?;
        self.inner.borrow_mut().reaper_running = true;
        tokio::task::spawn_local(async move {
            loop {
                let Ok(mut ready) = reaper.readable().await else {
                    tracing::error!("the device ring's reaper lost its readiness; stopping");
                    return;
                };
                // Cleared before reaping: a completion that lands after the reap makes
                // the ring readable again, so none is missed.
                ready.clear_ready();
                ready.get_inner().0.reap();
            }
        });
        Ok(())
    }

    /// Starts an operation: queues `entry` and submits it to the kernel now.
    ///
    /// # Safety
    /// Every pointer in `entry` must point into memory owned by `lent` that stays valid and
    /// unmoved when `lent` itself moves (heap memory), for the kernel to use until the
    /// operation completes.
    pub(super) unsafe fn start<T: 'static>(
        self: &Rc<Self>,
        entry: squeue::Entry,
        lent: T,
    ) -> Op<T> {
        let mut inner = self.inner.borrow_mut();
        let slot = inner.slots.insert(Slot::Waiting(None));
        let entry = entry.user_data(slot as u64);
        let mut to_wake = Vec::new();
        loop {
            // SAFETY: the caller vouches for the memory `entry` points to, and `lent` is
            // kept in the returned `Op` or in its slot until the completion arrives.
            if unsafe { inner.uring.submission().push(&entry) }.is_ok() {
                break;
            }
            inner.submit_all(&mut to_wake);
        }
        if inner.holds == 0 {
            inner.submit_all(&mut to_wake);
        }
        drop(inner);
        wake_all(to_wake);
        Op {
            ring: self.clone(),
            slot,
            lent: Some(lent),
        }
    }

    /// Moves completions into their slots and wakes their tasks.
    fn reap(&self) {
        let mut to_wake = {
            let mut inner = self.inner.borrow_mut();
            let mut to_wake = std::mem::take(&mut inner.to_wake);
            inner.reap_into(&mut to_wake);
            to_wake
        };
        for waker in to_wake.drain(..) {
            waker.wake();
        }
        self.inner.borrow_mut().to_wake = to_wake;
    }

    /// Operations queued and not yet handed to the kernel (for tests).
    #[cfg(test)]
    fn queued(&self) -> usize {
        self.inner.borrow_mut().uring.submission().len()
    }

    /// Operations started and not yet reaped, abandoned ones included (for tests).
    #[cfg(test)]
    pub(super) fn outstanding(&self) -> usize {
        self.inner.borrow().slots.len()
    }
}

impl Inner {
    /// Hands every queued entry to the kernel, reaping when it asks for room (the reaped
    /// operations' wakers go to `to_wake`, for the caller to wake once the ring is free).
    fn submit_all(&mut self, to_wake: &mut Vec<Waker>) {
        while !self.uring.submission().is_empty() {
            match enter(&self.uring) {
                None | Some(libc::EINTR) => {}
                // Completions are waiting to be reaped (EBUSY), or the kernel is short of
                // memory for requests (EAGAIN): reap and try again.
                Some(_) => {
                    self.reap_into(to_wake);
                    std::thread::yield_now();
                }
            }
        }
    }

    fn reap_into(&mut self, to_wake: &mut Vec<Waker>) {
        loop {
            let Inner { uring, slots, .. } = self;
            let mut completions = uring.completion();
            completions.sync();
            for completion in &mut completions {
                let index = completion.user_data() as usize;
                let Some(slot) = slots.get_mut(index) else {
                    debug_assert!(false, "a completion for an unknown slot {index}");
                    continue;
                };
                match std::mem::replace(slot, Slot::Done(completion.result())) {
                    Slot::Waiting(waker) => to_wake.extend(waker),
                    Slot::Abandoned(_) => {
                        slots.remove(index);
                    }
                    Slot::Done(_) => debug_assert!(false, "two completions for slot {index}"),
                }
            }
            drop(completions);
            // Completions that did not fit in the queue wait in the kernel, which moves
            // them in only when asked to (io_uring_enter with GETEVENTS, which `submit`
            // passes while the overflow flag is set); no readiness announces them.
            if !uring.submission().cq_overflow() {
                return;
            }
            // A refusal to retry (EINTR, EBUSY, EAGAIN) leaves the flag set: the loop asks again.
            enter(uring);
        }
    }
}

/// Submits the queued entries, asking for overflowed completions too while there are any
/// (`IoUring::submit` passes GETEVENTS then). `None` when the kernel took the call; the
/// errno when it asks to be called again: interrupted (EINTR), completions waiting to be
/// reaped (EBUSY), or short of memory for requests (EAGAIN).
fn enter(uring: &IoUring) -> Option<i32> {
    match uring.submit() {
        Ok(_) => None,
        Err(e) => match e.raw_os_error() {
            Some(errno @ (libc::EINTR | libc::EBUSY | libc::EAGAIN)) => Some(errno),
            // Only a broken ring fails otherwise (EBADF, EFAULT, EINVAL): an entry is
            // queued that the kernel can never take, so no operation could complete.
            _ => panic!("io_uring_enter failed on the device ring: {e}"),
        },
    }
}

impl Drop for Ring {
    /// Waits for operations whose futures were dropped: the kernel may still use their
    /// memory, which is freed with their slots.
    fn drop(&mut self) {
        let inner = self.inner.get_mut();
        let mut ignored = Vec::new();
        while !inner.slots.is_empty() {
            match inner.uring.submit_and_wait(1) {
                Ok(_) => inner.reap_into(&mut ignored),
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                Err(e) => {
                    // Freeing the memory now could let the kernel write into reused memory.
                    tracing::error!(error = %e, outstanding = inner.slots.len(), "device ring dropped with operations in flight; leaking their buffers");
                    for (_, slot) in std::mem::take(&mut inner.slots) {
                        std::mem::forget(slot);
                    }
                    return;
                }
            }
        }
    }
}

fn wake_all(wakers: Vec<Waker>) {
    for waker in wakers {
        waker.wake();
    }
}

/// Polls `future` so that the operations it starts on this core's ring in one poll go to
/// the kernel together, in one system call when the poll returns, rather than one call
/// each: the shard reads of a chunk, the shard writes of a PUT. On a thread without a
/// ring (the simulated engine) it is `future` itself.
pub async fn submit_together<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    std::future::poll_fn(|cx| {
        let _hold = Hold::new();
        future.as_mut().poll(cx)
    })
    .await
}

/// One open [`submit_together`] poll.
struct Hold(Option<Rc<Ring>>);

impl Hold {
    fn new() -> Hold {
        let ring = CURRENT
            .try_with(|current| current.borrow().clone())
            .ok()
            .flatten();
        if let Some(ring) = &ring {
            ring.inner.borrow_mut().holds += 1;
        }
        Hold(ring)
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        if let Some(ring) = &self.0 {
            let mut inner = ring.inner.borrow_mut();
            inner.holds -= 1;
            let mut to_wake = Vec::new();
            if inner.holds == 0 {
                inner.submit_all(&mut to_wake);
            }
            drop(inner);
            wake_all(to_wake);
        }
    }
}

/// The reaper's hold on the ring: its descriptor for the runtime's epoll. Dropped with the
/// reaper task when its runtime ends, which lets the next operation start a new one.
struct Reaper(Rc<Ring>);

impl AsRawFd for Reaper {
    fn as_raw_fd(&self) -> RawFd {
        self.0.inner.borrow().uring.as_raw_fd()
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        self.0.inner.borrow_mut().reaper_running = false;
    }
}

/// An operation in flight, holding the memory it lent the kernel. Resolves to the kernel's
/// result (bytes transferred, or the error) and that memory.
pub(super) struct Op<T: 'static> {
    ring: Rc<Ring>,
    slot: usize,
    lent: Option<T>,
}

// `lent` is never pinned: the kernel uses the heap memory it owns, not `T` itself.
impl<T: 'static> Unpin for Op<T> {}

impl<T: 'static> Future for Op<T> {
    type Output = (io::Result<u32>, T);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.ring.reap();
        let mut inner = self.ring.inner.borrow_mut();
        let result = match &mut inner.slots[self.slot] {
            Slot::Done(result) => *result,
            Slot::Waiting(waker) => {
                match waker {
                    Some(waker) => waker.clone_from(cx.waker()),
                    None => *waker = Some(cx.waker().clone()),
                }
                return Poll::Pending;
            }
            Slot::Abandoned(_) => unreachable!("a live operation's slot is not abandoned"),
        };
        inner.slots.remove(self.slot);
        drop(inner);
        let lent = self.lent.take().expect("an operation completes once");
        let result = u32::try_from(result).map_err(|_| io::Error::from_raw_os_error(-result));
        Poll::Ready((result, lent))
    }
}

impl<T: 'static> Drop for Op<T> {
    fn drop(&mut self) {
        let Some(lent) = self.lent.take() else {
            return; // completed and returned
        };
        let mut inner = self.ring.inner.borrow_mut();
        match inner.slots.get_mut(self.slot) {
            Some(slot @ Slot::Waiting(_)) => *slot = Slot::Abandoned(Box::new(lent)),
            Some(Slot::Done(_)) => {
                inner.slots.remove(self.slot);
            }
            _ => debug_assert!(false, "a live operation's slot is missing"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs::OpenOptions;
    use std::os::unix::fs::OpenOptionsExt;

    use io_uring::{opcode, types};

    use super::*;
    use crate::store::aligned::AlignedBuf;

    fn temp_file(len: usize) -> (tempfile::TempDir, std::fs::File, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let bytes: Vec<u8> = (0..len).map(|i| (i * 7 + i / 4096) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(&path)
            .unwrap();
        (dir, file, bytes)
    }

    /// Fails the test instead of hanging it when a completion is lost.
    async fn within_seconds<F: Future>(future: F) -> F::Output {
        tokio::time::timeout(std::time::Duration::from_secs(10), future)
            .await
            .expect("the operations complete within 10 s")
    }

    fn read(ring: &Rc<Ring>, file: &std::fs::File, len: usize, offset: u64) -> Op<AlignedBuf> {
        let mut buf = AlignedBuf::zeroed(len);
        let entry = opcode::Read::new(types::Fd(file.as_raw_fd()), buf.as_mut_ptr(), len as u32)
            .offset(offset)
            .build();
        // SAFETY: the entry points into `buf`'s heap memory, lent to the operation.
        unsafe { ring.start(entry, buf) }
    }

    #[test]
    fn many_concurrent_reads_each_get_their_own_bytes() {
        // More operations than the submission queue and the completion queue hold.
        let (_dir, file, bytes) = temp_file(1 << 20);
        tokio_uring::start(async {
            let ring = Ring::current().unwrap();
            let count = (COMPLETION_ENTRIES as usize) * 2;
            let ops: Vec<_> = (0..count)
                .map(|i| read(&ring, &file, 4096, (i % 256 * 4096) as u64))
                .collect();
            let results = within_seconds(futures_util::future::join_all(ops)).await;
            for (i, (result, buf)) in results.into_iter().enumerate() {
                assert_eq!(result.unwrap(), 4096);
                let at = i % 256 * 4096;
                assert_eq!(&buf[..], &bytes[at..at + 4096], "read {i}");
            }
            assert_eq!(ring.outstanding(), 0);
        });
    }

    #[test]
    fn operations_go_to_the_kernel_as_they_start_or_together_when_asked() {
        let (_dir, file, bytes) = temp_file(1 << 20);
        tokio_uring::start(async {
            let ring = Ring::current().unwrap();
            let alone = read(&ring, &file, 4096, 0);
            assert_eq!(ring.queued(), 0, "submitted as it started");
            let (result, _) = within_seconds(alone).await;
            assert_eq!(result.unwrap(), 4096);

            let reads = submit_together(async {
                let first = read(&ring, &file, 4096, 0);
                let second = read(&ring, &file, 4096, 8192);
                assert_eq!(ring.queued(), 2, "held until the poll ends");
                futures_util::future::join(first, second).await
            });
            let ((first, a), (second, b)) = within_seconds(reads).await;
            assert_eq!((first.unwrap(), second.unwrap()), (4096, 4096));
            assert_eq!((&a[..], &b[..]), (&bytes[..4096], &bytes[8192..12288]));
            assert_eq!(ring.queued(), 0);
        });
    }

    #[test]
    fn errors_come_back_as_io_errors() {
        let (_dir, file, _) = temp_file(8192);
        tokio_uring::start(async {
            let ring = Ring::current().unwrap();
            // O_DIRECT refuses an offset that is not block-aligned.
            let (result, _) = read(&ring, &file, 4096, 1).await;
            assert_eq!(result.unwrap_err().raw_os_error(), Some(libc::EINVAL));
            // At the end of the file a read transfers nothing.
            let (result, _) = read(&ring, &file, 4096, 8192).await;
            assert_eq!(result.unwrap(), 0);
        });
    }

    #[test]
    fn a_dropped_operation_keeps_its_memory_until_the_kernel_is_done() {
        let (_dir, file, bytes) = temp_file(1 << 20);
        tokio_uring::start(async {
            let ring = Ring::current().unwrap();
            for _ in 0..64 {
                drop(read(&ring, &file, 64 * 1024, 0));
            }
            // Dropped while in flight: the slots stay (holding the buffers) until reaped.
            assert!(ring.outstanding() > 0);
            // The reaper frees them without anyone polling them.
            for _ in 0..1000 {
                if ring.outstanding() == 0 {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
            assert_eq!(ring.outstanding(), 0);
            // Buffers reused after the drops hold what was read into them now.
            let (result, buf) = read(&ring, &file, 64 * 1024, 4096).await;
            assert_eq!(result.unwrap(), 64 * 1024);
            assert_eq!(&buf[..], &bytes[4096..4096 + 64 * 1024]);
        });
    }

    #[test]
    fn a_thread_that_starts_a_second_runtime_gets_a_new_reaper() {
        let (_dir, file, bytes) = temp_file(8192);
        for _ in 0..3 {
            tokio_uring::start(async {
                let ring = Ring::current().unwrap();
                // Awaited from a spawned task, so completion relies on the reaper's wake,
                // not on this future's own polling.
                let file = file.try_clone().unwrap();
                let (result, buf) = within_seconds(tokio_uring::spawn(async move {
                    read(&ring, &file, 4096, 4096).await
                }))
                .await
                .unwrap();
                assert_eq!(result.unwrap(), 4096);
                assert_eq!(&buf[..], &bytes[4096..]);
            });
        }
    }
}

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
use rustix::io::Errno;
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
                None | Some(Errno::INTR) => {}
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
fn enter(uring: &IoUring) -> Option<Errno> {
    match uring.submit() {
        Ok(_) => None,
        Err(e) => match Errno::from_io_error(&e) {
            Some(errno @ (Errno::INTR | Errno::BUSY | Errno::AGAIN)) => Some(errno),
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
                Err(e) if Errno::from_io_error(&e) == Some(Errno::INTR) => {}
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
#[path = "ring_tests.rs"]
mod tests;

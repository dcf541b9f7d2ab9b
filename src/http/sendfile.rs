//! With `--memory-send sendfile` (not the default: measured slower than writev on this
//! kernel, see `config`), a TCP socket that sends the memory tier's bytes with `sendfile`: hyper writes a
//! response as slices of memory; a slice that lies in the tier's memfd arena goes out as
//! `sendfile(socket, memfd, offset, len)` — the kernel attaches the arena's pages to the
//! socket buffers, as nginx's `sendfile` does from the page cache — and any other slice
//! (headers, flash reads) with `sendmsg`. The bytes are the same either way (the slice
//! *is* the mapping of those pages); only the copy into the socket is saved.
//!
//! Slices before an arena slice go with `MSG_MORE`, so a response's header and its body's
//! first bytes leave in one segment even with `TCP_NODELAY`. Why reusing an arena page is
//! safe while a socket still references it: `cache::memory_bytes`.

use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

use super::node::Node;
use crate::store::Engine;

/// A client socket that `sendfile`s the memory tier's slices.
pub struct SendfileStream<E: Engine> {
    inner: TcpStream,
    node: Arc<Node<E>>,
}

/// What the next write sends.
enum Piece {
    /// Up to this many slices from memory, with `MSG_MORE` when an arena slice follows.
    Memory { count: usize, more: bool },
    /// The first slice, from the arena: its memfd and offset.
    Arena { fd: RawFd, offset: u64 },
}

impl<E: Engine> SendfileStream<E> {
    pub fn new(inner: TcpStream, node: Arc<Node<E>>) -> SendfileStream<E> {
        SendfileStream { inner, node }
    }

    fn plan(&self, bufs: &[IoSlice<'_>]) -> Piece {
        let arena = self.node.memory().and_then(|m| m.arena());
        let locate = |b: &IoSlice<'_>| arena.and_then(|a| a.locate(b.as_ptr(), b.len()));
        if let Some((fd, offset)) = bufs.first().and_then(locate) {
            return Piece::Arena { fd, offset };
        }
        match bufs.iter().position(|b| locate(b).is_some()) {
            Some(count) => Piece::Memory { count, more: true },
            None => Piece::Memory {
                count: bufs.len(),
                more: false,
            },
        }
    }

    /// Runs `io` when the socket is writable, until it does not block.
    fn poll_io(
        &self,
        cx: &mut Context<'_>,
        mut io: impl FnMut() -> io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.inner.poll_write_ready(cx))?;
            match self.inner.try_io(Interest::WRITABLE, &mut io) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                result => return Poll::Ready(result),
            }
        }
    }
}

/// `sendmsg` of `bufs`, non-blocking, with `MSG_MORE` if `more`.
fn send(socket: RawFd, bufs: &[IoSlice<'_>], more: bool) -> io::Result<usize> {
    let mut flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
    if more {
        flags |= libc::MSG_MORE;
    }
    // SAFETY: a zeroed msghdr is valid; it points at `bufs`, which outlive the call, and
    // `IoSlice` is ABI-compatible with `iovec` on Unix.
    let sent = unsafe {
        let mut message: libc::msghdr = std::mem::zeroed();
        message.msg_iov = bufs.as_ptr() as *mut libc::iovec;
        message.msg_iovlen = bufs.len().min(1024) as _;
        libc::sendmsg(socket, &message, flags)
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(sent as usize)
}

impl<E: Engine> AsyncWrite for SendfileStream<E> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if bufs.iter().all(|b| b.is_empty()) {
            return Poll::Ready(Ok(0));
        }
        let socket = self.inner.as_raw_fd();
        match self.plan(bufs) {
            Piece::Arena { fd, offset } => {
                let len = bufs[0].len();
                self.poll_io(cx, || {
                    // SAFETY: the memfd stays open while the arena lives, and the node (so
                    // the tier and its arena) outlives this stream.
                    let file = unsafe { BorrowedFd::borrow_raw(fd) };
                    // SAFETY: the socket is open for the stream's life.
                    let out = unsafe { BorrowedFd::borrow_raw(socket) };
                    let mut at = offset;
                    rustix::fs::sendfile(out, file, Some(&mut at), len).map_err(io::Error::from)
                })
            }
            Piece::Memory { count, more } => {
                let bufs = &bufs[..count];
                self.poll_io(cx, || send(socket, bufs, more))
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<E: Engine> AsyncRead for SendfileStream<E> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

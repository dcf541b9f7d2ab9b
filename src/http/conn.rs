//! One client connection: its socket wrapped to note every read and write, and a watchdog
//! that closes it when a request's header section takes too long (slow clients, slowloris)
//! or when nothing has moved for the idle timeout (idle keep-alive, stalled transfers).
//!
//! hyper's own header timeout also runs while a keep-alive connection sits idle, so one
//! setting could not give both "10 s to send headers" and "60 s idle"; the watchdog tells
//! the two phases apart from the reads it sees. The header timeout runs from the accept
//! (a connection that never sends a byte is cut at it, not at the idle timeout), and on
//! HTTP/2 it covers the preface and the client's first SETTINGS frame. A response whose
//! body makes no progress for the send timeout has its connection cut too (PINGs and
//! other frames keep a connection from idling, but are not a response's progress).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

/// The HTTP/2 client connection preface (RFC 9113 §3.4): a connection starting with it is
/// HTTP/2, whose handshake (this, then a SETTINGS frame) must arrive within the header
/// timeout; after it, header timing is per stream and only the idle rule applies.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The length of an HTTP/2 frame header (RFC 9113 §4.1).
const H2_FRAME_HEADER_BYTES: usize = 9;

/// What the first bytes of a connection said about its protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Handshake {
    /// Still a prefix of the HTTP/2 preface (or nothing read yet).
    Unknown,
    /// HTTP/1.1: header timing per request.
    Http1,
    /// HTTP/2, done once this many bytes have been read (preface and first frame).
    Http2Until(usize),
    /// HTTP/2 with its handshake read.
    Http2,
}

/// What the watchdog knows about a connection.
pub struct ConnState {
    last_activity: Cell<Instant>,
    /// When the first byte of a request's header section arrived, until the request is
    /// dispatched.
    header_started: Cell<Option<Instant>>,
    in_flight: Cell<u32>,
    handshake: Cell<Handshake>,
    /// The first bytes read, kept until the handshake is known (at most the preface and
    /// one frame header).
    first_bytes: RefCell<Vec<u8>>,
    /// Bytes read so far, counted until the HTTP/2 handshake is done.
    read_bytes: Cell<usize>,
    /// Responses being sent: when each last made progress (hyper took a segment of its
    /// body), by a key of its own.
    sends: RefCell<HashMap<u64, Instant>>,
    next_send: Cell<u64>,
    /// A request has been read on this connection (so, idle, it is a keep-alive one).
    served: Cell<bool>,
    /// Closed to make room for a new connection.
    evicted: Cell<bool>,
    changed: Notify,
}

/// The watchdog's limits.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// From the accept (and from a keep-alive request's first byte) to its full header
    /// section; on HTTP/2, to the preface and first SETTINGS.
    pub header: Duration,
    /// Nothing read or written.
    pub idle: Duration,
    /// A response whose body makes no progress (PINGs and other frames do not count).
    pub send: Duration,
}

/// Extra idle time a connection gets while a request on it is being served: a stalled
/// request body is the handler's to answer (408 with a JSON body, after the idle timeout),
/// so the watchdog, which closes without an answer, comes only after it. It still closes a
/// connection whose client stopped reading its response.
const IN_FLIGHT_GRACE: Duration = Duration::from_secs(2);

/// Why the watchdog closed a connection (a metric label).
pub type CutReason = &'static str;

impl ConnState {
    pub fn new() -> ConnState {
        ConnState {
            last_activity: Cell::new(Instant::now()),
            // From the accept: a connection that sends nothing gets the header timeout.
            header_started: Cell::new(Some(Instant::now())),
            in_flight: Cell::new(0),
            handshake: Cell::new(Handshake::Unknown),
            first_bytes: RefCell::new(Vec::new()),
            read_bytes: Cell::new(0),
            sends: RefCell::new(HashMap::new()),
            next_send: Cell::new(0),
            served: Cell::new(false),
            evicted: Cell::new(false),
            changed: Notify::new(),
        }
    }

    fn on_read(&self, bytes: &[u8]) {
        let now = Instant::now();
        self.last_activity.set(now);
        match self.handshake.get() {
            Handshake::Http2 => return,
            Handshake::Http1 => {}
            Handshake::Unknown | Handshake::Http2Until(_) => self.follow_handshake(bytes),
        }
        match self.handshake.get() {
            Handshake::Http1 => {
                if self.in_flight.get() == 0 && self.header_started.get().is_none() {
                    self.header_started.set(Some(now));
                    self.changed.notify_one();
                }
            }
            Handshake::Http2 => {
                self.header_started.set(None);
                self.changed.notify_one();
            }
            Handshake::Unknown | Handshake::Http2Until(_) => {}
        }
    }

    /// Follows the first bytes until they show HTTP/1.1, or HTTP/2's preface and first
    /// frame (the client's SETTINGS) have been read in full.
    fn follow_handshake(&self, bytes: &[u8]) {
        let read = self.read_bytes.get() + bytes.len();
        self.read_bytes.set(read);
        if let Handshake::Http2Until(done_at) = self.handshake.get() {
            if read >= done_at {
                self.handshake.set(Handshake::Http2);
            }
            return;
        }
        let mut first = self.first_bytes.borrow_mut();
        let wanted = H2_PREFACE.len() + H2_FRAME_HEADER_BYTES;
        let take = bytes.len().min(wanted - first.len());
        first.extend_from_slice(&bytes[..take]);
        let preface_part = first.len().min(H2_PREFACE.len());
        if first[..preface_part] != H2_PREFACE[..preface_part] {
            self.handshake.set(Handshake::Http1);
        } else if first.len() == wanted {
            let header = &first[H2_PREFACE.len()..];
            let payload_bytes = (usize::from(header[0]) << 16)
                | (usize::from(header[1]) << 8)
                | usize::from(header[2]);
            let done_at = wanted + payload_bytes;
            self.handshake.set(if read >= done_at {
                Handshake::Http2
            } else {
                Handshake::Http2Until(done_at)
            });
        }
        if self.handshake.get() != Handshake::Unknown {
            *first = Vec::new();
        }
    }

    fn on_write(&self) {
        let now = Instant::now();
        self.last_activity.set(now);
        // HTTP/1.1 sends one response at a time: bytes going out are its progress, as with
        // nginx's send_timeout, so a slow but steady reader is not cut between segments.
        // On HTTP/2 they may be another stream's (or a PING's): each body counts its own.
        if self.handshake.get() == Handshake::Http1 {
            for progressed in self.sends.borrow_mut().values_mut() {
                *progressed = now;
            }
        }
    }

    /// A request's headers were parsed and it is being served.
    pub fn request_started(&self) {
        self.served.set(true);
        self.in_flight.set(self.in_flight.get() + 1);
        self.header_started.set(None);
        self.last_activity.set(Instant::now());
        self.changed.notify_one();
    }

    /// A response has been sent (or abandoned).
    pub fn request_finished(&self) {
        self.in_flight.set(self.in_flight.get().saturating_sub(1));
        self.last_activity.set(Instant::now());
        self.changed.notify_one();
    }

    /// A response is being sent: its key for [`ConnState::send_progress`] and
    /// [`ConnState::send_ended`].
    pub fn send_started(&self) -> u64 {
        let key = self.next_send.get();
        self.next_send.set(key + 1);
        self.sends.borrow_mut().insert(key, Instant::now());
        self.changed.notify_one();
        key
    }

    /// Response `key` made progress.
    pub fn send_progress(&self, key: u64) {
        if let Some(at) = self.sends.borrow_mut().get_mut(&key) {
            *at = Instant::now();
        }
    }

    /// Response `key` was sent in full or abandoned.
    pub fn send_ended(&self, key: u64) {
        self.sends.borrow_mut().remove(&key);
    }

    /// When this connection went idle after a request, if it is idle (no request being
    /// read or served): a keep-alive connection that may be closed to make room.
    pub fn idle_keep_alive_since(&self) -> Option<Instant> {
        let idle = self.served.get()
            && self.in_flight.get() == 0
            && self.header_started.get().is_none()
            && self.sends.borrow().is_empty()
            && !self.evicted.get();
        idle.then(|| self.last_activity.get())
    }

    /// Closes the connection to make room for another.
    pub fn evict(&self) {
        self.evicted.set(true);
        self.changed.notify_one();
    }

    /// Returns when the connection should be closed, and why.
    pub async fn watchdog(&self, timeouts: Timeouts) -> CutReason {
        loop {
            if self.evicted.get() {
                return "evicted_for_room";
            }
            let now = Instant::now();
            let header_deadline = self.header_started.get().map(|t| t + timeouts.header);
            let grace = if self.in_flight.get() > 0 {
                IN_FLIGHT_GRACE
            } else {
                Duration::ZERO
            };
            let idle_deadline = self.last_activity.get() + timeouts.idle + grace;
            let send_deadline = self
                .sends
                .borrow()
                .values()
                .min()
                .map(|&t| t + timeouts.send);
            if header_deadline.is_some_and(|d| d <= now) {
                return "header_timeout";
            }
            if send_deadline.is_some_and(|d| d <= now) {
                return "send_timeout";
            }
            if idle_deadline <= now {
                return "idle_timeout";
            }
            let next = [header_deadline, send_deadline]
                .into_iter()
                .flatten()
                .fold(idle_deadline, Instant::min);
            tokio::select! {
                () = tokio::time::sleep_until(next) => {}
                () = self.changed.notified() => {}
            }
        }
    }
}

/// A socket that reports its reads and writes to a [`ConnState`].
pub struct TimedStream<S> {
    inner: S,
    state: std::rc::Rc<ConnState>,
}

impl<S> TimedStream<S> {
    pub fn new(inner: S, state: std::rc::Rc<ConnState>) -> TimedStream<S> {
        TimedStream { inner, state }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for TimedStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result
            && buf.filled().len() > before
        {
            self.state.on_read(&buf.filled()[before..]);
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for TimedStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = result
            && n > 0
        {
            self.state.on_write();
        }
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = result
            && n > 0
        {
            self.state.on_write();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
#[path = "conn_tests.rs"]
mod tests;

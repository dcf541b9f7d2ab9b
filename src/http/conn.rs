//! One client connection: its socket wrapped to note every read and write, and a watchdog
//! that closes it when a request's header section takes too long (slow clients, slowloris)
//! or when nothing has moved for the idle timeout (idle keep-alive, stalled transfers).
//!
//! hyper's own header timeout also runs while a keep-alive connection sits idle, so one
//! setting could not give both "10 s to send headers" and "60 s idle"; the watchdog tells
//! the two phases apart from the reads it sees.

use std::cell::Cell;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

/// The HTTP/2 connection preface: a connection starting with it is HTTP/2, where header
/// timing is per stream and only the idle rule applies.
const H2_PREFACE_START: &[u8] = b"PRI * HTTP/2.0";

/// What the watchdog knows about a connection.
pub struct ConnState {
    last_activity: Cell<Instant>,
    /// When the first byte of a request's header section arrived, until the request is
    /// dispatched.
    header_started: Cell<Option<Instant>>,
    in_flight: Cell<u32>,
    seen_first_bytes: Cell<bool>,
    http2: Cell<bool>,
    changed: Notify,
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
            header_started: Cell::new(None),
            in_flight: Cell::new(0),
            seen_first_bytes: Cell::new(false),
            http2: Cell::new(false),
            changed: Notify::new(),
        }
    }

    fn on_read(&self, bytes: &[u8]) {
        let now = Instant::now();
        self.last_activity.set(now);
        if !self.seen_first_bytes.get() {
            self.seen_first_bytes.set(true);
            self.http2.set(bytes.starts_with(H2_PREFACE_START));
        }
        if !self.http2.get() && self.in_flight.get() == 0 && self.header_started.get().is_none() {
            self.header_started.set(Some(now));
            self.changed.notify_one();
        }
    }

    fn on_write(&self) {
        self.last_activity.set(Instant::now());
    }

    /// A request's headers were parsed and it is being served.
    pub fn request_started(&self) {
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

    /// Returns when the connection should be closed, and why.
    pub async fn watchdog(&self, header_timeout: Duration, idle_timeout: Duration) -> CutReason {
        loop {
            let now = Instant::now();
            let header_deadline = self.header_started.get().map(|t| t + header_timeout);
            let grace = if self.in_flight.get() > 0 {
                IN_FLIGHT_GRACE
            } else {
                Duration::ZERO
            };
            let idle_deadline = self.last_activity.get() + idle_timeout + grace;
            if header_deadline.is_some_and(|d| d <= now) {
                return "header_timeout";
            }
            if idle_deadline <= now {
                return "idle_timeout";
            }
            let next = header_deadline.map_or(idle_deadline, |d| d.min(idle_deadline));
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
mod tests {
    use super::*;

    fn run<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap()
            .block_on(future)
    }

    #[test]
    fn a_started_header_section_times_out_before_the_idle_timeout() {
        run(async {
            let state = ConnState::new();
            state.on_read(b"GET / HT");
            let started = Instant::now();
            let reason = state
                .watchdog(Duration::from_secs(10), Duration::from_secs(60))
                .await;
            assert_eq!(reason, "header_timeout");
            assert_eq!(started.elapsed().as_secs(), 10);
        });
    }

    #[test]
    fn an_idle_keep_alive_connection_lasts_the_idle_timeout() {
        run(async {
            let state = ConnState::new();
            state.on_read(b"GET / HTTP/1.1\r\n\r\n");
            state.request_started();
            state.request_finished();
            let started = Instant::now();
            let reason = state
                .watchdog(Duration::from_secs(10), Duration::from_secs(60))
                .await;
            assert_eq!(reason, "idle_timeout");
            assert_eq!(started.elapsed().as_secs(), 60);
        });
    }

    #[test]
    fn a_request_in_flight_leaves_the_handler_time_to_answer_a_stalled_body() {
        run(async {
            let state = ConnState::new();
            state.on_read(b"PUT /v1/chunks/x HTTP/1.1\r\n\r\n");
            state.request_started();
            let started = Instant::now();
            let reason = state
                .watchdog(Duration::from_secs(10), Duration::from_secs(60))
                .await;
            assert_eq!(reason, "idle_timeout");
            assert_eq!(started.elapsed(), Duration::from_secs(60) + IN_FLIGHT_GRACE);
        });
    }

    #[test]
    fn http2_connections_get_no_header_deadline() {
        run(async {
            let state = ConnState::new();
            state.on_read(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
            let reason = state
                .watchdog(Duration::from_secs(10), Duration::from_secs(60))
                .await;
            assert_eq!(reason, "idle_timeout");
        });
    }
}

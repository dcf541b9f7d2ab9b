//! Lingering close: a request answered before its body was read (401, 413 by
//! `Content-Length`, a body refused part-way) has the rest of its body read and thrown
//! away for a bounded time and number of bytes while the answer goes out. Closing at once
//! would leave unread bytes in the socket, and the kernel then answers with a reset that
//! destroys the answer before a client still sending (curl, most libraries) reads it.
//! nginx does the same (`lingering_close`, `lingering_time`).

use std::time::Duration;

use http_body::Body as _;
use http_body_util::BodyExt;
use hyper::body::Incoming;

/// How much of a refused body is read before the connection is let go.
#[derive(Clone, Copy, Debug)]
pub struct Linger {
    pub time: Duration,
    pub bytes: u64,
}

/// Reads and drops what remains of `body` in a task of its own on this core, up to
/// `limits`; dropping the body then lets hyper close the connection (or, if it all
/// arrived, keep it alive for the next request).
pub fn linger(mut body: Incoming, limits: Linger) {
    if body.is_end_stream() {
        return;
    }
    tokio::task::spawn_local(async move {
        let deadline = tokio::time::Instant::now() + limits.time;
        let mut drained_bytes = 0u64;
        while drained_bytes < limits.bytes {
            match tokio::time::timeout_at(deadline, body.frame()).await {
                Ok(Some(Ok(frame))) => {
                    drained_bytes += frame.data_ref().map_or(0, |data| data.len() as u64);
                }
                _ => break,
            }
        }
        crate::metrics::received(drained_bytes);
    });
}

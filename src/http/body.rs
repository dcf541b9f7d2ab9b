//! The response body: a queue of `Bytes` handed to hyper one by one — for chunk data, the
//! very buffers the store read into — and a guard that records the request's metrics and
//! frees its resources when the last byte has gone to the socket (or the client left).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};

/// A body made of segments, with an exact length.
pub struct Body {
    segments: VecDeque<Bytes>,
    remaining_bytes: u64,
    sent_bytes: u64,
    on_done: Option<Box<dyn Done>>,
}

/// Called once when a body has been sent in full, or dropped before.
pub trait Done {
    /// `sent_bytes` of the body went out; `complete` says whether all of it did.
    fn done(self: Box<Self>, sent_bytes: u64, complete: bool);

    /// hyper took another segment to send: the response is making progress.
    fn progress(&self) {}
}

impl Body {
    /// A body of these segments, in order.
    pub fn segments(segments: impl IntoIterator<Item = Bytes>) -> Body {
        let segments: VecDeque<Bytes> = segments.into_iter().filter(|s| !s.is_empty()).collect();
        let remaining_bytes = segments.iter().map(|s| s.len() as u64).sum();
        Body {
            segments,
            remaining_bytes,
            sent_bytes: 0,
            on_done: None,
        }
    }

    /// One segment.
    pub fn full(bytes: impl Into<Bytes>) -> Body {
        Body::segments([bytes.into()])
    }

    /// No bytes.
    pub fn empty() -> Body {
        Body::segments([])
    }

    /// Length in bytes.
    pub fn len_bytes(&self) -> u64 {
        self.remaining_bytes + self.sent_bytes
    }

    /// Runs `done` when the body ends (at once for an empty body, when hyper first asks).
    pub fn on_done(mut self, done: Box<dyn Done>) -> Body {
        self.on_done = Some(done);
        self
    }

    fn finish(&mut self) {
        if let Some(done) = self.on_done.take() {
            done.done(self.sent_bytes, self.remaining_bytes == 0);
        }
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.segments.pop_front() {
            Some(segment) => {
                let len = segment.len() as u64;
                self.remaining_bytes -= len;
                self.sent_bytes += len;
                if let Some(done) = &self.on_done {
                    done.progress();
                }
                Poll::Ready(Some(Ok(Frame::data(segment))))
            }
            None => {
                self.finish();
                Poll::Ready(None)
            }
        }
    }

    /// True for a body that never had bytes, and for one whose end hyper has polled. Not
    /// after the last segment is taken: hyper's HTTP/2 server would send that segment
    /// marked END_STREAM and drop the body at once — running `done`, which frees the
    /// request's budget — while the segment still waits in h2's send buffer for the
    /// client's window. Answering false makes hyper poll once more, which it does only
    /// when the stream has send capacity again (the buffered bytes have gone out); that
    /// poll ends the body (an empty END_STREAM frame) and runs `done`.
    fn is_end_stream(&self) -> bool {
        self.segments.is_empty() && (self.sent_bytes == 0 || self.on_done.is_none())
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining_bytes)
    }
}

impl Drop for Body {
    fn drop(&mut self) {
        // Runs only if the body was not read to its end: the client went away, or the
        // response was never sent (HEAD, or a failed connection).
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::rc::Rc;

    use http_body::Body as _;
    use http_body_util::BodyExt;

    use super::*;

    struct Record(Rc<Cell<Option<(u64, bool)>>>);

    impl Done for Record {
        fn done(self: Box<Self>, sent_bytes: u64, complete: bool) {
            self.0.set(Some((sent_bytes, complete)));
        }
    }

    #[test]
    fn a_body_ends_on_the_poll_after_its_last_segment_not_with_it() {
        let seen = Rc::new(Cell::new(None));
        let mut body =
            Body::full(Bytes::from_static(b"abc")).on_done(Box::new(Record(seen.clone())));
        assert!(!body.is_end_stream());
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let first = Pin::new(&mut body).poll_frame(&mut cx);
        assert!(matches!(first, Poll::Ready(Some(Ok(_)))));
        assert!(
            !body.is_end_stream(),
            "the last segment may still be in the transport's buffer"
        );
        assert_eq!(seen.get(), None, "its resources are still held");
        assert!(matches!(
            Pin::new(&mut body).poll_frame(&mut cx),
            Poll::Ready(None)
        ));
        assert!(body.is_end_stream());
        assert_eq!(seen.get(), Some((3, true)));
        assert!(Body::empty().is_end_stream(), "an empty body ends at once");
    }

    #[test]
    fn segments_stream_in_order_and_report_completion() {
        let seen = Rc::new(Cell::new(None));
        let body = Body::segments([
            Bytes::from_static(b"ab"),
            Bytes::new(),
            Bytes::from_static(b"cde"),
        ])
        .on_done(Box::new(Record(seen.clone())));
        assert_eq!(body.size_hint().exact(), Some(5));
        let collected = futures_util::FutureExt::now_or_never(body.collect())
            .unwrap()
            .unwrap()
            .to_bytes();
        assert_eq!(&collected[..], b"abcde");
        assert_eq!(seen.get(), Some((5, true)));
    }

    #[test]
    fn a_dropped_body_reports_what_was_sent() {
        let seen = Rc::new(Cell::new(None));
        let mut body = Body::segments([Bytes::from_static(b"ab"), Bytes::from_static(b"cd")])
            .on_done(Box::new(Record(seen.clone())));
        let first = futures_util::FutureExt::now_or_never(body.frame()).unwrap();
        assert!(first.is_some());
        drop(body);
        assert_eq!(seen.get(), Some((2, false)));
    }
}

//! `multipart/byteranges` bodies (RFC 9110 §14.6): each range as a part with its own
//! `Content-Type` and `Content-Range`, the data segments passed through untouched.
//!
//! ```text
//! --B\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes 0-9/100\r\n\r\n<data>
//! \r\n--B\r\n…\r\n\r\n<data>
//! \r\n--B--\r\n
//! ```

use bytes::Bytes;

use crate::range::{ByteRange, content_range};

/// The `Content-Type` of a multipart body with `boundary`.
pub fn content_type(boundary: &str) -> String {
    format!("multipart/byteranges; boundary={boundary}")
}

/// A boundary from 64 random bits: 16 hex digits after a fixed prefix. It is never checked
/// against the data: the data is ciphertext, and 64 random bits plus the prefix appearing
/// in it by chance is not a practical concern.
pub fn boundary(random: u64) -> String {
    format!("chunkd-{random:016x}")
}

/// The body's segments: the parts' heads interleaved with each range's data segments.
pub fn body(parts: Vec<(ByteRange, Vec<Bytes>)>, len_bytes: u64, boundary: &str) -> Vec<Bytes> {
    let mut segments = Vec::with_capacity(parts.len() * 3 + 1);
    for (i, (range, data)) in parts.into_iter().enumerate() {
        let separator = if i == 0 { "" } else { "\r\n" };
        let head = format!(
            "{separator}--{boundary}\r\nContent-Type: application/octet-stream\r\nContent-Range: {}\r\n\r\n",
            content_range(range, len_bytes)
        );
        segments.push(Bytes::from(head));
        segments.extend(data);
    }
    segments.push(Bytes::from(format!("\r\n--{boundary}--\r\n")));
    segments
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_follow_rfc_9110_framing() {
        let parts = vec![
            (ByteRange::new(0, 1), vec![Bytes::from_static(b"ab")]),
            (
                ByteRange::new(5, 7),
                vec![Bytes::from_static(b"f"), Bytes::from_static(b"gh")],
            ),
        ];
        let body: Vec<u8> = body(parts, 10, "B").concat();
        let expected = "--B\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes 0-1/10\r\n\r\nab\
                        \r\n--B\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes 5-7/10\r\n\r\nfgh\
                        \r\n--B--\r\n";
        assert_eq!(String::from_utf8(body).unwrap(), expected);
        assert_eq!(content_type("B"), "multipart/byteranges; boundary=B");
    }
}

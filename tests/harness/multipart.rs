//! Parsing `multipart/byteranges` bodies and checking their parts against the chunk.

/// One part of a `multipart/byteranges` body.
#[derive(Debug)]
pub struct Part {
    pub content_type: Option<String>,
    pub first: u64,
    pub last: u64,
    pub total: u64,
    pub data: Vec<u8>,
}

/// The boundary of a `multipart/byteranges; boundary=…` Content-Type.
pub fn boundary(content_type: &str) -> String {
    let (kind, params) = content_type
        .split_once(';')
        .unwrap_or_else(|| panic!("no boundary in {content_type:?}"));
    assert_eq!(kind.trim(), "multipart/byteranges", "{content_type:?}");
    params
        .split(';')
        .filter_map(|p| p.trim().split_once('='))
        .find(|(k, _)| k.eq_ignore_ascii_case("boundary"))
        .map(|(_, v)| v.trim_matches('"').to_owned())
        .unwrap_or_else(|| panic!("no boundary in {content_type:?}"))
}

/// Parses a `multipart/byteranges` body strictly (RFC 9110 §14.6, RFC 2046 §5.1): each
/// part's length is taken from its Content-Range and the delimiter must follow exactly.
pub fn parse_multipart(content_type: &str, body: &[u8]) -> Vec<Part> {
    let boundary = boundary(content_type);
    let delimiter = format!("--{boundary}");
    let mut rest = body;
    // A preamble may precede the first delimiter.
    let start = find(rest, delimiter.as_bytes()).expect("a first delimiter");
    rest = &rest[start + delimiter.len()..];
    let mut parts = Vec::new();
    loop {
        if let Some(after) = rest.strip_prefix(b"--") {
            // The close delimiter; only an optional CRLF (and epilogue) may follow.
            assert!(
                after.is_empty() || after.starts_with(b"\r\n"),
                "junk after the close delimiter"
            );
            return parts;
        }
        rest = rest.strip_prefix(b"\r\n").expect("CRLF after a delimiter");
        let head_end = find(rest, b"\r\n\r\n").expect("the end of a part's headers");
        let head = std::str::from_utf8(&rest[..head_end]).expect("ASCII part headers");
        rest = &rest[head_end + 4..];
        let mut content_type = None;
        let mut content_range = None;
        for line in head.split("\r\n") {
            let (name, value) = line.split_once(':').expect("a part header");
            match name.trim().to_ascii_lowercase().as_str() {
                "content-type" => content_type = Some(value.trim().to_owned()),
                "content-range" => content_range = Some(value.trim().to_owned()),
                other => panic!("unexpected part header {other:?}"),
            }
        }
        let content_range = content_range.expect("every part has a Content-Range");
        let (first, last, total) = parse_content_range(&content_range);
        let len = (last - first + 1) as usize;
        assert!(rest.len() >= len, "part {content_range} is cut short");
        parts.push(Part {
            content_type,
            first,
            last,
            total,
            data: rest[..len].to_vec(),
        });
        rest = &rest[len..];
        let next = format!("\r\n{delimiter}");
        rest = rest
            .strip_prefix(next.as_bytes())
            .unwrap_or_else(|| panic!("no delimiter right after part {content_range}"));
    }
}

/// `bytes a-b/len` → `(a, b, len)`.
pub fn parse_content_range(value: &str) -> (u64, u64, u64) {
    let spec = value
        .strip_prefix("bytes ")
        .unwrap_or_else(|| panic!("Content-Range {value:?}"));
    let (range, total) = spec.split_once('/').expect("a /len");
    let (first, last) = range.split_once('-').expect("a first-last");
    let parse = |s: &str| -> u64 { s.parse().unwrap_or_else(|_| panic!("{value:?}")) };
    let (first, last, total) = (parse(first), parse(last), parse(total));
    assert!(first <= last && last < total, "Content-Range {value:?}");
    (first, last, total)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Checks a multi-range answer against the chunk: every part's bytes are exactly the
/// chunk's bytes at its Content-Range, with the right total and type, the parts are in
/// order and do not overlap, and together they cover exactly the bytes of `wanted`
/// (inclusive ranges; the server may merge overlapping or adjacent ones).
pub fn check_parts(parts: &[Part], chunk: &[u8], wanted: &[(u64, u64)]) {
    let mut covered = vec![false; chunk.len()];
    let mut previous_last: Option<u64> = None;
    for part in parts {
        assert_eq!(part.total, chunk.len() as u64, "total in {part:?}");
        assert_eq!(
            part.content_type.as_deref(),
            Some("application/octet-stream")
        );
        assert!(
            part.data == chunk[part.first as usize..=part.last as usize],
            "part {}-{} differs from the chunk",
            part.first,
            part.last
        );
        if let Some(previous) = previous_last {
            assert!(part.first > previous, "parts overlap or are out of order");
        }
        previous_last = Some(part.last);
        covered[part.first as usize..=part.last as usize].fill(true);
    }
    let mut expected = vec![false; chunk.len()];
    for &(first, last) in wanted {
        expected[first as usize..=last as usize].fill(true);
    }
    assert!(
        covered == expected,
        "the parts cover other bytes than asked"
    );
}

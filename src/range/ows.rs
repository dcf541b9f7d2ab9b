//! Optional whitespace in header values (RFC 9110 §5.6.3), shared by the `Range` parser and
//! the entity-tag lists.

/// Optional whitespace (RFC 9110 §5.6.3): only space and horizontal tab. Not CR or LF,
/// which is why `<[u8]>::trim_ascii` is not used.
pub fn is_ows(byte: u8) -> bool {
    byte == b' ' || byte == b'\t'
}

/// `bytes` without leading optional whitespace.
pub fn trim_ows_start(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|&b| !is_ows(b))
        .unwrap_or(bytes.len());
    &bytes[start..]
}

/// `bytes` without leading and trailing optional whitespace.
pub fn trim_ows(bytes: &[u8]) -> &[u8] {
    let bytes = trim_ows_start(bytes);
    let end = bytes.iter().rposition(|&b| !is_ows(b)).map_or(0, |i| i + 1);
    &bytes[..end]
}

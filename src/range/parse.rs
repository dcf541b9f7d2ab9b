//! Parsing of a `Range` header value (RFC 9110 §14.1) into [`RangeSpec`]s.
//!
//! Syntax only, and no I/O: the specs are not yet checked against a length (that is
//! `resolve`). Anything that is not exactly the RFC grammar makes the whole header
//! *ignored*, which RFC 9110 §14.2 allows and api.md requires: the client then gets a
//! 200 with the whole chunk, never an error.

use super::ows::{is_ows, trim_ows};

/// The most range-specs one `Range` header may hold; with more, the header is ignored.
///
/// Why a bound: every range costs a multipart part on the way out, and a header of
/// thousands of tiny ranges is a cheap way to make the node do a lot of work for one
/// request (RFC 9110 §17.15). 64 is far above what real clients send.
pub const MAX_RANGES: usize = 64;

/// One range-spec as the client wrote it, before it meets the representation's length.
///
/// All positions are byte offsets from the start of the representation, both ends
/// inclusive, as in the RFC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeSpec {
    /// `first-last`; always `first <= last`. `last` may lie past the end (it is clamped).
    Closed {
        /// Offset of the first byte wanted.
        first: u64,
        /// Offset of the last byte wanted.
        last: u64,
    },
    /// `first-`: from `first` to the end.
    From {
        /// Offset of the first byte wanted.
        first: u64,
    },
    /// `-n`: the last `n` bytes.
    Suffix {
        /// How many bytes at the end are wanted.
        len_bytes: u64,
    },
}

/// Parses a `Range` header value such as `bytes=0-499, -500`.
///
/// `None` means *ignore the header* (send the whole body): the unit is not `bytes`
/// (compared case-insensitively), the syntax is invalid (including whitespace around the
/// `=`, a `last` below its `first`, bytes that are not ASCII), there is no range-spec at
/// all, or there are more than [`MAX_RANGES`]. A position too large for `u64` is valid
/// syntax (the grammar puts no bound on `1*DIGIT`) and is read as `u64::MAX`: no body is
/// that long, so `0-18446744073709551616` is "to the end" and a first-pos that large is
/// past the end (unsatisfiable), as RFC 9110 §14.1.1 reads them.
/// Empty list elements (`bytes=0-1,,5-6`, a leading or trailing comma) are allowed, as
/// the RFC's list syntax says. Never panics.
pub fn parse_range(value: &[u8]) -> Option<Vec<RangeSpec>> {
    // Leading and trailing OWS belongs to the field, not to the value (RFC 9110 §5.5).
    let value = trim_ows(value);
    let equals_at = value.iter().position(|&b| b == b'=')?;
    let (unit, set) = (&value[..equals_at], &value[equals_at + 1..]);
    // `ranges-specifier = range-unit "=" range-set`: no whitespace on either side of `=`.
    // A unit with trailing whitespace fails this comparison too.
    if !unit.eq_ignore_ascii_case(b"bytes") || set.first().is_some_and(|&b| is_ows(b)) {
        return None;
    }
    parse_range_set(set)
}

/// Parses `range-set = 1#range-spec`, skipping empty list elements.
fn parse_range_set(set: &[u8]) -> Option<Vec<RangeSpec>> {
    let mut specs = Vec::new();
    for element in set.split(|&b| b == b',').map(trim_ows) {
        if element.is_empty() {
            continue;
        }
        // Checked before pushing, so a huge header never grows the vector past the bound.
        if specs.len() == MAX_RANGES {
            return None;
        }
        specs.push(parse_range_spec(element)?);
    }
    // `1#`: at least one non-empty element.
    (!specs.is_empty()).then_some(specs)
}

/// Parses one `int-range` (`first-[last]`) or `suffix-range` (`-len`), no whitespace inside.
fn parse_range_spec(spec: &[u8]) -> Option<RangeSpec> {
    let dash_at = spec.iter().position(|&b| b == b'-')?;
    let (before, after) = (&spec[..dash_at], &spec[dash_at + 1..]);
    match (before.is_empty(), after.is_empty()) {
        (true, true) => None,
        (true, false) => Some(RangeSpec::Suffix {
            len_bytes: parse_digits(after)?,
        }),
        (false, true) => Some(RangeSpec::From {
            first: parse_digits(before)?,
        }),
        (false, false) => {
            let (first, last) = (parse_digits(before)?, parse_digits(after)?);
            // RFC 9110 §14.1.1: a range with last < first is invalid.
            (first <= last).then_some(RangeSpec::Closed { first, last })
        }
    }
}

/// Parses `1*DIGIT` as a `u64`, saturating at `u64::MAX` (see [`parse_range`]); `None`
/// when empty or not all digits.
///
/// Not `str::parse`, which would also take a leading `+`.
fn parse_digits(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |value, &byte| {
        let digit = u64::from(byte.checked_sub(b'0').filter(|d| *d <= 9)?);
        Some(value.saturating_mul(10).saturating_add(digit))
    })
}

//! Resolution of range-specs against a representation's length (RFC 9110 §14.1–14.2),
//! and the `Content-Range` values that describe the result.
//!
//! Pure arithmetic, no I/O. The result is what the HTTP layer needs to pick 200, 206 or
//! 416: ranges clamped to the body, sorted, and with overlapping or adjacent ones merged.

use super::parse::{RangeSpec, parse_range};

/// A non-empty run of bytes `first..=last` (both ends inclusive, as in `Content-Range`).
///
/// Invariant: `first <= last < u64::MAX`, so [`ByteRange::len_bytes`] cannot overflow.
/// Every range that [`resolve_specs`] returns keeps it, since `last < len <= u64::MAX`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteRange {
    first: u64,
    last: u64,
}

impl ByteRange {
    /// The range `first..=last`.
    ///
    /// # Panics
    /// When `first > last` or `last == u64::MAX`: no range inside a body can be like
    /// that, so such a call is a bug in the caller.
    pub fn new(first: u64, last: u64) -> Self {
        assert!(first <= last, "byte range {first}-{last} is empty");
        assert!(last < u64::MAX, "byte range ends past any u64 length");
        Self { first, last }
    }

    /// Offset of the first byte in the range.
    pub fn first(self) -> u64 {
        self.first
    }

    /// Offset of the last byte in the range (inclusive).
    pub fn last(self) -> u64 {
        self.last
    }

    /// How many bytes the range holds; at least 1.
    pub fn len_bytes(self) -> u64 {
        // Cannot overflow: `last < u64::MAX` (see the type's invariant).
        self.last - self.first + 1
    }
}

/// What to send for a request, given its `Range` header and the body's length.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// 200 with the whole body: no `Range`, one to ignore, or a satisfiable range of an
    /// empty body (see [`resolve_specs`]).
    Full,
    /// 206 with these ranges: non-empty, each inside the body, sorted by `first`, and
    /// neither overlapping nor adjacent (so one range means a single-part 206).
    Partial(Vec<ByteRange>),
    /// No range-spec is satisfiable: 416 with [`content_range_unsatisfied`].
    Unsatisfiable,
}

/// Resolves a `Range` header value (or its absence) against a body of `len_bytes`.
///
/// A header that [`parse_range`] rejects gives [`Resolution::Full`]. Never panics.
pub fn resolve_range(value: Option<&[u8]>, len_bytes: u64) -> Resolution {
    match value.and_then(parse_range) {
        None => Resolution::Full,
        Some(specs) => resolve_specs(&specs, len_bytes),
    }
}

/// Resolves parsed range-specs against a body of `len_bytes`.
///
/// Unsatisfiable specs are dropped; if none is left the answer is
/// [`Resolution::Unsatisfiable`]. The rest are clamped to the body and merged where they
/// overlap or touch (RFC 9110 §14.2 lets a server coalesce): `500-700,601-999` and
/// `500-600,601-999` both become `500-999`. An empty slice is `Unsatisfiable` too.
///
/// An empty body (`len_bytes == 0`) is the one odd case. RFC 9110 §14.1.2: "When a
/// selected representation has zero length, the only satisfiable form of range-spec in a
/// GET request is a suffix-range with a non-zero suffix-length." Yet no `Content-Range`
/// can describe zero bytes, so such a set gives [`Resolution::Full`] (a 200 with the
/// empty body; a server may always ignore `Range`, §14.2). Every other set is
/// `Unsatisfiable` (416 `bytes */0`).
pub fn resolve_specs(specs: &[RangeSpec], len_bytes: u64) -> Resolution {
    if len_bytes == 0 {
        return resolve_specs_empty_body(specs);
    }
    let mut ranges: Vec<ByteRange> = specs
        .iter()
        .filter_map(|&spec| satisfiable_range(spec, len_bytes))
        .collect();
    if ranges.is_empty() {
        return Resolution::Unsatisfiable;
    }
    ranges.sort_unstable_by_key(|range| range.first);
    Resolution::Partial(coalesce_sorted(ranges))
}

/// [`resolve_specs`] for a body of zero bytes: see there why this is not a 206.
fn resolve_specs_empty_body(specs: &[RangeSpec]) -> Resolution {
    let satisfiable =
        |spec: &RangeSpec| matches!(spec, RangeSpec::Suffix { len_bytes } if *len_bytes > 0);
    if specs.iter().any(satisfiable) {
        Resolution::Full
    } else {
        Resolution::Unsatisfiable
    }
}

/// The part of the body that `spec` selects, or `None` when it selects nothing.
///
/// Worked example, `len_bytes = 10_000` (offsets 0..=9999): `9000-20000` → `9000-9999`;
/// `-20000` → `0-9999`; `-0` → none; `10000-` → none.
fn satisfiable_range(spec: RangeSpec, len_bytes: u64) -> Option<ByteRange> {
    // An empty body has no last offset, so nothing in it can be selected (and no
    // ByteRange can describe it); `resolve_specs_empty_body` decides that case.
    let last_offset = len_bytes.checked_sub(1)?;
    match spec {
        RangeSpec::Closed { first, last } => {
            (first <= last_offset).then(|| ByteRange::new(first, last.min(last_offset)))
        }
        RangeSpec::From { first } => {
            (first <= last_offset).then(|| ByteRange::new(first, last_offset))
        }
        RangeSpec::Suffix { len_bytes: 0 } => None,
        RangeSpec::Suffix {
            len_bytes: suffix_len_bytes,
        } => Some(ByteRange::new(
            len_bytes - suffix_len_bytes.min(len_bytes),
            last_offset,
        )),
    }
}

/// Merges ranges, sorted by `first`, that overlap or touch.
fn coalesce_sorted(sorted: Vec<ByteRange>) -> Vec<ByteRange> {
    let mut merged: Vec<ByteRange> = Vec::with_capacity(sorted.len());
    for range in sorted {
        match merged.last_mut() {
            // `+ 1` cannot overflow: `last < u64::MAX` (the ByteRange invariant).
            Some(previous) if range.first <= previous.last + 1 => {
                previous.last = previous.last.max(range.last);
            }
            _ => merged.push(range),
        }
    }
    merged
}

/// The `Content-Range` value for one range of a body of `len_bytes`:
/// `bytes 0-499/10000`.
pub fn content_range(range: ByteRange, len_bytes: u64) -> String {
    debug_assert!(range.last < len_bytes, "range {range:?} outside the body");
    format!("bytes {}-{}/{len_bytes}", range.first, range.last)
}

/// The `Content-Range` value of a 416 for a body of `len_bytes`: `bytes */10000`.
pub fn content_range_unsatisfied(len_bytes: u64) -> String {
    format!("bytes */{len_bytes}")
}

//! HTTP byte ranges and conditional requests (RFC 9110 §13, §14), as pure functions.
//!
//! **Architecture invariant:** this module does no I/O, holds no state and never panics
//! on what a client sends. The HTTP layer hands in header *values* as bytes (repeated
//! header lines already joined with `", "`) and gets back a decision to act on.
//!
//! The order in which the HTTP layer asks, for `GET`/`HEAD /v1/chunks/{id}` of a chunk
//! that exists (a missing chunk is a 404 before any precondition is looked at):
//!
//! 1. [`check_preconditions`]: `If-Match`, then `If-None-Match` → 412, 304, or go on.
//! 2. For a `GET` (a `HEAD` ignores `Range`) whose `If-Range` passes
//!    ([`if_range_allows_range`]): [`resolve_range`] → the whole body, the ranges to send
//!    (206), or 416.
//! 3. [`content_range`] / [`content_range_unsatisfied`] format the `Content-Range` value.
//!
//! Files, in the order a range header travels: `parse` (bytes → [`RangeSpec`]s),
//! `resolve` (specs + length → [`Resolution`]), `conditional` (entity tags and
//! preconditions).
//!
//! ```
//! use chunkd::range::{
//!     ByteRange, Precondition, Resolution, check_preconditions, chunk_etag, content_range,
//!     if_range_allows_range, resolve_range,
//! };
//!
//! let etag = chunk_etag("ab12");
//! assert_eq!(etag, "\"ab12\"");
//! let if_none_match: &[u8] = b"W/\"ab12\"";
//! assert_eq!(
//!     check_preconditions(true, None, Some(if_none_match), &etag),
//!     Precondition::NotModified
//! );
//! assert!(if_range_allows_range(Some(b"\"ab12\""), &etag));
//!
//! let Resolution::Partial(ranges) = resolve_range(Some(b"bytes=-500"), 10_000) else {
//!     panic!("a suffix range of a 10000-byte body is satisfiable");
//! };
//! assert_eq!(ranges, [ByteRange::new(9_500, 9_999)]);
//! assert_eq!(content_range(ranges[0], 10_000), "bytes 9500-9999/10000");
//! ```

mod conditional;
mod ows;
mod parse;
mod resolve;

pub use conditional::{
    EntityTag, EntityTags, Precondition, check_preconditions, chunk_etag, if_range_allows_range,
    parse_entity_tag, parse_entity_tags,
};
pub use parse::{MAX_RANGES, RangeSpec, parse_range};
pub use resolve::{
    ByteRange, Resolution, content_range, content_range_unsatisfied, resolve_range, resolve_specs,
};

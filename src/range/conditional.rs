//! Entity tags and the conditional request headers a chunk GET honours (RFC 9110 §8.8.3,
//! §13): `If-Match`, `If-None-Match` and `If-Range`.
//!
//! Pure functions, no I/O. A chunk never changes (its id is the hash of its bytes), so its
//! one validator is the strong ETag `"{id}"`; there is no `Last-Modified`, and therefore
//! `If-Modified-Since` / `If-Unmodified-Since` are not evaluated (RFC 9110 §13.2.2 only
//! looks at them when the matching `If-*-Match` is absent, and a server without
//! modification dates cannot evaluate them).
//!
//! A malformed header is never an error; it falls to the answer that cannot hand a client
//! wrong bytes or make it keep stale ones:
//! - a malformed `If-Match` fails (412): the client asked for a guard we cannot check, so
//!   we do not act as if it passed;
//! - a malformed `If-None-Match` does not match (the full 200): at worst the client
//!   downloads bytes it already had, whereas a 304 would confirm a cache entry that we
//!   could not identify;
//! - a malformed `If-Range` ignores the `Range` (the full 200), as RFC 9110 §13.1.5 does
//!   for any validator that does not match.

use super::ows::{is_ows, trim_ows, trim_ows_start};

/// One entity tag as received: `"xyzzy"` or `W/"xyzzy"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntityTag<'a> {
    /// Whether the tag had the `W/` prefix (which is case-sensitive).
    pub weak: bool,
    /// The `opaque-tag` *with* its double quotes, e.g. `"xyzzy"`, so it compares directly
    /// with an `ETag` header value.
    pub opaque_tag: &'a [u8],
}

impl EntityTag<'_> {
    /// Strong comparison (RFC 9110 §8.8.3.2) with our `etag`, a strong `ETag` header value
    /// such as `"abc"`: true when this tag is strong too and the opaque-tags are identical.
    pub fn matches_strongly(&self, etag: &str) -> bool {
        !self.weak && self.matches_weakly(etag)
    }

    /// Weak comparison (RFC 9110 §8.8.3.2) with our `etag`, a strong `ETag` header value:
    /// true when the opaque-tags are identical, whether or not either is weak.
    pub fn matches_weakly(&self, etag: &str) -> bool {
        debug_assert!(etag.starts_with('"'), "our ETag must be strong: {etag}");
        // Should a weak `W/"…"` ETag be passed in a release build it matches nothing, so
        // If-Match gives 412, If-None-Match the full 200 and If-Range the full 200: safe.
        self.opaque_tag == etag.as_bytes()
    }
}

/// The value of an `If-Match` or `If-None-Match` header: `"*" / #entity-tag`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntityTags<'a> {
    /// `*`: any current representation.
    Any,
    /// The listed tags, in order; may be empty (the RFC list syntax allows an empty list).
    List(Vec<EntityTag<'a>>),
}

/// What a request's preconditions say to do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precondition {
    /// Go on and serve the request (then look at `Range` and `If-Range`).
    Proceed,
    /// `304 Not Modified`: the client's copy is current.
    NotModified,
    /// `412 Precondition Failed`.
    Failed,
}

/// The strong `ETag` header value of a chunk: its id in double quotes.
pub fn chunk_etag(id: &str) -> String {
    format!("\"{id}\"")
}

/// Parses an `If-Match` / `If-None-Match` value: `*`, or entity tags separated by commas
/// and optional whitespace. `None` when malformed: `*` mixed with tags, a missing quote
/// or comma, a lowercase `w/`, bytes not allowed in an entity tag. Never panics.
pub fn parse_entity_tags(value: &[u8]) -> Option<EntityTags<'_>> {
    let value = trim_ows(value);
    if value == b"*" {
        return Some(EntityTags::Any);
    }
    let mut tags = Vec::new();
    let mut rest = value;
    loop {
        // Empty list elements (`"a", , "b"`) are allowed by RFC 9110 §5.6.1.
        rest = trim_separators(rest);
        if rest.is_empty() {
            return Some(EntityTags::List(tags));
        }
        let (tag, after) = split_entity_tag(rest)?;
        tags.push(tag);
        rest = trim_ows_start(after);
        if !rest.is_empty() && rest[0] != b',' {
            return None;
        }
    }
}

/// Parses exactly one entity tag (with optional whitespace around it), as in `If-Range`.
/// `None` for anything else, e.g. an HTTP-date or a list.
pub fn parse_entity_tag(value: &[u8]) -> Option<EntityTag<'_>> {
    let (tag, rest) = split_entity_tag(trim_ows(value))?;
    rest.is_empty().then_some(tag)
}

/// Evaluates `If-Match` and `If-None-Match` in the order of RFC 9110 §13.2.2 for a
/// representation that exists and has the strong ETag `etag` (e.g. `"abc"`, quotes
/// included).
///
/// `If-Match` first: `*` or a strongly matching tag passes; anything else, including a
/// malformed value, is [`Precondition::Failed`], whatever `If-None-Match` says. Then
/// `If-None-Match`: `*` or a weakly matching tag means the client's copy is current,
/// [`Precondition::NotModified`] for GET/HEAD and [`Precondition::Failed`] for any other
/// method; a malformed value matches nothing. See the module doc for why malformed
/// values fall this way.
pub fn check_preconditions(
    is_get_or_head: bool,
    if_match: Option<&[u8]>,
    if_none_match: Option<&[u8]>,
    etag: &str,
) -> Precondition {
    if let Some(value) = if_match
        && !if_match_holds(value, etag)
    {
        return Precondition::Failed;
    }
    if let Some(value) = if_none_match
        && !if_none_match_holds(value, etag)
    {
        return if is_get_or_head {
            Precondition::NotModified
        } else {
            Precondition::Failed
        };
    }
    Precondition::Proceed
}

/// Whether a `Range` may be honoured given the request's `If-Range` (RFC 9110 §13.1.5).
///
/// True when there is no `If-Range`, or when it is one entity tag that strongly matches
/// our strong `etag`. False for another tag, a weak tag, an HTTP-date (a chunk has no
/// `Last-Modified` to compare a date with) and anything malformed: the caller then
/// ignores `Range` and sends the whole body. Only meaningful when `Range` is present;
/// RFC 9110 says to ignore `If-Range` otherwise.
pub fn if_range_allows_range(if_range: Option<&[u8]>, etag: &str) -> bool {
    match if_range {
        None => true,
        Some(value) => parse_entity_tag(value).is_some_and(|tag| tag.matches_strongly(etag)),
    }
}

/// The `If-Match` condition (RFC 9110 §13.1.1); false when malformed.
fn if_match_holds(value: &[u8], etag: &str) -> bool {
    match parse_entity_tags(value) {
        Some(EntityTags::Any) => true,
        Some(EntityTags::List(tags)) => tags.iter().any(|tag| tag.matches_strongly(etag)),
        None => false,
    }
}

/// The `If-None-Match` condition (RFC 9110 §13.1.2): true when nothing matches, which
/// includes a malformed value.
fn if_none_match_holds(value: &[u8], etag: &str) -> bool {
    match parse_entity_tags(value) {
        Some(EntityTags::Any) => false,
        Some(EntityTags::List(tags)) => !tags.iter().any(|tag| tag.matches_weakly(etag)),
        None => true,
    }
}

/// Splits one `entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE` off the front of `bytes`.
///
/// A comma is a legal `etagc`, which is why the list is not simply split at commas.
fn split_entity_tag(bytes: &[u8]) -> Option<(EntityTag<'_>, &[u8])> {
    let (weak, tagged) = match bytes.strip_prefix(b"W/") {
        Some(after_prefix) => (true, after_prefix),
        None => (false, bytes),
    };
    let inside = tagged.strip_prefix(b"\"")?;
    let close_at = inside.iter().position(|&b| b == b'"')?;
    if !inside[..close_at].iter().all(|&b| is_etagc(b)) {
        return None;
    }
    // The opaque-tag spans the opening quote, the `close_at` bytes inside, the closing quote.
    let (opaque_tag, rest) = tagged.split_at(close_at + 2);
    Some((EntityTag { weak, opaque_tag }, rest))
}

/// `etagc = %x21 / %x23-7E / obs-text`: visible ASCII but `"`, and any byte ≥ 0x80.
fn is_etagc(byte: u8) -> bool {
    byte == 0x21 || (0x23..=0x7e).contains(&byte) || byte >= 0x80
}

/// `bytes` without leading commas and optional whitespace.
fn trim_separators(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|&b| b != b',' && !is_ows(b))
        .unwrap_or(bytes.len());
    &bytes[start..]
}

//! Tests of `chunkd::range` through its public API: byte ranges (RFC 9110 §14) and
//! conditional requests (RFC 9110 §13). Data-driven tables, then properties.

use chunkd::range::{
    ByteRange, EntityTag, EntityTags, MAX_RANGES, Precondition, Resolution, check_preconditions,
    chunk_etag, content_range, content_range_unsatisfied, if_range_allows_range, parse_entity_tags,
    resolve_range,
};
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------
// Range: one table of (header, len, expected)
// ---------------------------------------------------------------------------------------

fn partial(ranges: &[(u64, u64)]) -> Resolution {
    let ranges = ranges
        .iter()
        .map(|&(first, last)| ByteRange::new(first, last));
    Resolution::Partial(ranges.collect())
}

/// `bytes=0-0,2-2,4-4,…` with `count` single-byte ranges that neither overlap nor touch.
fn spaced_ranges_header(count: u64) -> Vec<u8> {
    let specs: Vec<String> = (0..count).map(|i| format!("{0}-{0}", 2 * i)).collect();
    format!("bytes={}", specs.join(",")).into_bytes()
}

fn spaced_ranges(count: u64) -> Resolution {
    let ranges: Vec<(u64, u64)> = (0..count).map(|i| (2 * i, 2 * i)).collect();
    partial(&ranges)
}

/// The table of `Range` headers and what they resolve to: one line a case, so it reads
/// better whole than split by theme.
fn range_cases() -> Vec<(Vec<u8>, u64, Resolution)> {
    use Resolution::{Full, Unsatisfiable};
    let case = |header: &[u8], len: u64, expected: Resolution| (header.to_vec(), len, expected);
    let mut many_with_empty_elements = spaced_ranges_header(MAX_RANGES as u64);
    many_with_empty_elements.extend_from_slice(b",, ,");
    vec![
        // Every example of RFC 9110 §14.1.2, for a 10000-byte representation.
        case(b"bytes=0-499", 10_000, partial(&[(0, 499)])),
        case(b"bytes=500-999", 10_000, partial(&[(500, 999)])),
        case(b"bytes=-500", 10_000, partial(&[(9_500, 9_999)])),
        case(b"bytes=9500-", 10_000, partial(&[(9_500, 9_999)])),
        case(b"bytes=0-0,-1", 10_000, partial(&[(0, 0), (9_999, 9_999)])),
        case(b"bytes=500-600,601-999", 10_000, partial(&[(500, 999)])),
        case(b"bytes=500-700,601-999", 10_000, partial(&[(500, 999)])),
        // Optional whitespace around commas and around the whole value.
        case(b"bytes=0-1, 5-6", 100, partial(&[(0, 1), (5, 6)])),
        case(b"bytes=0-1 ,5-6", 100, partial(&[(0, 1), (5, 6)])),
        case(b"bytes=0-1 \t,\t 5-6", 100, partial(&[(0, 1), (5, 6)])),
        case(b" \tbytes=0-1 ", 100, partial(&[(0, 1)])),
        // ... but none around `=` or inside a range-spec; CR/LF are not whitespace here.
        case(b"bytes =0-1", 100, Full),
        case(b"bytes= 0-1", 100, Full),
        case(b"bytes=0 -1", 100, Full),
        case(b"bytes=0- 1", 100, Full),
        case(b"bytes=- 1", 100, Full),
        case(b"bytes=0-1\r\n", 100, Full),
        // The unit is case-insensitive; other units are ignored.
        case(b"Bytes=0-1", 100, partial(&[(0, 1)])),
        case(b"BYTES=-1", 100, partial(&[(99, 99)])),
        case(b"items=0-1", 100, Full),
        case(b"bytesx=0-1", 100, Full),
        case(b"=0-1", 100, Full),
        case(b"bytes", 100, Full),
        // Invalid syntax of many kinds: the whole header is ignored.
        case(b"", 100, Full),
        case(b"bytes=", 100, Full),
        case(b"bytes=-", 100, Full),
        case(b"bytes=5-1", 100, Full),
        case(b"bytes=abc", 100, Full),
        case(b"bytes=1", 100, Full),
        case(b"bytes=+1-2", 100, Full),
        case(b"bytes=1-+2", 100, Full),
        case(b"bytes=1-2-3", 100, Full),
        case(b"bytes=--1", 100, Full),
        case(b"bytes=0x10-20", 100, Full),
        case(b"bytes=0-1;x", 100, Full),
        case(b"bytes=0-1=2", 100, Full),
        case(b"bytes=0-1,x", 100, Full),
        case(b"bytes=0-1,5-1", 100, Full),
        // Non-UTF-8 bytes anywhere make it invalid.
        case(b"bytes=0-1\xff", 100, Full),
        case(b"bytes\xc3\xa9=0-1", 100, Full),
        case(b"\xff\xfe", 100, Full),
        // Past u64: valid syntax, read as u64::MAX (issue 11): to the end, or past it.
        case(b"bytes=0-18446744073709551615", 100, partial(&[(0, 99)])),
        case(b"bytes=18446744073709551615-", 100, Unsatisfiable),
        case(b"bytes=-18446744073709551615", 100, partial(&[(0, 99)])),
        case(b"bytes=18446744073709551616-", 100, Unsatisfiable),
        case(b"bytes=0-18446744073709551616", 100, partial(&[(0, 99)])),
        case(b"bytes=0-99999999999999999999999", 100, partial(&[(0, 99)])),
        case(b"bytes=-18446744073709551616", 100, partial(&[(0, 99)])),
        case(
            b"bytes=5-99999999999999999999999,0-2",
            100,
            partial(&[(0, 2), (5, 99)]),
        ),
        // Leading zeros are digits like any other and cannot overflow.
        case(
            b"bytes=000000000000000000000000001-0002",
            100,
            partial(&[(1, 2)]),
        ),
        // Empty list elements: leading, trailing, doubled. Only commas is no range at all.
        case(b"bytes=,0-1", 100, partial(&[(0, 1)])),
        case(b"bytes=0-1,", 100, partial(&[(0, 1)])),
        case(b"bytes=, ,0-1,,5-6, ,", 100, partial(&[(0, 1), (5, 6)])),
        case(b"bytes=,", 100, Full),
        case(b"bytes=, ,\t,", 100, Full),
        // At most MAX_RANGES (64) range-specs; empty elements do not count.
        case(&spaced_ranges_header(64), 1_000, spaced_ranges(64)),
        case(&spaced_ranges_header(65), 1_000, Full),
        case(&many_with_empty_elements, 1_000, spaced_ranges(64)),
        // Clamping to the representation.
        case(b"bytes=9000-20000", 10_000, partial(&[(9_000, 9_999)])),
        case(b"bytes=0-9999", 10_000, partial(&[(0, 9_999)])),
        case(b"bytes=9999-", 10_000, partial(&[(9_999, 9_999)])),
        case(b"bytes=-20000", 10_000, partial(&[(0, 9_999)])),
        case(b"bytes=-10000", 10_000, partial(&[(0, 9_999)])),
        case(b"bytes=-5", 1, partial(&[(0, 0)])),
        case(b"bytes=0-0", 1, partial(&[(0, 0)])),
        // Unsatisfiable specs.
        case(b"bytes=-0", 10_000, Unsatisfiable),
        case(b"bytes=10000-", 10_000, Unsatisfiable),
        case(b"bytes=10000-10001", 10_000, Unsatisfiable),
        case(b"bytes=20000-30000,-0", 10_000, Unsatisfiable),
        // An empty representation: only a non-zero suffix is satisfiable (RFC 9110
        // §14.1.2), and no 206 can describe zero bytes, so that is a 200.
        case(b"bytes=0-0", 0, Unsatisfiable),
        case(b"bytes=0-", 0, Unsatisfiable),
        case(b"bytes=-0", 0, Unsatisfiable),
        case(b"bytes=-1", 0, Full),
        case(b"bytes=0-0,-1", 0, Full),
        case(b"bytes=abc", 0, Full),
        // Unsatisfiable specs among satisfiable ones are dropped.
        case(b"bytes=20000-,0-9", 10_000, partial(&[(0, 9)])),
        case(b"bytes=-0,5-", 10_000, partial(&[(5, 9_999)])),
        // Coalescing: overlapping, adjacent, contained, duplicate; sorting.
        case(b"bytes=0-10,5-20", 100, partial(&[(0, 20)])),
        case(b"bytes=5-20,0-10", 100, partial(&[(0, 20)])),
        case(b"bytes=0-1,2-3", 100, partial(&[(0, 3)])),
        case(b"bytes=0-1,3-4", 100, partial(&[(0, 1), (3, 4)])),
        case(
            b"bytes=50-59,0-9,20-29",
            100,
            partial(&[(0, 9), (20, 29), (50, 59)]),
        ),
        case(b"bytes=0-,-1", 100, partial(&[(0, 99)])),
        case(b"bytes=10-90,20-30", 100, partial(&[(10, 90)])),
        case(b"bytes=-1,99-", 100, partial(&[(99, 99)])),
        case(b"bytes=0-0,0-0", 100, partial(&[(0, 0)])),
        case(b"bytes=90-200,95-", 100, partial(&[(90, 99)])),
        case(b"bytes=0-4,10-14,5-9", 100, partial(&[(0, 14)])),
    ]
}

#[test]
fn range_table() {
    let cases = range_cases();
    assert!(
        cases.len() >= 40,
        "the table shrank to {} cases",
        cases.len()
    );
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|(header, len, expected)| {
            let got = resolve_range(Some(header), *len);
            (got != *expected).then(|| {
                let header = String::from_utf8_lossy(header);
                format!("{header:?} len {len}: expected {expected:?}, got {got:?}")
            })
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn absent_range_header_is_full() {
    assert_eq!(resolve_range(None, 10_000), Resolution::Full);
    assert_eq!(resolve_range(None, 0), Resolution::Full);
}

#[test]
fn byte_range_len_bytes_counts_both_ends() {
    assert_eq!(ByteRange::new(0, 0).len_bytes(), 1);
    assert_eq!(ByteRange::new(500, 999).len_bytes(), 500);
    assert_eq!(ByteRange::new(0, u64::MAX - 1).len_bytes(), u64::MAX);
}

#[test]
fn content_range_values() {
    let cases = [
        (
            content_range(ByteRange::new(0, 499), 10_000),
            "bytes 0-499/10000",
        ),
        (
            content_range(ByteRange::new(9_999, 9_999), 10_000),
            "bytes 9999-9999/10000",
        ),
        (content_range_unsatisfied(10_000), "bytes */10000"),
        (content_range_unsatisfied(0), "bytes */0"),
    ];
    for (got, expected) in cases {
        assert_eq!(got, expected);
    }
}

// ---------------------------------------------------------------------------------------
// Conditionals
// ---------------------------------------------------------------------------------------

const ID: &str = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262";

/// `id` in double quotes, as a header value would carry it.
fn quoted(id: &str) -> String {
    format!("\"{id}\"")
}

#[test]
fn chunk_etag_is_the_quoted_id() {
    assert_eq!(chunk_etag(ID), quoted(ID));
}

/// One line a case of RFC 9110's conditional requests: a table reads better whole.
#[test]
fn precondition_table() {
    use Precondition::{Failed, NotModified, Proceed};
    let ours = quoted(ID);
    let weak_ours = format!("W/{ours}");
    let other = quoted("0123");
    let list_with_ours = format!("{other}, {weak_ours} ,{ours}");
    let weak_list = format!("\"x\", {weak_ours}");
    let no_comma = format!("{ours} {other}");
    let lower_weak = format!("w/{ours}");
    let star_and_tag = format!("*, {ours}");
    let unterminated = format!("\"{ID}");
    let etag = chunk_etag(ID);
    // (is GET or HEAD, If-Match, If-None-Match, expected)
    let cases: Vec<(bool, Option<&str>, Option<&str>, Precondition)> = vec![
        (true, None, None, Proceed),
        (false, None, None, Proceed),
        // If-Match: strong comparison; `*` matches the existing chunk.
        (true, Some("*"), None, Proceed),
        (true, Some(" * "), None, Proceed),
        (true, Some(&ours), None, Proceed),
        (false, Some(&ours), None, Proceed),
        (true, Some(&other), None, Failed),
        (true, Some(&weak_ours), None, Failed),
        (true, Some(&list_with_ours), None, Proceed),
        (true, Some(&weak_list), None, Failed),
        // A malformed or empty If-Match fails.
        (true, Some(ID), None, Failed),
        (true, Some(&unterminated), None, Failed),
        (true, Some(&star_and_tag), None, Failed),
        (true, Some(&no_comma), None, Failed),
        (true, Some(""), None, Failed),
        // If-None-Match: weak comparison; 304 for GET/HEAD, 412 otherwise.
        (true, None, Some(&ours), NotModified),
        (false, None, Some(&ours), Failed),
        (true, None, Some(&weak_ours), NotModified),
        (true, None, Some("*"), NotModified),
        (false, None, Some("*"), Failed),
        (true, None, Some(&other), Proceed),
        (false, None, Some(&other), Proceed),
        (true, None, Some(&weak_list), NotModified),
        (true, None, Some(&list_with_ours), NotModified),
        // A malformed If-None-Match matches nothing.
        (true, None, Some(&unterminated), Proceed),
        (true, None, Some(&lower_weak), Proceed),
        (true, None, Some(&no_comma), Proceed),
        (true, None, Some(&star_and_tag), Proceed),
        (true, None, Some(ID), Proceed),
        // Precedence (RFC 9110 §13.2.2): If-Match first, and its failure wins.
        (true, Some(&other), Some(&ours), Failed),
        (true, Some(&other), Some(&other), Failed),
        (true, Some(&ours), Some(&ours), NotModified),
        (true, Some("*"), Some("*"), NotModified),
        (true, Some(&ours), Some(&other), Proceed),
        (false, Some(&ours), Some(&ours), Failed),
    ];
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|&(get_or_head, if_match, if_none_match, expected)| {
            let got = check_preconditions(
                get_or_head,
                if_match.map(str::as_bytes),
                if_none_match.map(str::as_bytes),
                &etag,
            );
            (got != expected).then(|| {
                format!(
                    "get/head {get_or_head}, If-Match {if_match:?}, If-None-Match \
                     {if_none_match:?}: expected {expected:?}, got {got:?}"
                )
            })
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn if_range_table() {
    let ours = quoted(ID);
    let spaced = format!(" {ours}\t");
    let weak_ours = format!("W/{ours}");
    let twice = format!("{ours}, {ours}");
    let etag = chunk_etag(ID);
    let cases: Vec<(Option<&[u8]>, bool)> = vec![
        (None, true),
        (Some(ours.as_bytes()), true),
        (Some(spaced.as_bytes()), true),
        (Some(b"\"0123\""), false),
        (Some(weak_ours.as_bytes()), false),
        (Some(b"Sat, 29 Oct 1994 19:43:31 GMT"), false),
        (Some(twice.as_bytes()), false),
        (Some(ID.as_bytes()), false),
        (Some(b"*"), false),
        (Some(b""), false),
        (Some(b"\xff\"\xff"), false),
    ];
    for (if_range, expected) in cases {
        let shown = if_range.map(String::from_utf8_lossy);
        assert_eq!(
            if_range_allows_range(if_range, &etag),
            expected,
            "If-Range {shown:?}"
        );
    }
}

#[test]
fn entity_tag_list_table() {
    let tag = |weak: bool, opaque_tag: &'static [u8]| EntityTag { weak, opaque_tag };
    let list = EntityTags::List;
    let cases: Vec<(&[u8], Option<EntityTags<'static>>)> = vec![
        (b"*", Some(EntityTags::Any)),
        (b"\"a\"", Some(list(vec![tag(false, b"\"a\"")]))),
        (b"W/\"a\"", Some(list(vec![tag(true, b"\"a\"")]))),
        (b"\"\"", Some(list(vec![tag(false, b"\"\"")]))),
        // A comma inside the quotes belongs to the tag.
        (
            b"\"a,b\", W/\"c\"",
            Some(list(vec![tag(false, b"\"a,b\""), tag(true, b"\"c\"")])),
        ),
        (
            b" , \"a\" ,, \"b\" ,",
            Some(list(vec![tag(false, b"\"a\""), tag(false, b"\"b\"")])),
        ),
        // obs-text (bytes >= 0x80) is allowed inside the quotes.
        (b"\"\xff\"", Some(list(vec![tag(false, b"\"\xff\"")]))),
        (b"", Some(list(vec![]))),
        (b"\"a", None),
        (b"a", None),
        (b"w/\"a\"", None),
        (b"W/ \"a\"", None),
        (b"\"a\"\"b\"", None),
        (b"\"a\" b", None),
        (b"\"a b\"", None),
        (b"*, \"a\"", None),
        (b"**", None),
        (b"\"\x7f\"", None),
    ];
    for (value, expected) in cases {
        let shown = String::from_utf8_lossy(value);
        assert_eq!(parse_entity_tags(value), expected, "value {shown:?}");
    }
}

// ---------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------

/// Resolved ranges lie in `0..len`, are sorted, disjoint and not adjacent.
fn assert_well_formed(ranges: &[ByteRange], len: u64) -> Result<(), TestCaseError> {
    prop_assert!(!ranges.is_empty());
    for range in ranges {
        prop_assert!(
            range.first() <= range.last() && range.last() < len,
            "{range:?} len {len}"
        );
    }
    for pair in ranges.windows(2) {
        // `+ 1` cannot overflow: `last < len`.
        prop_assert!(
            pair[0].last() + 1 < pair[1].first(),
            "{pair:?} overlap or touch"
        );
    }
    Ok(())
}

/// A syntactically valid range-spec such as `5-9`, `5-` or `-5`, with numbers near `len`.
fn range_spec_text() -> impl Strategy<Value = String> {
    let offset = prop_oneof![0..300u64, Just(u64::MAX)];
    (prop::option::of(offset.clone()), prop::option::of(offset)).prop_map(|ends| match ends {
        (Some(a), Some(b)) => format!("{}-{}", a.min(b), a.max(b)),
        (Some(a), None) => format!("{a}-"),
        (None, Some(b)) => format!("-{b}"),
        (None, None) => String::new(), // an empty list element
    })
}

/// A `Range` header of up to `MAX_RANGES` specs joined by commas and random whitespace.
fn valid_range_header() -> impl Strategy<Value = String> {
    let separator = prop_oneof![Just(","), Just(", "), Just(" ,"), Just("\t,\t")];
    prop::collection::vec((range_spec_text(), separator), 1..MAX_RANGES).prop_map(|parts| {
        let body: String = parts.into_iter().map(|(spec, sep)| spec + sep).collect();
        // No whitespace right after `=`: the grammar has none there (see the table).
        format!("bytes={}", body.trim_start_matches([' ', '\t']))
    })
}

/// The half-open interval `first..end` of a body of `len` that one range-spec asks for,
/// written independently of the library: clamp naively, allow `first > end` (empty).
fn model_interval(spec: &str, len: u64) -> (u64, u64) {
    let (first, last) = spec.split_once('-').expect("the strategy writes a dash");
    match (first.parse::<u64>().ok(), last.parse::<u64>().ok()) {
        (Some(first), last) => (
            first,
            last.map_or(len, |last| last.saturating_add(1).min(len)),
        ),
        // `-0` gives `len..len`: nothing.
        (None, Some(suffix)) => (len.saturating_sub(suffix), len),
        (None, None) => unreachable!("the strategy never writes a bare dash"),
    }
}

/// The byte offsets the specs of `header` ask for, marked one byte at a time.
fn covered_offsets_model(header: &str, len: u64) -> Vec<u64> {
    let specs = header
        .trim_start_matches("bytes=")
        .split(',')
        .map(str::trim);
    let mut covered = vec![false; len as usize];
    for spec in specs.filter(|spec| !spec.is_empty()) {
        let (first, end) = model_interval(spec, len);
        for offset in first..end {
            covered[offset as usize] = true;
        }
    }
    (0..len)
        .filter(|&offset| covered[offset as usize])
        .collect()
}

fn offsets_of(ranges: &[ByteRange]) -> Vec<u64> {
    ranges.iter().flat_map(|r| r.first()..=r.last()).collect()
}

proptest! {
    #[test]
    fn resolving_arbitrary_bytes_never_panics_and_stays_in_bounds(
        header in prop::collection::vec(any::<u8>(), 0..200),
        len in prop_oneof![0..1_000u64, any::<u64>()],
    ) {
        if let Resolution::Partial(ranges) = resolve_range(Some(&header), len) {
            assert_well_formed(&ranges, len)?;
        }
    }

    #[test]
    fn resolving_near_valid_bytes_never_panics_and_stays_in_bounds(
        header in "(bytes|Bytes|items)?=?[-0-9, \t]{0,40}",
        len in prop_oneof![0..1_000u64, any::<u64>()],
    ) {
        if let Resolution::Partial(ranges) = resolve_range(Some(header.as_bytes()), len) {
            assert_well_formed(&ranges, len)?;
        }
    }

    #[test]
    fn valid_headers_select_exactly_the_requested_bytes(
        header in valid_range_header(),
        len in 0..300u64,
    ) {
        let model = covered_offsets_model(&header, len);
        match resolve_range(Some(header.as_bytes()), len) {
            Resolution::Partial(ranges) => {
                assert_well_formed(&ranges, len)?;
                prop_assert_eq!(offsets_of(&ranges), model);
            }
            Resolution::Unsatisfiable => prop_assert!(model.is_empty()),
            // Only an empty body with a non-zero suffix, or a header of empty elements.
            Resolution::Full => prop_assert!(model.is_empty()),
        }
    }

    #[test]
    fn content_range_round_trips_its_numbers(
        a in any::<u64>(),
        b in any::<u64>(),
        extra in any::<u64>(),
    ) {
        let (first, last) = (a.min(b).min(u64::MAX - 1), a.max(b).min(u64::MAX - 1));
        let len = last.saturating_add(1).saturating_add(extra % 1_000);
        let value = content_range(ByteRange::new(first, last), len);
        let (range, complete) = value
            .strip_prefix("bytes ")
            .and_then(|rest| rest.split_once('/'))
            .expect("bytes a-b/len");
        let (parsed_first, parsed_last) = range.split_once('-').expect("a-b");
        prop_assert_eq!(parsed_first.parse::<u64>().ok(), Some(first));
        prop_assert_eq!(parsed_last.parse::<u64>().ok(), Some(last));
        prop_assert_eq!(complete.parse::<u64>().ok(), Some(len));
        let unsatisfied = content_range_unsatisfied(len);
        prop_assert_eq!(unsatisfied.strip_prefix("bytes */").and_then(|n| n.parse().ok()), Some(len));
    }

    #[test]
    fn conditionals_never_panic(
        get_or_head in any::<bool>(),
        if_match in prop::option::of(prop::collection::vec(any::<u8>(), 0..80)),
        if_none_match in prop::option::of(prop::collection::vec(any::<u8>(), 0..80)),
        if_range in prop::option::of(prop::collection::vec(any::<u8>(), 0..80)),
    ) {
        let etag = chunk_etag(ID);
        let outcome = check_preconditions(
            get_or_head, if_match.as_deref(), if_none_match.as_deref(), &etag,
        );
        // A 304 never answers a method other than GET/HEAD.
        prop_assert!(get_or_head || outcome != Precondition::NotModified);
        // Only our exact strong tag (with optional whitespace) lets a Range through.
        let allowed = if_range_allows_range(if_range.as_deref(), &etag);
        let spells_our_tag = if_range.as_deref().is_none_or(|v| v.trim_ascii() == etag.as_bytes());
        prop_assert!(!allowed || spells_our_tag);
    }
}

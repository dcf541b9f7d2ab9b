//! Chunk ids: BLAKE3-256 of the stored bytes, parsed strictly as 64 lowercase hex.

use chunkd::chunk::{ChunkId, ParseIdError};

const EMPTY_BLAKE3: &str = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262";

#[test]
fn id_is_blake3_of_the_bytes() {
    assert_eq!(ChunkId::of(b"").to_string(), EMPTY_BLAKE3);
    assert_eq!(
        ChunkId::of(b"abc").to_string(),
        blake3::hash(b"abc").to_hex().as_str()
    );
}

#[test]
fn parse_accepts_exactly_64_lowercase_hex_and_formats_back() {
    let id: ChunkId = EMPTY_BLAKE3.parse().unwrap();
    assert_eq!(id, ChunkId::of(b""));
    assert_eq!(id.to_string(), EMPTY_BLAKE3);
}

#[test]
fn parse_rejects_everything_else_with_a_reason() {
    let upper = EMPTY_BLAKE3.to_uppercase();
    let with_g = format!("g{}", &EMPTY_BLAKE3[1..]);
    let with_space = format!("{} ", &EMPTY_BLAKE3[..63]);
    let non_ascii = format!("é{}", &EMPTY_BLAKE3[2..]);
    let cases: [(&str, ParseIdError); 7] = [
        ("", ParseIdError::Length { len_chars: 0 }),
        (&EMPTY_BLAKE3[..63], ParseIdError::Length { len_chars: 63 }),
        (
            &format!("{EMPTY_BLAKE3}0"),
            ParseIdError::Length { len_chars: 65 },
        ),
        (
            &upper,
            ParseIdError::NotLowercaseHex {
                position: 0,
                found: 'A',
            },
        ),
        (
            &with_g,
            ParseIdError::NotLowercaseHex {
                position: 0,
                found: 'g',
            },
        ),
        (
            &with_space,
            ParseIdError::NotLowercaseHex {
                position: 63,
                found: ' ',
            },
        ),
        // 'é' is two bytes: 64 bytes pass the length check, and the character is named.
        (
            &non_ascii,
            ParseIdError::NotLowercaseHex {
                position: 0,
                found: 'é',
            },
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(text.parse::<ChunkId>(), Err(expected.clone()), "{text:?}");
        assert!(!expected.to_string().is_empty());
    }
}

#[test]
fn verifies_detects_a_changed_byte() {
    let id = ChunkId::of(b"hello");
    assert!(id.verifies(b"hello"));
    assert!(!id.verifies(b"hellp"));
}

#[test]
fn ids_round_trip_through_json() {
    let id = ChunkId::of(b"json");
    let text = serde_json::to_string(&id).unwrap();
    assert_eq!(text, format!("\"{id}\""));
    assert_eq!(serde_json::from_str::<ChunkId>(&text).unwrap(), id);
    assert!(serde_json::from_str::<ChunkId>("\"ABC\"").is_err());
}

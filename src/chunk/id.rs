//! [`ChunkId`]: the BLAKE3-256 hash of a chunk's stored bytes, written as 64 lowercase hex
//! characters.

use std::fmt;
use std::str::FromStr;

/// The name of a chunk: BLAKE3-256 of its stored bytes (for a sealed chunk, the ciphertext
/// with its tag), so anyone holding the name can verify the bytes without any key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChunkId([u8; 32]);

/// Why a string is not a chunk id. Each variant says what a client got wrong, because the
/// HTTP layer returns it in a `400` body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseIdError {
    #[error("a chunk id is 64 hex characters, this one has {len_chars}")]
    Length { len_chars: usize },
    #[error("a chunk id is lowercase hex; character {position} is {found:?}")]
    NotLowercaseHex { position: usize, found: char },
}

impl ChunkId {
    /// Length of an id written as hex.
    pub const HEX_LEN: usize = 64;

    /// Names `bytes`: BLAKE3-256 of exactly these bytes.
    pub fn of(bytes: &[u8]) -> ChunkId {
        ChunkId(*blake3::hash(bytes).as_bytes())
    }

    /// Wraps a raw 32-byte hash.
    pub const fn from_bytes(bytes: [u8; 32]) -> ChunkId {
        ChunkId(bytes)
    }

    /// The raw 32-byte hash.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// True when `bytes` hash to this id. Constant-time comparison is not needed: the id is
    /// public, nothing secret is compared.
    pub fn verifies(&self, bytes: &[u8]) -> bool {
        ChunkId::of(bytes) == *self
    }

    /// Parses exactly 64 lowercase hex characters from bytes (an HTTP path segment).
    pub fn parse_bytes(text: &[u8]) -> Result<ChunkId, ParseIdError> {
        if text.len() != Self::HEX_LEN {
            // Count characters, not bytes, so the message matches what the client sent.
            let len_chars = String::from_utf8_lossy(text).chars().count();
            return Err(ParseIdError::Length { len_chars });
        }
        let mut id = [0u8; 32];
        let digit = |position: usize| {
            hex_digit(text[position]).ok_or_else(|| ParseIdError::NotLowercaseHex {
                // Every byte before `position` is an ASCII hex digit, so the byte position
                // is also the character position, and the character starts there.
                position,
                found: String::from_utf8_lossy(&text[position..])
                    .chars()
                    .next()
                    .unwrap_or('?'),
            })
        };
        for (i, byte) in id.iter_mut().enumerate() {
            *byte = digit(2 * i)? << 4 | digit(2 * i + 1)?;
        }
        Ok(ChunkId(id))
    }
}

fn hex_digit(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        _ => None,
    }
}

impl FromStr for ChunkId {
    type Err = ParseIdError;

    fn from_str(text: &str) -> Result<ChunkId, ParseIdError> {
        ChunkId::parse_bytes(text.as_bytes())
    }
}

impl fmt::Display for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut text = [0u8; 64];
        for (i, byte) in self.0.iter().enumerate() {
            text[2 * i] = DIGITS[usize::from(byte >> 4)];
            text[2 * i + 1] = DIGITS[usize::from(byte & 0x0f)];
        }
        // The buffer holds only ASCII hex digits, which are valid UTF-8.
        f.write_str(std::str::from_utf8(&text).expect("hex digits are ASCII"))
    }
}

impl fmt::Debug for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChunkId({self})")
    }
}

impl serde::Serialize for ChunkId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for ChunkId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<ChunkId, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

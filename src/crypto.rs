//! Convergent sealing of chunks: AES-256-GCM under a key derived from the chunk's own
//! plaintext and a salt.
//!
//! ```
//! use chunkd::chunk::ChunkId;
//! use chunkd::crypto;
//!
//! let (sealed, key) = crypto::seal(b"some image bytes".to_vec(), b"salt");
//! let id = ChunkId::of(&sealed); // the name anyone can verify without the key
//! assert!(id.verifies(&sealed));
//! assert_eq!(crypto::open(sealed, &key).unwrap(), b"some image bytes");
//! ```
//!
//! Identical plaintext under the same salt seals to identical bytes, so chunks deduplicate
//! across images without any key being shared; another salt gives unrelated bytes and so
//! another id, which bounds how many images one lost or corrupted chunk can hurt.
//!
//! The AEAD is `ring`'s AES-256-GCM rather than the `aes-gcm` crate: on the build machine
//! ring encrypts about 3–4× faster (see ARCHITECTURE.md), and its output is the same
//! standard AES-256-GCM (a test checks byte equality against `aes-gcm`).
//!
//! **Architecture invariant:** no I/O; the server never calls this module (it stores only
//! ciphertext); it is the client side of the pipeline (`chunkd pack` / `unpack`).

use std::fmt;

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};

/// Bytes of a chunk key.
pub const KEY_LEN_BYTES: usize = 32;
/// Bytes the GCM tag adds to every sealed chunk.
pub const TAG_LEN_BYTES: usize = 16;
/// Longest salt accepted. Salts are short labels (a period, a placement); a bound keeps
/// manifests small and the key derivation's input framing simple.
pub const SALT_LEN_BYTES_MAX: usize = 64;

/// BLAKE3 key-derivation context. Fixed forever: changing it changes every key and so every
/// chunk id, which would silently defeat deduplication against chunks sealed before.
const KEY_CONTEXT: &str = "chunkd 2026-11-27 convergent chunk key v1";

// One all-zero nonce for every seal. AES-GCM breaks when one key encrypts two *different*
// plaintexts under one nonce (the keystreams cancel and the GHASH key leaks). Here each key
// is derived from the plaintext itself, so a key only ever encrypts that one plaintext: the
// same (key, nonce) pair always produces the very same ciphertext, which reveals nothing the
// equal chunk ids don't already reveal. Two plaintexts share a key only on a BLAKE3
// collision.
const NONCE_BYTES: [u8; 12] = [0; 12];

/// The secret that opens one sealed chunk. Its `Debug` form is redacted so a key never ends
/// up in a log by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct ChunkKey([u8; KEY_LEN_BYTES]);

/// Why a sealed chunk could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("sealed chunk is {len_bytes} bytes, shorter than its {TAG_LEN_BYTES}-byte tag")]
    TooShort { len_bytes: usize },
    #[error("authentication tag does not match: wrong key, or the bytes were altered")]
    TagMismatch,
}

/// Why a salt was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("salt is {len_bytes} bytes, at most {SALT_LEN_BYTES_MAX} are allowed")]
pub struct SaltTooLong {
    pub len_bytes: usize,
}

impl ChunkKey {
    /// Wraps raw key bytes (read back from a manifest).
    pub const fn from_bytes(bytes: [u8; KEY_LEN_BYTES]) -> ChunkKey {
        ChunkKey(bytes)
    }

    /// The raw key bytes.
    pub const fn as_bytes(&self) -> &[u8; KEY_LEN_BYTES] {
        &self.0
    }

    fn aead(&self) -> LessSafeKey {
        // Only the key length can make this fail, and the type fixes it at 32.
        let unbound = UnboundKey::new(&AES_256_GCM, &self.0).expect("AES-256 key is 32 bytes");
        LessSafeKey::new(unbound)
    }
}

impl fmt::Debug for ChunkKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ChunkKey(<redacted>)")
    }
}

/// Checks a salt's length; call before sealing many chunks with it.
pub fn check_salt(salt: &[u8]) -> Result<(), SaltTooLong> {
    if salt.len() > SALT_LEN_BYTES_MAX {
        return Err(SaltTooLong {
            len_bytes: salt.len(),
        });
    }
    Ok(())
}

/// Derives the key of `plaintext` under `salt`: BLAKE3 in key-derivation mode over the salt
/// (length-prefixed, so `("ab", "c…")` and `("a", "bc…")` cannot collide) and the plaintext.
pub fn derive_key(plaintext: &[u8], salt: &[u8]) -> ChunkKey {
    assert!(
        salt.len() <= SALT_LEN_BYTES_MAX,
        "caller checks the salt with check_salt"
    );
    let mut hasher = blake3::Hasher::new_derive_key(KEY_CONTEXT);
    hasher.update(&(salt.len() as u64).to_le_bytes());
    hasher.update(salt);
    hasher.update(plaintext);
    ChunkKey(*hasher.finalize().as_bytes())
}

/// Seals `plaintext` in place and returns ciphertext ‖ tag with the key. The buffer is
/// taken, not borrowed, so no copy of the chunk is ever made: give it
/// [`TAG_LEN_BYTES`] of spare capacity and not even the tag reallocates.
pub fn seal(mut buffer: Vec<u8>, salt: &[u8]) -> (Vec<u8>, ChunkKey) {
    let key = derive_key(&buffer, salt);
    let tag = key
        .aead()
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(NONCE_BYTES),
            Aad::empty(),
            &mut buffer,
        )
        // ring refuses only inputs over GCM's 64 GiB limit; chunks are far smaller.
        .expect("a chunk is far below AES-GCM's length limit");
    buffer.extend_from_slice(tag.as_ref());
    (buffer, key)
}

/// Opens sealed bytes with their key, in place, checking the tag: returns the plaintext
/// (the same buffer), or an error if the key is wrong or any byte was altered.
pub fn open(mut sealed: Vec<u8>, key: &ChunkKey) -> Result<Vec<u8>, OpenError> {
    if sealed.len() < TAG_LEN_BYTES {
        return Err(OpenError::TooShort {
            len_bytes: sealed.len(),
        });
    }
    let plaintext_len = key
        .aead()
        .open_in_place(
            Nonce::assume_unique_for_key(NONCE_BYTES),
            Aad::empty(),
            &mut sealed,
        )
        .map_err(|_| OpenError::TagMismatch)?
        .len();
    sealed.truncate(plaintext_len);
    Ok(sealed)
}

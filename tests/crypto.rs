//! Convergent sealing through the public API: round trips, deduplication, salts, tamper
//! detection, and byte equality with the `aes-gcm` crate (standard AES-256-GCM).

use aes_gcm::aead::Aead;
use aes_gcm::{Aes256Gcm, KeyInit};
use chunkd::chunk::ChunkId;
use chunkd::crypto::{self, ChunkKey, OpenError, TAG_LEN_BYTES};
use proptest::prelude::*;

const MIB: usize = 1024 * 1024;

fn plaintext_strategy() -> impl Strategy<Value = Vec<u8>> {
    let len = prop_oneof![0..=MIB, (0usize..=256).prop_map(|n| n * 4096), 0usize..100];
    (len, any::<u8>()).prop_map(|(len, seed)| {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31) ^ seed)
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn seal_then_open_gives_the_plaintext_back(plaintext in plaintext_strategy(), salt in prop::collection::vec(any::<u8>(), 0..=64)) {
        let (sealed, key) = crypto::seal(plaintext.clone(), &salt);
        prop_assert_eq!(sealed.len(), plaintext.len() + TAG_LEN_BYTES);
        if plaintext.len() >= 16 {
            prop_assert_ne!(&sealed[..plaintext.len()], &plaintext[..], "the bytes are encrypted");
        }
        prop_assert_eq!(crypto::open(sealed, &key).unwrap(), plaintext);
    }

    #[test]
    fn any_flipped_bit_fails_open_and_id_check(plaintext in plaintext_strategy(), bit in any::<prop::sample::Index>()) {
        let (mut sealed, key) = crypto::seal(plaintext, b"salt");
        let id = ChunkId::of(&sealed);
        let bit = bit.index(sealed.len() * 8);
        sealed[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(!id.verifies(&sealed));
        prop_assert_eq!(crypto::open(sealed, &key), Err(OpenError::TagMismatch));
    }
}

#[test]
fn same_plaintext_and_salt_give_the_same_id() {
    let plaintext = vec![42u8; 512 * 1024];
    let (a, key_a) = crypto::seal(plaintext.clone(), b"2026-11");
    let (b, key_b) = crypto::seal(plaintext, b"2026-11");
    assert_eq!(ChunkId::of(&a), ChunkId::of(&b));
    assert_eq!(key_a, key_b);
}

#[test]
fn another_salt_gives_another_id_and_key() {
    let plaintext = vec![42u8; 4096];
    let (a, key_a) = crypto::seal(plaintext.clone(), b"2026-11");
    let (b, key_b) = crypto::seal(plaintext, b"2026-12");
    assert_ne!(ChunkId::of(&a), ChunkId::of(&b));
    assert_ne!(key_a, key_b);
    assert_eq!(
        crypto::open(a, &key_b),
        Err(OpenError::TagMismatch),
        "keys are not interchangeable"
    );
}

#[test]
fn salt_framing_keeps_salt_and_plaintext_apart() {
    // Without a length prefix, ("ab", "c") and ("a", "bc") would hash the same bytes.
    assert_ne!(
        crypto::derive_key(b"c", b"ab"),
        crypto::derive_key(b"bc", b"a")
    );
}

#[test]
fn output_is_standard_aes_256_gcm_with_a_zero_nonce() {
    let plaintext: Vec<u8> = (0..100_000u32).map(|i| (i % 241) as u8).collect();
    let (sealed, key) = crypto::seal(plaintext.clone(), b"salt");
    let reference = Aes256Gcm::new(key.as_bytes().into());
    let expected = reference
        .encrypt(&Default::default(), plaintext.as_slice())
        .unwrap();
    assert_eq!(sealed, expected);
}

#[test]
fn short_or_foreign_input_is_refused() {
    let key = ChunkKey::from_bytes([9; 32]);
    assert_eq!(
        crypto::open(vec![0; 15], &key),
        Err(OpenError::TooShort { len_bytes: 15 })
    );
    assert_eq!(crypto::open(vec![0; 16], &key), Err(OpenError::TagMismatch));
    assert!(crypto::check_salt(&[0; 65]).is_err());
    assert!(crypto::check_salt(&[0; 64]).is_ok());
}

#[test]
fn keys_never_print() {
    let (_, key) = crypto::seal(b"x".to_vec(), b"");
    assert_eq!(format!("{key:?}"), "ChunkKey(<redacted>)");
}

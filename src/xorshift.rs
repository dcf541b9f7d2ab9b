//! A seeded xorshift64 generator (Marsaglia, 2003: shifts 13, 7, 17): fast, the same on
//! every run, and not random enough for anything an attacker may predict. The benchmarks
//! pick chunks and offsets with it and make their chunk payloads from it; the HTTP layer
//! can draw multipart boundaries from it.
//!
//! **Architecture invariant:** never used for keys, nonces, salts or anything secret (those
//! come from [`crate::crypto`]); no I/O, no global state.

/// One xorshift64 stream. A zero state stays zero: seed with a non-zero value.
#[derive(Clone, Debug)]
pub struct XorShift(u64);

impl XorShift {
    /// A stream that starts from `state` (which must not be zero).
    pub const fn new(state: u64) -> XorShift {
        XorShift(state)
    }

    /// The next 64 bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// `len` bytes of the stream, eight little-endian bytes a step (the last step cut short).
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut bytes = vec![0u8; len.next_multiple_of(8)];
        for word in bytes.chunks_exact_mut(8) {
            word.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        bytes.truncate(len);
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_is_xorshift64() {
        let mut rng = XorShift::new(1);
        // 1 ^ 1<<13 = 0x2001; ^ >>7 = 0x2041; ^ <<17 = 0x4082_2041.
        assert_eq!(rng.next_u64(), 0x4082_2041);
        let bytes = XorShift::new(1).bytes(10);
        assert_eq!(bytes[..8], 0x4082_2041u64.to_le_bytes());
        assert_eq!(bytes.len(), 10);
    }
}

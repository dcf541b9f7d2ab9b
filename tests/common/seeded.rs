//! The seeded pseudo-random bytes test chunks are made of: an xorshift64 stream, cheap to
//! make and the same on every run. Shared by the store tests (`common`) and the HTTP tests
//! (`harness`, which includes this file by path).

/// `len` bytes of the xorshift64 stream that starts from `state` (made odd, so never zero):
/// eight little-endian bytes per step.
pub fn xorshift_bytes(state: u64, len: usize) -> Vec<u8> {
    let mut state = state | 1;
    let mut bytes = vec![0u8; len.next_multiple_of(8)];
    for word in bytes.chunks_exact_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        word.copy_from_slice(&state.to_le_bytes());
    }
    bytes.truncate(len);
    bytes
}

//! [`Chunker`]: cuts a byte stream into fixed 512 KiB pieces, the last one shorter, and
//! tells all-zero pieces (holes) apart so they need not be stored.

use std::io::{self, Read};

/// Size of every chunk of an image but the last, as in the paper's system: small enough
/// that a lazy loader fetches little it does not need, large enough to amortise a request.
pub const CHUNK_SIZE_BYTES: usize = 512 * 1024;

/// One piece of the input, in order. Pieces tile the input exactly: each starts where the
/// previous one ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece {
    /// Bytes that hold at least one non-zero byte.
    Data { offset_bytes: u64, bytes: Vec<u8> },
    /// A piece whose bytes are all zero: recorded, not stored.
    Hole { offset_bytes: u64, len_bytes: u64 },
}

/// Iterator over the [`Piece`]s of a reader. Yields `Err` once if the reader fails and
/// then stops.
pub struct Chunker<R> {
    reader: R,
    offset_bytes: u64,
    chunk_size_bytes: usize,
    done: bool,
}

impl<R: Read> Chunker<R> {
    /// Cuts `reader` into pieces of [`CHUNK_SIZE_BYTES`].
    pub fn new(reader: R) -> Chunker<R> {
        Chunker::with_chunk_size(reader, CHUNK_SIZE_BYTES)
    }

    /// Cuts `reader` into pieces of `chunk_size_bytes` (tests use small sizes).
    pub fn with_chunk_size(reader: R, chunk_size_bytes: usize) -> Chunker<R> {
        assert!(
            chunk_size_bytes > 0,
            "a chunk size of zero would never advance"
        );
        Chunker {
            reader,
            offset_bytes: 0,
            chunk_size_bytes,
            done: false,
        }
    }

    fn next_piece(&mut self) -> io::Result<Option<Piece>> {
        // Room for the AEAD tag, so sealing the piece in place never reallocates it.
        let mut bytes = Vec::with_capacity(self.chunk_size_bytes + crate::crypto::TAG_LEN_BYTES);
        bytes.resize(self.chunk_size_bytes, 0);
        let len_bytes = read_full(&mut self.reader, &mut bytes)?;
        if len_bytes == 0 {
            return Ok(None);
        }
        bytes.truncate(len_bytes);
        let offset_bytes = self.offset_bytes;
        self.offset_bytes += len_bytes as u64;
        if len_bytes < self.chunk_size_bytes {
            // A short read means the end of the input: the next call reads nothing.
            self.done = true;
        }
        Ok(Some(if is_all_zero(&bytes) {
            Piece::Hole {
                offset_bytes,
                len_bytes: len_bytes as u64,
            }
        } else {
            Piece::Data {
                offset_bytes,
                bytes,
            }
        }))
    }
}

impl<R: Read> Iterator for Chunker<R> {
    type Item = io::Result<Piece>;

    fn next(&mut self) -> Option<io::Result<Piece>> {
        if self.done {
            return None;
        }
        let piece = self.next_piece();
        if !matches!(piece, Ok(Some(_))) {
            self.done = true;
        }
        piece.transpose()
    }
}

/// Reads until `buf` is full or the reader is at its end; returns the bytes read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// True when every byte is zero. ORs 64-byte blocks so the compiler can vectorise the
/// inner loop while a non-zero block still ends the scan early.
pub fn is_all_zero(bytes: &[u8]) -> bool {
    let (blocks, tail) = bytes.as_chunks::<64>();
    blocks
        .iter()
        .all(|block| block.iter().fold(0, |acc, b| acc | b) == 0)
        && tail.iter().all(|&b| b == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(input: &[u8], chunk_size_bytes: usize) -> Vec<Piece> {
        Chunker::with_chunk_size(input, chunk_size_bytes)
            .map(|p| p.unwrap())
            .collect()
    }

    #[test]
    fn empty_input_has_no_pieces() {
        assert_eq!(pieces(&[], 4), vec![]);
    }

    #[test]
    fn last_piece_is_shorter_and_zero_pieces_are_holes() {
        let input = [1, 2, 3, 4, 0, 0, 0, 0, 0, 5];
        assert_eq!(
            pieces(&input, 4),
            vec![
                Piece::Data {
                    offset_bytes: 0,
                    bytes: vec![1, 2, 3, 4]
                },
                Piece::Hole {
                    offset_bytes: 4,
                    len_bytes: 4
                },
                Piece::Data {
                    offset_bytes: 8,
                    bytes: vec![0, 5]
                },
            ]
        );
    }

    #[test]
    fn trailing_short_hole_is_a_hole() {
        let input = [7, 0, 0];
        assert_eq!(
            pieces(&input, 2),
            vec![
                Piece::Data {
                    offset_bytes: 0,
                    bytes: vec![7, 0]
                },
                Piece::Hole {
                    offset_bytes: 2,
                    len_bytes: 1
                },
            ]
        );
    }

    #[test]
    fn zero_check_sees_a_late_nonzero_byte() {
        let mut bytes = vec![0u8; 1000];
        assert!(is_all_zero(&bytes));
        bytes[999] = 1;
        assert!(!is_all_zero(&bytes));
        bytes[999] = 0;
        bytes[130] = 1;
        assert!(!is_all_zero(&bytes));
    }
}

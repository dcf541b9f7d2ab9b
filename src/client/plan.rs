//! Which chunks a fetch needs and where their bytes go: pure arithmetic over the manifest.
//!
//! A byte range of the image `[offset, offset + len)` touches the chunks that overlap it;
//! each is fetched whole (its AEAD tag covers all of it, so no part can be trusted before
//! the whole has been checked) and the overlapping part of its plaintext is written at
//! `chunk offset − range offset` in the output. Holes are not fetched: the output file is
//! created at its full length and reads back zeros where nothing was written.
//!
//! Worked example, 512 KiB chunks, range offset 600,000, length 900,000 (so up to
//! 1,500,000): the second chunk (524,288..1,048,576) gives its plaintext bytes
//! 75,712..524,288 to output 0..448,576; the third (1,048,576..1,572,864) gives bytes
//! 0..451,424 to output 448,576..900,000.
//!
//! A chunk the image uses at several offsets (the same plaintext twice, so the same id) is
//! fetched once and written at each.

use std::collections::HashMap;

use super::error::ClientError;
use crate::chunk::ChunkId;
use crate::image::{ChunkEntry, Manifest};

/// The part of the image a fetch writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteRange {
    pub offset_bytes: u64,
    pub len_bytes: u64,
}

/// `--offset` and `--length` against an image of `image_len_bytes`: the whole image by
/// default, the rest of it from `offset` when only that is given. A range that reaches
/// past the end is an error, not cut short, so the output is always exactly what was
/// asked for.
pub fn resolve_range(
    image_len_bytes: u64,
    offset: Option<u64>,
    length: Option<u64>,
) -> Result<ByteRange, ClientError> {
    let offset_bytes = offset.unwrap_or(0);
    if offset_bytes > image_len_bytes {
        return Err(ClientError::Range(format!(
            "--offset {offset_bytes} is past the end of the image ({image_len_bytes} bytes)"
        )));
    }
    let len_bytes = length.unwrap_or(image_len_bytes - offset_bytes);
    match offset_bytes.checked_add(len_bytes) {
        Some(end) if end <= image_len_bytes => Ok(ByteRange {
            offset_bytes,
            len_bytes,
        }),
        _ => Err(ClientError::Range(format!(
            "--offset {offset_bytes} --length {len_bytes} reaches past the end of the image \
             ({image_len_bytes} bytes)"
        ))),
    }
}

/// Where part of one chunk's plaintext goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Piece {
    /// The chunk's offset in the image (for messages and the length check).
    pub image_offset_bytes: u64,
    /// The first plaintext byte used.
    pub from_bytes: u64,
    /// How many plaintext bytes are used.
    pub len_bytes: u64,
    /// Where they go in the output file.
    pub out_offset_bytes: u64,
}

/// One chunk to fetch and every piece of the output it fills.
#[derive(Clone, Debug)]
pub struct Fetch<'a> {
    pub entry: &'a ChunkEntry,
    pub pieces: Vec<Piece>,
}

/// The chunks that `range` needs, each once, in the order the image first uses them.
pub fn chunks_needed(manifest: &Manifest, range: ByteRange) -> Vec<Fetch<'_>> {
    let end = range.offset_bytes + range.len_bytes;
    let mut fetches: Vec<Fetch<'_>> = Vec::new();
    let mut by_id: HashMap<ChunkId, usize> = HashMap::new();
    for entry in &manifest.chunks {
        let start = entry.offset_bytes.max(range.offset_bytes);
        let stop = (entry.offset_bytes + entry.len_bytes).min(end);
        if start >= stop {
            continue;
        }
        let piece = Piece {
            image_offset_bytes: entry.offset_bytes,
            from_bytes: start - entry.offset_bytes,
            len_bytes: stop - start,
            out_offset_bytes: start - range.offset_bytes,
        };
        let at = *by_id.entry(entry.id).or_insert_with(|| {
            fetches.push(Fetch {
                entry,
                pieces: Vec::new(),
            });
            fetches.len() - 1
        });
        fetches[at].pieces.push(piece);
    }
    fetches
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::ChunkKey;
    use crate::image::Hole;

    const KIB512: u64 = 512 * 1024;

    /// An image of `pieces` 512 KiB pieces (the last `last_len` long): `Some(n)` is a
    /// chunk with id number `n`, `None` a hole.
    fn manifest(pieces: &[Option<u8>], last_len: u64) -> Manifest {
        let mut manifest = Manifest::new(b"", KIB512);
        for (i, piece) in pieces.iter().enumerate() {
            let offset_bytes = i as u64 * KIB512;
            let len_bytes = if i + 1 == pieces.len() {
                last_len
            } else {
                KIB512
            };
            match piece {
                Some(n) => manifest.chunks.push(ChunkEntry {
                    offset_bytes,
                    len_bytes,
                    id: ChunkId::from_bytes([*n; 32]),
                    key: ChunkKey::from_bytes([0; 32]),
                }),
                None => manifest.push_hole(Hole {
                    offset_bytes,
                    len_bytes,
                }),
            }
            manifest.image_len_bytes = offset_bytes + len_bytes;
        }
        manifest.validate().expect("a valid test manifest");
        manifest
    }

    /// A fetch as (id number, [(from, len, out)]).
    type Planned = (u8, Vec<(u64, u64, u64)>);

    fn plan(manifest: &Manifest, offset: u64, len: u64) -> Vec<Planned> {
        let range = ByteRange {
            offset_bytes: offset,
            len_bytes: len,
        };
        chunks_needed(manifest, range)
            .into_iter()
            .map(|f| {
                let pieces = f.pieces.iter();
                let pieces = pieces.map(|p| (p.from_bytes, p.len_bytes, p.out_offset_bytes));
                (f.entry.id.as_bytes()[0], pieces.collect())
            })
            .collect()
    }

    #[test]
    fn ranges_take_only_the_chunks_they_overlap() {
        let m = manifest(&[Some(1), Some(2), Some(3), Some(4)], 1000);
        let whole = m.image_len_bytes;
        let full = |n, at| (n, vec![(0, KIB512, at)]);
        assert_eq!(
            plan(&m, 0, whole),
            vec![
                full(1, 0),
                full(2, KIB512),
                full(3, 2 * KIB512),
                (4, vec![(0, 1000, 3 * KIB512)])
            ]
        );
        // The module doc's worked example.
        assert_eq!(
            plan(&m, 600_000, 900_000),
            vec![
                (2, vec![(75_712, 448_576, 0)]),
                (3, vec![(0, 451_424, 448_576)])
            ]
        );
        // Within one chunk; ending exactly at a chunk boundary takes nothing after it.
        assert_eq!(plan(&m, KIB512 + 10, 20), vec![(2, vec![(10, 20, 0)])]);
        assert_eq!(plan(&m, 0, KIB512), vec![full(1, 0)]);
        assert_eq!(plan(&m, KIB512, 1), vec![(2, vec![(0, 1, 0)])]);
        assert_eq!(plan(&m, whole - 1, 1), vec![(4, vec![(999, 1, 0)])]);
        assert!(plan(&m, 5, 0).is_empty());
    }

    #[test]
    fn holes_are_not_fetched_and_repeated_chunks_are_fetched_once() {
        let m = manifest(&[Some(7), None, None, Some(7), Some(8)], KIB512);
        assert_eq!(
            plan(&m, 0, m.image_len_bytes),
            vec![
                (7, vec![(0, KIB512, 0), (0, KIB512, 3 * KIB512)]),
                (8, vec![(0, KIB512, 4 * KIB512)])
            ]
        );
        assert!(plan(&m, KIB512, 2 * KIB512).is_empty());
    }

    #[test]
    fn ranges_default_to_the_rest_of_the_image_and_never_reach_past_it() {
        let ok = |o, l| {
            resolve_range(100, o, l)
                .map(|r| (r.offset_bytes, r.len_bytes))
                .ok()
        };
        assert_eq!(ok(None, None), Some((0, 100)));
        assert_eq!(ok(Some(40), None), Some((40, 60)));
        assert_eq!(ok(None, Some(10)), Some((0, 10)));
        assert_eq!(ok(Some(100), None), Some((100, 0)));
        assert_eq!(ok(Some(90), Some(10)), Some((90, 10)));
        for (offset, length) in [
            (Some(101), None),
            (Some(90), Some(11)),
            (Some(1), Some(u64::MAX)),
        ] {
            let error = resolve_range(100, offset, length).unwrap_err().to_string();
            assert!(
                error.contains("past the end of the image (100 bytes)"),
                "{error}"
            );
        }
    }
}

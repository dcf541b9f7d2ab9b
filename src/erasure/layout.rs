//! [`Scheme`] (how many data and parity shards) and [`Layout`] (the byte arithmetic of one
//! chunk's shards).
//!
//! A chunk of `len` bytes is cut into `k` data shards of `shard_len` bytes each, where
//! `shard_len = ceil(len / k)` rounded up to 4096 so that every shard can be written and read
//! with O_DIRECT. Data shard `i` holds chunk bytes `[i·shard_len, (i+1)·shard_len)`; bytes
//! past the end of the chunk are zero. Worked example, a 512 KiB chunk with k = 4:
//! `shard_len = 131072`, and the 64 KiB range `[200000, 265536)` lies in shard 1 at offsets
//! `[68928, 131072)` and in shard 2 at `[0, 3392)`; read with 4 KiB alignment those are
//! shard 1 `[65536, 131072)` and shard 2 `[0, 4096)`.

use std::ops::Range;

use super::align::SHARD_ALIGN_BYTES;
use super::shard_set::ShardSet;

/// How a chunk is split: `k` data shards and `m` parity shards; any `k` rebuild it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Scheme {
    data_shards: u8,
    parity_shards: u8,
}

/// Why a scheme was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemeError {
    #[error("an erasure scheme needs at least one data shard")]
    NoDataShards,
    #[error("an erasure scheme has at most {max} shards in all, {k} + {m} were asked for")]
    TooManyShards { k: usize, m: usize, max: usize },
    #[error("a scheme is K+M, e.g. 4+1")]
    NotKPlusM,
    #[error("K is a number")]
    KNotANumber,
    #[error("M is a number")]
    MNotANumber,
}

impl Scheme {
    /// The paper's scheme: four data stripes and one XOR parity stripe.
    pub const DEFAULT: Scheme = Scheme {
        data_shards: 4,
        parity_shards: 1,
    };

    /// `k` data shards and `m` parity shards, `k ≥ 1` and `k + m ≤ 32`.
    pub fn new(k: usize, m: usize) -> Result<Scheme, SchemeError> {
        if k == 0 {
            return Err(SchemeError::NoDataShards);
        }
        if k + m > ShardSet::CAPACITY {
            return Err(SchemeError::TooManyShards {
                k,
                m,
                max: ShardSet::CAPACITY,
            });
        }
        // Both fit in u8: their sum is at most 32.
        Ok(Scheme {
            data_shards: k as u8,
            parity_shards: m as u8,
        })
    }

    /// `k`: the number of data shards, and of shards needed to rebuild.
    pub const fn data_shards(self) -> usize {
        self.data_shards as usize
    }

    /// `m`: the number of parity shards, and of shards that may be lost.
    pub const fn parity_shards(self) -> usize {
        self.parity_shards as usize
    }

    /// `k + m`.
    pub const fn total_shards(self) -> usize {
        self.data_shards() + self.parity_shards()
    }
}

/// The text form `K+M`, e.g. `4+1` (spaces around either number are allowed).
impl std::str::FromStr for Scheme {
    type Err = SchemeError;

    fn from_str(text: &str) -> Result<Scheme, SchemeError> {
        let (k, m) = text.split_once('+').ok_or(SchemeError::NotKPlusM)?;
        let k = k.trim().parse().map_err(|_| SchemeError::KNotANumber)?;
        let m = m.trim().parse().map_err(|_| SchemeError::MNotANumber)?;
        Scheme::new(k, m)
    }
}

/// Written `K+M`, as [`Scheme::from_str`](std::str::FromStr) reads it.
impl std::fmt::Display for Scheme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}+{}", self.data_shards, self.parity_shards)
    }
}

/// The shard arithmetic of one chunk of a given length under a given scheme.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Layout {
    scheme: Scheme,
    chunk_len_bytes: u64,
    shard_len_bytes: usize,
}

/// Where some bytes of a chunk live in one data shard.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ShardSpan {
    /// Data shard index, `0..k`.
    pub shard: usize,
    /// Offset of the bytes within the shard.
    pub shard_offset_bytes: usize,
    /// Number of bytes.
    pub len_bytes: usize,
    /// Offset of the same bytes within the chunk.
    pub chunk_offset_bytes: u64,
}

impl ShardSpan {
    /// The span widened to [`SHARD_ALIGN_BYTES`] boundaries: the shard bytes an O_DIRECT read
    /// must fetch. Never past the shard's end, because shard lengths are aligned too.
    pub fn aligned(&self) -> Range<usize> {
        let start = self.shard_offset_bytes / SHARD_ALIGN_BYTES * SHARD_ALIGN_BYTES;
        let end = (self.shard_offset_bytes + self.len_bytes).next_multiple_of(SHARD_ALIGN_BYTES);
        start..end
    }
}

impl Layout {
    /// The layout of a chunk of `chunk_len_bytes` under `scheme`.
    pub fn new(scheme: Scheme, chunk_len_bytes: u64) -> Layout {
        let per_shard = chunk_len_bytes.div_ceil(scheme.data_shards() as u64);
        let shard_len_bytes = usize::try_from(per_shard)
            .expect("chunk lengths are bounded far below usize::MAX")
            .next_multiple_of(SHARD_ALIGN_BYTES);
        Layout {
            scheme,
            chunk_len_bytes,
            shard_len_bytes,
        }
    }

    /// The scheme.
    pub const fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// Length of the chunk.
    pub const fn chunk_len_bytes(&self) -> u64 {
        self.chunk_len_bytes
    }

    /// Length of every shard, data and parity alike: a multiple of 4096, 0 for an empty chunk.
    pub const fn shard_len_bytes(&self) -> usize {
        self.shard_len_bytes
    }

    /// Length of the data shards laid end to end: the chunk plus zero padding.
    pub const fn padded_len_bytes(&self) -> usize {
        self.shard_len_bytes * self.scheme.data_shards()
    }

    /// The chunk bytes that data shard `shard` holds (empty for a shard wholly past the end).
    pub fn chunk_bytes_of(&self, shard: usize) -> Range<u64> {
        assert!(
            shard < self.scheme.data_shards(),
            "only data shards hold chunk bytes"
        );
        let start = (shard * self.shard_len_bytes) as u64;
        let end = start + self.shard_len_bytes as u64;
        start.min(self.chunk_len_bytes)..end.min(self.chunk_len_bytes)
    }

    /// The data-shard spans that hold chunk bytes `range`, in chunk order. `range` must lie
    /// within the chunk. A range inside one shard yields one span; no shard it does not
    /// touch appears.
    pub fn spans(&self, range: Range<u64>) -> impl Iterator<Item = ShardSpan> + use<> {
        assert!(
            range.start <= range.end && range.end <= self.chunk_len_bytes,
            "range {range:?} outside a chunk of {} bytes",
            self.chunk_len_bytes
        );
        let shard_len = self.shard_len_bytes as u64;
        let mut next = range.start;
        std::iter::from_fn(move || {
            if next >= range.end {
                return None;
            }
            let shard = next / shard_len;
            let shard_end = (shard + 1) * shard_len;
            let end = shard_end.min(range.end);
            let span = ShardSpan {
                shard: shard as usize,
                shard_offset_bytes: (next - shard * shard_len) as usize,
                len_bytes: (end - next) as usize,
                chunk_offset_bytes: next,
            };
            next = end;
            Some(span)
        })
    }

    /// Cuts `chunk` into zero-padded data shards (allocating; the store uses one padded
    /// buffer instead).
    pub fn split(&self, chunk: &[u8]) -> Vec<Vec<u8>> {
        assert_eq!(
            chunk.len() as u64,
            self.chunk_len_bytes,
            "chunk length differs from layout"
        );
        (0..self.scheme.data_shards())
            .map(|shard| {
                let bytes = self.chunk_bytes_of(shard);
                let mut data = vec![0u8; self.shard_len_bytes];
                data[..(bytes.end - bytes.start) as usize]
                    .copy_from_slice(&chunk[bytes.start as usize..bytes.end as usize]);
                data
            })
            .collect()
    }

    /// Joins the first `k` shards of `shards` back into the chunk, dropping the padding.
    pub fn join<S: AsRef<[u8]>>(&self, shards: &[S]) -> Vec<u8> {
        let mut chunk = Vec::with_capacity(self.chunk_len_bytes as usize);
        for (shard, data) in shards.iter().take(self.scheme.data_shards()).enumerate() {
            let bytes = self.chunk_bytes_of(shard);
            chunk.extend_from_slice(&data.as_ref()[..(bytes.end - bytes.start) as usize]);
        }
        chunk
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(len: u64) -> Layout {
        Layout::new(Scheme::DEFAULT, len)
    }

    #[test]
    fn schemes_parse_from_and_print_as_k_plus_m() {
        let cases: [(&str, Result<Scheme, SchemeError>); 7] = [
            ("4+1", Ok(Scheme::DEFAULT)),
            (" 10 + 4 ", Scheme::new(10, 4)),
            ("4", Err(SchemeError::NotKPlusM)),
            ("x+1", Err(SchemeError::KNotANumber)),
            ("4+", Err(SchemeError::MNotANumber)),
            ("0+1", Err(SchemeError::NoDataShards)),
            (
                "30+3",
                Err(SchemeError::TooManyShards {
                    k: 30,
                    m: 3,
                    max: 32,
                }),
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(text.parse::<Scheme>(), expected, "{text:?}");
        }
        assert_eq!(Scheme::new(10, 4).unwrap().to_string(), "10+4");
        assert_eq!(
            "4".parse::<Scheme>().unwrap_err().to_string(),
            "a scheme is K+M, e.g. 4+1"
        );
    }

    #[test]
    fn shard_length_is_quarter_rounded_to_4096() {
        for (len, shard_len) in [
            (0, 0),
            (1, 4096),
            (16384, 4096),
            (16385, 8192),
            (524288, 131072),
        ] {
            assert_eq!(layout(len).shard_len_bytes(), shard_len, "len {len}");
        }
    }

    #[test]
    fn worked_example_in_module_doc() {
        let spans: Vec<_> = layout(524288).spans(200000..265536).collect();
        assert_eq!(
            spans,
            vec![
                ShardSpan {
                    shard: 1,
                    shard_offset_bytes: 68928,
                    len_bytes: 62144,
                    chunk_offset_bytes: 200000
                },
                ShardSpan {
                    shard: 2,
                    shard_offset_bytes: 0,
                    len_bytes: 3392,
                    chunk_offset_bytes: 262144
                },
            ]
        );
        assert_eq!(spans[0].aligned(), 65536..131072);
        assert_eq!(spans[1].aligned(), 0..4096);
    }

    #[test]
    fn range_inside_one_shard_touches_only_that_shard() {
        let spans: Vec<_> = layout(524288).spans(131072..196608).collect();
        assert_eq!(spans.len(), 1);
        assert_eq!(spans[0].shard, 1);
        assert_eq!(spans[0].aligned(), 0..65536);
    }

    #[test]
    fn empty_range_has_no_spans() {
        assert_eq!(layout(100).spans(50..50).count(), 0);
    }

    #[test]
    fn schemes_are_bounded() {
        assert_eq!(Scheme::new(0, 1), Err(SchemeError::NoDataShards));
        assert!(matches!(
            Scheme::new(30, 3),
            Err(SchemeError::TooManyShards { .. })
        ));
        assert!(Scheme::new(30, 2).is_ok());
    }
}

//! Request traces: reading and writing the text format `chunkd sim --trace` takes.
//!
//! One request a line, `ID [SIZE]`: ID any token (a chunk id, a path, a number), SIZE the
//! bytes requested (default [`DEFAULT_SIZE_BYTES`], a whole chunk). Blank lines are
//! skipped, and so are comments: a line whose first token is `#` alone (`# text`) — an ID
//! may itself start with `#` (`#abc 100` is a request). IDs are numbered densely in order of first appearance,
//! so two tokens are one key exactly when they are equal.

use std::collections::HashMap;
use std::io::{BufRead, Write};

use crate::sim::error::SimError;

/// The size of a request whose line gives none: one 512 KiB chunk.
pub const DEFAULT_SIZE_BYTES: u32 = 512 * 1024;

/// One request: a key and the bytes it asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    pub key: u64,
    pub size: u32,
}

/// Reads a trace. A bad line is an error naming its number (from 1).
pub fn read(input: impl BufRead) -> Result<Vec<Request>, SimError> {
    let mut keys: HashMap<String, u64> = HashMap::new();
    let mut requests = Vec::new();
    for (index, line) in input.lines().enumerate() {
        let line_number = index + 1;
        let line = line.map_err(|cause| SimError::ReadTrace { line_number, cause })?;
        let text = line.trim();
        if text.is_empty() || text.split_whitespace().next() == Some("#") {
            continue;
        }
        let bad = |why: String| SimError::BadLine {
            line_number,
            text: text.to_string(),
            why,
        };
        let mut fields = text.split_whitespace();
        let id = fields.next().expect("a non-blank line has a field");
        let size = match fields.next() {
            None => DEFAULT_SIZE_BYTES,
            Some(size) => match size.parse::<u32>() {
                Ok(0) => return Err(bad("the size is 0".into())),
                Ok(size) => size,
                Err(_) => return Err(bad(format!("{size:?} is not a size in bytes"))),
            },
        };
        if let Some(extra) = fields.next() {
            return Err(bad(format!("unexpected {extra:?} after ID SIZE")));
        }
        let next = keys.len() as u64;
        let key = *keys.entry(id.to_string()).or_insert(next);
        requests.push(Request { key, size });
    }
    Ok(requests)
}

/// Numbers keys densely in order of first appearance, as [`read`] does, so a trace written
/// and read back is the same requests (chunkd's ghost hashes keys: other numbers would
/// move its rare fingerprint collisions).
pub fn renumber(requests: &mut [Request]) {
    let mut keys: hashbrown::HashMap<u64, u64> = hashbrown::HashMap::new();
    for request in requests {
        let next = keys.len() as u64;
        request.key = *keys.entry(request.key).or_insert(next);
    }
}

/// Writes a trace that [`read`] reads back as the same requests (keys as decimal IDs).
pub fn write(requests: &[Request], mut output: impl Write) -> std::io::Result<()> {
    for request in requests {
        writeln!(output, "{} {}", request.key, request.size)?;
    }
    output.flush()
}

/// The bytes of the distinct keys in a trace (each key's first size): its working set.
pub fn distinct_bytes(requests: &[Request]) -> u64 {
    let mut seen = hashbrown::HashSet::new();
    requests
        .iter()
        .filter(|r| seen.insert(r.key))
        .map(|r| u64::from(r.size))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_ids_with_optional_sizes() {
        let text = "# a comment\n\nalpha 100\nbeta\n  alpha 7  \n#\n#gamma 5\n";
        let requests = read(text.as_bytes()).unwrap();
        assert_eq!(
            requests,
            [
                Request { key: 0, size: 100 },
                Request {
                    key: 1,
                    size: DEFAULT_SIZE_BYTES
                },
                Request { key: 0, size: 7 },
                Request { key: 2, size: 5 },
            ]
        );
        assert_eq!(
            distinct_bytes(&requests),
            100 + u64::from(DEFAULT_SIZE_BYTES) + 5
        );
    }

    #[test]
    fn a_bad_line_names_its_number() {
        let error = read("a 1\nb lots\n".as_bytes()).unwrap_err();
        assert_eq!(
            error.to_string(),
            r#"trace line 2 "b lots": "lots" is not a size in bytes"#
        );
        assert!(read("a 1 2\n".as_bytes()).is_err());
        assert!(read("a 0\n".as_bytes()).is_err());
    }

    #[test]
    fn a_written_trace_reads_back() {
        let requests = vec![Request { key: 5, size: 9 }, Request { key: 7, size: 1 }];
        let mut text = Vec::new();
        write(&requests, &mut text).unwrap();
        let back = read(text.as_slice()).unwrap();
        // Keys are renumbered densely; the pattern is the same.
        let mut renumbered = requests.clone();
        renumber(&mut renumbered);
        assert_eq!(
            renumbered,
            [Request { key: 0, size: 9 }, Request { key: 1, size: 1 }]
        );
        assert_eq!(back, renumbered);
    }
}

//! [`DeviceSpec`]: a device as configured (`PATH[:SIZE]`), and [`parse_size`] for sizes
//! with binary units.
//!
//! **Architecture invariant:** parsing only; no I/O.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// Size of a new file-backed device when none is given.
pub const DEFAULT_DEVICE_SIZE_BYTES: u64 = 1 << 30;

/// A device as configured: `PATH[:SIZE]`, e.g. `/dev/nvme0n1` or `data/dev0:4G`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceSpec {
    pub path: PathBuf,
    /// For a file: its size when created (or grown to). Block devices have their own size.
    pub size_bytes: Option<u64>,
}

impl FromStr for DeviceSpec {
    type Err = String;

    fn from_str(text: &str) -> Result<DeviceSpec, String> {
        if text.is_empty() {
            return Err("empty device path".into());
        }
        // A path may itself contain ':', so only a suffix that parses as a size is one.
        if let Some((path, size)) = text.rsplit_once(':')
            && let Ok(size_bytes) = parse_size(size)
        {
            if path.is_empty() {
                return Err(format!("{text:?}: no path before the size"));
            }
            return Ok(DeviceSpec {
                path: path.into(),
                size_bytes: Some(size_bytes),
            });
        }
        Ok(DeviceSpec {
            path: text.into(),
            size_bytes: None,
        })
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        match self.size_bytes {
            Some(size) => write!(f, ":{size}"),
            None => Ok(()),
        }
    }
}

/// Parses `4096`, `64K`, `512M`, `1G`, `2T` (binary units; `KiB`/`MiB`/… also accepted).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(digits_end);
    let value: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a size"))?;
    let shift = match unit.trim_end_matches("iB").trim_end_matches('B') {
        "" => 0,
        "K" | "k" => 10,
        "M" | "m" => 20,
        "G" | "g" => 30,
        "T" | "t" => 40,
        _ => return Err(format!("{text:?}: unknown size unit {unit:?}")),
    };
    value
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("{text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_paths_and_sizes() {
        let cases: [(&str, Result<DeviceSpec, ()>); 7] = [
            (
                "/dev/nvme0n1",
                Ok(DeviceSpec {
                    path: "/dev/nvme0n1".into(),
                    size_bytes: None,
                }),
            ),
            (
                "d/dev0:1G",
                Ok(DeviceSpec {
                    path: "d/dev0".into(),
                    size_bytes: Some(1 << 30),
                }),
            ),
            (
                "d/dev0:64MiB",
                Ok(DeviceSpec {
                    path: "d/dev0".into(),
                    size_bytes: Some(64 << 20),
                }),
            ),
            (
                "d/dev0:4096",
                Ok(DeviceSpec {
                    path: "d/dev0".into(),
                    size_bytes: Some(4096),
                }),
            ),
            (
                "a:b/dev0",
                Ok(DeviceSpec {
                    path: "a:b/dev0".into(),
                    size_bytes: None,
                }),
            ),
            (":1G", Err(())),
            ("", Err(())),
        ];
        for (text, expected) in cases {
            assert_eq!(
                text.parse::<DeviceSpec>().map_err(|_| ()),
                expected,
                "{text}"
            );
        }
    }

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_size("512K"), Ok(512 << 10));
        assert_eq!(parse_size("2T"), Ok(2 << 40));
        assert_eq!(parse_size("3GB"), Ok(3 << 30));
        assert!(parse_size("1X").is_err());
        assert!(parse_size("99999999999999T").is_err());
    }
}

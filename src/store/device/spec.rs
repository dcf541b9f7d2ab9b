//! [`DeviceSpec`]: a device as configured (`PATH[:SIZE]`, the size read by
//! [`crate::units::parse_size`]).
//!
//! **Architecture invariant:** parsing only; no I/O.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::units::parse_size;

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
}

//! [`DeviceSpec`]: a device as configured (`PATH[:SIZE]`, the size read by
//! [`crate::units::parse_size`]).
//!
//! The rule for `:`: the text after the last `:` is a size unless it contains a `/`, so a
//! `:` in a directory name needs nothing (`a:b/dev0`), and a typo in a size is an error
//! rather than a file name (`dev0:zz`, `dev0:4Q`). A path with `:` in its *file name* is
//! given with an explicit size after it (`x:zz:1G`; a block device ignores the size, so
//! `/dev/disk/by-path/pci-0000:00:1f.2:0` names that device).
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
        // A ':' in a directory name is part of the path; after the last one in the file
        // name comes a size (the module doc gives the rule).
        if let Some((path, size)) = text.rsplit_once(':')
            && !size.contains('/')
        {
            let size_bytes = parse_size(size).map_err(|e| {
                format!(
                    "device {text}: {e} (a path with ':' in its file name takes an explicit size after it, e.g. {text}:1G)"
                )
            })?;
            if path.is_empty() {
                return Err(format!("device {text}: no path before the size"));
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
        let cases: [(&str, Result<DeviceSpec, ()>); 12] = [
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
            (
                "/tmp/x:zz:1G",
                Ok(DeviceSpec {
                    path: "/tmp/x:zz".into(),
                    size_bytes: Some(1 << 30),
                }),
            ),
            ("/tmp/x:zz", Err(())),
            ("/tmp/x:4Q", Err(())),
            ("/tmp/x:1G5", Err(())),
            ("/tmp/x:", Err(())),
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

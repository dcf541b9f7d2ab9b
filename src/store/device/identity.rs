//! Which configured devices are the same device: the same path, two paths to one file
//! (hard or symbolic links), or two nodes of one block device.
//!
//! **Architecture invariant:** reads file metadata only; opens nothing.

use std::path::{Path, PathBuf};

use super::spec::DeviceSpec;

/// What makes two configured devices the same device.
#[derive(PartialEq, Eq)]
enum DeviceIdentity {
    /// A block device: its device number.
    Block(u64),
    /// An existing file: its file system and inode.
    File { dev: u64, ino: u64 },
    /// A file not created yet: its absolute path.
    Missing(PathBuf),
}

fn identity(path: &Path) -> DeviceIdentity {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    match std::fs::metadata(path) {
        Ok(m) if m.file_type().is_block_device() => DeviceIdentity::Block(m.rdev()),
        Ok(m) => DeviceIdentity::File {
            dev: m.dev(),
            ino: m.ino(),
        },
        Err(_) => DeviceIdentity::Missing(
            std::path::absolute(path)
                .unwrap_or_else(|_| path.to_path_buf())
                .components()
                .collect(),
        ),
    }
}

/// The positions of the first two of `devices` that are one device, if any.
pub fn first_duplicate(devices: &[DeviceSpec]) -> Option<(usize, usize)> {
    let identities: Vec<DeviceIdentity> = devices.iter().map(|d| identity(&d.path)).collect();
    (0..identities.len()).find_map(|second| {
        (0..second)
            .find(|&first| identities[first] == identities[second])
            .map(|first| (first, second))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(path: &Path) -> DeviceSpec {
        DeviceSpec {
            path: path.to_path_buf(),
            size_bytes: None,
        }
    }

    #[test]
    fn the_same_file_by_any_name_is_one_device() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        std::fs::write(&a, b"x").unwrap();
        std::fs::hard_link(&a, dir.path().join("hard")).unwrap();
        std::os::unix::fs::symlink(&a, dir.path().join("soft")).unwrap();
        std::fs::write(dir.path().join("b"), b"x").unwrap();
        let specs = |names: &[&str]| -> Vec<DeviceSpec> {
            names.iter().map(|n| spec(&dir.path().join(n))).collect()
        };
        assert_eq!(first_duplicate(&specs(&["a", "b", "new"])), None);
        assert_eq!(first_duplicate(&specs(&["a", "b", "a"])), Some((0, 2)));
        assert_eq!(first_duplicate(&specs(&["b", "a", "hard"])), Some((1, 2)));
        assert_eq!(first_duplicate(&specs(&["soft", "b", "a"])), Some((0, 2)));
        assert_eq!(first_duplicate(&specs(&["new", "./new"])), Some((0, 1)));
    }
}

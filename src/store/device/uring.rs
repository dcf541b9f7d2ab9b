//! The io_uring engine: devices opened with O_DIRECT and driven through tokio-uring, one
//! ring per core. Never the page cache: every data byte moves between the device and an
//! aligned buffer of ours.
//!
//! File-backed devices are preallocated with `fallocate` when created, because on ext4 an
//! O_DIRECT write into a hole is punted to a worker thread, while a write into allocated
//! space is submitted directly.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::{DEFAULT_DEVICE_SIZE_BYTES, Device, DeviceHandle, DeviceSpec, Engine};
use crate::store::aligned::{AlignedBuf, IO_ALIGN_BYTES, SharedSlice};

/// Opens real devices with O_DIRECT.
#[derive(Clone, Copy, Debug, Default)]
pub struct UringEngine;

/// A device opened with O_DIRECT, shared by all threads.
pub struct UringHandle {
    path: PathBuf,
    file: File,
    size_bytes: u64,
}

/// One core's handle: tokio-uring's file over a duplicate of the shared descriptor.
pub struct UringDevice {
    file: tokio_uring::fs::File,
}

impl Engine for UringEngine {
    type Handle = UringHandle;

    fn open(&self, spec: &DeviceSpec) -> io::Result<UringHandle> {
        let path = &spec.path;
        let context =
            |e: io::Error| io::Error::new(e.kind(), format!("device {}: {e}", path.display()));
        let existing = fs::metadata(path).ok();
        if existing.is_none() {
            create_preallocated(path, spec.size_bytes.unwrap_or(DEFAULT_DEVICE_SIZE_BYTES))
                .map_err(context)?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(path)
            .map_err(|e| context(explain_open_error(e)))?;
        check_direct_io_alignment(&file).map_err(context)?;
        let metadata = file.metadata().map_err(context)?;
        let size_bytes = if metadata.file_type().is_block_device() {
            file.seek(SeekFrom::End(0)).map_err(context)?
        } else {
            let wanted = spec.size_bytes.unwrap_or(0);
            if wanted > metadata.len() {
                preallocate(&file, wanted).map_err(context)?;
            }
            metadata.len().max(wanted)
        };
        let size_bytes = size_bytes / IO_ALIGN_BYTES as u64 * IO_ALIGN_BYTES as u64;
        Ok(UringHandle {
            path: path.clone(),
            file,
            size_bytes,
        })
    }
}

fn create_preallocated(path: &Path, size_bytes: u64) -> io::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent)?;
    }
    let file = OpenOptions::new().write(true).create_new(true).open(path)?;
    preallocate(&file, size_bytes)?;
    file.sync_all()
}

fn preallocate(file: &File, size_bytes: u64) -> io::Result<()> {
    let len =
        libc::off_t::try_from(size_bytes).map_err(|_| io::Error::other("device size too large"))?;
    // SAFETY: fallocate on a descriptor we own, with no pointers involved.
    if unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn explain_open_error(error: io::Error) -> io::Error {
    if error.raw_os_error() == Some(libc::EINVAL) {
        return io::Error::new(
            error.kind(),
            "the file system does not support O_DIRECT (tmpfs?)",
        );
    }
    error
}

/// Checks with statx that 4096-byte alignment satisfies the device's O_DIRECT rules, where
/// the kernel reports them (STATX_DIOALIGN, Linux 6.1+); otherwise 4096 is assumed to do,
/// as it does for every block size up to a page.
fn check_direct_io_alignment(file: &File) -> io::Result<()> {
    // SAFETY: statx is plain data; zeroes are a valid value for it.
    let mut stat: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: an empty path with AT_EMPTY_PATH describes the descriptor; `stat` is writable.
    let rc = unsafe {
        libc::statx(
            file.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            libc::STATX_DIOALIGN,
            &mut stat,
        )
    };
    if rc != 0 || stat.stx_mask & libc::STATX_DIOALIGN == 0 {
        return Ok(());
    }
    let (memory, offset) = (
        stat.stx_dio_mem_align as usize,
        stat.stx_dio_offset_align as usize,
    );
    if offset == 0 {
        return Err(io::Error::other("O_DIRECT is not supported on this file"));
    }
    if !IO_ALIGN_BYTES.is_multiple_of(offset) || !IO_ALIGN_BYTES.is_multiple_of(memory.max(1)) {
        return Err(io::Error::other(format!(
            "O_DIRECT needs {memory}-byte buffers and {offset}-byte offsets; chunkd aligns to {IO_ALIGN_BYTES}"
        )));
    }
    Ok(())
}

impl UringHandle {
    /// The device's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl DeviceHandle for UringHandle {
    type Local = UringDevice;

    fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    fn read_sync(&self, buf: &mut AlignedBuf, offset: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }

    fn write_sync(&self, buf: &AlignedBuf, offset: u64) -> io::Result<()> {
        self.file.write_all_at(buf, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn open_local(&self) -> io::Result<UringDevice> {
        Ok(UringDevice {
            file: tokio_uring::fs::File::from_std(self.file.try_clone()?),
        })
    }
}

impl Device for UringDevice {
    async fn read_at(&self, buf: AlignedBuf, offset: u64) -> (io::Result<()>, AlignedBuf) {
        self.file.read_exact_at(buf, offset).await
    }

    async fn write_at(&self, mut parts: Vec<SharedSlice>, offset: u64) -> io::Result<()> {
        if parts.len() == 1 {
            let part = parts.pop().expect("one part");
            return self.file.write_all_at(part, offset).await.0;
        }
        self.file
            .writev_at_all(parts, Some(offset))
            .await
            .0
            .map(|_| ())
    }
}

//! The io_uring engine: devices opened with O_DIRECT and driven through each core's own
//! ring ([`super::ring`]). Never the page cache: every data byte moves between the device
//! and an aligned buffer of ours.
//!
//! File-backed devices are preallocated with `fallocate` when created, because on ext4 an
//! O_DIRECT write into a hole is punted to a worker thread, while a write into allocated
//! space is submitted directly.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use io_uring::{opcode, types};
use rustix::fs as fs_rx;
use rustix::io::Errno;

use super::engine::{Device, DeviceHandle, Engine};
use super::ring::Ring;
use super::spec::{DEFAULT_DEVICE_SIZE_BYTES, DeviceSpec};
use crate::store::aligned::{AlignedBuf, IO_ALIGN_BYTES, SharedSlice};

/// `O_DIRECT`, as `OpenOptionsExt::custom_flags` takes it.
pub(super) const O_DIRECT: i32 = fs_rx::OFlags::DIRECT.bits() as i32;

/// Opens real devices with O_DIRECT.
#[derive(Clone, Copy, Debug, Default)]
pub struct UringEngine;

/// A device opened with O_DIRECT, shared by all threads.
pub struct UringHandle {
    path: PathBuf,
    file: File,
    size_bytes: u64,
}

/// One core's handle: a duplicate of the shared descriptor, used through this core's ring.
pub struct UringDevice {
    file: File,
}

impl Engine for UringEngine {
    type Handle = UringHandle;

    fn open(&self, spec: &DeviceSpec) -> io::Result<UringHandle> {
        let path = &spec.path;
        let context =
            |e: io::Error| io::Error::new(e.kind(), format!("device {}: {e}", path.display()));
        let existing = fs::metadata(path).ok();
        let block_device = existing
            .as_ref()
            .is_some_and(|m| m.file_type().is_block_device());
        if existing.is_none() {
            create_preallocated(path, spec.size_bytes.unwrap_or(DEFAULT_DEVICE_SIZE_BYTES))
                .map_err(context)?;
        }
        // O_EXCL on a block device: the kernel refuses it while mounted or held open
        // exclusively by anyone else (open(2)).
        let exclusive = if block_device { libc::O_EXCL } else { 0 };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(O_DIRECT | exclusive)
            .open(path)
            .map_err(|e| context(explain_open_error(e)))?;
        lock_exclusively(&file).map_err(context)?;
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

/// Takes an exclusive advisory lock (flock) on the device for as long as it is open, so a
/// second node, or a second `--device` naming the same file, is refused instead of
/// writing over this one's shards.
fn lock_exclusively(file: &File) -> io::Result<()> {
    match fs_rx::flock(file, fs_rx::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(()),
        Err(Errno::WOULDBLOCK) => Err(io::Error::new(
            io::ErrorKind::ResourceBusy,
            "in use: another process (another chunkd?) holds it open and locked",
        )),
        Err(e) => Err(e.into()),
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
    fs_rx::fallocate(file, fs_rx::FallocateFlags::empty(), 0, size_bytes)?;
    Ok(())
}

fn explain_open_error(error: io::Error) -> io::Error {
    if error.raw_os_error() == Some(Errno::INVAL.raw_os_error()) {
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
    let dio_align = fs_rx::StatxFlags::DIOALIGN;
    let stat = match fs_rx::statx(file, c"", fs_rx::AtFlags::EMPTY_PATH, dio_align) {
        Ok(stat) if stat.stx_mask & dio_align.bits() != 0 => stat,
        _ => return Ok(()),
    };
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
            file: self.file.try_clone()?,
        })
    }
}

impl Device for UringDevice {
    async fn read_at(&self, mut buf: AlignedBuf, offset: u64) -> (io::Result<()>, AlignedBuf) {
        let ring = match Ring::current() {
            Ok(ring) => ring,
            Err(e) => return (Err(e), buf),
        };
        let mut done = 0;
        while done < buf.len() {
            let entry = opcode::Read::new(
                types::Fd(self.file.as_raw_fd()),
                buf[done..].as_mut_ptr(),
                io_len(buf.len() - done),
            )
            .offset(offset + done as u64)
            .build();
            // SAFETY: the entry points into `buf`'s heap memory, which moves with the
            // operation and comes back with its result.
            let (result, returned) = unsafe { ring.start(entry, buf) }.await;
            buf = returned;
            match result {
                Ok(0) => return (Err(short("read", done, buf.len(), offset)), buf),
                Ok(n) => done += n as usize,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return (Err(e), buf),
            }
        }
        (Ok(()), buf)
    }

    async fn write_at(&self, parts: Vec<SharedSlice>, offset: u64) -> io::Result<()> {
        let ring = Ring::current()?;
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let mut lent = Writing {
            parts,
            iovecs: Vec::new(),
        };
        let mut done = 0;
        while done < total {
            lent.point_iovecs_past(done);
            let entry = opcode::Writev::new(
                types::Fd(self.file.as_raw_fd()),
                lent.iovecs.as_ptr(),
                lent.iovecs.len() as u32,
            )
            .offset(offset + done as u64)
            .build();
            // SAFETY: the entry points to `lent.iovecs`, a heap array that points into the
            // parts' shared buffers; all of it moves with the operation.
            let (result, returned) = unsafe { ring.start(entry, lent) }.await;
            lent = returned;
            match result {
                Ok(0) => return Err(short("write", done, total, offset)),
                Ok(n) => done += n as usize,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// The buffers of a write and the vector describing what is left of them. `libc::iovec`,
/// not rustix's: the io-uring crate's `Writev` takes libc's type.
struct Writing {
    parts: Vec<SharedSlice>,
    iovecs: Vec<libc::iovec>,
}

impl Writing {
    /// Describes the parts' bytes after the first `skip`.
    fn point_iovecs_past(&mut self, mut skip: usize) {
        self.iovecs.clear();
        for part in &self.parts {
            if skip >= part.len() {
                skip -= part.len();
                continue;
            }
            let rest = &part[skip..];
            skip = 0;
            self.iovecs.push(libc::iovec {
                iov_base: rest.as_ptr() as *mut libc::c_void,
                iov_len: rest.len(),
            });
        }
    }
}

/// One operation's length: buffers here are far below 4 GiB.
fn io_len(len: usize) -> u32 {
    u32::try_from(len).expect("an I/O buffer is smaller than 4 GiB")
}

fn short(what: &str, done: usize, wanted: usize, offset: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("{what} of {wanted} bytes at offset {offset} stopped after {done}"),
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn slices(lens: &[usize]) -> Vec<SharedSlice> {
        lens.iter()
            .enumerate()
            .map(|(i, &len)| {
                let mut buf = AlignedBuf::zeroed(len);
                buf.fill(i as u8 + 1);
                SharedSlice::whole(Arc::new(buf))
            })
            .collect()
    }

    /// A new file-backed device of `size` in a scratch directory.
    fn scratch_device(size: &str) -> (tempfile::TempDir, UringHandle) {
        let dir = tempfile::tempdir().unwrap();
        let spec: DeviceSpec = format!("{}:{size}", dir.path().join("dev").display())
            .parse()
            .unwrap();
        let handle = UringEngine.open(&spec).unwrap();
        (dir, handle)
    }

    #[test]
    fn a_write_of_several_parts_reads_back_in_order() {
        let (_dir, handle) = scratch_device("1M");
        tokio_uring::start(async {
            let device = handle.open_local().unwrap();
            let parts = slices(&[4096, 8192, 4096]);
            device.write_at(parts, 8192).await.unwrap();
            let (result, buf) = device.read_at(AlignedBuf::zeroed(16384), 8192).await;
            result.unwrap();
            let expected: Vec<u8> = [(1u8, 4096), (2, 8192), (3, 4096)]
                .iter()
                .flat_map(|&(byte, len)| std::iter::repeat_n(byte, len))
                .collect();
            assert_eq!(&buf[..], &expected[..]);
        });
    }

    #[test]
    fn a_read_past_the_end_is_an_unexpected_eof() {
        let (_dir, handle) = scratch_device("64K");
        tokio_uring::start(async {
            let device = handle.open_local().unwrap();
            // Straddles the end: the first 4 KiB are read, then nothing more is.
            let (result, _) = device.read_at(AlignedBuf::zeroed(8192), 60 << 10).await;
            let error = result.unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof, "{error}");
            assert!(error.to_string().contains("stopped after 4096"), "{error}");
        });
    }

    #[test]
    fn a_short_write_resumes_where_the_kernel_stopped() {
        let mut writing = Writing {
            parts: slices(&[4096, 8192, 4096]),
            iovecs: Vec::new(),
        };
        let described = |w: &Writing| -> Vec<(usize, usize)> {
            w.iovecs
                .iter()
                .map(|v| (v.iov_base as usize, v.iov_len))
                .collect()
        };
        let start = |i: usize| writing.parts[i].as_ptr() as usize;
        let (p0, p1, p2) = (start(0), start(1), start(2));
        writing.point_iovecs_past(0);
        assert_eq!(described(&writing), [(p0, 4096), (p1, 8192), (p2, 4096)]);
        writing.point_iovecs_past(4096 + 512);
        assert_eq!(described(&writing), [(p1 + 512, 8192 - 512), (p2, 4096)]);
        writing.point_iovecs_past(4096 + 8192);
        assert_eq!(described(&writing), [(p2, 4096)]);
    }
}

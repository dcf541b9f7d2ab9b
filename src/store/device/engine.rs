//! The device interface: an [`Engine`] opens devices, a [`DeviceHandle`] is one device
//! shared by all threads (blocking start-up I/O and flushes), a [`Device`] is one core's
//! asynchronous, aligned, positioned I/O on it.
//!
//! **Architecture invariant:** traits only; the engines implement them.

use std::future::Future;
use std::io;

use super::spec::DeviceSpec;
use crate::store::aligned::{AlignedBuf, SharedSlice};

/// Opens devices.
pub trait Engine: Send + Sync + 'static {
    type Handle: DeviceHandle;

    /// Opens the device at `spec`, creating and preallocating a missing file of
    /// `spec.size_bytes` (or [`DEFAULT_DEVICE_SIZE_BYTES`](super::spec::DEFAULT_DEVICE_SIZE_BYTES)).
    fn open(&self, spec: &DeviceSpec) -> io::Result<Self::Handle>;
}

/// One open device, shared by every thread.
pub trait DeviceHandle: Send + Sync + 'static {
    type Local: Device;

    /// Usable bytes.
    fn size_bytes(&self) -> u64;

    /// Blocking read of `buf.len()` bytes at `offset` (start-up only).
    fn read_sync(&self, buf: &mut AlignedBuf, offset: u64) -> io::Result<()>;

    /// Blocking write of `buf` at `offset` (start-up only; follow with `sync_data`).
    fn write_sync(&self, buf: &AlignedBuf, offset: u64) -> io::Result<()>;

    /// Makes every completed write durable: data and whatever is needed to read it back
    /// (fdatasync). Blocking; called from the commit thread.
    fn sync_data(&self) -> io::Result<()>;

    /// This thread's handle for data I/O. Call on the thread that will use it.
    fn open_local(&self) -> io::Result<Self::Local>;
}

/// A device as one core sees it: asynchronous, aligned, positioned I/O.
pub trait Device: 'static {
    /// Fills all of `buf` from `offset`. A short read is an error (`UnexpectedEof`).
    fn read_at(
        &self,
        buf: AlignedBuf,
        offset: u64,
    ) -> impl Future<Output = (io::Result<()>, AlignedBuf)>;

    /// Writes `parts` back to back from `offset`, wholly or with an error.
    fn write_at(
        &self,
        parts: Vec<SharedSlice>,
        offset: u64,
    ) -> impl Future<Output = io::Result<()>>;
}

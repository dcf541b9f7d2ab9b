//! Devices behind one narrow interface, so the same store code runs on real disks and on a
//! simulation that injects faults.
//!
//! An [`Engine`] opens a device (creating and preallocating a file-backed one) and returns
//! a [`DeviceHandle`], shared by all threads, for the few blocking operations done outside
//! the hot path (superblocks at start-up, flushes from the commit thread). Each core then
//! opens its own [`Device`] from the handle for data I/O on that core's ring.
//!
//! Engines: `uring` (io_uring with O_DIRECT on each core's own ring: what the node runs on) and
//! `sim` (memory, with seeded faults: what the fault tests run on).

mod engine;
mod identity;
mod ring;
pub mod sim;
mod spec;
pub mod uring;

pub use engine::{Device, DeviceHandle, Engine};
pub use identity::first_duplicate;
pub use ring::submit_together;
pub use spec::{DEFAULT_DEVICE_SIZE_BYTES, DeviceSpec};

//! The simulated engine: devices in memory, with faults injected from a seed, so recovery
//! and reconstruction are tested deterministically on every `cargo test`.
//!
//! Faults: EIO on reads and writes, torn writes (a prefix lands, then EIO), lost writes
//! (success reported, nothing lands), bit flips on read, latency, a whole device lost, and
//! a crash that drops every write not yet made durable with `sync_data`. Tests also reach
//! into a device to corrupt, zero or replace it.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::engine::{Device, DeviceHandle, Engine};
use super::spec::{DEFAULT_DEVICE_SIZE_BYTES, DeviceSpec};
use crate::store::aligned::{AlignedBuf, IO_ALIGN_BYTES, SharedSlice};

/// Fault rates in parts per million of operations, and added latency.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultPlan {
    pub read_eio_ppm: u32,
    pub write_eio_ppm: u32,
    pub torn_write_ppm: u32,
    pub lost_write_ppm: u32,
    pub read_bit_flip_ppm: u32,
    pub latency: Option<Duration>,
}

/// Simulated devices, keyed by path; cloning shares them (a "restarted" store sees the same
/// bytes).
#[derive(Clone)]
pub struct SimEngine {
    inner: Arc<SimInner>,
}

struct SimInner {
    devices: Mutex<HashMap<PathBuf, Arc<SimDevice>>>,
    faults: Mutex<FaultPlan>,
    rng: Mutex<SplitMix64>,
}

/// One simulated device.
pub struct SimDevice {
    path: PathBuf,
    state: Mutex<Contents>,
    lost: AtomicBool,
    /// Blocking reads (`read_sync`) wait while this is set.
    hung: AtomicBool,
    syncs: AtomicU64,
    engine: Arc<SimInner>,
}

struct Contents {
    bytes: Vec<u8>,
    /// Bytes overwritten since the last sync, oldest first: what a crash restores.
    undo: Vec<(u64, Vec<u8>)>,
}

/// A core's handle on a simulated device.
pub struct SimLocal {
    device: Arc<SimDevice>,
}

impl SimEngine {
    /// An engine with no devices yet and no faults; `seed` drives every random fault.
    pub fn new(seed: u64) -> SimEngine {
        SimEngine {
            inner: Arc::new(SimInner {
                devices: Mutex::new(HashMap::new()),
                faults: Mutex::new(FaultPlan::default()),
                rng: Mutex::new(SplitMix64(seed)),
            }),
        }
    }

    /// Replaces the fault plan.
    pub fn set_faults(&self, plan: FaultPlan) {
        *lock(&self.inner.faults) = plan;
    }

    /// The device at `path`; panics when it was never opened (a test bug).
    pub fn device(&self, path: &Path) -> Arc<SimDevice> {
        lock(&self.inner.devices)
            .get(path)
            .cloned()
            .unwrap_or_else(|| panic!("no simulated device {}", path.display()))
    }

    /// Every device loses the writes not yet synced, as on power loss.
    pub fn crash(&self) {
        for device in lock(&self.inner.devices).values() {
            let mut state = lock(&device.state);
            while let Some((offset, old)) = state.undo.pop() {
                let start = offset as usize;
                state.bytes[start..start + old.len()].copy_from_slice(&old);
            }
        }
    }

    /// Removes the device at `path`, as if it were unplugged for good; opening the path
    /// again gives a new, zeroed device.
    pub fn remove(&self, path: &Path) {
        if let Some(device) = lock(&self.inner.devices).remove(path) {
            device.lost.store(true, Ordering::SeqCst);
        }
    }
}

impl SimDevice {
    /// Flips every bit of `len` bytes at `offset` (silent corruption, as a bad sector).
    pub fn corrupt(&self, offset: u64, len: usize) {
        let mut state = lock(&self.state);
        let start = offset as usize;
        state.bytes[start..start + len]
            .iter_mut()
            .for_each(|b| *b = !*b);
    }

    /// Zeroes the whole device.
    pub fn zero(&self) {
        lock(&self.state).bytes.fill(0);
    }

    /// Makes every later operation fail with EIO, as a dead device.
    pub fn set_lost(&self, lost: bool) {
        self.lost.store(lost, Ordering::SeqCst);
    }

    /// Makes blocking reads hang until called again with `false` (a device stuck in the
    /// kernel rather than failing).
    pub fn set_hung(&self, hung: bool) {
        self.hung.store(hung, Ordering::SeqCst);
    }

    /// A copy of `len` bytes at `offset`.
    pub fn peek(&self, offset: u64, len: usize) -> Vec<u8> {
        lock(&self.state).bytes[offset as usize..offset as usize + len].to_vec()
    }

    /// Times `sync_data` was called.
    pub fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::SeqCst)
    }

    fn check_alive(&self) -> io::Result<()> {
        if self.lost.load(Ordering::SeqCst) {
            return Err(eio(&self.path, "device lost"));
        }
        Ok(())
    }

    fn check_range(&self, offset: u64, len: usize) -> io::Result<usize> {
        let size = lock(&self.state).bytes.len() as u64;
        let aligned =
            offset.is_multiple_of(IO_ALIGN_BYTES as u64) && len.is_multiple_of(IO_ALIGN_BYTES);
        if !aligned || offset + len as u64 > size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad I/O {offset}+{len} on {size}"),
            ));
        }
        Ok(offset as usize)
    }

    fn read(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.check_alive()?;
        let start = self.check_range(offset, buf.len())?;
        if self.engine.roll(|p| p.read_eio_ppm) {
            return Err(eio(&self.path, "injected read error"));
        }
        buf.copy_from_slice(&lock(&self.state).bytes[start..start + buf.len()]);
        if self.engine.roll(|p| p.read_bit_flip_ppm) && !buf.is_empty() {
            let bit = self.engine.next() as usize % (buf.len() * 8);
            buf[bit / 8] ^= 1 << (bit % 8);
        }
        Ok(())
    }

    fn write(&self, parts: &[SharedSlice], offset: u64) -> io::Result<()> {
        self.check_alive()?;
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let start = self.check_range(offset, len)?;
        if self.engine.roll(|p| p.write_eio_ppm) {
            return Err(eio(&self.path, "injected write error"));
        }
        if self.engine.roll(|p| p.lost_write_ppm) {
            return Ok(());
        }
        let torn = self.engine.roll(|p| p.torn_write_ppm);
        let landed_bytes = if torn {
            (self.engine.next() as usize % len.div_ceil(IO_ALIGN_BYTES).max(1)) * IO_ALIGN_BYTES
        } else {
            len
        };
        let mut state = lock(&self.state);
        let old = state.bytes[start..start + landed_bytes].to_vec();
        state.undo.push((offset, old));
        let mut at = start;
        for part in parts {
            let n = part.len().min(start + landed_bytes - at);
            state.bytes[at..at + n].copy_from_slice(&part[..n]);
            at += n;
        }
        if torn {
            return Err(eio(&self.path, "injected torn write"));
        }
        Ok(())
    }
}

impl SimInner {
    fn next(&self) -> u64 {
        lock(&self.rng).next()
    }

    /// True with the probability the plan gives.
    fn roll(&self, rate_ppm: impl Fn(&FaultPlan) -> u32) -> bool {
        let ppm = rate_ppm(&lock(&self.faults));
        ppm > 0 && self.next() % 1_000_000 < u64::from(ppm)
    }

    fn latency(&self) -> Option<Duration> {
        lock(&self.faults).latency
    }
}

impl Engine for SimEngine {
    type Handle = Arc<SimDevice>;

    fn open(&self, spec: &DeviceSpec) -> io::Result<Arc<SimDevice>> {
        let mut devices = lock(&self.inner.devices);
        let device = devices.entry(spec.path.clone()).or_insert_with(|| {
            let size = spec.size_bytes.unwrap_or(DEFAULT_DEVICE_SIZE_BYTES) as usize
                / IO_ALIGN_BYTES
                * IO_ALIGN_BYTES;
            Arc::new(SimDevice {
                path: spec.path.clone(),
                state: Mutex::new(Contents {
                    bytes: vec![0; size],
                    undo: Vec::new(),
                }),
                lost: AtomicBool::new(false),
                hung: AtomicBool::new(false),
                syncs: AtomicU64::new(0),
                engine: self.inner.clone(),
            })
        });
        Ok(device.clone())
    }
}

impl DeviceHandle for Arc<SimDevice> {
    type Local = SimLocal;

    fn size_bytes(&self) -> u64 {
        lock(&self.state).bytes.len() as u64
    }

    fn read_sync(&self, buf: &mut AlignedBuf, offset: u64) -> io::Result<()> {
        // A hung device blocks its caller, as a read stuck in the kernel would.
        while self.hung.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(5));
        }
        self.read(buf, offset)
    }

    fn write_sync(&self, buf: &AlignedBuf, offset: u64) -> io::Result<()> {
        self.write(&[SharedSlice::whole(Arc::new(copy_of(buf)))], offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        // Liveness is checked under the state lock. A test simulates power loss by losing
        // the devices, then calling `crash` (which takes this lock), so a sync either runs
        // wholly before the crash, and its writes stay, or finds the device lost and
        // fails. Checked before taking the lock, a sync could pass the check, wait while
        // the crash dropped its writes, and then report them durable.
        let mut state = lock(&self.state);
        self.check_alive()?;
        state.undo.clear();
        self.syncs.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn open_local(&self) -> io::Result<SimLocal> {
        Ok(SimLocal {
            device: self.clone(),
        })
    }
}

fn copy_of(buf: &AlignedBuf) -> AlignedBuf {
    let mut copy = AlignedBuf::scratch(buf.len());
    copy.copy_from_slice(buf);
    copy
}

impl Device for SimLocal {
    async fn read_at(&self, mut buf: AlignedBuf, offset: u64) -> (io::Result<()>, AlignedBuf) {
        if let Some(latency) = self.device.engine.latency() {
            tokio::time::sleep(latency).await;
        }
        let result = self.device.read(&mut buf, offset);
        (result, buf)
    }

    async fn write_at(&self, parts: Vec<SharedSlice>, offset: u64) -> io::Result<()> {
        if let Some(latency) = self.device.engine.latency() {
            tokio::time::sleep(latency).await;
        }
        self.device.write(&parts, offset)
    }
}

fn eio(path: &Path, what: &str) -> io::Error {
    io::Error::other(format!("{}: {what} (EIO)", path.display()))
}

/// Locks a mutex, going on after a panic elsewhere: simulated state stays usable for the
/// test that caught the panic.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// SplitMix64: a tiny, well-distributed generator, enough to pick faults from a seed.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

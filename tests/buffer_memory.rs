//! The process's memory comes back down after a burst of I/O buffers (issue 11, finding
//! 1: "memory goes back down after the attack"). Its own test binary, with one test, so
//! that no other test allocates while it reads the process's resident size.

use chunkd::store::AlignedBuf;

/// The process's resident set in bytes (`VmRSS` of `/proc/self/status`).
fn resident_bytes() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("Linux /proc");
    let line = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .expect("VmRSS in /proc/self/status");
    let kib: usize = line
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .expect("VmRSS in kB");
    kib << 10
}

#[test]
fn idle_buffers_go_back_to_the_kernel_after_a_burst() {
    const MIB: usize = 1 << 20;
    let before = resident_bytes();
    // A burst like a slow-reader attack's: 256 MiB of response buffers held at once.
    let len = 528 << 10;
    let burst: Vec<AlignedBuf> = (0..496)
        .map(|_| {
            let mut buf = AlignedBuf::scratch(len);
            buf.fill(1);
            buf
        })
        .collect();
    let peak = resident_bytes();
    assert!(
        peak > before + 200 * MIB,
        "the burst is resident: {} MiB before, {} MiB at the peak",
        before / MIB,
        peak / MIB
    );
    drop(burst);
    // This thread keeps at most 16 MiB of idle buffers resident; the margin is generous.
    let after = resident_bytes();
    eprintln!(
        "resident: {} MiB before, {} MiB at the peak, {} MiB after",
        before / MIB,
        peak / MIB,
        after / MIB
    );
    assert!(
        after < before + 64 * MIB,
        "{} MiB before the burst, {} MiB at its peak, {} MiB after",
        before / MIB,
        peak / MIB,
        after / MIB
    );
    // Reads after the burst still get working buffers (pages faulted in again).
    let mut again: Vec<AlignedBuf> = (0..64).map(|_| AlignedBuf::scratch(len)).collect();
    for buf in &mut again {
        buf.fill(2);
        assert!(buf.iter().all(|&b| b == 2));
    }
}

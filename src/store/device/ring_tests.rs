//! Tests of the device ring (`ring.rs`): submission as operations start or together,
//! completions past the queue sizes, errors, dropped operations and a second runtime.

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;

use io_uring::{opcode, types};

use super::*;
use crate::store::aligned::AlignedBuf;

fn temp_file(len: usize) -> (tempfile::TempDir, std::fs::File, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    let bytes: Vec<u8> = (0..len).map(|i| (i * 7 + i / 4096) as u8).collect();
    std::fs::write(&path, &bytes).unwrap();
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(crate::store::device::uring::O_DIRECT)
        .open(&path)
        .unwrap();
    (dir, file, bytes)
}

/// Fails the test instead of hanging it when a completion is lost.
async fn within_seconds<F: Future>(future: F) -> F::Output {
    tokio::time::timeout(std::time::Duration::from_secs(10), future)
        .await
        .expect("the operations complete within 10 s")
}

fn read(ring: &Rc<Ring>, file: &std::fs::File, len: usize, offset: u64) -> Op<AlignedBuf> {
    let mut buf = AlignedBuf::zeroed(len);
    let entry = opcode::Read::new(types::Fd(file.as_raw_fd()), buf.as_mut_ptr(), len as u32)
        .offset(offset)
        .build();
    // SAFETY: the entry points into `buf`'s heap memory, lent to the operation.
    unsafe { ring.start(entry, buf) }
}

#[test]
fn many_concurrent_reads_each_get_their_own_bytes() {
    // More operations than the submission queue and the completion queue hold.
    let (_dir, file, bytes) = temp_file(1 << 20);
    tokio_uring::start(async {
        let ring = Ring::current().unwrap();
        let count = (COMPLETION_ENTRIES as usize) * 2;
        let ops: Vec<_> = (0..count)
            .map(|i| read(&ring, &file, 4096, (i % 256 * 4096) as u64))
            .collect();
        let results = within_seconds(futures_util::future::join_all(ops)).await;
        for (i, (result, buf)) in results.into_iter().enumerate() {
            assert_eq!(result.unwrap(), 4096);
            let at = i % 256 * 4096;
            assert_eq!(&buf[..], &bytes[at..at + 4096], "read {i}");
        }
        assert_eq!(ring.outstanding(), 0);
    });
}

#[test]
fn operations_go_to_the_kernel_as_they_start_or_together_when_asked() {
    let (_dir, file, bytes) = temp_file(1 << 20);
    tokio_uring::start(async {
        let ring = Ring::current().unwrap();
        let alone = read(&ring, &file, 4096, 0);
        assert_eq!(ring.queued(), 0, "submitted as it started");
        let (result, _) = within_seconds(alone).await;
        assert_eq!(result.unwrap(), 4096);

        let reads = submit_together(async {
            let first = read(&ring, &file, 4096, 0);
            let second = read(&ring, &file, 4096, 8192);
            assert_eq!(ring.queued(), 2, "held until the poll ends");
            futures_util::future::join(first, second).await
        });
        let ((first, a), (second, b)) = within_seconds(reads).await;
        assert_eq!((first.unwrap(), second.unwrap()), (4096, 4096));
        assert_eq!((&a[..], &b[..]), (&bytes[..4096], &bytes[8192..12288]));
        assert_eq!(ring.queued(), 0);
    });
}

#[test]
fn errors_come_back_as_io_errors() {
    let (_dir, file, _) = temp_file(8192);
    tokio_uring::start(async {
        let ring = Ring::current().unwrap();
        // O_DIRECT refuses an offset that is not block-aligned.
        let (result, _) = read(&ring, &file, 4096, 1).await;
        assert_eq!(
            result.unwrap_err().raw_os_error(),
            Some(Errno::INVAL.raw_os_error())
        );
        // At the end of the file a read transfers nothing.
        let (result, _) = read(&ring, &file, 4096, 8192).await;
        assert_eq!(result.unwrap(), 0);
    });
}

#[test]
fn a_dropped_operation_keeps_its_memory_until_the_kernel_is_done() {
    let (_dir, file, bytes) = temp_file(1 << 20);
    tokio_uring::start(async {
        let ring = Ring::current().unwrap();
        for _ in 0..64 {
            drop(read(&ring, &file, 64 * 1024, 0));
        }
        // Dropped while in flight: the slots stay (holding the buffers) until reaped.
        assert!(ring.outstanding() > 0);
        // The reaper frees them without anyone polling them.
        for _ in 0..1000 {
            if ring.outstanding() == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        assert_eq!(ring.outstanding(), 0);
        // Buffers reused after the drops hold what was read into them now.
        let (result, buf) = read(&ring, &file, 64 * 1024, 4096).await;
        assert_eq!(result.unwrap(), 64 * 1024);
        assert_eq!(&buf[..], &bytes[4096..4096 + 64 * 1024]);
    });
}

#[test]
fn a_thread_that_starts_a_second_runtime_gets_a_new_reaper() {
    let (_dir, file, bytes) = temp_file(8192);
    for _ in 0..3 {
        tokio_uring::start(async {
            let ring = Ring::current().unwrap();
            // Awaited from a spawned task, so completion relies on the reaper's wake,
            // not on this future's own polling.
            let file = file.try_clone().unwrap();
            let (result, buf) = within_seconds(tokio_uring::spawn(async move {
                read(&ring, &file, 4096, 4096).await
            }))
            .await
            .unwrap();
            assert_eq!(result.unwrap(), 4096);
            assert_eq!(&buf[..], &bytes[4096..]);
        });
    }
}

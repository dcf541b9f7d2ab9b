//! Why a benchmark could not run or finish, with the flag, file or tool to look at.

use std::path::PathBuf;

use super::fio::FioError;
use crate::store::StoreError;

/// An error of `chunkd bench`.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(
        "fio is not installed (apt-get install fio): it is the peer this benchmark compares with"
    )]
    FioMissing,
    #[error("--rounds: at least one round")]
    NoRounds,
    #[error(
        "devices of {device_mib} MiB are too small: the chunks take {region_mib} MiB of each and fio's writes as much again (--device-size, --fill)"
    )]
    DevicesTooSmall { device_mib: u64, region_mib: u64 },
    #[error("removing {}: {cause}", path.display())]
    Remove {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("creating device {}: {cause}", path.display())]
    CreateDevice {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{failures} puts failed while filling")]
    FillFailed { failures: u64 },
    #[error(transparent)]
    Fio(#[from] FioError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

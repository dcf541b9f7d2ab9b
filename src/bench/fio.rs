//! Runs fio, the reference I/O benchmark, as the peer a chunkd figure is compared with in
//! the same run: same files, same block sizes, same queue depth, O_DIRECT, io_uring.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// Why fio could not be run or its report read.
#[derive(Debug, thiserror::Error)]
pub enum FioError {
    #[error("running fio: {0}")]
    Spawn(std::io::Error),
    #[error("fio failed: {stderr}")]
    Failed { stderr: String },
    #[error("fio printed no JSON")]
    NoJson,
    #[error("fio JSON: {0}")]
    Json(serde_json::Error),
    #[error("fio JSON lacks {direction} figures")]
    MissingFigures { direction: String },
}

/// One fio job.
#[derive(Clone, Debug)]
pub struct FioJob {
    pub files: Vec<PathBuf>,
    /// `randread`, `read`, `write` or `randwrite`.
    pub pattern: &'static str,
    pub block_bytes: usize,
    /// I/Os in flight in all.
    pub iodepth: usize,
    /// Where I/O starts in every file, and how many bytes of each file it covers.
    pub offset_bytes: u64,
    pub region_bytes: u64,
    /// Run for this long, looping over the region; `None`: one pass over it.
    pub runtime: Option<Duration>,
    /// Flush with fdatasync after this many writes (0: never).
    pub fdatasync_every: usize,
    /// Submit I/Os this many at a time and wait for as many to complete before submitting
    /// more (1: one at a time, fio's default) — how a chunk read's shard reads behave.
    pub batch: usize,
    /// Put fio's buffers on huge pages (`--iomem=shmhuge`, needs [`HugePages`] reserved), as
    /// chunkd's are.
    pub huge_pages: bool,
}

/// Huge pages reserved for fio's buffers while this lives: fio can only put its buffers on
/// huge pages from the kernel's reserved pool (`vm.nr_hugepages`), which is usually empty.
/// Dropping it gives back what it reserved.
pub struct HugePages {
    /// `vm.nr_hugepages` before, when this raised it.
    restore: Option<u64>,
}

const NR_HUGEPAGES: &str = "/proc/sys/vm/nr_hugepages";

impl HugePages {
    /// Makes sure `bytes` of huge pages are free, reserving more if needed (root only);
    /// `Err` says why they could not be.
    pub fn reserve(bytes: u64) -> Result<HugePages, String> {
        let (free, page_bytes) = free_huge_pages()?;
        let needed = bytes.div_ceil(page_bytes);
        if free >= needed {
            return Ok(HugePages { restore: None });
        }
        let read = |path| {
            std::fs::read_to_string(path)
                .map_err(|e| format!("reading {path}: {e}"))?
                .trim()
                .parse::<u64>()
                .map_err(|e| format!("reading {path}: {e}"))
        };
        let total = read(NR_HUGEPAGES)?;
        std::fs::write(NR_HUGEPAGES, format!("{}\n", total + needed - free))
            .map_err(|e| format!("reserving huge pages in {NR_HUGEPAGES}: {e}"))?;
        let reserved = HugePages {
            restore: Some(total),
        };
        let (free, _) = free_huge_pages()?;
        if free < needed {
            return Err(format!(
                "the kernel found only {free} of {needed} free huge pages (memory fragmented)"
            ));
        }
        Ok(reserved)
    }
}

impl Drop for HugePages {
    fn drop(&mut self) {
        if let Some(total) = self.restore {
            let _ = std::fs::write(NR_HUGEPAGES, format!("{total}\n"));
        }
    }
}

/// Free huge pages in the kernel's pool, and the size of one.
fn free_huge_pages() -> Result<(u64, u64), String> {
    let meminfo = std::fs::read_to_string("/proc/meminfo")
        .map_err(|e| format!("reading /proc/meminfo: {e}"))?;
    let field = |name: &str| {
        meminfo
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
            .ok_or_else(|| format!("/proc/meminfo has no {name}"))
    };
    Ok((field("HugePages_Free:")?, field("Hugepagesize:")? * 1024))
}

/// What fio measured.
#[derive(Clone, Copy, Debug)]
pub struct FioResult {
    pub bytes_per_second: f64,
    pub iops: f64,
    pub p50_us: f64,
    pub p99_us: f64,
}

/// True when fio can be run.
pub fn available() -> bool {
    Command::new("fio")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs `job` and parses fio's JSON report.
pub fn run(job: &FioJob) -> Result<FioResult, FioError> {
    let files = job
        .files
        .iter()
        .map(|f| f.display().to_string())
        .collect::<Vec<_>>()
        .join(":");
    let mut command = Command::new("fio");
    command.args([
        "--name=peer",
        &format!("--filename={files}"),
        &format!("--rw={}", job.pattern),
        &format!("--bs={}", job.block_bytes),
        "--direct=1",
        "--ioengine=io_uring",
        &format!("--iodepth={}", job.iodepth),
        &format!("--offset={}", job.offset_bytes),
        &format!("--size={}", job.region_bytes * job.files.len() as u64),
        "--randrepeat=0",
        "--group_reporting",
        "--output-format=json",
    ]);
    if let Some(runtime) = job.runtime {
        command.args([
            format!("--runtime={}ms", runtime.as_millis()),
            "--time_based".into(),
        ]);
    }
    if job.batch > 1 {
        command.args([
            format!("--iodepth_batch_submit={}", job.batch),
            format!("--iodepth_batch_complete_min={}", job.batch),
        ]);
    }
    if job.huge_pages {
        command.arg("--iomem=shmhuge");
    }
    if job.fdatasync_every > 0 {
        command.arg(format!("--fdatasync={}", job.fdatasync_every));
    }
    let output = command.output().map_err(FioError::Spawn)?;
    if !output.status.success() {
        return Err(FioError::Failed {
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    parse(
        &output.stdout,
        if job.pattern.contains("read") {
            "read"
        } else {
            "write"
        },
    )
}

fn parse(json: &[u8], direction: &str) -> Result<FioResult, FioError> {
    // fio may print warnings before the JSON document.
    let start = json
        .iter()
        .position(|&b| b == b'{')
        .ok_or(FioError::NoJson)?;
    let report: serde_json::Value =
        serde_json::from_slice(&json[start..]).map_err(FioError::Json)?;
    let stats = &report["jobs"][0][direction];
    let number = |value: &serde_json::Value| {
        value.as_f64().ok_or_else(|| FioError::MissingFigures {
            direction: direction.to_string(),
        })
    };
    let percentile = |p: &str| number(&stats["clat_ns"]["percentile"][p]).map(|ns| ns / 1000.0);
    Ok(FioResult {
        bytes_per_second: number(&stats["bw_bytes"])?,
        iops: number(&stats["iops"])?,
        p50_us: percentile("50.000000")?,
        p99_us: percentile("99.000000")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_figures_from_fio_json() {
        let json = br#"note: a warning
        {"jobs": [{"read": {"bw_bytes": 1000000, "iops": 250.5,
          "clat_ns": {"percentile": {"50.000000": 2000, "99.000000": 9000}}}}]}"#;
        let result = parse(json, "read").unwrap();
        assert_eq!(result.bytes_per_second, 1e6);
        assert_eq!(result.iops, 250.5);
        assert_eq!((result.p50_us, result.p99_us), (2.0, 9.0));
        assert!(parse(json, "write").is_err());
    }

    #[test]
    fn reads_the_kernels_huge_page_pool() {
        let (_free, page_bytes) = free_huge_pages().expect("Linux reports its huge pages");
        assert!(page_bytes.is_power_of_two() && page_bytes >= 2 << 20);
    }
}

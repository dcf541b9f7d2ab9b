//! Runs fio, the reference I/O benchmark, as the peer a chunkd figure is compared with in
//! the same run: same files, same block sizes, same queue depth, O_DIRECT, io_uring.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

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
pub fn run(job: &FioJob) -> Result<FioResult, String> {
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
    if job.fdatasync_every > 0 {
        command.arg(format!("--fdatasync={}", job.fdatasync_every));
    }
    let output = command.output().map_err(|e| format!("running fio: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "fio failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
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

fn parse(json: &[u8], direction: &str) -> Result<FioResult, String> {
    // fio may print warnings before the JSON document.
    let start = json
        .iter()
        .position(|&b| b == b'{')
        .ok_or("fio printed no JSON")?;
    let report: serde_json::Value =
        serde_json::from_slice(&json[start..]).map_err(|e| format!("fio JSON: {e}"))?;
    let stats = &report["jobs"][0][direction];
    let number = |value: &serde_json::Value| {
        value
            .as_f64()
            .ok_or_else(|| format!("fio JSON lacks {direction} figures"))
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
}

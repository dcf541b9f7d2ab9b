//! Running curl: status, protocol version, headers and body of one transfer.

use std::io::Write;
use std::process::{Command, Stdio};

/// Whether `tool --version` runs. When it does not, a test that needs the tool is skipped
/// with the reason on stderr, so `cargo test` passes on a machine with only the Rust
/// toolchain; under CI (`CI` set, as `.ci/run` runs, having installed the tools) a missing
/// tool fails the test instead, so a skip can never hide there.
#[must_use = "skip the test when the tool is missing"]
pub fn tool_or_skip(tool: &str, why: &str) -> bool {
    if tool_runs(tool) {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "`{tool}` is needed for {why} but could not be run; .ci/run installs it"
    );
    // Straight to the stream, not `eprintln!`, which the test harness captures and shows
    // only for failures: the skip is meant to be seen.
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED: `{tool}` is needed for {why} and could not be run \
         (Debian: apt-get install curl prometheus)"
    );
    false
}

fn tool_runs(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// What curl got.
#[derive(Debug)]
pub struct CurlResponse {
    pub status: u16,
    /// `1.1` or `2`.
    pub http_version: String,
    /// Headers of the final response (names lowercased).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl CurlResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Runs `curl -sS` with `args` (which include the URL), capturing status, version,
/// headers and body. Fails the test if curl itself fails.
pub fn curl(args: &[&str]) -> CurlResponse {
    assert!(
        tool_runs("curl"),
        "`curl` could not be run; call tool_or_skip first"
    );
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (head_file, body_file) = (dir.path().join("head"), dir.path().join("body"));
    let output = Command::new("curl")
        .args(["-sS", "--max-time", "30", "-D"])
        .arg(&head_file)
        .arg("-o")
        .arg(&body_file)
        .args(["-w", "%{http_code} %{http_version}"])
        .args(args)
        .output()
        .expect("curl runs");
    assert!(
        output.status.success(),
        "curl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let written = String::from_utf8(output.stdout).expect("UTF-8");
    let (status, http_version) = written.split_once(' ').expect("code and version");
    let head = std::fs::read_to_string(&head_file).unwrap_or_default();
    // With 1xx answers several header blocks are written; the last one is the final one.
    let last_block = head
        .split("\r\n\r\n")
        .filter(|b| !b.trim().is_empty())
        .last()
        .unwrap_or("");
    let headers = last_block
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    CurlResponse {
        status: status.parse().expect("a status code"),
        http_version: http_version.to_owned(),
        headers,
        body: std::fs::read(&body_file).unwrap_or_default(),
    }
}

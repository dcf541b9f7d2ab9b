//! Running curl: status, protocol version, headers and body of one transfer.

use std::process::{Command, Stdio};

/// Panics with a clear message if `tool --version` cannot run.
pub fn require_tool(tool: &str, why: &str) {
    let ok = Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "`{tool}` is needed for {why} but could not be run; install it (CI's .ci/run does)"
    );
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
    require_tool("curl", "the client interoperability tests");
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

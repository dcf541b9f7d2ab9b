//! An S3-compatible origin for the tests: moto's server (`python3 -m moto.server`,
//! installed by `.ci/run` from `moto[server]`) on a free loopback port, killed when its
//! [`Moto`] is dropped. Buckets and objects are made with plain unsigned HTTP PUTs, which
//! moto accepts; the requests moto served are read back from its request log, so a test
//! can count what reached the origin.

use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{Launch, START_LIMIT};

/// The credentials and region the node is given (moto accepts any).
pub const MOTO_ENV: [(&str, &str); 3] = [
    ("AWS_ACCESS_KEY_ID", "test"),
    ("AWS_SECRET_ACCESS_KEY", "test"),
    ("AWS_REGION", "us-east-1"),
];

/// Whether moto's server can be run (`python3 -m moto.server -h`). Like
/// [`super::tool_or_skip`]: when it cannot, the test is skipped with the reason on stderr,
/// except under CI (`CI` set), where `.ci/run` has installed it and a skip would hide a
/// failure, so the test fails instead.
#[must_use = "skip the test when moto is missing"]
pub fn moto_or_skip(why: &str) -> bool {
    let runs = Command::new("python3")
        .args(["-m", "moto.server", "-h"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if runs {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "moto's server is needed for {why} but `python3 -m moto.server` could not be run; \
         .ci/run installs it"
    );
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED: moto's server is needed for {why} and could not be run \
         (python3 -m pip install 'moto[server]')"
    );
    false
}

/// A running moto server; killed (and reaped) when dropped.
pub struct Moto {
    child: Option<Child>,
    pub addr: SocketAddr,
    log: PathBuf,
    _dir: tempfile::TempDir,
    agent: ureq::Agent,
}

impl Moto {
    /// Starts moto on a free port and waits until it answers. The port is found by
    /// binding port 0 and releasing it, so another process may take it first: then moto
    /// exits and another port is tried.
    pub fn start() -> Moto {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let log = dir.path().join("moto.log");
        let agent = ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(10)))
                .build(),
        );
        let mut attempts = 0;
        loop {
            let port = free_port();
            let mut child = spawn(port, &log);
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            if wait_answering(&agent, addr, &mut child, &log) {
                return Moto {
                    child: Some(child),
                    addr,
                    log,
                    _dir: dir,
                    agent,
                };
            }
            attempts += 1;
            assert!(
                attempts < 3,
                "moto exited at start three times:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
    }

    /// The `--origin-endpoint`: `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A [`Launch`] for a node whose origin is `origin` (`s3://…`) on this moto, with
    /// `args` after it and the credentials and region in the environment.
    pub fn launch(&self, origin: &str, args: &[&str]) -> Launch {
        let endpoint = self.endpoint();
        let mut all = vec!["--origin", origin, "--origin-endpoint", &endpoint];
        all.extend_from_slice(args);
        MOTO_ENV
            .iter()
            .fold(Launch::args(&all), |launch, (k, v)| launch.env(k, v))
    }

    /// Creates `bucket`.
    pub fn create_bucket(&self, bucket: &str) {
        let url = format!("{}/{bucket}", self.endpoint());
        let response = self.agent.put(&url).send_empty().expect("PUT bucket");
        assert_eq!(response.status().as_u16(), 200, "creating bucket {bucket}");
    }

    /// Puts object `key` of `bucket` with `bytes`.
    pub fn put_object(&self, bucket: &str, key: &str, bytes: &[u8]) {
        let url = format!("{}/{bucket}/{key}", self.endpoint());
        let response = self.agent.put(&url).send(bytes).expect("PUT object");
        assert_eq!(response.status().as_u16(), 200, "putting {bucket}/{key}");
    }

    /// GETs of `/{bucket}/{key}` moto has served (and logged) so far. To be sure that
    /// every request made before the call is in the log, a marker request is sent and the
    /// log read until it shows.
    pub fn gets(&self, bucket: &str, key: &str) -> usize {
        let log = self.log_through_marker();
        let line = format!("\"GET /{bucket}/{key} HTTP/1.1\"");
        log.lines().filter(|l| l.contains(&line)).count()
    }

    /// Moto's log, read until a fresh marker request shows in it (each request is logged
    /// after its answer, so earlier requests are logged by then).
    fn log_through_marker(&self) -> String {
        static MARKERS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = MARKERS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let marker = format!("/moto-api/?marker={n}-{}", std::process::id());
        let url = format!("{}{marker}", self.endpoint());
        self.agent.get(&url).call().expect("the marker request");
        let started = Instant::now();
        loop {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            if log.contains(&marker) {
                return log;
            }
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "moto did not log {marker}:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Moto's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- moto log ({}) ---\n{}", self.addr, self.log());
        }
    }
}

/// Polls until the moto at `addr` answers an HTTP request; false if it exits first (the
/// port was taken). Fails the test if it neither answers nor exits within
/// [`START_LIMIT`].
fn wait_answering(
    agent: &ureq::Agent,
    addr: SocketAddr,
    child: &mut Child,
    log: &std::path::Path,
) -> bool {
    let started = Instant::now();
    let url = format!("http://{addr}/moto-api/");
    loop {
        if child.try_wait().expect("waitpid").is_some() {
            return false;
        }
        if agent.get(&url).call().is_ok() {
            return true;
        }
        if started.elapsed() > START_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "moto did not answer within {START_LIMIT:?}:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A loopback port that was free a moment ago.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    listener.local_addr().expect("the bound address").port()
}

/// Starts `python3 -m moto.server -p PORT` with its output (the request log) to `log`.
fn spawn(port: u16, log: &std::path::Path) -> Child {
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("moto's log file");
    let mut command = Command::new("python3");
    command
        .args([
            "-m",
            "moto.server",
            "-H",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        // Unbuffered, so the request log is on disk as soon as a request is answered.
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().expect("the log file"))
        .stderr(log_file);
    // Should the test process be killed (a CI timeout), moto dies with it.
    // SAFETY: the closure runs in the child between fork and exec and only calls prctl(2),
    // which is async-signal-safe and touches no memory shared with the parent.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command.spawn().expect("python3 starts")
}

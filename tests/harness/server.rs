//! Running `chunkd serve`: a data directory with five small file devices, the command
//! line, and a [`Server`] that reads the address the binary prints, waits for `/readyz`,
//! signals and stops it, and kills it when dropped.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use super::{DEVICES, HEADER_READ_TIMEOUT, START_LIMIT, try_request};

/// A node's data directory: the catalog, five file devices and the server's log. Outlives
/// a server, so a test can stop one and start another on the same data.
pub struct DataDir {
    dir: tempfile::TempDir,
    device_size: String,
}

impl DataDir {
    /// A fresh directory whose five devices are `device_size` each (e.g. `64M`).
    pub fn new(device_size: &str) -> DataDir {
        DataDir {
            dir: tempfile::tempdir().expect("a temporary directory"),
            device_size: device_size.to_owned(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The server's stdout line and stderr go here, across restarts.
    pub fn log_path(&self) -> PathBuf {
        self.path().join("server.log")
    }

    /// `--device DIR/dN:SIZE` for each device.
    pub fn device_args(&self) -> Vec<String> {
        (0..DEVICES)
            .flat_map(|n| {
                [
                    "--device".to_owned(),
                    format!("{}:{}", self.device_path(n).display(), self.device_size),
                ]
            })
            .collect()
    }

    pub fn device_path(&self, n: usize) -> PathBuf {
        self.path().join(format!("d{n}"))
    }
}

/// How to start a server.
#[derive(Clone, Default)]
pub struct Launch {
    /// Arguments after the data directory and devices. The harness's own defaults
    /// (`--cores 2`, `--header-read-timeout 2s`) are left out when these set them.
    pub args: Vec<String>,
    /// Environment variables for the server: `CHUNKD_*` settings, and others such as the
    /// `AWS_*` ones an S3 origin reads. The test process's own `CHUNKD_*` and `AWS_*`
    /// variables are not passed on; the rest of its environment is.
    pub env: Vec<(String, String)>,
    /// Address to listen on; `127.0.0.1:0` if `None`.
    pub listen: Option<String>,
}

impl Launch {
    pub fn args(args: &[&str]) -> Launch {
        Launch {
            args: args.iter().map(|a| a.to_string()).collect(),
            ..Launch::default()
        }
    }

    pub fn env(mut self, key: &str, value: &str) -> Launch {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    pub fn listen(mut self, address: &str) -> Launch {
        self.listen = Some(address.to_owned());
        self
    }

    fn has(&self, flag: &str) -> bool {
        self.args
            .iter()
            .any(|a| a == flag || a.starts_with(&format!("{flag}=")))
    }
}

/// The `chunkd` binary under test.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_chunkd")
}

/// The `chunkd serve` command for `launch` on `data`, with the test defaults (two cores,
/// a 2 s header read timeout) where `launch` does not set them, and no `CHUNKD_*` or
/// `AWS_*` variables from the environment the tests run in (a developer's AWS profile or
/// endpoint must not reach an origin under test).
pub fn serve_command(data: &DataDir, launch: &Launch) -> Command {
    let mut command = Command::new(binary());
    command.arg("serve");
    command.args([
        "--listen",
        launch.listen.as_deref().unwrap_or("127.0.0.1:0"),
        "--data-dir",
        data.path().to_str().expect("a UTF-8 temporary path"),
    ]);
    command.args(data.device_args());
    for (flag, value) in [
        ("--cores", "2"),
        ("--header-read-timeout", HEADER_READ_TIMEOUT),
    ] {
        if !launch.has(flag) {
            command.args([flag, value]);
        }
    }
    command.args(&launch.args);
    for (key, _) in std::env::vars_os() {
        let key_text = key.to_string_lossy();
        if key_text.starts_with("CHUNKD_") || key_text.starts_with("AWS_") {
            command.env_remove(key);
        }
    }
    command.envs(launch.env.iter().map(|(k, v)| (k, v)));
    // Should the test process itself be killed (a CI timeout), the server dies with it.
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
    command
}

/// A running `chunkd serve`; killed (SIGKILL) when dropped if it still runs.
pub struct Server {
    child: Option<Child>,
    pub addr: SocketAddr,
    data: Option<DataDir>,
    log: PathBuf,
}

impl Server {
    /// Starts a server on a fresh data directory with 64 MiB devices and waits until it
    /// is ready.
    pub fn start(launch: Launch) -> Server {
        Server::start_in(DataDir::new("64M"), launch)
    }

    /// Starts a server on `data` and waits until `/readyz` answers 200.
    pub fn start_in(data: DataDir, launch: Launch) -> Server {
        let log = data.log_path();
        let mut command = serve_command(&data, &launch);
        let (child, addr) = spawn_and_read_address(&mut command, &log);
        let mut server = Server {
            child: Some(child),
            addr,
            data: Some(data),
            log,
        };
        server.wait_ready();
        server
    }

    fn wait_ready(&mut self) {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child().try_wait().expect("waitpid") {
                panic!(
                    "the server exited with {status} before it was ready:\n{}",
                    self.log()
                );
            }
            if let Ok(response) = try_request(self.addr, "GET", "/readyz", &[], b"")
                && response.status == 200
            {
                return;
            }
            assert!(
                started.elapsed() < START_LIMIT,
                "the server was not ready within {START_LIMIT:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn child(&mut self) -> &mut Child {
        self.child.as_mut().expect("the server was not stopped")
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("running").id() as i32
    }

    /// The server's stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`) to the server.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) with the pid of a child this Server owns and has not reaped.
        let result = unsafe { libc::kill(self.pid(), signal) };
        assert_eq!(result, 0, "kill({}, {signal})", self.pid());
    }

    /// Waits up to `limit` for the server to exit; `None` if it still runs.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child().try_wait().expect("waitpid") {
                return Some(status);
            }
            if started.elapsed() >= limit {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM, then checks the server exits 0 within 15 s; gives back the data directory
    /// for a restart.
    pub fn stop(mut self) -> DataDir {
        self.signal(libc::SIGTERM);
        let status = self.wait_exit(Duration::from_secs(15));
        let log = self.log();
        match status {
            Some(status) => assert!(status.success(), "the server exited {status}:\n{log}"),
            None => panic!("the server did not stop within 15 s of SIGTERM:\n{log}"),
        }
        self.child = None;
        self.data.take().expect("the data directory")
    }

    /// The data directory, once the process has exited (it is killed if it has not).
    pub fn take_data(mut self) -> DataDir {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.data.take().expect("the data directory")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- server log ({}) ---\n{}", self.addr, self.log());
        }
    }
}

/// Spawns `command` with stderr to `log` and reads the one line it prints on stdout,
/// `listening on http://ADDR`. Kills it and panics if that line does not come.
fn spawn_and_read_address(command: &mut Command, log: &Path) -> (Child, SocketAddr) {
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("the log file");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log_file)
        .spawn()
        .expect("the chunkd binary starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let first = lines.next();
        let _ = sender.send(first);
        // Keep reading so a later print never meets a closed pipe.
        for _ in lines {}
    });
    let line = match receiver.recv_timeout(START_LIMIT) {
        Ok(Some(Ok(line))) => line,
        other => {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "no `listening on` line from the server ({other:?}):\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
    };
    let addr = line
        .strip_prefix("listening on http://")
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("unexpected first line on stdout: {line:?}"));
    (child, addr)
}

/// Runs `chunkd serve` for `launch` on `data` expecting it to fail at start-up; returns
/// its output (killing it and failing if it is still running after 30 s).
pub fn serve_expecting_failure(data: &DataDir, launch: &Launch) -> Output {
    let mut child = serve_command(data, launch)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the chunkd binary starts");
    let started = Instant::now();
    while child.try_wait().expect("waitpid").is_none() {
        if started.elapsed() > START_LIMIT {
            let _ = child.kill();
            let output = child.wait_with_output().expect("output");
            panic!(
                "the server kept running; stderr:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().expect("output")
}

//! A crash test's child process: the messages it prints for its parent (one line each,
//! flushed at once, marked so they stand apart from the test harness's own output), and
//! [`ChildRun`], the parent's side — start the child (this test binary again, running one
//! ignored test), read its lines as they come, kill it with SIGKILL and collect the rest.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Marks the child's messages: the test harness writes on the same lines.
const SAYS: &str = "child says: ";

/// How long the parent waits for the child's next line before failing.
const LINE_WAIT: Duration = Duration::from_secs(30);

/// One message to the parent, flushed at once so it is in the pipe before the next step.
pub fn say(message: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{SAYS}{message}").unwrap();
    out.flush().unwrap();
}

/// The message in a line of the child's output, if there is one.
pub fn said(line: &str) -> Option<&str> {
    line.split_once(SAYS).map(|(_, message)| message)
}

/// Kills the child if the test fails before it does.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running child, as its parent sees it.
pub struct ChildRun {
    child: KillOnDrop,
    lines: mpsc::Receiver<String>,
    reader: JoinHandle<()>,
    started: Instant,
    /// Every line read so far.
    pub seen: Vec<String>,
}

impl ChildRun {
    /// Runs the ignored test `test` of this binary as a child, with `env` set.
    pub fn spawn(test: &str, env: &[(&str, String)]) -> ChildRun {
        let mut command = Command::new(std::env::current_exe().unwrap());
        command
            .args([test, "--exact", "--ignored", "--nocapture"])
            .args(["--test-threads", "1"])
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = KillOnDrop(command.spawn().unwrap());
        let stdout = child.0.stdout.take().unwrap();
        let (sender, lines) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let _ = sender.send(line.unwrap());
            }
        });
        ChildRun {
            child,
            lines,
            reader,
            started: Instant::now(),
            seen: Vec::new(),
        }
    }

    /// The child's next line (kept in `seen`); fails after 30 s of silence, saying `what`
    /// was awaited.
    pub fn next_line(&mut self, what: &str) -> String {
        let line = self
            .lines
            .recv_timeout(LINE_WAIT)
            .unwrap_or_else(|_| panic!("{what}"));
        self.seen.push(line.clone());
        line
    }

    /// Reads lines until the child says it is opening the store.
    pub fn wait_until_opening(&mut self) {
        while said(&self.next_line("the child says it is opening the store")) != Some("opening") {}
    }

    /// Sleeps until `delay` after the child was started.
    pub fn sleep_until(&self, delay: Duration) {
        std::thread::sleep(delay.saturating_sub(self.started.elapsed()));
    }

    /// Kills the child with SIGKILL, checks that the kill ended it (not an exit or a
    /// panic of its own, which `context` and its output then explain), and returns every
    /// message it said.
    pub fn kill(mut self, context: &str) -> Vec<String> {
        self.child.0.kill().unwrap();
        let status = self.child.0.wait().unwrap();
        self.reader.join().unwrap();
        self.seen.extend(self.lines.try_iter());
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut self.child.0.stderr.take().unwrap(), &mut stderr)
            .unwrap();
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "{context}: the child ended by itself ({status}):\n{}\n{stderr}",
            self.seen.join("\n")
        );
        self.seen
            .iter()
            .filter_map(|line| said(line).map(str::to_owned))
            .collect()
    }
}

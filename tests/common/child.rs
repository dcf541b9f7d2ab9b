//! The messages a crash test's child process prints for its parent: one line each,
//! flushed at once, marked so they stand apart from the test harness's own output.

use std::io::Write;

/// Marks the child's messages: the test harness writes on the same lines.
const SAYS: &str = "child says: ";

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

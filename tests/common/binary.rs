//! The `chunkd` binary as a user runs it, for the tests of its subcommands (`pack`, `sim`).

use std::process::{Command, Output};

/// Runs `chunkd ARGS` to completion.
pub fn chunkd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chunkd"))
        .args(args)
        .output()
        .expect("the binary runs")
}

/// Runs `chunkd ARGS`, which must succeed, and returns its standard output.
pub fn run_ok(args: &[&str]) -> String {
    let output = chunkd(args);
    assert!(
        output.status.success(),
        "chunkd {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

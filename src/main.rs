//! The `chunkd` binary: parses the command line and hands off to the library.

fn main() {}

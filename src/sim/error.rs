//! Why a simulation could not run: each error names the file, line or flag to fix.

use std::path::PathBuf;

/// What went wrong in `chunkd sim`.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("opening trace {}: {cause}", path.display())]
    OpenTrace {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("reading trace line {line_number}: {cause}")]
    ReadTrace {
        line_number: usize,
        cause: std::io::Error,
    },
    #[error("trace line {line_number} {text:?}: {why}")]
    BadLine {
        line_number: usize,
        text: String,
        why: String,
    },
    #[error("writing trace {}: {cause}", path.display())]
    WriteTrace {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("--capacity {text:?}: {why}")]
    BadCapacity { text: String, why: String },
    #[error("{flag}: {why}")]
    BadGenerator { flag: &'static str, why: String },
    #[error("give --trace FILE or --generate KIND")]
    NoTrace,
    #[error("the trace has no requests")]
    EmptyTrace,
}

//! The progress bar of `push` and `fetch`: drawn on stderr only when it is a terminal and
//! the user did not ask for quiet, so logs and pipes stay clean.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// A bar of `len` units (`bytes` formats them as sizes), or a hidden one.
pub fn bar(enabled: bool, len: u64, bytes: bool) -> ProgressBar {
    if !enabled || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let template = if bytes {
        "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}"
    } else {
        "{bar:40} {pos}/{len} chunks {per_sec} eta {eta}"
    };
    ProgressBar::new(len)
        .with_style(ProgressStyle::with_template(template).expect("the template is valid"))
}

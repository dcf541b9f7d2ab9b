//! The progress bar of `push` and `fetch`: drawn on stderr only when it is a terminal and
//! the user did not ask for quiet, so logs and pipes stay clean.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// A bar of `len` units (`bytes` formats them as sizes), or a hidden one.
pub fn bar(enabled: bool, len: u64, bytes: bool) -> ProgressBar {
    if !enabled || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    ProgressBar::new(len).with_style(style(bytes))
}

fn style(bytes: bool) -> ProgressStyle {
    let template = if bytes {
        "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}"
    } else {
        "{bar:40} {pos}/{len} chunks in {elapsed}, eta {eta}"
    };
    ProgressStyle::with_template(template).expect("the template is valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_templates_parse() {
        // They are only drawn on a terminal, which tests do not have: parse them here.
        let _ = (style(true), style(false));
    }

    #[test]
    fn quiet_or_not_a_terminal_hides_the_bar() {
        assert!(bar(false, 10, true).is_hidden());
        if !std::io::stderr().is_terminal() {
            assert!(bar(true, 10, false).is_hidden());
        }
    }
}

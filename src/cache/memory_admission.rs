//! When chunks enter the memory tier: the `--memory-admission` setting and its parser
//! (the tier's own rule for flash reads, the doorkeeper, is `memory::second_look`).

/// When chunks enter the memory tier (`--memory-admission`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryAdmission {
    /// When a PUT stores it.
    pub on_put: bool,
    /// When a GET reads it whole from flash.
    pub on_hit: bool,
}

impl std::fmt::Display for MemoryAdmission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.on_put, self.on_hit) {
            (true, true) => f.write_str("put,hit"),
            (true, false) => f.write_str("put"),
            (false, true) => f.write_str("hit"),
            (false, false) => f.write_str("none"),
        }
    }
}

/// Parses `--memory-admission`: `none`, or a comma-separated list of `put` and `hit`.
pub fn parse_admission(text: &str) -> Result<MemoryAdmission, String> {
    let mut admission = MemoryAdmission {
        on_put: false,
        on_hit: false,
    };
    if text.trim() == "none" {
        return Ok(admission);
    }
    for word in text.split(',').map(str::trim) {
        match word {
            "put" => admission.on_put = true,
            "hit" => admission.on_hit = true,
            other => return Err(format!("{other:?} is not put, hit or none")),
        }
    }
    Ok(admission)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admission_lists_parse_and_print_back() {
        for text in ["put,hit", "put", "hit", "none"] {
            assert_eq!(parse_admission(text).unwrap().to_string(), text);
        }
        assert_eq!(parse_admission("hit, put").unwrap().to_string(), "put,hit");
        assert!(parse_admission("always").unwrap_err().contains("always"));
    }
}

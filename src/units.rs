//! Sizes, durations and percentages as an operator writes them: `64K`, `1G`, `2TiB`,
//! `10s`, `500ms`, `2m`, `5%`. One parser for each, so every flag, `CHUNKD_*` variable, config-file key and
//! device spec (`PATH:SIZE`) accepts the same forms and says the same thing about a bad one.
//!
//! Sizes are binary (`1K` = 1024 bytes), as disks and memory are sized here; a bare number
//! is bytes, a bare duration seconds. Hand-written rather than `bytesize` or `humantime`:
//! `bytesize` reads `K`/`KB` as 1000, which would make `--max-chunk-bytes 1M` 48,576 bytes
//! smaller, and `humantime` refuses a bare number of seconds (`CHUNKD_IDLE_TIMEOUT=60`)
//! and fractions (`1.5s`), both accepted today.
//!
//! **Architecture invariant:** pure functions of their text: no I/O, no state, no panics
//! on any input.

use std::time::Duration;

/// Why a size or duration did not parse. The messages quote the text as given (trimmed).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    #[error("{text:?} is not a size")]
    NotASize { text: String },
    #[error("{text:?}: unknown size unit {unit:?}")]
    UnknownSizeUnit { text: String, unit: String },
    #[error("{text:?} is too large")]
    SizeTooLarge { text: String },
    #[error("{text:?} is not a duration (e.g. 10s, 500ms)")]
    NotADuration { text: String },
    #[error("{text:?}: unknown unit {unit:?} (ms, s, m, h)")]
    UnknownDurationUnit { text: String, unit: String },
    #[error("{text:?}: {why}")]
    DurationOutOfRange { text: String, why: String },
    #[error("{text:?} is not a percentage from 0 to 100")]
    NotAPercentage { text: String },
}

/// Parses `4096`, `64K`, `512M`, `1G`, `2T` (binary units; `KiB`/`MiB`/… and `KB`/`MB`/…
/// also accepted, as the same binary units; lower-case letters too).
pub fn parse_size(text: &str) -> Result<u64, UnitError> {
    let text = text.trim();
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(digits_end);
    let value: u64 = digits.parse().map_err(|_| UnitError::NotASize {
        text: text.to_string(),
    })?;
    let shift = match unit.trim_end_matches("iB").trim_end_matches('B') {
        "" => 0,
        "K" | "k" => 10,
        "M" | "m" => 20,
        "G" | "g" => 30,
        "T" | "t" => 40,
        _ => {
            return Err(UnitError::UnknownSizeUnit {
                text: text.to_string(),
                unit: unit.to_string(),
            });
        }
    };
    value
        .checked_mul(1 << shift)
        .ok_or_else(|| UnitError::SizeTooLarge {
            text: text.to_string(),
        })
}

/// Parses `10s`, `500ms`, `2m` (or `2min`), `1h`, `1.5s` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, UnitError> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().map_err(|_| UnitError::NotADuration {
        text: text.to_string(),
    })?;
    let seconds = match unit.trim() {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => {
            return Err(UnitError::UnknownDurationUnit {
                text: text.to_string(),
                unit: other.to_string(),
            });
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| UnitError::DurationOutOfRange {
        text: text.to_string(),
        why: e.to_string(),
    })
}

/// Parses a whole percentage, `N` or `N%`, 0 to 100.
pub fn parse_percent(text: &str) -> Result<u8, UnitError> {
    let text = text.trim();
    match text.trim_end_matches('%').trim().parse::<u8>() {
        Ok(percent) if percent <= 100 => Ok(percent),
        _ => Err(UnitError::NotAPercentage {
            text: text.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_are_whole_and_at_most_100() {
        assert_eq!(parse_percent("5%"), Ok(5));
        assert_eq!(parse_percent(" 100 "), Ok(100));
        assert_eq!(parse_percent("0 %"), Ok(0));
        for bad in ["101%", "-1", "2.5%", "%", "five"] {
            assert!(parse_percent(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes_parse_in_binary_units() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size(" 64K "), Ok(64 << 10));
        assert_eq!(parse_size("512K"), Ok(512 << 10));
        assert_eq!(parse_size("1m"), Ok(1 << 20));
        assert_eq!(parse_size("2T"), Ok(2 << 40));
        assert_eq!(parse_size("3GB"), Ok(3 << 30));
        assert_eq!(parse_size("3GiB"), Ok(3 << 30));
        assert!(parse_size("1X").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("-1K").is_err());
        assert!(parse_size("99999999999999T").is_err());
    }

    #[test]
    fn size_errors_quote_the_text() {
        let message = |text| parse_size(text).unwrap_err().to_string();
        assert_eq!(message("lots"), r#""lots" is not a size"#);
        assert_eq!(message("1X"), r#""1X": unknown size unit "X""#);
        assert_eq!(
            message("99999999999999T"),
            r#""99999999999999T" is too large"#
        );
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("2min"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("1 fortnight").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn duration_errors_quote_the_text() {
        let message = |text| parse_duration(text).unwrap_err().to_string();
        assert_eq!(
            message("soon"),
            r#""soon" is not a duration (e.g. 10s, 500ms)"#
        );
        assert_eq!(message("1d"), r#""1d": unknown unit "d" (ms, s, m, h)"#);
    }
}

//! Reading samples out of the Prometheus text `/metrics` serves.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::get;

/// The sum of every sample of `name` whose labels include all of `labels`.
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut sum = 0.0;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let (label_text, value) = match rest.strip_prefix('{') {
            Some(inner) => inner.split_once("} ").expect("a closed label set"),
            None => match rest.strip_prefix(' ') {
                Some(value) => ("", value),
                None => continue, // another metric with this prefix
            },
        };
        let has_all = labels.iter().all(|(k, v)| {
            label_text
                .split(',')
                .any(|pair| pair == format!("{k}=\"{v}\""))
        });
        if has_all {
            sum += value
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .expect("a numeric sample");
        }
    }
    sum
}

/// `GET /metrics` as text.
pub fn metrics(addr: SocketAddr) -> String {
    let response = get(addr, "/metrics", &[]);
    assert_eq!(response.status, 200);
    response.text()
}

/// Polls `/metrics` until `check` holds for the sum of `name{labels}` (a response's
/// metrics are recorded as its last byte is handed over, so allow a moment); fails after
/// 5 s with the last value.
pub fn wait_for_metric(
    addr: SocketAddr,
    name: &str,
    labels: &[(&str, &str)],
    check: impl Fn(f64) -> bool,
) -> f64 {
    let started = Instant::now();
    loop {
        let value = metric(&metrics(addr), name, labels);
        if check(value) {
            return value;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{name}{labels:?} is {value}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

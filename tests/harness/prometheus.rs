//! Reading samples out of the Prometheus text `/metrics` serves.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::exposition::metric;
use super::get;

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

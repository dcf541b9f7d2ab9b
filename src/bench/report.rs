//! The report of a benchmark: each case's chunkd and peer figures side by side, the median
//! of the per-round ratios and their spread (the lowest and highest round), since on shared
//! machines only ratios measured in the same round mean much.

use super::fio::FioResult;
use super::load::Measured;

/// Formats bytes per second in GB/s (10^9, as fio and disk vendors count).
pub fn gbps(bytes_per_second: f64) -> String {
    format!("{:6.2} GB/s", bytes_per_second / 1e9)
}

/// One comparison, measured in rounds that alternate chunkd and its peer.
pub struct Case {
    label: String,
    target: Option<f64>,
    ours: Vec<Measured>,
    peer: Vec<FioResult>,
}

impl Case {
    pub fn new(label: &str, target: Option<f64>) -> Case {
        Case {
            label: label.into(),
            target,
            ours: Vec::new(),
            peer: Vec::new(),
        }
    }

    pub fn add(&mut self, ours: Measured, peer: FioResult) {
        self.ours.push(ours);
        self.peer.push(peer);
    }

    /// Each round's ratio; the report gives their median (drift of the shared disk between
    /// rounds cancels out within a round) and their spread.
    pub fn ratios(&self) -> Vec<f64> {
        self.ours
            .iter()
            .zip(&self.peer)
            .map(|(o, p)| o.bytes_per_second() / p.bytes_per_second)
            .collect()
    }
}

/// `min-max` of the rounds' ratios: how far one round can be trusted on this machine.
pub fn spread(ratios: &[f64]) -> String {
    let min = ratios.iter().copied().fold(f64::INFINITY, f64::min);
    let max = ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{min:.2}-{max:.2}")
}

/// One case measured healthy and with a device offline, alternating in rounds.
pub struct Degraded {
    pub label: &'static str,
    pub degraded: Vec<f64>,
    pub healthy: Vec<f64>,
}

/// The middle value (the upper one of an even count); NaN for none.
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Prints the notes, the table of cases against their peers, and the degraded reads.
pub fn print_report(cases: &[Case], degraded: &[Degraded], rebuilt: u64, notes: &[String]) {
    println!();
    for note in notes {
        println!("{note}");
    }
    println!(
        "medians over rounds; ratio = median of each round's chunkd / peer; rounds = the lowest and highest round's ratio"
    );
    println!(
        "{:40} {:>11} {:>8} {:>8}   {:>11} {:>8} {:>8}   {:>6} {:>9}  target",
        "case", "chunkd", "p50 ms", "p99 ms", "fio", "p50 ms", "p99 ms", "ratio", "rounds"
    );
    for case in cases {
        let ratios = case.ratios();
        let ratio = median(ratios.clone());
        let ours = |f: &dyn Fn(&Measured) -> f64| median(case.ours.iter().map(f).collect());
        let peer = |f: &dyn Fn(&FioResult) -> f64| median(case.peer.iter().map(f).collect());
        let errors: u64 = case.ours.iter().map(|m| m.errors).sum();
        let verdict = case.target.map_or(String::new(), |t| {
            format!(">= {t:.2} {}", if ratio >= t { "met" } else { "MISSED" })
        });
        println!(
            "{:40} {} {:8.2} {:8.2}   {} {:8.2} {:8.2}   {:5.2}x {:>9}  {verdict}{}",
            case.label,
            gbps(ours(&|m| m.bytes_per_second())),
            ours(&|m| m.percentile_us(0.5)) / 1000.0,
            ours(&|m| m.percentile_us(0.99)) / 1000.0,
            gbps(peer(&|p| p.bytes_per_second)),
            peer(&|p| p.p50_us) / 1000.0,
            peer(&|p| p.p99_us) / 1000.0,
            ratio,
            spread(&ratios),
            match case.ours.iter().find_map(|m| m.first_error.as_ref()) {
                Some(first) => format!("  ({errors} errors, first: {first})"),
                None => String::new(),
            },
        );
    }
    println!();
    println!(
        "{:40} {:>11} {:>11}   {:>6} {:>9}  target",
        "one device offline", "degraded", "healthy", "ratio", "rounds"
    );
    for case in degraded {
        let ratios: Vec<f64> = case
            .degraded
            .iter()
            .zip(&case.healthy)
            .map(|(d, h)| d / h)
            .collect();
        let ratio = median(ratios.clone());
        println!(
            "{:40} {} {}   {:5.2}x {:>9}  >= 0.80 {}",
            case.label,
            gbps(median(case.degraded.clone())),
            gbps(median(case.healthy.clone())),
            ratio,
            spread(&ratios),
            if ratio >= 0.8 { "met" } else { "MISSED" }
        );
    }
    println!("shards rebuilt while degraded: {rebuilt}");
}

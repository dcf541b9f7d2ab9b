//! `chunkd sim`, run as scripts run it: the real binary on a trace file, its table, its
//! JSON and its errors.

use std::fs;

use serde_json::Value;

#[path = "common/binary.rs"]
mod binary;

use binary::{chunkd, run_ok};

/// Writes `trace` to a file in a new directory and replays it at `capacity` with `--json`.
fn replay_json(trace: &str, capacity: &str) -> (tempfile::TempDir, Vec<Value>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trace.txt");
    fs::write(&path, trace).unwrap();
    let json = run_ok(&[
        "sim",
        "--trace",
        path.to_str().unwrap(),
        "--capacity",
        capacity,
        "--json",
    ]);
    (dir, serde_json::from_str(&json).unwrap())
}

/// Eleven requests of 100 bytes at a capacity of three. Misses worked by hand:
///
/// ```text
///            a  b  c  a  d  a  b  e  a  c  b
/// fifo       m  m  m  h  m  m  m  m  h  m  h   8  (d evicts a, a evicts b, b c, e d, c a)
/// lru        m  m  m  h  m  h  m  m  h  m  m   8  (d evicts b, b c, e d, c b, b e)
/// lru2       m  m  m  h  m  h  m  m  h  m  h   7  (d evicts b, seen once; b returns seen
///                                                 twice, so c goes, then d, then e)
/// chunkd     m  m  m  h  m  h  m  m  h  m  h   7  (small 10 % = 30 bytes: d moves the hit
///                                                 a to main and evicts b to the ghost; b
///                                                 returns to main; c, d leave small; c
///                                                 returns to main; e leaves small)
/// ```
const TRACE: &str = "# hand-worked
a 100
b 100
c 100
a 100
d 100

a 100
b 100
e 100
a 100
c 100
b 100
";

#[test]
fn a_hand_worked_trace_gives_the_hand_worked_misses() {
    let (dir, outcomes) = replay_json(TRACE, "300");
    let misses: Vec<(&str, u64)> = outcomes
        .iter()
        .map(|o| (o["policy"].as_str().unwrap(), o["misses"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        misses,
        [("chunkd", 7), ("lru", 8), ("fifo", 8), ("lru2", 7)]
    );
    // The JSON shape scripts depend on: these five keys, nothing else.
    for outcome in &outcomes {
        let mut keys: Vec<&str> = outcome
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "byte_miss_ratio",
                "miss_ratio",
                "misses",
                "policy",
                "requests"
            ]
        );
        assert_eq!(outcome["requests"], 11);
        let ratio = outcome["misses"].as_f64().unwrap() / 11.0;
        assert!((outcome["miss_ratio"].as_f64().unwrap() - ratio).abs() < 1e-9);
        // One size: the byte ratio is the object ratio.
        assert_eq!(outcome["byte_miss_ratio"], outcome["miss_ratio"]);
    }
    // The table names every policy; 60 % of the 500 distinct bytes is 300.
    let path = dir.path().join("trace.txt");
    let table = run_ok(&[
        "sim",
        "--trace",
        path.to_str().unwrap(),
        "--capacity",
        "60%",
    ]);
    assert!(table.contains("capacity 300 bytes"), "{table}");
    for policy in ["chunkd", "lru", "fifo", "lru2"] {
        assert!(table.contains(policy), "{table}");
    }
}

#[test]
fn byte_miss_ratios_weigh_requests_by_size() {
    // Capacity 1000: a 900-byte entry read twice (a miss, then a hit), then a 100-byte one
    // that fits beside it (a miss) — the same for every policy.
    let (_dir, outcomes) = replay_json("big 900\nbig 900\nsmall 100\n", "1000");
    for outcome in outcomes {
        // Misses: big, small (2 of 3); bytes missed 1000 of 1900.
        assert_eq!(outcome["misses"], 2, "{outcome}");
        let bytes = outcome["byte_miss_ratio"].as_f64().unwrap();
        assert!((bytes - 1000.0 / 1900.0).abs() < 1e-9, "{outcome}");
    }
}

#[test]
fn a_bad_line_is_an_error_naming_its_number() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trace.txt");
    fs::write(&path, "a 100\n# fine\nb 1x\n").unwrap();
    let output = chunkd(&["sim", "--trace", path.to_str().unwrap(), "--capacity", "1M"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("trace line 3"), "{stderr}");
    assert!(stderr.contains("\"1x\""), "{stderr}");
}

#[test]
fn a_generated_trace_is_saved_and_replays_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("generated.txt");
    let common = ["--capacity", "5%", "--json"];
    let generated = run_ok(
        &[
            &[
                "sim",
                "--generate",
                "bursts",
                "--objects",
                "2000",
                "--requests",
                "20000",
                "--scan-length",
                "100",
                "--seed",
                "3",
                "--write-trace",
                path.to_str().unwrap(),
            ][..],
            &common[..],
        ]
        .concat(),
    );
    let replayed = run_ok(&[&["sim", "--trace", path.to_str().unwrap()][..], &common[..]].concat());
    assert_eq!(generated, replayed);
}

#!/usr/bin/env python3
"""Issue 12's `chunkd sim` tables: miss ratios of chunkd's policy (S3-FIFO) against LRU,
FIFO and LRU-2 on generated traces, at 1 %, 5 % and 10 % of each trace's distinct bytes.

Run:

    cargo build --release
    python3 tuning/sim_tables.py                       # the four traces, ~1 min
    python3 tuning/sim_tables.py --chunkd BIN --requests 200000   # quicker

Python 3 standard library only. Prints a markdown table (object and byte miss ratios of
the four policies, and chunkd's relative gain over LRU) and checks issue 12's bar: chunkd's
miss ratio ≤ LRU's everywhere, and ≥ 10 % lower (relative) on the scan-heavy traces.
Exit status 0 when the bar is met, 1 when not, 2 on a failed run.

The traces (all `--objects` Zipf objects of 512 KiB, `--requests` requests, seed 1):

- zipf-0.8-scans: Zipf 0.8 with 10 % of the requests in scans of 1000 new keys read once.
- zipf-1.0-scans: the same at Zipf 1.0.
- cold-bursts:    Zipf 0.8 with 20 % of the requests in bursts of cold starts (1000 new
                  chunks of an image read once, in order, interleaved with the Zipf reads).
- loop:           Zipf 0.8 with half of the requests walking a loop 10 % larger than the
                  cache.

The scan-heavy traces, for the 10 % bar, are the first three.
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

TRACES = [
    ("zipf-0.8-scans", ["--generate", "zipf", "--zipf-skew", "0.8", "--scan-fraction", "0.1"], True),
    ("zipf-1.0-scans", ["--generate", "zipf", "--zipf-skew", "1.0", "--scan-fraction", "0.1"], True),
    ("cold-bursts", ["--generate", "bursts", "--zipf-skew", "0.8", "--scan-fraction", "0.2"], True),
    ("loop", ["--generate", "loop", "--zipf-skew", "0.8", "--scan-fraction", "0.5"], False),
]
CAPACITIES = ["1%", "5%", "10%"]
POLICIES = ["chunkd", "lru", "fifo", "lru2"]
SCAN_GAIN = 0.10


def default_binary():
    root = Path(__file__).resolve().parent.parent
    target = Path(os.environ.get("CARGO_TARGET_DIR", root / "target"))
    return str(target / "release" / "chunkd")


def run(binary, trace_args, capacity, objects, requests):
    command = [binary, "sim", *trace_args, "--capacity", capacity, "--json",
               "--objects", str(objects), "--requests", str(requests), "--seed", "1"]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{result.stderr}")
    return {o["policy"]: o for o in json.loads(result.stdout)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunkd", default=os.environ.get("CHUNKD", default_binary()))
    parser.add_argument("--objects", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=1_000_000)
    args = parser.parse_args()
    if not Path(args.chunkd).exists():
        sys.exit(f"no chunkd binary at {args.chunkd}: cargo build --release, or --chunkd PATH")

    header = ["trace", "cache"] + [f"{p} miss" for p in POLICIES] \
        + [f"{p} byte miss" for p in POLICIES] + ["chunkd vs lru"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    failures = []
    for name, trace_args, scan_heavy in TRACES:
        for capacity in CAPACITIES:
            outcomes = run(args.chunkd, trace_args, capacity, args.objects, args.requests)
            ours, lru = outcomes["chunkd"]["miss_ratio"], outcomes["lru"]["miss_ratio"]
            gain = (lru - ours) / lru if lru > 0 else 0.0
            row = [name, capacity] \
                + [f"{outcomes[p]['miss_ratio']:.4f}" for p in POLICIES] \
                + [f"{outcomes[p]['byte_miss_ratio']:.4f}" for p in POLICIES] \
                + [f"{100 * gain:+.1f} %"]
            print("| " + " | ".join(row) + " |", flush=True)
            if ours > lru:
                failures.append(f"{name} at {capacity}: chunkd {ours:.4f} > lru {lru:.4f}")
            if scan_heavy and gain < SCAN_GAIN:
                failures.append(f"{name} at {capacity}: chunkd only {100 * gain:.1f} % below lru")
    print()
    print(f"{args.objects} objects, {args.requests} requests a trace; "
          "'chunkd vs lru' is LRU's miss ratio minus chunkd's, relative to LRU's.")
    if failures:
        print("BAR NOT MET:\n  " + "\n  ".join(failures))
        return 1
    print("bar met: chunkd <= lru everywhere, >= 10 % lower on the scan-heavy traces")
    return 0


if __name__ == "__main__":
    sys.exit(main())

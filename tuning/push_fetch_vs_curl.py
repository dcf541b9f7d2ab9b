#!/usr/bin/env python3
"""push_fetch_vs_curl.py: `chunkd push` and `chunkd fetch` against the same transfers
done with `curl --parallel`, on one real image and one node, in alternating rounds.

push:  chunkd push DIR            vs  curl --parallel PUTs of the same chunks (a generated
                                      config; the node restarted empty before each, so
                                      both upload every chunk)
fetch: chunkd fetch DIR --out F   vs  curl --parallel GETs of the same chunks into a copy
                                      of the pack's chunks/, then `chunkd unpack` of it

The image is an ext4 file system made with `mkfs.ext4 -d` from real files (the first
--content of /usr/share, /usr/lib, ...). Prints each round's seconds, then the median of
each and the ratio curl / chunkd (above 1.0: chunkd is faster). See tuning/README.md.
"""

import argparse
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

SOURCES = ["/usr/share", "/usr/lib", "/usr/bin", "/usr/libexec"]


def parse_size(text):
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(text[:-1]) * units[text[-1].upper()] if text[-1].upper() in units else int(text)


def log(message):
    print(message, file=sys.stderr, flush=True)


def run(args, **kw):
    return subprocess.run(args, check=True, **kw)


def copy_real_files(into, budget):
    """Regular files from SOURCES, walked in name order, until `budget` bytes."""
    copied = 0
    for source in SOURCES:
        for root, dirs, files in os.walk(source):
            dirs.sort()
            for name in sorted(files):
                path = os.path.join(root, name)
                try:
                    if os.path.islink(path) or not os.path.isfile(path):
                        continue
                    size = os.path.getsize(path)
                    if size > budget - copied:
                        continue
                    shutil.copyfile(path, into / f"{copied:012}-{name}")
                except OSError:
                    continue
                copied += size
                if copied >= budget:
                    return copied
    return copied


def make_image(work, content_bytes):
    image = work / "fs.ext4"
    if image.exists():
        log(f"reusing {image}")
        return image
    content = work / "content"
    shutil.rmtree(content, ignore_errors=True)
    content.mkdir()
    copied = copy_real_files(content, content_bytes)
    size_mb = copied * 5 // 4 // (1 << 20) + 64
    log(f"mkfs.ext4 -d of {copied >> 20} MiB of real files into a {size_mb} MiB image")
    run(["mkfs.ext4", "-q", "-F", "-d", str(content), str(image), f"{size_mb}M"])
    shutil.rmtree(content)
    return image


class Node:
    """`chunkd serve` on fresh file devices; stopped (and its data removed) by stop()."""

    def __init__(self, chunkd, work, port, device_size, extra):
        self.data = work / "node"
        shutil.rmtree(self.data, ignore_errors=True)
        self.data.mkdir()
        args = [chunkd, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", str(self.data)]
        for n in range(5):
            args += ["--device", f"{self.data}/d{n}:{device_size}"]
        self.log = open(work / "node.log", "ab")
        self.process = subprocess.Popen(args + extra, stdout=subprocess.DEVNULL, stderr=self.log)
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                pass
            if self.process.poll() is not None:
                sys.exit(f"the node exited; see {work / 'node.log'}")
            time.sleep(0.05)
        self.stop()
        sys.exit("the node did not turn ready within 60 s")

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()
        shutil.rmtree(self.data, ignore_errors=True)
        # Let the removal's disk work finish before the next contestant is timed: without
        # this the second push of a round ran ~10% slower, whoever it was.
        os.sync()
        time.sleep(1)


def curl_config(path, ids, url, chunks_dir, upload):
    with open(path, "w") as config:
        for chunk_id in ids:
            config.write(f'url = "{url}/v1/chunks/{chunk_id}"\n')
            if upload:
                config.write(f'upload-file = "{chunks_dir}/{chunk_id}"\noutput = "/dev/null"\n')
            else:
                config.write(f'output = "{chunks_dir}/{chunk_id}"\n')


def curl(config, parallel):
    # Expect: off, so curl does not wait for a 100 Continue before each body.
    run(["curl", "-sS", "--no-progress-meter", "--fail", "--parallel", "--parallel-max", str(parallel),
         "-H", "Expect:", "--config", str(config)])


CPU = []  # client CPU seconds (user + sys of the child processes) of each timed() call


def timed(action):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    action()
    seconds = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunkd", default="target/release/chunkd", help="the chunkd binary")
    parser.add_argument("--node-chunkd", help="the binary that serves (default: --chunkd)")
    parser.add_argument("--work", default="/var/tmp/push-fetch-bench", help="scratch directory (kept: the image is reused)")
    parser.add_argument("--content", default="1G", help="bytes of real files in the image (default 1G)")
    parser.add_argument("--rounds", type=int, default=4,
                        help="rounds (even, so each side goes first as often)")
    parser.add_argument("--parallel", type=int, default=16, help="requests in flight, both clients")
    parser.add_argument("--port", type=int, default=17170)
    parser.add_argument("--device-size", default="1G", help="each of the node's five file devices")
    parser.add_argument("--chunkd-args", default="", help="extra `chunkd serve` arguments")
    parser.add_argument("--cases", default="push,fetch")
    options = parser.parse_args()
    for tool in ["curl", "mkfs.ext4"]:
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is needed (apt-get install curl e2fsprogs)")
    chunkd = str(Path(options.chunkd).resolve())
    node_chunkd = str(Path(options.node_chunkd or options.chunkd).resolve())
    work = Path(options.work)
    work.mkdir(parents=True, exist_ok=True)
    image = make_image(work, parse_size(options.content))
    packed = work / "packed"
    if not (packed / "manifest.json").exists():
        shutil.rmtree(packed, ignore_errors=True)
        log("packing")
        run([chunkd, "pack", str(image), "--out", str(packed), "--quiet"], stdout=subprocess.DEVNULL)
    ids = sorted(os.listdir(packed / "chunks"))
    sealed = sum(os.path.getsize(packed / "chunks" / i) for i in ids)
    log(f"image {os.path.getsize(image) >> 20} MiB, {len(ids)} distinct chunks, {sealed >> 20} MiB sealed")
    extra = options.chunkd_args.split()
    start = lambda: Node(node_chunkd, work, options.port, options.device_size, extra)
    parallel = str(options.parallel)
    cases = options.cases.split(",")
    times = {"push": {"chunkd": [], "curl": []}, "fetch": {"chunkd": [], "curl": [], "curl alone": []}}

    def push_chunkd(node):
        run([chunkd, "push", str(packed), "--node", node.url, "--parallel", parallel, "--quiet"],
            stdout=subprocess.DEVNULL)

    def push_curl(node):
        config = work / "put.curl"
        curl_config(config, ids, node.url, packed / "chunks", upload=True)
        return lambda: curl(config, options.parallel)

    out = work / "fetched.ext4"
    curl_dir = work / "curl-pack"

    def fetch_chunkd(node):
        run([chunkd, "fetch", str(packed), "--node", node.url, "--out", str(out),
             "--parallel", parallel, "--quiet"], stdout=subprocess.DEVNULL)

    def fetch_curl(node):
        run([chunkd, "unpack", str(curl_dir), "--out", str(out)], stdout=subprocess.DEVNULL)

    for round_ in range(options.rounds):
        order = ["chunkd", "curl"] if round_ % 2 == 0 else ["curl", "chunkd"]
        if "push" in cases:
            for who in order:
                node = start()
                try:
                    if who == "chunkd":
                        seconds = timed(lambda: push_chunkd(node))
                    else:
                        action = push_curl(node)
                        seconds = timed(action)
                finally:
                    node.stop()
                times["push"][who].append(seconds)
                log(f"round {round_ + 1} push  {who:6} {seconds:6.2f} s (client CPU {CPU[-1]:.2f} s)")
        if "fetch" in cases:
            node = start()
            try:
                push_curl(node)()  # the chunks only: fetch needs no manifest on the node
                for who in order:
                    out.unlink(missing_ok=True)
                    if who == "chunkd":
                        seconds = timed(lambda: fetch_chunkd(node))
                    else:
                        shutil.rmtree(curl_dir, ignore_errors=True)
                        (curl_dir / "chunks").mkdir(parents=True)
                        shutil.copy(packed / "manifest.json", curl_dir)
                        config = work / "get.curl"
                        curl_config(config, ids, node.url, curl_dir / "chunks", upload=False)
                        download = timed(lambda: curl(config, options.parallel))
                        seconds = download + timed(lambda: fetch_curl(node))
                        times["fetch"]["curl alone"].append(download)
                    if round_ == 0:
                        run(["cmp", str(out), str(image)])
                    times["fetch"][who].append(seconds)
                    detail = f" (GETs {download:.2f} s)" if who == "curl" else ""
                    cpu = CPU[-1] + (CPU[-2] if who == "curl" else 0)
                    log(f"round {round_ + 1} fetch {who:6} {seconds:6.2f} s{detail} (client CPU {cpu:.2f} s)")
            finally:
                node.stop()
    shutil.rmtree(curl_dir, ignore_errors=True)
    out.unlink(missing_ok=True)
    print(f"image {os.path.getsize(image)} bytes, {len(ids)} distinct chunks ({sealed} bytes sealed), "
          f"--parallel {options.parallel}, {options.rounds} rounds")
    for case in cases:
        ours, theirs = times[case]["chunkd"], times[case]["curl"]
        ratios = " ".join(f"{c / o:.2f}" for o, c in zip(ours, theirs))
        peer = "curl --parallel" + (" + unpack" if case == "fetch" else "")
        print(f"{case:5}: chunkd median {statistics.median(ours):.2f} s, {peer} median "
              f"{statistics.median(theirs):.2f} s, ratio {statistics.median(theirs) / statistics.median(ours):.2f}x "
              f"(per round: {ratios})")
        if case == "fetch":
            alone = statistics.median(times[case]["curl alone"])
            print(f"       curl --parallel GETs alone median {alone:.2f} s, ratio {alone / statistics.median(ours):.2f}x")


if __name__ == "__main__":
    main()

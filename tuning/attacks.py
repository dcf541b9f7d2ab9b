#!/usr/bin/env python3
"""Bystander availability and memory under four hostile clients (issue 11's "Done when").

Run (as any user; root only lets it raise RLIMIT_NOFILE past the hard limit):

    cargo build --release
    python3 tuning/attacks.py --chunkd target/release/chunkd            # all four, ~7 min
    python3 tuning/attacks.py --chunkd BIN --attacks slowloris --duration 10 --after 5  # smoke
    python3 tuning/attacks.py --chunkd BIN -- --send-timeout 10s     # after --: flags for serve

Python 3.11 standard library only. It is a measurement tool: no test or CI runs it.

What it does, all on loopback and bounded in time:

1. Starts `chunkd serve --listen 127.0.0.1:PORT --data-dir TMP --device TMP/dN:256M` (five
   devices) in a scratch directory (removed at the end), with RLIMIT_NOFILE raised to
   65536 (or the hard limit) for itself and the node; waits for /readyz.
2. PUTs --chunks (64) random 1 MiB chunks, named with `chunkd id`.
3. For each attack (and first `none`, the bystander alone, as a baseline): restarts the
   node on the same store (so no attack inherits another's memory; --same-node keeps
   one); runs the bystander alone for --warmup (5) s so the node's buffers are warm, as in
   service; reads the node's RSS (VmRSS of /proc/PID/status) and
   chunkd_connections_closed_total; starts the attack in a child process (so its event
   loop cannot delay the bystander's measurements) FROM 127.0.0.2 (its sockets are bound
   there before connect: the node limits per client address and the bystander is another
   client); after --ramp (1) s, until the attack's --duration (30) s are up, a bystander on
   127.0.0.1 GETs random chunks one at a time, each on a fresh HTTP/1.1 connection, with
   a 5 s timeout for the whole request (connect to last body byte); a request counts as
   completed when it got 200 and exactly the bytes stored. RSS is sampled every 0.25 s
   (the maximum is reported). Then the attack's sockets are all closed and RSS is read
   again --after (30) s later.
4. Prints one table row per attack, with what the node closed by reason (delta of
   chunkd_connections_closed_total from before the attack to the final RSS read).

Attacks (issue 11's reproductions):
  slow-reader  8 h2c connections, SETTINGS_INITIAL_WINDOW_SIZE=0, each opening as many
               GET streams of 1 MiB chunks as the node allows (its
               SETTINGS_MAX_CONCURRENT_STREAMS, at most 256), never a WINDOW_UPDATE, a
               PING every 5 s.
  slow-writer  600 HTTP/1.1 PUTs, one per connection, Content-Length: 1048576, 64 bytes
               of body every 5 s.
  flood        up to 10,050 TCP connections that send nothing (opened once, held; the
               ones the node closes are not reopened).
  slowloris    200 connections sending the h2 preface `PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n`
               one byte every 4 s, and 200 sending an HTTP/1.1 request header one byte
               every 4 s.

Targets (issue 11): >= 90 % of the bystander's requests complete, p99 < 250 ms, RSS 30 s
after the attack within 2x of before.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import re
import resource
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ATTACKER = "127.0.0.2"
BYSTANDER = "127.0.0.1"
CHUNK = 1 << 20
ATTACKS = ["slow-reader", "slow-writer", "flood", "slowloris"]
BASELINE = "none"  # the bystander alone, for comparison
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def raise_nofile(want: int = 65536) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for lim in (want, hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (lim, max(lim, hard)))
            return lim
        except (ValueError, OSError):
            continue
    return soft


# ---------------------------------------------------------------- HTTP/2 frames by hand

def h2_frame(ftype: int, flags: int, stream: int, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", stream) + payload


def hpack_int(value: int, prefix_bits: int, first: int = 0) -> bytes:
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out = bytearray([first | limit])
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def hpack_literal(name: bytes, value: bytes) -> bytes:
    """Literal header field without indexing, new name, no Huffman (RFC 7541 6.2.2)."""
    return b"\x00" + hpack_int(len(name), 7) + name + hpack_int(len(value), 7) + value


def h2_get_headers(stream: int, path: str, authority: str) -> bytes:
    block = b"".join(hpack_literal(n, v) for n, v in [
        (b":method", b"GET"), (b":scheme", b"http"),
        (b":path", path.encode()), (b":authority", authority.encode())])
    return h2_frame(0x1, 0x4 | 0x1, stream, block)  # END_HEADERS | END_STREAM


def h2_settings(pairs: list[tuple[int, int]], ack: bool = False) -> bytes:
    return h2_frame(0x4, 0x1 if ack else 0, 0, b"".join(struct.pack(">HI", k, v) for k, v in pairs))


# ---------------------------------------------------------------- attacks (child process)

class Tally:
    def __init__(self) -> None:
        self.opened = 0
        self.connect_failed = 0
        self.closed_by_server = 0
        self.notes: dict[str, int] = {}

    def note(self, key: str, n: int = 1) -> None:
        self.notes[key] = self.notes.get(key, 0) + n


async def open_from_attacker(port: int, tally: Tally, timeout: float = 5.0):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        sock.bind((ATTACKER, 0))
        loop = asyncio.get_running_loop()
        await asyncio.wait_for(loop.sock_connect(sock, (BYSTANDER, port)), timeout)
        reader, writer = await asyncio.open_connection(sock=sock)
    except (OSError, asyncio.TimeoutError) as e:
        sock.close()
        tally.connect_failed += 1
        tally.note("connect:" + type(e).__name__)
        return None
    tally.opened += 1
    return reader, writer


async def watch_close(reader: asyncio.StreamReader, tally: Tally, deadline: float, on_data=None) -> bool:
    """Reads until EOF/reset or the deadline; True when the server closed first."""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        try:
            data = await asyncio.wait_for(reader.read(65536), left)
        except asyncio.TimeoutError:
            return False
        except OSError:
            data = b""
        if not data:
            tally.closed_by_server += 1
            return True
        if on_data:
            on_data(data)


async def trickle(port: int, payload: bytes, chunk: int, every: float, deadline: float,
                  tally: Tally, first: bytes = b"") -> None:
    conn = await open_from_attacker(port, tally)
    if conn is None:
        return
    reader, writer = conn
    closed = asyncio.Event()

    def on_data(data: bytes) -> None:
        m = re.match(rb"HTTP/1\.[01] (\d{3})", data)
        if m:
            tally.note("answered:" + m.group(1).decode())

    async def closer() -> None:
        if await watch_close(reader, tally, deadline, on_data):
            closed.set()

    watcher = asyncio.create_task(closer())
    try:
        if first:
            writer.write(first)
        pos = 0
        while pos < len(payload) and not closed.is_set() and time.monotonic() < deadline:
            writer.write(payload[pos:pos + chunk])
            pos += chunk
            try:
                await asyncio.wait_for(writer.drain(), 1.0)
            except (OSError, asyncio.TimeoutError):
                pass
            try:
                await asyncio.wait_for(closed.wait(), max(0.0, min(every, deadline - time.monotonic())))
            except asyncio.TimeoutError:
                pass
        await watcher
    finally:
        writer.close()


async def slow_writer(port: int, ids: list[str], duration: float, tally: Tally, conns: int = 600) -> None:
    deadline = time.monotonic() + duration
    body = os.urandom(CHUNK)
    tasks = []
    for i in range(conns):
        cid = hashlib.sha256(os.urandom(16)).hexdigest()  # an id no body will match
        head = (f"PUT /v1/chunks/{cid} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                f"Content-Length: {CHUNK}\r\nContent-Type: application/octet-stream\r\n\r\n").encode()
        tasks.append(asyncio.create_task(trickle(port, body, 64, 5.0, deadline, tally, first=head)))
        if i % 50 == 49:
            await asyncio.sleep(0.01)
    await asyncio.gather(*tasks)


async def slowloris(port: int, ids: list[str], duration: float, tally: Tally, each: int = 200) -> None:
    deadline = time.monotonic() + duration
    h1 = (f"GET /v1/chunks/{ids[0]} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
          "User-Agent: slowloris\r\nAccept: */*\r\n\r\n").encode()
    tasks = []
    for _ in range(each):
        tasks.append(asyncio.create_task(trickle(port, H2_PREFACE, 1, 4.0, deadline, tally)))
        tasks.append(asyncio.create_task(trickle(port, h1, 1, 4.0, deadline, tally)))
    await asyncio.gather(*tasks)


async def flood(port: int, ids: list[str], duration: float, tally: Tally, conns: int = 10050) -> None:
    deadline = time.monotonic() + duration
    held = []
    sem = asyncio.Semaphore(512)

    async def one() -> None:
        async with sem:
            if time.monotonic() >= deadline:
                return
            conn = await open_from_attacker(port, tally)
        if conn is not None:
            held.append(conn)
            await watch_close(conn[0], tally, deadline)

    await asyncio.gather(*(one() for _ in range(conns)))
    for _, writer in held:
        writer.close()


async def slow_reader_conn(port: int, ids: list[str], deadline: float, tally: Tally, max_streams: int = 256) -> None:
    conn = await open_from_attacker(port, tally)
    if conn is None:
        return
    reader, writer = conn
    authority = f"127.0.0.1:{port}"
    writer.write(H2_PREFACE + h2_settings([(0x2, 0), (0x4, 0)]))  # no push, window 0
    buf = bytearray()
    server_settings: dict[int, int] = {}
    got_settings = asyncio.Event()
    closed = asyncio.Event()

    def on_data(data: bytes) -> None:
        buf.extend(data)
        while len(buf) >= 9:
            length = int.from_bytes(buf[0:3], "big")
            if len(buf) < 9 + length:
                break
            ftype, flags = buf[3], buf[4]
            payload = bytes(buf[9:9 + length])
            del buf[:9 + length]
            if ftype == 0x4 and not flags & 0x1:
                for off in range(0, len(payload) - 5, 6):
                    k, v = struct.unpack(">HI", payload[off:off + 6])
                    server_settings[k] = v
                writer.write(h2_settings([], ack=True))
                got_settings.set()
            elif ftype == 0x1:
                tally.note("h2:headers")
            elif ftype == 0x0:
                tally.note("h2:data_bytes", length)
            elif ftype == 0x3:
                tally.note("h2:rst_stream")
            elif ftype == 0x7:
                tally.note("h2:goaway")

    async def closer() -> None:
        if await watch_close(reader, tally, deadline, on_data):
            closed.set()

    watcher = asyncio.create_task(closer())
    try:
        try:
            await asyncio.wait_for(got_settings.wait(), 5.0)
        except asyncio.TimeoutError:
            tally.note("h2:no_server_settings")
        streams = min(max_streams, server_settings.get(0x3, max_streams))
        tally.note("h2:streams_opened", streams)
        for i in range(streams):
            writer.write(h2_get_headers(2 * i + 1, "/v1/chunks/" + random.choice(ids), authority))
        ping = 0
        while not closed.is_set() and time.monotonic() < deadline:
            try:
                await asyncio.wait_for(writer.drain(), 1.0)
            except (OSError, asyncio.TimeoutError):
                pass
            try:
                await asyncio.wait_for(closed.wait(), max(0.0, min(5.0, deadline - time.monotonic())))
            except asyncio.TimeoutError:
                pass
            if not closed.is_set() and time.monotonic() < deadline:
                ping += 1
                writer.write(h2_frame(0x6, 0, 0, struct.pack(">Q", ping)))
        await watcher
    finally:
        writer.close()


async def slow_reader(port: int, ids: list[str], duration: float, tally: Tally, conns: int = 8) -> None:
    deadline = time.monotonic() + duration
    await asyncio.gather(*(slow_reader_conn(port, ids, deadline, tally) for _ in range(conns)))


async def no_attack(port: int, ids: list[str], duration: float, tally: Tally) -> None:
    await asyncio.sleep(duration)


async def run_attack(name: str, port: int, ids: list[str], duration: float) -> dict:
    tally = Tally()
    fn = {BASELINE: no_attack, "slow-reader": slow_reader, "slow-writer": slow_writer,
          "flood": flood, "slowloris": slowloris}[name]
    await fn(port, ids, duration, tally)
    return {"opened": tally.opened, "connect_failed": tally.connect_failed,
            "closed_by_server": tally.closed_by_server, "notes": tally.notes}


# ---------------------------------------------------------------- bystander, RSS, metrics

def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def closed_by_reason(port: int) -> dict[str, float]:
    out: dict[str, float] = {}
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            text = r.read().decode()
    except OSError:
        return out
    for m in re.finditer(r'^chunkd_connections_closed_total\{reason="([^"]+)"\} (\S+)$', text, re.M):
        out[m.group(1)] = float(m.group(2))
    return out


def bystander_get(port: int, cid: str, digest: bytes, timeout: float = 5.0) -> tuple[bool, float, str]:
    start = time.monotonic()
    deadline = start + timeout
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind((BYSTANDER, 0))
        s.settimeout(timeout)
        s.connect((BYSTANDER, port))
        s.sendall(f"GET /v1/chunks/{cid} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                  "Connection: keep-alive\r\n\r\n".encode())
        buf = bytearray()
        while b"\r\n\r\n" not in buf:
            s.settimeout(max(0.001, deadline - time.monotonic()))
            d = s.recv(65536)
            if not d:
                return False, time.monotonic() - start, "closed"
            buf += d
        head, _, body = bytes(buf).partition(b"\r\n\r\n")
        status = head.split(b" ", 2)[1].decode()
        m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
        if status != "200" or not m:
            return False, time.monotonic() - start, "status " + status
        need = int(m.group(1))
        body = bytearray(body)
        while len(body) < need:
            s.settimeout(max(0.001, deadline - time.monotonic()))
            d = s.recv(1 << 20)
            if not d:
                return False, time.monotonic() - start, "short body"
            body += d
        ok = hashlib.sha256(body).digest() == digest
        return ok, time.monotonic() - start, "ok" if ok else "wrong bytes"
    except socket.timeout:
        return False, time.monotonic() - start, "timeout"
    except OSError as e:
        return False, time.monotonic() - start, type(e).__name__
    finally:
        s.close()


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, max(0, int(round(p / 100 * len(v) + 0.5)) - 1))]


def bystander_for(port: int, chunks: dict[str, bytes], seconds: float) -> tuple[list[float], int, dict[str, int]]:
    ids = list(chunks)
    lat, ok, fails = [], 0, {}
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        cid = random.choice(ids)
        good, secs, why = bystander_get(port, cid, chunks[cid])
        lat.append(secs)
        if good:
            ok += 1
        else:
            fails[why] = fails.get(why, 0) + 1
    return lat, ok, fails


def measure(args, name: str, port: int, pid: int, chunks: dict[str, bytes], ids_file: str) -> dict:
    bystander_for(port, chunks, args.warmup)  # the node's buffers warm, as in normal service
    time.sleep(1.0)
    before = rss_mib(pid)
    cut0 = closed_by_reason(port)
    attack = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "_attack", name, "--port", str(port),
         "--ids-file", ids_file, "--duration", str(args.duration)],
        stdout=subprocess.PIPE, text=True)
    peak = [before]
    stop = threading.Event()

    def sampler() -> None:
        while not stop.wait(0.25):
            try:
                peak[0] = max(peak[0], rss_mib(pid))
            except OSError:
                return

    t = threading.Thread(target=sampler, daemon=True)
    t.start()
    time.sleep(args.ramp)  # let the attack connect before the clock starts
    lat, ok, fails = bystander_for(port, chunks, args.duration - args.ramp)
    out, _ = attack.communicate(timeout=args.duration + 120)
    during = peak[0]
    stop.set()
    t.join()
    attack_report = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
    time.sleep(args.after)
    after = rss_mib(pid)
    cut1 = closed_by_reason(port)
    cuts = {k: int(v - cut0.get(k, 0)) for k, v in cut1.items() if v - cut0.get(k, 0) > 0}
    return {"attack": name, "attempted": len(lat), "completed": ok, "fails": fails,
            "p50": pct(lat, 50) * 1000, "p99": pct(lat, 99) * 1000,
            "rss_before": before, "rss_during": during, "rss_after": after,
            "cuts": cuts, "client": attack_report}


# ---------------------------------------------------------------- main

def start_node(args, tmp: str, port: int) -> subprocess.Popen:
    cmd = [args.chunkd, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", os.path.join(tmp, "data")]
    for i in range(5):
        cmd += ["--device", os.path.join(tmp, f"d{i}:{args.device_size}")]
    cmd += args.extra
    log = open(os.path.join(tmp, "chunkd.log"), "ab")
    node = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log)
    print("node:", " ".join(cmd), file=sys.stderr)
    for _ in range(600):
        if node.poll() is not None:
            sys.exit(f"chunkd exited with {node.returncode}; log: {open(log.name).read()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                if r.status == 200:
                    return node
        except OSError:
            pass
        time.sleep(0.1)
    node.kill()
    sys.exit("chunkd not ready after 60 s")


def stop_node(node: subprocess.Popen) -> None:
    if node.poll() is None:
        node.send_signal(signal.SIGTERM)
        try:
            node.wait(40)
        except subprocess.TimeoutExpired:
            node.kill()
            node.wait()


def put_chunks(args, tmp: str, port: int) -> dict[str, bytes]:
    cdir = os.path.join(tmp, "chunks")
    os.makedirs(cdir)
    paths = []
    for i in range(args.chunks):
        p = os.path.join(cdir, str(i))
        with open(p, "wb") as f:
            f.write(os.urandom(CHUNK))
        paths.append(p)
    lines = subprocess.run([args.chunkd, "id", *paths], check=True, capture_output=True, text=True).stdout.split()
    ids = [w for w in lines if re.fullmatch(r"[0-9a-f]{64}", w)]
    assert len(ids) == len(paths), "chunkd id printed an unexpected format"
    chunks = {}
    for cid, p in zip(ids, paths):
        body = open(p, "rb").read()
        req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chunks/{cid}", data=body, method="PUT")
        with urllib.request.urlopen(req, timeout=30) as r:
            assert r.status in (200, 201), r.status
        chunks[cid] = hashlib.sha256(body).digest()
        os.unlink(p)
    return chunks


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_attack":
        ap = argparse.ArgumentParser()
        ap.add_argument("_attack")
        ap.add_argument("name", choices=ATTACKS + [BASELINE])
        ap.add_argument("--port", type=int, required=True)
        ap.add_argument("--ids-file", required=True)
        ap.add_argument("--duration", type=float, required=True)
        a = ap.parse_args()
        raise_nofile()
        ids = open(a.ids_file).read().split()
        print(json.dumps(asyncio.run(run_attack(a.name, a.port, ids, a.duration))))
        return

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chunkd", default=os.environ.get("CHUNKD", "chunkd"), help="the binary (default $CHUNKD or chunkd)")
    ap.add_argument("--attacks", default=",".join([BASELINE] + ATTACKS),
                    help=f"comma-separated, in order, from {BASELINE} (the bystander alone), " + ",".join(ATTACKS))
    ap.add_argument("--same-node", action="store_true",
                    help="one node for every attack (default: the node is restarted on the same store before each)")
    ap.add_argument("--warmup", type=float, default=5.0, help="seconds of bystander GETs before RSS 'before' (5)")
    ap.add_argument("--duration", type=float, default=30.0, help="seconds each attack runs (30)")
    ap.add_argument("--ramp", type=float, default=1.0, help="seconds the attack gets to connect before the bystander starts (1)")
    ap.add_argument("--after", type=float, default=30.0, help="seconds after the attack before RSS is read again (30)")
    ap.add_argument("--chunks", type=int, default=64, help="1 MiB chunks stored first (64)")
    ap.add_argument("--device-size", default="256M", help="size of each of the five device files (256M)")
    ap.add_argument("--work-dir", default=os.environ.get("TMPDIR", "/var/tmp"), help="where the scratch directory goes")
    ap.add_argument("--port", type=int, default=0, help="node port (default: a free one)")
    ap.add_argument("extra", nargs="*", help="after --: more flags for chunkd serve")
    args = ap.parse_args()
    names = [n for n in args.attacks.split(",") if n]
    for n in names:
        if n not in ATTACKS + [BASELINE]:
            sys.exit(f"unknown attack {n!r}; one of {[BASELINE] + ATTACKS}")
    args.chunkd = shutil.which(args.chunkd) or args.chunkd
    nofile = raise_nofile()  # inherited by the node and the attack processes
    port = args.port or free_port()
    tmp = tempfile.mkdtemp(prefix="chunkd-attacks-", dir=args.work_dir)
    node = None
    try:
        node = start_node(args, tmp, port)
        chunks = put_chunks(args, tmp, port)
        ids_file = os.path.join(tmp, "ids.txt")
        with open(ids_file, "w") as f:
            f.write("\n".join(chunks))
        version = subprocess.run([args.chunkd, "--version"], capture_output=True, text=True).stdout.strip()
        print(f"# {version}; port {port}; RLIMIT_NOFILE {nofile}; {args.chunks} x 1 MiB chunks; "
              f"attack {args.duration:g} s from {ATTACKER}, bystander on {BYSTANDER}, RSS again {args.after:g} s after",
              flush=True)
        rows = []
        for i, n in enumerate(names):
            if i > 0 and not args.same_node:
                stop_node(node)
                node = start_node(args, tmp, port)
            r = measure(args, n, port, node.pid, chunks, ids_file)
            rows.append(r)
            print(f"# {n}: bystander failures {r['fails']}; attack client {json.dumps(r['client'])}", flush=True)
            if node.poll() is not None:
                print(f"# node exited with {node.returncode}", flush=True)
                break
        hdr = f"{'attack':<12} {'tried':>5} {'done%':>6} {'p50ms':>7} {'p99ms':>7} {'RSS before':>10} {'during':>7} {'after':>7}  node closed (by reason)"
        print(hdr)
        for r in rows:
            done = 100.0 * r["completed"] / r["attempted"] if r["attempted"] else float("nan")
            cuts = ", ".join(f"{k} {v}" for k, v in sorted(r["cuts"].items())) or "none"
            print(f"{r['attack']:<12} {r['attempted']:>5} {done:>6.1f} {r['p50']:>7.1f} {r['p99']:>7.1f} "
                  f"{r['rss_before']:>10.1f} {r['rss_during']:>7.1f} {r['rss_after']:>7.1f}  {cuts}")
        print("(RSS in MiB; targets: done >= 90 %, p99 < 250 ms, after <= 2 x before)")
    finally:
        if node is not None:
            stop_node(node)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env bash
# origin_vs_nginx.sh — chunkd as a read-through cache in front of an nginx origin on
# loopback: cold misses (every request a fill from nginx) against wrk fetching the same
# chunks from that nginx directly, then the same ids again as memory-tier hits against
# nginx sendfile from a warm page cache, in alternating rounds, a fresh chunkd node each
# round. See tuning/README.md ("origin_vs_nginx.sh") for what and why.
#
# Usage: tuning/origin_vs_nginx.sh [options]      (--help lists the options)
set -euo pipefail

# ---------------------------------------------------------------------------- settings
CHUNKS=2048               # 2048 x 512 KiB = 1 GiB of distinct chunks, each one cold miss a round
ROUNDS=3
HOT_REPEAT=4              # the hot passes request every id this many times
THREADS=1                 # wrk threads
CONNECTIONS=16            # wrk connections (= requests in flight)
PORT=17170                # chunkd; the nginx origin on PORT+1
CHUNKD_CORES=$(nproc)
NGINX_WORKERS=2
MEMORY_ADMISSION=put      # fills must enter the memory tier for the hot passes to be memory hits
MEMORY_CACHE=""           # default: sized to hold every chunk (see below)
PASS_TIMEOUT=300          # seconds: wrk is stopped (and the pass counted failed) past this
WORK_PARENT=${TMPDIR:-/var/tmp}
CHUNKD_BIN=${CHUNKD:-}
CHUNKD_EXTRA_ARGS=""
KEEP=0
VERIFY_SAMPLES=4          # chunks outside the measured ids, fetched cold and checked each round

CHUNK_BYTES=524288
RANGE_BYTES=65536
DATA_SHARDS=4             # chunkd's default scheme 4+1
TOTAL_SHARDS=5
SHARD_EXTENT=$((4096 + CHUNK_BYTES / DATA_SHARDS))   # header block + one data shard
RESERVED=$((1 << 20))     # chunkd's superblock area at the start of every device

usage() {
  cat <<EOF
Usage: $0 [options]

Serves random 512 KiB chunks from an nginx origin (sendfile, warm page cache) and measures,
with the same wrk load and the same ids, in alternating rounds:
  direct     wrk -> nginx, every id once
  cold       wrk -> a fresh chunkd node (--origin nginx), every id once: every request a
             miss filled from nginx (checked with chunkd's origin metrics)
  hot-full   the same node and ids again (memory-tier hits), each id $HOT_REPEAT times,
             against the same requests to nginx
  hot-range  64 KiB range GETs of the same ids ($((CHUNK_BYTES / RANGE_BYTES)) times as many requests: the same bytes),
             chunkd against nginx
and prints medians and per-round ratios: cold/direct (target >= 0.8) and hot chunkd/nginx
(issue 12's hot-tier targets: >= 1.2).

  --chunks N            distinct chunks measured (default $CHUNKS = $((CHUNKS * CHUNK_BYTES >> 20)) MiB)
  --rounds N            rounds, each with a fresh chunkd node (default $ROUNDS)
  --hot-repeat N        requests per id in the hot-full pass, 8x that in hot-range (default $HOT_REPEAT)
  --threads N           wrk threads (default $THREADS)
  --connections N       wrk connections (default $CONNECTIONS)
  --port P              chunkd port; the nginx origin uses P+1 (default $PORT)
  --chunkd-cores N      chunkd serve --cores (default $CHUNKD_CORES)
  --chunkd PATH         chunkd binary (default: \$CHUNKD, chunkd on PATH, or target/release/chunkd)
  --chunkd-args "ARGS"  extra arguments for chunkd serve
  --memory-cache SIZE   chunkd --memory-cache (default: every chunk plus a quarter, plus 64 MiB)
  --memory-admission A  chunkd --memory-admission (default $MEMORY_ADMISSION: a fill is admitted
                        like a PUT, so the hot passes are memory hits)
  --nginx-workers N     nginx worker_processes (default $NGINX_WORKERS)
  --pass-timeout S      seconds a pass may take before it is stopped and failed (default $PASS_TIMEOUT)
  --verify N            chunks outside the measured ids fetched cold through chunkd and compared
                        byte for byte with the origin's files each round (default $VERIFY_SAMPLES)
  --work-dir DIR        parent of the scratch directory; on a disk, not tmpfs (chunkd's devices
                        live there) (default $WORK_PARENT)
  --keep                keep the scratch directory
  -h, --help            this text

Exit status: 0 when the run completed (targets met or not), 1 on a setup error (including a
wrong byte), 2 when a pass had errors, missing responses, or a cold pass that was not all
fills (its ratios are then marked INVALID).
EOF
}

while (($#)); do
  case $1 in
    --chunks) CHUNKS=$2; shift ;;
    --rounds) ROUNDS=$2; shift ;;
    --hot-repeat) HOT_REPEAT=$2; shift ;;
    --threads) THREADS=$2; shift ;;
    --connections) CONNECTIONS=$2; shift ;;
    --port) PORT=$2; shift ;;
    --chunkd-cores) CHUNKD_CORES=$2; shift ;;
    --chunkd) CHUNKD_BIN=$2; shift ;;
    --chunkd-args) CHUNKD_EXTRA_ARGS=$2; shift ;;
    --memory-cache) MEMORY_CACHE=$2; shift ;;
    --memory-admission) MEMORY_ADMISSION=$2; shift ;;
    --nginx-workers) NGINX_WORKERS=$2; shift ;;
    --pass-timeout) PASS_TIMEOUT=$2; shift ;;
    --verify) VERIFY_SAMPLES=$2; shift ;;
    --work-dir) WORK_PARENT=$2; shift ;;
    --keep) KEEP=1 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown option: $1 (see --help)" >&2; exit 1 ;;
  esac
  shift
done

# shellcheck source=tuning/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"     # log, die, is_int, stop_pid, run_child, ports_free, scratch_dir
for v in CHUNKS ROUNDS HOT_REPEAT THREADS CONNECTIONS PORT CHUNKD_CORES NGINX_WORKERS PASS_TIMEOUT VERIFY_SAMPLES; do
  flag=${v,,}; is_int "${!v}" || die "--${flag//_/-} must be a whole number (got '${!v}')"
done
((ROUNDS >= 1 && HOT_REPEAT >= 1 && THREADS >= 1 && CONNECTIONS >= THREADS && PASS_TIMEOUT >= 1 && VERIFY_SAMPLES >= 1)) \
  || die "need --rounds, --hot-repeat, --threads, --pass-timeout, --verify >= 1 and --connections >= --threads"
# wrk gives every thread connections/threads connections, and the script every thread an
# equal share of the ids: a thread with no id would never finish.
((CHUNKS >= THREADS)) || die "need --chunks >= --threads (every wrk thread needs an id)"

# ---------------------------------------------------------------------------- tools
missing=()
for tool in nginx wrk curl cmp; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if ((${#missing[@]})); then
  echo "missing: ${missing[*]}" >&2
  echo "install with: apt-get install nginx wrk curl diffutils" >&2
  exit 1
fi
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [[ -z $CHUNKD_BIN ]]; then
  if command -v chunkd >/dev/null; then CHUNKD_BIN=$(command -v chunkd)
  elif [[ -x ${CARGO_TARGET_DIR:-$HERE/../target}/release/chunkd ]]; then
    CHUNKD_BIN=${CARGO_TARGET_DIR:-$HERE/../target}/release/chunkd
  fi
fi
[[ -n $CHUNKD_BIN && -x $CHUNKD_BIN ]] \
  || die "chunkd not found: build it (cargo build --release) or pass --chunkd PATH"
CHUNKD_BIN=$(readlink -f "$CHUNKD_BIN")
"$CHUNKD_BIN" serve --help 2>/dev/null | grep -q -- '--origin ' \
  || die "$CHUNKD_BIN has no 'serve --origin': build a chunkd with the origin feature"
# wrk's Lua must be LuaJIT: the script reads a monotonic clock through its FFI.
ldd "$(command -v wrk)" 2>/dev/null | grep -q luajit || log "WARNING: wrk does not link LuaJIT; the pass script needs its ffi module"

# ---------------------------------------------------------------------------- cleanup
WORK=""; CHUNKD_PID=""; NGINX_PID=""; CUR_PID=""
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_pid "$CUR_PID" INT 2
  stop_pid "$CHUNKD_PID" TERM 10
  stop_pid "$NGINX_PID" TERM 5
  if [[ -n $WORK && -d $WORK ]]; then
    if ((KEEP)); then log "kept $WORK"; else rm -rf -- "$WORK"; fi
  fi
  exit "$rc"
}
trap cleanup EXIT
# fd 9 = the real stderr: a signal may arrive while a child's output is redirected.
exec 9>&2
trap 'echo "interrupted: stopping chunkd, nginx and the load, removing the scratch directory" >&9; exit 130' INT TERM


ports_free "$PORT" $((PORT + 1))

# ---------------------------------------------------------------------------- scratch
WORK=$(scratch_dir "$WORK_PARENT" origin_vs_nginx) || exit 1
ROOT=$WORK/www                  # nginx root: $ROOT/chunks/{id}
NGX=$WORK/nginx
RES=$WORK/results.tsv           # pass contestant round req/s bytes/s p50_us p99_us errors note
CPU=$WORK/cpu.tsv               # pass round who cpu_s wall_s
SERVER=$WORK/server.tsv         # pass round get_p50_us get_p99_us fetch_p50_us fetch_p99_us written_bytes seconds
mkdir -p "$ROOT/chunks" "$NGX" "$WORK/gen" "$WORK/runs"
: >"$RES"; : >"$CPU"; : >"$SERVER"

ALL=$((CHUNKS + VERIFY_SAMPLES))                          # chunks a node holds after a round
region=$((ALL * SHARD_EXTENT))                            # bytes of each device the chunks take
dev_bytes=$(( (RESERVED + region + region / 4 + (64 << 20) + (1 << 20) - 1) >> 20 << 20 ))
need=$(( ALL * CHUNK_BYTES + TOTAL_SHARDS * dev_bytes + (256 << 20) ))
avail=$(( $(df -Pk "$WORK" | awk 'NR == 2 { print $4 }') * 1024 ))
((avail > need)) || die "need $((need >> 20)) MiB free in $WORK_PARENT, have $((avail >> 20)) MiB"
[[ -n $MEMORY_CACHE ]] || MEMORY_CACHE=$(( (ALL * CHUNK_BYTES * 5 / 4 + (64 << 20)) >> 20 ))M

# ---------------------------------------------------------------------------- chunks
log "generating $ALL random chunks of 512 KiB ($CHUNKS measured, $VERIFY_SAMPLES for byte checks)"
head -c $((ALL * CHUNK_BYTES)) /dev/urandom | split -b $CHUNK_BYTES -a 6 -d - "$WORK/gen/c"
# `chunkd id` prints one id (BLAKE3-256, hex) per file, in the order given (xargs without
# -P keeps it). A wrong id would not go unnoticed: chunkd verifies every fill against its
# id, and each cold pass must count exactly --chunks fills and no mismatch.
( cd "$WORK/gen" && ls >../gen.list && xargs "$CHUNKD_BIN" id <../gen.list >../id.out ) \
  || die "chunkd id failed"
(($(wc -l <"$WORK/id.out") == ALL)) || die "chunkd id printed $(wc -l <"$WORK/id.out") ids for $ALL files"
paste -d' ' "$WORK/id.out" "$WORK/gen.list" | while read -r id file; do
  [[ $id =~ ^[0-9a-f]{64}$ ]] || die "unexpected chunkd id output: $id"
  mv "$WORK/gen/$file" "$ROOT/chunks/$id"
done
rmdir "$WORK/gen"
(($(sort -u "$WORK/id.out" | wc -l) == ALL)) || die "expected $ALL distinct ids"
# And, where Python's blake3 package is installed, checked by a second implementation.
if python3 -c 'import blake3' 2>/dev/null; then
  python3 - "$ROOT/chunks" <<'PY' || die "a chunk's name is not the BLAKE3 hash of its bytes"
import os, sys, blake3
d = sys.argv[1]
bad = [n for n in os.listdir(d) if blake3.blake3(open(os.path.join(d, n), "rb").read()).hexdigest() != n]
sys.exit(1 if bad else 0)
PY
  IDS_NOTE="ids: chunkd id, and checked with Python's blake3 package"
else
  IDS_NOTE="ids: chunkd id (pip install blake3 to have them checked by a second implementation)"
fi
IDS=$WORK/ids.txt               # the measured ids, in one fixed order for every pass
VERIFY_IDS=$WORK/verify.txt     # never requested by a pass: cold in every round's checks
head -n "$CHUNKS" "$WORK/id.out" >"$IDS"
tail -n "$VERIFY_SAMPLES" "$WORK/id.out" >"$VERIFY_IDS"
chmod -R a+rX "$ROOT"

# ---------------------------------------------------------------------------- nginx
# The origin, and the peer of every pass: sendfile from a warm page cache, no aio (from the
# page cache a thread hand-off only costs: tuning/README.md, nginx_vs_chunkd.sh's hot cases).
NGINX_URL=http://127.0.0.1:$((PORT + 1))
ORIGIN_URL=$NGINX_URL/chunks/
user_line=""; ((EUID == 0)) && user_line="user $(id -un) $(id -gn);"
cat >"$NGX/nginx.conf" <<EOF
# Generated by origin_vs_nginx.sh: the origin
$user_line
worker_processes $NGINX_WORKERS;
pid $NGX/nginx.pid;
error_log $NGX/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_timeout 75s;
    keepalive_requests 1000000;      # wrk and chunkd's origin client keep their connections
    default_type application/octet-stream;
    types { }
    etag off;
    open_file_cache max=$((ALL * 2 + 1024)) inactive=300s;
    open_file_cache_valid 300s;
    client_body_temp_path $NGX/body;
    proxy_temp_path $NGX/proxy;
    fastcgi_temp_path $NGX/fastcgi;
    uwsgi_temp_path $NGX/uwsgi;
    scgi_temp_path $NGX/scgi;
    server {
        listen 127.0.0.1:$((PORT + 1));
        root $ROOT;
        location /chunks/ {
            sendfile on;
            tcp_nopush on;
        }
    }
}
EOF
nginx -t -q -p "$NGX" -c "$NGX/nginx.conf" 2>"$NGX/nginx-t.err" \
  || { cat "$NGX/nginx-t.err" >&2; die "nginx refused the generated config"; }
log "starting the nginx origin on $NGINX_URL (sendfile, $NGINX_WORKERS workers)"
nginx -p "$NGX" -c "$NGX/nginx.conf" -g 'daemon off;' >"$NGX/stdout.log" 2>&1 &
NGINX_PID=$!
for ((i = 0; i < 100; i++)); do
  kill -0 "$NGINX_PID" 2>/dev/null || { cat "$NGX/error.log" "$NGX/stdout.log" >&2 || true; die "nginx exited at start"; }
  [[ $(curl -s -o /dev/null -w '%{http_code}' "$ORIGIN_URL$(head -1 "$IDS")" || true) == 200 ]] && break
  sleep 0.1
done
((i < 100)) || die "nginx did not answer within 10 s"
for id in $(head -2 "$IDS"); do
  curl -sS -o "$WORK/got" "$ORIGIN_URL$id" && cmp -s "$WORK/got" "$ROOT/chunks/$id" \
    || die "nginx: GET $id did not return the file's bytes"
done

# ---------------------------------------------------------------------------- chunkd
CHUNKD_URL=http://127.0.0.1:$PORT
DATA=$WORK/chunkd               # a fresh data dir (and devices) every round
devices=()
for ((i = 0; i < TOTAL_SHARDS; i++)); do devices+=(--device "$DATA/devices/dev$i:$((dev_bytes >> 20))M"); done
start_chunkd() { # round
  rm -rf -- "$DATA"; mkdir -p "$DATA/devices"
  # shellcheck disable=SC2086
  "$CHUNKD_BIN" serve --listen "127.0.0.1:$PORT" --data-dir "$DATA" "${devices[@]}" \
    --cores "$CHUNKD_CORES" --origin "$ORIGIN_URL" --memory-cache "$MEMORY_CACHE" \
    --memory-admission "$MEMORY_ADMISSION" $CHUNKD_EXTRA_ARGS >"$WORK/chunkd.$1.log" 2>&1 &
  CHUNKD_PID=$!
  for ((i = 0; i < 600; i++)); do
    kill -0 "$CHUNKD_PID" 2>/dev/null || { tail -20 "$WORK/chunkd.$1.log" >&2; die "chunkd exited during start-up"; }
    [[ $(curl -s -o /dev/null -w '%{http_code}' "$CHUNKD_URL/readyz" || true) == 200 ]] && return 0
    sleep 0.1
  done
  die "chunkd not ready after 60 s (log: $WORK/chunkd.$1.log)"
}
stop_chunkd() {
  stop_pid "$CHUNKD_PID" TERM 10; CHUNKD_PID=""
  rm -rf -- "$DATA"
  sync   # the removed devices' blocks are freed before the next node writes its own
}

scrape() { curl -sS -m 10 "$CHUNKD_URL/metrics" >"$1" 2>/dev/null || : >"$1"; }
# metric NAME FILE [LABEL-REGEX]: sum of the samples of NAME whose labels match (0 if none).
metric() {
  awk -v name="$1" -v re="${3:-}" '
    /^#/ { next }
    { key = $1; base = key; sub(/\{.*/, "", base) }
    base == name && (re == "" || key ~ re) { s += $NF; found = 1 }
    END { printf "%.0f\n", (found ? s : 0) }' "$2"
}
delta() { # before after NAME [LABEL-REGEX]
  echo $(( $(metric "$3" "$2" "${4:-}") - $(metric "$3" "$1" "${4:-}") ))
}

# Byte checks through chunkd, each round: chunks no pass requests, so every one is cold here
# (a full GET fills one, a range GET on a miss another, a HEAD on a miss a third), then all
# of them again as hits; and, after the passes, samples of the measured ids.
verify_cold() {
  local n=0 id file start code
  while read -r id; do
    file=$ROOT/chunks/$id; n=$((n + 1))
    case $((n % 3)) in
      1) code=$(curl -sS -o "$WORK/got" -w '%{http_code}' "$CHUNKD_URL/v1/chunks/$id")
         [[ $code == 200 ]] || die "chunkd: cold GET $id answered $code"
         cmp -s "$WORK/got" "$file" || die "chunkd: cold GET $id returned different bytes" ;;
      2) start=$(( (RANDOM % (CHUNK_BYTES / RANGE_BYTES)) * RANGE_BYTES ))
         code=$(curl -sS -o "$WORK/got" -w '%{http_code}' -H "Range: bytes=$start-$((start + RANGE_BYTES - 1))" "$CHUNKD_URL/v1/chunks/$id")
         [[ $code == 206 ]] || die "chunkd: cold range GET $id answered $code, not 206"
         cmp -s "$WORK/got" <(tail -c +$((start + 1)) "$file" | head -c $RANGE_BYTES) \
           || die "chunkd: cold range GET $id returned different bytes" ;;
      0) code=$(curl -sS -I -o "$WORK/got" -w '%{http_code}' "$CHUNKD_URL/v1/chunks/$id")
         [[ $code == 200 ]] || die "chunkd: cold HEAD $id answered $code"
         grep -qi "^content-length: $CHUNK_BYTES"$'\r'"\$" "$WORK/got" || die "chunkd: cold HEAD $id: no Content-Length $CHUNK_BYTES" ;;
    esac
  done <"$VERIFY_IDS"
  verify_hits "$VERIFY_IDS"
}
verify_hits() { # ids file
  local id code
  while read -r id; do
    code=$(curl -sS -o "$WORK/got" -w '%{http_code}' "$CHUNKD_URL/v1/chunks/$id")
    [[ $code == 200 ]] || die "chunkd: GET $id answered $code"
    cmp -s "$WORK/got" "$ROOT/chunks/$id" || die "chunkd: GET $id returned different bytes"
  done <"$1"
}

# ---------------------------------------------------------------------------- load
# Every pass runs this script: each wrk thread takes every THREADS-th entry of the id list
# (repeated REPEAT times), sends each exactly once, and stops when its last response is
# in; wall time runs from the thread's first request to its last response. The list is
# the same for chunkd and nginx, so both answer the same requests.
#
# wrk has no "N requests" mode, so: a request is handed out only after delay() reserved
# it (delay() runs before every request, and again after every response), a connection
# with nothing left waits an hour, and the thread stops itself once every connection's
# first delay() and one per response have been counted. wrk's own run time is useless
# here (its main thread sleeps the whole -d), so the last thread to finish sends wrk a
# SIGINT, which wakes that sleep, and done() reports the threads' own clock.
cat >"$WORK/pass.lua" <<'EOF'
-- args: ids_file path_prefix mode(full|range) repeat threads connections_per_thread done_file
--       chunk_bytes range_bytes
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } ovn_timespec;
int clock_gettime(int clk, ovn_timespec *tp);
int getpid(void);
int kill(int pid, int sig);
]]
local ts = ffi.new("ovn_timespec")
local function now_us()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC: one clock for every thread
  return tonumber(ts.tv_sec) * 1000000 + math.floor(tonumber(ts.tv_nsec) / 1000)
end

-- main state: the threads, for done()
local all_threads = {}
function setup(thread)
  all_threads[#all_threads + 1] = thread
  thread:set("tid", #all_threads)
end

-- thread state (globals are read by done() through thread:get)
local reqs, conns, done_file, nthreads = {}, 0, nil, 1
local reserved, sent, delays, running = 0, 0, 0, false
my_total, completed, t_start, t_end = 0, 0, 0, 0

function init(args)
  local ids = {}
  for line in io.lines(args[1]) do if #line > 0 then ids[#ids + 1] = line end end
  local prefix, mode, rep = args[2], args[3], tonumber(args[4])
  nthreads, conns, done_file = tonumber(args[5]), tonumber(args[6]), args[7]
  local chunk_bytes, range_bytes = tonumber(args[8]), tonumber(args[9])
  local slots = math.floor(chunk_bytes / range_bytes)
  -- Ranges: a pseudo-random slot per request, from a fixed seed, so that both servers get
  -- the same requests and every part of every chunk is read (not one fixed slot per id).
  math.randomseed(20140 + tid)
  local k = 0
  for _ = 1, rep do
    for i = 1, #ids do
      k = k + 1
      if (k - 1) % nthreads == tid - 1 then
        if mode == "range" then
          local a = (math.random(slots) - 1) * range_bytes
          reqs[#reqs + 1] = wrk.format("GET", prefix .. ids[i],
            { ["Range"] = "bytes=" .. a .. "-" .. (a + range_bytes - 1) })
        else
          reqs[#reqs + 1] = wrk.format("GET", prefix .. ids[i])
        end
      end
    end
  end
  my_total = #reqs
end

local function finish()
  t_end = now_us()
  completed = delays - conns
  wrk.thread:stop()
  local f = io.open(done_file, "a"); f:write(tid, "\n"); f:close()
  local n = 0
  for _ in io.lines(done_file) do n = n + 1 end
  if n >= nthreads then ffi.C.kill(ffi.C.getpid(), 2) end -- SIGINT: wakes wrk's main thread
end

function delay()
  running = true
  delays = delays + 1
  if t_end == 0 and delays - conns >= my_total then finish() end
  if reserved < my_total then reserved = reserved + 1; return 0 end
  return 3600000
end

function request()
  -- wrk calls request() once on thread 1's state before the threads run, to count
  -- pipelined requests: that call must not use up an id.
  if not running then return reqs[1] end
  if t_start == 0 then t_start = now_us() end
  sent = sent + 1
  return reqs[math.min(sent, my_total)]  -- beyond my_total only after a reconnect: an error
end

function done(summary, latency, requests)
  local first, last, n, total, unfinished = math.huge, 0, 0, 0, 0
  for _, t in ipairs(all_threads) do
    local s, e = t:get("t_start"), t:get("t_end")
    if s > 0 and s < first then first = s end
    if e > last then last = e end
    if e == 0 then unfinished = unfinished + 1 end
    n = n + t:get("completed"); total = total + t:get("my_total")
  end
  local e = summary.errors
  io.write(string.format("RESULT requests=%d bytes=%d wall_us=%d expected=%d completed=%d unfinished=%d "
    .. "p50_us=%d p99_us=%d err_connect=%d err_read=%d err_write=%d err_status=%d err_timeout=%d\n",
    summary.requests, summary.bytes, (last > first) and (last - first) or 0, total, n, unfinished,
    latency:percentile(50), latency:percentile(99), e.connect, e.read, e.write, e.status, e.timeout))
end
EOF

body_of() { [[ $1 == *range ]] && echo $RANGE_BYTES || echo $CHUNK_BYTES; }

# pass_wrk pass who out: one pass of wrk (its output in out); pass_result pass out -> one
# line "req/s bytes/s p50_us p99_us errors note seconds".
pass_wrk() {
  local pass=$1 who=$2 out=$3 url prefix mode=full rep=1
  case $who in chunkd) url=$CHUNKD_URL; prefix=/v1/chunks/ ;; *) url=$NGINX_URL; prefix=/chunks/ ;; esac
  [[ $pass == hot-range ]] && mode=range
  [[ $pass == hot-full ]] && rep=$HOT_REPEAT
  [[ $pass == hot-range ]] && rep=$((HOT_REPEAT * CHUNK_BYTES / RANGE_BYTES))  # the same bytes as hot-full
  : >"$out.done"
  run_child wrk -t"$THREADS" -c"$CONNECTIONS" -d"${PASS_TIMEOUT}s" --timeout 10s -s "$WORK/pass.lua" \
    "$url" -- "$IDS" "$prefix" "$mode" "$rep" "$THREADS" $((CONNECTIONS / THREADS)) "$out.done" \
    $CHUNK_BYTES $RANGE_BYTES >"$out" 2>&1 \
    || { cat "$out" >&2; die "wrk failed against $who"; }
}
pass_result() {
  local body=$CHUNK_BYTES
  [[ $1 == hot-range ]] && body=$RANGE_BYTES
  awk -v body="$body" '/^RESULT / {
      for (i = 2; i <= NF; i++) { split($i, kv, "="); r[kv[1]] = kv[2] }
      s = r["wall_us"] / 1e6; n = r["completed"]
      err = r["err_connect"] + r["err_read"] + r["err_write"] + r["err_status"] + r["err_timeout"]
      note = "ok"
      if (r["unfinished"] > 0 || s <= 0) { note = sprintf("unfinished:%d-of-%d-responses", r["requests"], r["expected"]); err++ }
      else if (r["requests"] != r["expected"] || n != r["expected"]) {
        note = sprintf("count:%d-responses,%d-counted,%d-expected", r["requests"], n, r["expected"]); err++ }
      else if (r["bytes"] / n < body || r["bytes"] / n > body + 4096) {
        note = sprintf("wrong-size:%.0f-bytes/response", r["bytes"] / n); err++ }
      if (err > 0 && note == "ok")
        note = sprintf("errors:connect=%d,read=%d,write=%d,status=%d,timeout=%d", r["err_connect"],
          r["err_read"], r["err_write"], r["err_status"], r["err_timeout"])
      if (s <= 0) { s = 1e9; n = 0 }
      printf "%.1f %.1f %d %d %d %s %.6f\n", n / s, n * body / s, r["p50_us"], r["p99_us"], err, note, (s < 1e9 ? s : 0)
      found = 1 }
    END { if (!found) print "0 0 0 0 1 no-RESULT-line 0" }' "$2"
}

# CPU time of each thread of chunkd (by thread name), of nginx's workers and of wrk over a
# pass: where the time goes (the 2 cores are shared by all three). wrk is this shell's
# child: its CPU shows in `times` (children's user and system), which is read last before
# and first after the pass, so that the snapshot's own awk and pgrep are not counted.
TICK=$(getconf CLK_TCK)
cpu_snap() { # when(before|after) out: "name ticks" lines
  local workers
  [[ $1 == after ]] && times >"$2.times"
  workers=$(pgrep -d ' ' -P "$NGINX_PID" || true)
  # shellcheck disable=SC2086
  # /proc/PID/stat counts every thread the process had, /proc/PID/task/TID/stat one thread
  awk -v workers=" $workers " -v total="/proc/$CHUNKD_PID/stat" '
    { comm = $0; sub(/^[^(]*\(/, "", comm); sub(/\) [^)]*$/, "", comm)
      rest = $0; sub(/^.*\) /, "", rest); split(rest, f, " ")
      name = (FILENAME == total ? "chunkd(all)" : index(workers, " " $1 " ") ? "nginx-workers" : "chunkd:" comm)
      print name, f[12] + f[13] }' "/proc/$CHUNKD_PID/stat" /proc/"$CHUNKD_PID"/task/*/stat \
    $(for w in $workers; do echo "/proc/$w/stat"; done) \
    2>/dev/null >"$2" || true
  [[ $1 == before ]] && times >"$2.times"
  awk 'NR == 2 { split($1, u, /[ms]/); split($2, s, /[ms]/); printf "wrk %.0f\n", (u[1] * 60 + u[2] + s[1] * 60 + s[2]) * '"$TICK"' }' \
    "$2.times" >>"$2"
}
# Bytes chunkd's threads (io_uring's workers included) sent to its devices so far.
write_bytes() { awk '$1 == "write_bytes:" { print $2 }' "/proc/$CHUNKD_PID/io" 2>/dev/null || echo 0; }
cpu_record() { # pass round before after seconds
  awk -v pass="$1" -v round="$2" -v wall="$5" -v tick="$TICK" '
    NR == FNR { b[$1] += $2; next }
    { a[$1] += $2 }
    END { for (k in a) printf "%s\t%s\t%s\t%.3f\t%.6f\n", pass, round, k, (a[k] - b[k]) / tick, wall }' "$3" "$4" >>"$CPU"
}

# A quantile of one of chunkd's histograms between two scrapes, in microseconds
# (interpolated within the bucket that holds it, as Prometheus' histogram_quantile does).
histogram_us() { # q NAME LABEL-REGEX before after
  awk -v q="$1" -v name="$2_bucket" -v re="$3" '
    index($0, name "{") == 1 && $0 ~ re {
      match($0, /le="[^"]*"/); le = substr($0, RSTART + 4, RLENGTH - 5)
      if (NR == FNR) { before[le] = $NF; next }
      n[le] = $NF - before[le]; if (!(le in seen)) { seen[le] = 1; les[++k] = le }
    }
    END {
      total = n["+Inf"]; if (total <= 0) { print "n/a"; exit }
      prev_le = 0; prev_n = 0
      for (i = 1; i <= k; i++) {
        le = les[i]; if (le == "+Inf") continue
        if (n[le] >= total * q) {
          frac = (n[le] > prev_n) ? (total * q - prev_n) / (n[le] - prev_n) : 0
          printf "%.0f\n", (prev_le + (le - prev_le) * frac) * 1e6; exit
        }
        prev_le = le; prev_n = n[le]
      }
      print "over-the-last-bucket"
    }' "$4" "$5"
}
GET_LABELS='route="chunk".*method="GET"|method="GET".*route="chunk"'

ANY_ERRORS=0
CHECK_NOTES=()   # one line per failed metric check
# measure pass who round: runs one pass, records its line (and CPU for the cold and direct
# passes), checks chunkd's counters, and logs it.
measure() {
  local pass=$1 who=$2 round=$3 out=$WORK/runs/$1-$2-$3 rps bps p50 p99 err note wall
  local written=0
  [[ $who == chunkd ]] && { scrape "$out.before"; written=$(write_bytes); }
  cpu_snap before "$out.cpu.before"
  pass_wrk "$pass" "$who" "$out.wrk"
  cpu_snap after "$out.cpu.after"
  pass_result "$pass" "$out.wrk" >"$WORK/line"
  read -r rps bps p50 p99 err note wall <"$WORK/line"
  cpu_record "$pass-$who" "$round" "$out.cpu.before" "$out.cpu.after" "$wall"
  if [[ $who == chunkd ]]; then
    written=$(($(write_bytes) - written))
    scrape "$out.after"
    # server side: chunkd's GET latency, and (cold) the origin fetches inside it
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$pass" "$round" \
      "$(histogram_us 0.5 chunkd_http_request_duration_seconds "$GET_LABELS" "$out.before" "$out.after")" \
      "$(histogram_us 0.99 chunkd_http_request_duration_seconds "$GET_LABELS" "$out.before" "$out.after")" \
      "$(histogram_us 0.5 chunkd_origin_fetch_duration_seconds "" "$out.before" "$out.after")" \
      "$(histogram_us 0.99 chunkd_origin_fetch_duration_seconds "" "$out.before" "$out.after")" \
      "$written" "$wall" >>"$SERVER"
    check_counters "$pass" "$round" "$out.before" "$out.after" || { err=$((err + 1)); [[ $note == ok ]] && note=counters; }
  fi
  printf '%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n' "$pass" "$who" "$round" "$rps" "$bps" "$p50" "$p99" "$err" "$note" >>"$RES"
  log "$(printf '%-9s round %d %-6s %9.0f req/s %6.3f GB/s p50 %6.2f ms p99 %6.2f ms %5.2f s  %s' \
    "$pass" "$round" "$who" "$rps" "$(awk -v b="$bps" 'BEGIN { print b / 1e9 }')" \
    "$(awk -v u="$p50" 'BEGIN { print u / 1000 }')" "$(awk -v u="$p99" 'BEGIN { print u / 1000 }')" "$wall" "$note")"
  ((err == 0)) || ANY_ERRORS=1
}

# What chunkd counted over one pass must match what the pass was: a cold pass is exactly
# --chunks fills (so every request was a miss, and nothing else went to the origin); a hot
# pass asks the origin nothing and is answered from the memory tier.
check_counters() { # pass round before after
  local pass=$1 round=$2 b=$3 a=$4 expected filled other bytes mem s5 ok=0
  [[ -s $b && -s $a ]] || { CHECK_NOTES+=("round $round $pass: /metrics could not be read"); return 1; }
  filled=$(delta "$b" "$a" chunkd_origin_requests_total 'outcome="filled"')
  other=$(( $(delta "$b" "$a" chunkd_origin_requests_total) - filled ))
  s5=$(delta "$b" "$a" chunkd_http_requests_total 'status="5')
  if [[ $pass == cold ]]; then
    bytes=$(delta "$b" "$a" chunkd_origin_bytes_total)
    local coalesced mismatches
    coalesced=$(delta "$b" "$a" chunkd_origin_coalesced_total)
    mismatches=$(delta "$b" "$a" chunkd_origin_verification_failures_total)
    if ((filled != CHUNKS || other != 0 || bytes != CHUNKS * CHUNK_BYTES || coalesced != 0 || mismatches != 0 || s5 != 0)); then
      CHECK_NOTES+=("round $round cold: origin fills $filled (expected $CHUNKS), other origin outcomes $other, origin bytes $bytes (expected $((CHUNKS * CHUNK_BYTES))), coalesced $coalesced, verification failures $mismatches, 5xx $s5")
      ok=1
    fi
  else
    expected=$((CHUNKS * HOT_REPEAT))
    [[ $pass == hot-range ]] && expected=$((expected * CHUNK_BYTES / RANGE_BYTES))
    mem=$(delta "$b" "$a" chunkd_cache_hits_total 'tier="memory"')
    if ((filled + other != 0 || s5 != 0)); then
      CHECK_NOTES+=("round $round $pass: the origin was asked $((filled + other)) times, 5xx $s5 (expected 0 and 0)")
      ok=1
    fi
    if ((mem != expected)); then
      # Not an error of the answers, but then the pass did not measure the memory tier alone.
      CHECK_NOTES+=("round $round $pass: memory-tier hits $mem of $expected requests (--memory-cache, --memory-admission?)")
      ok=1
    fi
  fi
  return $ok
}

# ---------------------------------------------------------------------------- rounds
log "warming the origin: every chunk read into the page cache, and one discarded direct pass (nginx's open-file cache, wrk)"
cat "$ROOT"/chunks/* >/dev/null
pass_wrk direct nginx "$WORK/runs/warmup"
read -r _ _ _ _ err note _ < <(pass_result direct "$WORK/runs/warmup")
((err == 0)) || die "the warm-up pass against nginx failed: $note"
for ((round = 1; round <= ROUNDS; round++)); do
  log "round $round: a fresh chunkd node ($TOTAL_SHARDS devices of $((dev_bytes >> 20)) MiB, --memory-cache $MEMORY_CACHE, --origin $ORIGIN_URL)"
  start_chunkd "$round"
  verify_cold
  # Alternate which of direct and cold goes first, and which server goes first when hot.
  if ((round % 2)); then first=(direct nginx cold chunkd); hot=(chunkd nginx); else first=(cold chunkd direct nginx); hot=(nginx chunkd); fi
  measure "${first[0]}" "${first[1]}" "$round"
  measure "${first[2]}" "${first[3]}" "$round"
  mem_chunks=$(curl -sS -m 10 "$CHUNKD_URL/metrics" | metric chunkd_cache_chunks /dev/stdin 'tier="memory"')
  ((mem_chunks >= CHUNKS)) || log "WARNING: after the cold pass the memory tier holds $mem_chunks chunks, fewer than $CHUNKS"
  for pass in hot-full hot-range; do
    for who in "${hot[@]}"; do
      measure "$pass" "$who" "$round"
    done
  done
  awk -v n="$VERIFY_SAMPLES" -v seed="$RANDOM" 'BEGIN { srand(seed) } { ids[NR] = $1 }
    END { for (i = 0; i < n; i++) print ids[int(rand() * NR) + 1] }' "$IDS" >"$WORK/sample.txt"
  verify_hits "$WORK/sample.txt"
  stop_chunkd
done
rm -f "$WORK/got"

# ---------------------------------------------------------------------------- report
ver_nginx=$(nginx -v 2>&1 | sed 's/^nginx version: //')
ver_wrk=$(wrk -v 2>&1 | awk 'NR == 1 { print $1, $2 }' || true)  # wrk -v exits 1
ver_chunkd=$("$CHUNKD_BIN" --version 2>&1 | awk 'NR == 1')
ver_git=$(git -C "$(dirname "$CHUNKD_BIN")" rev-parse --short HEAD 2>/dev/null || echo "?")
ver_script=$(git -C "$HERE" describe --always --dirty 2>/dev/null || echo "?")

echo
echo "origin_vs_nginx: $CHUNKS distinct chunks of 512 KiB ($((CHUNKS * CHUNK_BYTES >> 20)) MiB), $ROUNDS rounds, a fresh chunkd node each; devices on $(df -PT "$WORK" | awk 'NR == 2 { print $1 " (" $2 ")" }')"
echo "versions: $ver_chunkd ($CHUNKD_BIN, git $ver_git, built $(date -r "$CHUNKD_BIN" '+%F %T')); this script: git $ver_script; nginx $ver_nginx; $ver_wrk; kernel $(uname -r); $(nproc) cores"
echo "load: wrk -t$THREADS -c$CONNECTIONS, HTTP/1.1 keep-alive, the same id list for every pass: direct and cold every id once, hot-full every id $HOT_REPEAT times, hot-range every id $((HOT_REPEAT * CHUNK_BYTES / RANGE_BYTES)) times with Range: bytes=a-(a+65535), a a multiple of 65536 drawn from a fixed seed (the same requests for both servers)"
echo "chunkd: serve --cores $CHUNKD_CORES --origin $ORIGIN_URL --memory-cache $MEMORY_CACHE --memory-admission $MEMORY_ADMISSION, $TOTAL_SHARDS file devices of $((dev_bytes >> 20)) MiB${CHUNKD_EXTRA_ARGS:+, extra: $CHUNKD_EXTRA_ARGS}"
echo "nginx (origin and peer): worker_processes $NGINX_WORKERS, sendfile on, tcp_nopush on, no aio, open_file_cache, keepalive; page cache warm (every file read before round 1, never dropped)"
echo "$IDS_NOTE"
echo "checked: $VERIFY_SAMPLES chunks a round fetched cold through chunkd (GET, range GET, HEAD on a miss) and again as hits, and $VERIFY_SAMPLES measured ids after the passes, byte for byte against the origin's files"
if ((${#CHECK_NOTES[@]})); then
  for n in "${CHECK_NOTES[@]}"; do echo "WARNING: chunkd /metrics: $n"; done
else
  echo "chunkd /metrics: every cold pass was exactly $CHUNKS origin fills ($((CHUNKS * CHUNK_BYTES)) bytes, no other outcome, none coalesced, no verification failure, no 5xx); every hot pass asked the origin nothing and was all memory-tier hits"
fi
echo
awk -F'\t' '
  function median(list,   n, a, i, j, t) {
    n = split(list, a, " ")
    for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
    if (n == 0) return "nan"
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  { k = $1 SUBSEP $2
    rps[k] = rps[k] " " $4; bps[k] = bps[k] " " $5; p50[k] = p50[k] " " $6; p99[k] = p99[k] " " $7
    errs[k] += $8; if ($8 > 0 && !(k in first)) first[k] = $9
    by_round[$1 SUBSEP $2 SUBSEP $3] = $5
    if ($3 > rounds) rounds = $3 }
  END {
    n = split("direct:nginx cold:chunkd hot-full:chunkd hot-full:nginx hot-range:chunkd hot-range:nginx", rows, " ")
    label["direct"] = "512 KiB direct"; label["cold"] = "512 KiB cold miss"
    label["hot-full"] = "512 KiB hot"; label["hot-range"] = "64 KiB range hot"
    printf "%-17s %-8s %10s %8s %8s %8s  %s\n", "pass", "server", "req/s", "GB/s", "p50 ms", "p99 ms", "errors"
    for (i = 1; i <= n; i++) {
      split(rows[i], pw, ":"); k = pw[1] SUBSEP pw[2]
      if (!(k in rps)) continue
      printf "%-17s %-8s %10.0f %8.3f %8.2f %8.2f  %s\n", label[pw[1]], pw[2], median(rps[k]), median(bps[k]) / 1e9,
        median(p50[k]) / 1000, median(p99[k]) / 1000, (errs[k] ? errs[k] " (" first[k] ")" : "0")
    }
    print ""
    print "medians over rounds; GB/s counts response bodies only (the same bytes for both servers)"
    print ""
    print "ratios: median over rounds of (GB/s / GB/s in the same round); per round in brackets"
    split("cold;chunkd;direct;nginx;0.8;512 KiB cold miss: chunkd / nginx direct|" \
      "hot-full;chunkd;hot-full;nginx;1.2;512 KiB hot: chunkd / nginx|" \
      "hot-range;chunkd;hot-range;nginx;1.2;64 KiB range hot: chunkd / nginx", cmp, "|")
    for (c = 1; c <= 3; c++) {
      split(cmp[c], f, ";")
      list = ""; per = ""
      for (r = 1; r <= rounds; r++) {
        a = by_round[f[1], f[2], r]; b = by_round[f[3], f[4], r]
        if (b > 0) { list = list " " a / b; per = per sprintf(" %.2f", a / b) }
      }
      ratio = median(list)
      bad = errs[f[1] SUBSEP f[2]] + errs[f[3] SUBSEP f[4]]
      verdict = bad ? "INVALID (errors, missing responses or failed counter checks)" : (ratio >= f[5] ? "met" : "MISSED")
      printf "%-40s %5.2fx  [%s ]  target >= %.2f  %s\n", f[6], ratio, per, f[5], verdict
    }
  }' "$RES"
echo
echo "chunkd server side (its /metrics histograms between scrapes around each pass; per round):"
awk -F'\t' '
  { k = $1; gp50[k] = gp50[k] " " $3; gp99[k] = gp99[k] " " $4; op50[k] = op50[k] " " $5; op99[k] = op99[k] " " $6
    if ($8 > 0) wr[k] = wr[k] sprintf(" %.2f", $7 / $8 / 1e9) }
  END {
    printf "  cold      GET p50 [%s ] us, p99 [%s ] us; origin fetch p50 [%s ] us, p99 [%s ] us\n", gp50["cold"], gp99["cold"], op50["cold"], op99["cold"]
    printf "  cold      written to the devices [%s ] GB/s (4+1: 1.25 bytes a chunk byte, plus headers)\n", wr["cold"]
    printf "  hot-full  GET p50 [%s ] us, p99 [%s ] us (issue 12: p50 < 50 us, at one connection)\n", gp50["hot-full"], gp99["hot-full"]
    printf "  hot-range GET p50 [%s ] us, p99 [%s ] us\n", gp50["hot-range"], gp99["hot-range"]
  }' "$SERVER"
echo
echo "CPU over the passes (cores busy = CPU seconds / pass seconds, median over rounds; $(nproc) cores in all):"
awk -F'\t' '
  function median(list,   n, a, i, j, t) {
    n = split(list, a, " ")
    for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  $5 > 0 { k = $1 SUBSEP $3; l[k] = l[k] " " $4 / $5; if (!(k in seen)) { seen[k] = 1; keys[++n] = k } }
  END {
    split("direct-nginx cold-chunkd hot-full-chunkd hot-full-nginx hot-range-chunkd hot-range-nginx", passes, " ")
    for (p = 1; p <= 6; p++) {
      threads = ""; wrk = nginx = all = 0
      for (i = 1; i <= n; i++) {
        split(keys[i], kw, SUBSEP); if (kw[1] != passes[p]) continue
        m = median(l[keys[i]])
        if (kw[2] == "wrk") wrk = m
        else if (kw[2] == "nginx-workers") nginx = m
        else if (kw[2] == "chunkd(all)") all = m
        else if (m >= 0.005) { sub(/^chunkd:/, "", kw[2]); threads = threads sprintf("%s %.2f, ", kw[2], m) }
      }
      if (passes[p] ~ /nginx$/) all = 0
      printf "  %-17s %.2f = wrk %.2f + nginx %.2f%s\n", passes[p], wrk + nginx + all, wrk, nginx,
        (passes[p] ~ /chunkd$/ ? sprintf(" + chunkd %.2f (%s)", all, substr(threads, 1, length(threads) - 2)) : "")
    }
  }' "$CPU"
echo
echo "per-round figures: $( ((KEEP)) && echo "$RES and $CPU" || echo "(use --keep to keep results.tsv, cpu.tsv and the raw wrk outputs)")"

if ((ANY_ERRORS)); then
  echo "ERROR: at least one pass had errors, missing responses or failed counter checks (see above)" >&2
  exit 2
fi

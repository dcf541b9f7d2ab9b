#!/usr/bin/env bash
# nginx_vs_chunkd.sh — serve the same 512 KiB chunks with chunkd and with nginx (O_DIRECT
# and sendfile), drive each with the same wrk load, compare with fio reading chunkd's own
# device files, in alternating rounds. See tuning/README.md for what and why.
#
# Usage: tuning/nginx_vs_chunkd.sh [options]      (run as root; --help lists the options)
set -euo pipefail

# ---------------------------------------------------------------------------- settings
CHUNKS=2048               # 2048 x 512 KiB = 1 GiB of distinct chunks
ROUNDS=3
DURATION=10               # seconds per measurement
WARMUP=2                  # seconds of discarded load per contestant before the rounds
THREADS=1                 # wrk threads
CONNECTIONS=16            # wrk connections (= requests in flight)
CASES="full,range"
CONTESTANTS="chunkd,nginx-directio,nginx-sendfile,fio"
PORT=17070                # chunkd; nginx on PORT+1 (directio, full), +2 (sendfile), +3 (directio, range)
CHUNKD_CORES=$(nproc)
NGINX_WORKERS=2
NGINX_AIO=threads         # Debian's nginx has no file AIO: "aio on" is refused there
NGINX_SENDFILE_AIO=off    # the sendfile server: from a warm page cache a thread hand-off only costs
NGINX_BUFFERS_FULL="1 512k"   # output_buffers of nginx-directio for full GETs
NGINX_BUFFERS_RANGE="1 64k"   # ... and for 64 KiB range GETs (see README: must not exceed 64k)
WORK_PARENT=${TMPDIR:-/var/tmp}
CHUNKD_BIN=${CHUNKD:-}
CHUNKD_EXTRA_ARGS=""
KEEP=0
VERIFY_SAMPLES=4

CHUNK_BYTES=524288
RANGE_BYTES=65536
DATA_SHARDS=4             # chunkd's default scheme 4+1: a chunk read is 4 shard reads
TOTAL_SHARDS=5
SHARD_EXTENT=$((4096 + CHUNK_BYTES / DATA_SHARDS))   # header block + one data shard
RESERVED=$((1 << 20))     # chunkd's superblock area at the start of every device

usage() {
  cat <<EOF
Usage: $0 [options]

Serves the same random 512 KiB chunks with chunkd and with nginx, drives each with the same
wrk load (full GETs and 64 KiB range GETs), runs fio on chunkd's device files as the disk's
ceiling, alternating contestants in rounds, and prints medians and per-round ratios.

  --chunks N            distinct chunks (default $CHUNKS = $((CHUNKS * CHUNK_BYTES >> 20)) MiB)
  --rounds N            measurement rounds (default $ROUNDS)
  --duration S          seconds per measurement (default $DURATION)
  --warmup S            discarded seconds per contestant and case before round 1 (default $WARMUP, 0 = none)
  --threads N           wrk threads (default $THREADS)
  --connections N       wrk connections (default $CONNECTIONS); fio depth follows from it
  --cases LIST          full,range,hot-full,hot-range (default $CASES). The hot cases
                        compare chunkd's memory tier with nginx-sendfile on a warm page
                        cache (chunkd and nginx-sendfile only; every chunk is read once
                        from both first); the others are flash vs O_DIRECT (run those with
                        --chunkd-args "--memory-cache 0" for flash alone)
  --contestants LIST    chunkd,nginx-directio,nginx-sendfile,fio (default all; chunkd always runs)
  --port P              chunkd port; nginx uses P+1 (directio, full GETs), P+2 (sendfile)
                        and P+3 (directio, range GETs) (default $PORT)
  --chunkd-cores N      chunkd serve --cores (default $CHUNKD_CORES)
  --chunkd PATH         chunkd binary (default: \$CHUNKD, chunkd on PATH, or target/release/chunkd)
  --chunkd-args "ARGS"  extra arguments for chunkd serve
  --nginx-workers N     nginx worker_processes (default $NGINX_WORKERS)
  --nginx-aio MODE      aio for the directio nginx servers: threads|on|off (default $NGINX_AIO)
  --nginx-sendfile-aio MODE  aio for the sendfile nginx server (default $NGINX_SENDFILE_AIO: with
                        the page cache warm, as in the hot cases, "aio threads" measured 1.5x slower)
  --nginx-buffers-full "N SIZE"   output_buffers of nginx-directio for full GETs (default "$NGINX_BUFFERS_FULL")
  --nginx-buffers-range "N SIZE"  output_buffers of nginx-directio for range GETs (default "$NGINX_BUFFERS_RANGE")
  --work-dir DIR        parent of the scratch directory; must be on the disk under test,
                        not tmpfs (default $WORK_PARENT)
  --keep                keep the scratch directory
  -h, --help            this text

Needs root (drop_caches). Exit status: 0 when the run completed (targets met or not),
1 on a setup error, 2 when any server answered with errors or wrong sizes under load.
EOF
}

while (($#)); do
  case $1 in
    --chunks) CHUNKS=$2; shift ;;
    --rounds) ROUNDS=$2; shift ;;
    --duration) DURATION=$2; shift ;;
    --warmup) WARMUP=$2; shift ;;
    --threads) THREADS=$2; shift ;;
    --connections) CONNECTIONS=$2; shift ;;
    --cases) CASES=$2; shift ;;
    --contestants) CONTESTANTS=$2; shift ;;
    --port) PORT=$2; shift ;;
    --chunkd-cores) CHUNKD_CORES=$2; shift ;;
    --chunkd) CHUNKD_BIN=$2; shift ;;
    --chunkd-args) CHUNKD_EXTRA_ARGS=$2; shift ;;
    --nginx-workers) NGINX_WORKERS=$2; shift ;;
    --nginx-aio) NGINX_AIO=$2; shift ;;
    --nginx-sendfile-aio) NGINX_SENDFILE_AIO=$2; shift ;;
    --nginx-buffers-full) NGINX_BUFFERS_FULL=$2; shift ;;
    --nginx-buffers-range) NGINX_BUFFERS_RANGE=$2; shift ;;
    --work-dir) WORK_PARENT=$2; shift ;;
    --keep) KEEP=1 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown option: $1 (see --help)" >&2; exit 1 ;;
  esac
  shift
done

# shellcheck source=tuning/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"     # log, die, is_int, stop_pid, run_child, ports_free, scratch_dir
for v in CHUNKS ROUNDS DURATION WARMUP THREADS CONNECTIONS PORT CHUNKD_CORES NGINX_WORKERS; do
  is_int "${!v}" || die "--${v,,} must be a whole number (got '${!v}')"
done
((CHUNKS >= 1 && ROUNDS >= 1 && DURATION >= 1 && CONNECTIONS >= THREADS && THREADS >= 1)) \
  || die "need --chunks >= 1, --rounds >= 1, --duration >= 1, --connections >= --threads >= 1"
case $NGINX_AIO in threads|on|off) ;; *) die "--nginx-aio is threads, on or off" ;; esac
case $NGINX_SENDFILE_AIO in threads|on|off) ;; *) die "--nginx-sendfile-aio is threads, on or off" ;; esac
has() { [[ ",$2," == *",$1,"* ]]; }
for c in ${CASES//,/ }; do case $c in full|range|hot-full|hot-range) ;; *) die "unknown case $c" ;; esac; done
for c in ${CONTESTANTS//,/ }; do
  case $c in chunkd|nginx-directio|nginx-sendfile|fio) ;; *) die "unknown contestant $c" ;; esac
done
has chunkd "$CONTESTANTS" || CONTESTANTS="chunkd,$CONTESTANTS"

# ---------------------------------------------------------------------------- tools
missing=()
for tool in nginx wrk fio curl; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if ((${#missing[@]})); then
  echo "missing: ${missing[*]}" >&2
  echo "install with: apt-get install nginx wrk fio curl" >&2
  exit 1
fi
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# fio's buffers go on huge pages, as chunkd's do (on a virtio disk 128 KiB reads into 4 KiB
# pages measured 3x slower than into huge pages): fio needs pages from the kernel's reserved
# pool, which is raised here for the run if it is short, and restored by `cleanup`.
HUGE_PAGES_BEFORE=""
FIO_MEM=()
huge_free() { awk '$1 == "HugePages_Free:" { print $2 }' /proc/meminfo; }
reserve_huge_pages() {
  local free before page_kib
  # fio's deepest job (full GETs) has a chunk's bytes in flight per connection; 4x that
  # leaves room for fio's own rounding (16 connections: 16 pages of 2 MiB).
  page_kib=$(awk '$1 == "Hugepagesize:" { print $2 }' /proc/meminfo)
  HUGE_PAGES_NEEDED=$(((4 * CONNECTIONS * CHUNK_BYTES / 1024 + page_kib - 1) / page_kib))
  free=$(huge_free)
  if ((free < HUGE_PAGES_NEEDED)); then
    before=$(cat /proc/sys/vm/nr_hugepages)
    echo $((before + HUGE_PAGES_NEEDED - free)) >/proc/sys/vm/nr_hugepages 2>/dev/null || return 1
    HUGE_PAGES_BEFORE=$before
    (($(huge_free) >= HUGE_PAGES_NEEDED)) || return 1
  fi
  FIO_MEM=(--iomem=shmhuge)
}
if [[ -z $CHUNKD_BIN ]]; then
  if command -v chunkd >/dev/null; then CHUNKD_BIN=$(command -v chunkd)
  elif [[ -x ${CARGO_TARGET_DIR:-$HERE/../target}/release/chunkd ]]; then
    CHUNKD_BIN=${CARGO_TARGET_DIR:-$HERE/../target}/release/chunkd
  fi
fi
[[ -n $CHUNKD_BIN && -x $CHUNKD_BIN ]] \
  || die "chunkd not found: build it (cargo build --release) or pass --chunkd PATH"
CHUNKD_BIN=$(readlink -f "$CHUNKD_BIN")
((EUID == 0)) || die "run as root: the sendfile runs need to drop the page cache"
for awk_needed in awk sort split head; do command -v "$awk_needed" >/dev/null || die "$awk_needed missing"; done

# ---------------------------------------------------------------------------- cleanup
WORK=""; CHUNKD_PID=""; NGINX_PIDS=(); CUR_PID=""
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [[ -n $HUGE_PAGES_BEFORE ]] && echo "$HUGE_PAGES_BEFORE" >/proc/sys/vm/nr_hugepages
  stop_pid "$CUR_PID" TERM 2
  for pid in "${NGINX_PIDS[@]}"; do stop_pid "$pid" TERM 5; done
  stop_pid "$CHUNKD_PID" TERM 10
  if [[ -n $WORK && -d $WORK ]]; then
    if ((KEEP)); then log "kept $WORK"; else rm -rf -- "$WORK"; fi
  fi
  exit "$rc"
}
trap cleanup EXIT
# fd 9 = the real stderr: a signal may arrive while a child's output is redirected.
exec 9>&2
trap 'echo "interrupted: stopping chunkd, nginx and the load, removing the scratch directory" >&9; exit 130' INT TERM


ports_free "$PORT" $((PORT + 3))

if has fio "$CONTESTANTS"; then
  reserve_huge_pages || log "WARNING: no huge pages for fio's buffers: its figures are on 4 KiB pages, and chunkd/fio ratios favour chunkd"
fi

# ---------------------------------------------------------------------------- scratch
WORK=$(scratch_dir "$WORK_PARENT" nginx_vs_chunkd) || exit 1
ROOT=$WORK/www                  # nginx root: $ROOT/v1/chunks/{id}
DATA=$WORK/chunkd               # chunkd data dir; devices in $DATA/devices/dev*
NGX=$WORK/nginx
RES=$WORK/results.tsv           # case contestant round req/s bytes/s p50_us p99_us errors
mkdir -p "$ROOT/v1/chunks" "$DATA/devices" "$NGX" "$WORK/gen" "$WORK/runs"
: >"$RES"

region=$((CHUNKS * SHARD_EXTENT))                        # bytes of each device the chunks take
dev_bytes=$(( (RESERVED + region + region / 4 + (64 << 20) + (1 << 20) - 1) >> 20 << 20 ))
need=$(( CHUNKS * CHUNK_BYTES + TOTAL_SHARDS * dev_bytes + (256 << 20) ))
avail=$(( $(df -Pk "$WORK" | awk 'NR == 2 { print $4 }') * 1024 ))
((avail > need)) || die "need $((need >> 20)) MiB free in $WORK_PARENT, have $((avail >> 20)) MiB"

# ---------------------------------------------------------------------------- chunks
log "generating $CHUNKS random chunks of 512 KiB ($((CHUNKS * CHUNK_BYTES >> 20)) MiB)"
head -c $((CHUNKS * CHUNK_BYTES)) /dev/urandom | split -b $CHUNK_BYTES -a 6 -d - "$WORK/gen/c"
IDS=$WORK/ids.txt
# `chunkd id` prints one id per file, in the order given (xargs without -P keeps it).
( cd "$WORK/gen" && ls >../gen.list && xargs "$CHUNKD_BIN" id <../gen.list >../id.out ) \
  || die "chunkd id failed"
(($(wc -l <"$WORK/id.out") == CHUNKS)) || die "chunkd id printed $(wc -l <"$WORK/id.out") ids for $CHUNKS files"
paste -d' ' "$WORK/id.out" "$WORK/gen.list" | while read -r id file; do
  [[ $id =~ ^[0-9a-f]{64}$ ]] || die "unexpected chunkd id output: $id"
  mv "$WORK/gen/$file" "$ROOT/v1/chunks/$id"
done
sort -u "$WORK/id.out" >"$IDS"
rmdir "$WORK/gen"
(($(wc -l <"$IDS") == CHUNKS)) || die "expected $CHUNKS distinct ids, got $(wc -l <"$IDS")"
chmod -R a+rX "$ROOT"

# ---------------------------------------------------------------------------- chunkd
CHUNKD_URL=http://127.0.0.1:$PORT
devices=()
for ((i = 0; i < TOTAL_SHARDS; i++)); do devices+=(--device "$DATA/devices/dev$i:$((dev_bytes >> 20))M"); done
log "starting chunkd on $CHUNKD_URL (${CHUNKD_CORES} cores, $TOTAL_SHARDS devices of $((dev_bytes >> 20)) MiB)"
# shellcheck disable=SC2086
"$CHUNKD_BIN" serve --listen "127.0.0.1:$PORT" --data-dir "$DATA" "${devices[@]}" \
  --cores "$CHUNKD_CORES" $CHUNKD_EXTRA_ARGS >"$WORK/chunkd.log" 2>&1 &
CHUNKD_PID=$!
for ((i = 0; i < 600; i++)); do
  kill -0 "$CHUNKD_PID" 2>/dev/null || { tail -20 "$WORK/chunkd.log" >&2; die "chunkd exited during start-up"; }
  [[ $(curl -s -o /dev/null -w '%{http_code}' "$CHUNKD_URL/readyz" || true) == 200 ]] && break
  sleep 0.1
done
((i < 600)) || die "chunkd not ready after 60 s (log: $WORK/chunkd.log)"

log "PUTting $CHUNKS chunks into chunkd (curl, 16 in parallel)"
{
  while read -r id; do
    printf 'url = "%s/v1/chunks/%s"\nupload-file = "%s/v1/chunks/%s"\noutput = "/dev/null"\n' \
      "$CHUNKD_URL" "$id" "$ROOT" "$id"
  done <"$IDS"
} >"$WORK/put.curl"
curl -sS -Z --parallel-max 16 -K "$WORK/put.curl" -w '%{http_code} %{url_effective}\n' \
  >"$WORK/put.out" 2>"$WORK/put.err" || true
put_ok=$(awk '$1 == 201 || $1 == 200' "$WORK/put.out" | wc -l)
if ((put_ok != CHUNKS)); then
  grep -v '^20[01] ' "$WORK/put.out" | head -5 >&2 || true
  head -5 "$WORK/put.err" >&2 || true
  die "only $put_ok of $CHUNKS PUTs succeeded"
fi

# ---------------------------------------------------------------------------- nginx
# Separate nginx instances, not server blocks of one: open_file_cache is shared by every
# server of one http block, so a file opened by the sendfile server (buffered) would be
# reused by the directio server and the reverse, mixing page-cache reads into the O_DIRECT
# figure (and making nginx pread() O_DIRECT fds into unaligned buffers: EINVAL).
# nginx-directio is two instances that differ only in output_buffers, one per case: nginx
# reads a piece smaller than its output buffer *without* O_DIRECT (it turns O_DIRECT off on
# the fd around that read), so a 64 KiB range needs buffers of at most 64k to stay
# O_DIRECT, while full GETs are best read with one 512k buffer in one I/O. With
# open_file_cache and aio threads, that on/off toggling also races with other requests'
# reads on the same fd (pread EINVAL, connection reset): no toggling happens when every
# read is a whole buffer, as here.
NGINX_DIRECT_URL=http://127.0.0.1:$((PORT + 1))
NGINX_SENDFILE_URL=http://127.0.0.1:$((PORT + 2))
NGINX_DIRECT_RANGE_URL=http://127.0.0.1:$((PORT + 3))
aio_line=""; [[ $NGINX_AIO != off ]] && aio_line="aio $NGINX_AIO;"
sendfile_aio_line=""; [[ $NGINX_SENDFILE_AIO != off ]] && sendfile_aio_line="aio $NGINX_SENDFILE_AIO;"
user_line=""; ((EUID == 0)) && user_line="user $(id -un) $(id -gn);"
write_nginx_conf() { # name port location-directives
  local prefix=$NGX/$1
  mkdir -p "$prefix"
  cat >"$prefix/nginx.conf" <<EOF
# Generated by nginx_vs_chunkd.sh: $1
$user_line
worker_processes $NGINX_WORKERS;
pid $prefix/nginx.pid;
error_log $prefix/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_timeout 75s;
    keepalive_requests 1000000;      # wrk keeps its connections, as with chunkd
    default_type application/octet-stream;
    types { }
    etag off;
    open_file_cache max=$((CHUNKS * 2 + 1024)) inactive=300s;  # chunkd keeps its device fds open too
    open_file_cache_valid 300s;
    client_body_temp_path $prefix/body;
    proxy_temp_path $prefix/proxy;
    fastcgi_temp_path $prefix/fastcgi;
    uwsgi_temp_path $prefix/uwsgi;
    scgi_temp_path $prefix/scgi;
    server {
        listen 127.0.0.1:$2;
        root $ROOT;
        location /v1/chunks/ {
$3
        }
    }
}
EOF
  nginx -t -q -p "$prefix" -c "$prefix/nginx.conf" 2>"$prefix/nginx-t.err" \
    || { cat "$prefix/nginx-t.err" >&2; die "nginx refused the generated $1 config (--nginx-aio $NGINX_AIO?)"; }
}
start_nginx() { # name url; appends the master's pid to NGINX_PIDS
  local prefix=$NGX/$1 pid i
  nginx -p "$prefix" -c "$prefix/nginx.conf" -g 'daemon off;' >"$prefix/stdout.log" 2>&1 &
  pid=$!; NGINX_PIDS+=("$pid")
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || { cat "$prefix/error.log" "$prefix/stdout.log" >&2 || true; die "nginx ($1) exited at start"; }
    [[ $(curl -s -o /dev/null -w '%{http_code}' "$2/v1/chunks/$(head -1 "$IDS")" || true) == 200 ]] && return 0
    sleep 0.1
  done
  die "nginx ($1) did not answer within 10 s"
}
# (a) O_DIRECT: every file of 4 KiB or more is read with O_DIRECT into output_buffers, off
#     the event loop by the thread pool ("aio threads").
directio_locations() { # output_buffers
  printf '            sendfile off;\n            directio 4k;\n            directio_alignment 4k;\n            %s\n            output_buffers %s;' "$aio_line" "$1"
}
write_nginx_conf directio-full $((PORT + 1)) "$(directio_locations "$NGINX_BUFFERS_FULL")"
write_nginx_conf directio-range $((PORT + 3)) "$(directio_locations "$NGINX_BUFFERS_RANGE")"
# (b) sendfile: through the page cache (cold only at the start of each run: see the report).
write_nginx_conf sendfile $((PORT + 2)) "            sendfile on;
            tcp_nopush on;
            $sendfile_aio_line"
log "starting nginx: directio on ports $((PORT + 1)) (full GETs) and $((PORT + 3)) (range GETs), sendfile on port $((PORT + 2))"
start_nginx directio-full "$NGINX_DIRECT_URL"; NGINX_DIRECT_PID=${NGINX_PIDS[-1]}
start_nginx directio-range "$NGINX_DIRECT_RANGE_URL"; NGINX_DIRECT_RANGE_PID=${NGINX_PIDS[-1]}
start_nginx sendfile "$NGINX_SENDFILE_URL"; NGINX_SENDFILE_PID=${NGINX_PIDS[-1]}

# ---------------------------------------------------------------------------- verify
url_of() { # contestant case
  case $1 in
    chunkd) echo "$CHUNKD_URL" ;;
    nginx-directio) [[ $2 == full ]] && echo "$NGINX_DIRECT_URL" || echo "$NGINX_DIRECT_RANGE_URL" ;;
    nginx-sendfile) echo "$NGINX_SENDFILE_URL" ;;
  esac
}
log "verifying responses byte for byte (full and range GETs, $VERIFY_SAMPLES chunks per server)"
servers=(chunkd nginx-directio nginx-sendfile)
while read -r id; do
  file=$ROOT/v1/chunks/$id
  start=$(( (RANDOM % (CHUNK_BYTES / RANGE_BYTES)) * RANGE_BYTES ))
  dd if="$file" of="$WORK/expected.range" bs=$RANGE_BYTES skip=$((start / RANGE_BYTES)) count=1 status=none
  for s in "${servers[@]}"; do
    code=$(curl -sS -o "$WORK/got" -w '%{http_code}' "$(url_of "$s" full)/v1/chunks/$id")
    [[ $code == 200 ]] || die "$s: GET $id answered $code"
    cmp -s "$WORK/got" "$file" || die "$s: GET $id returned different bytes"
    code=$(curl -sS -o "$WORK/got" -w '%{http_code}' -H "Range: bytes=$start-$((start + RANGE_BYTES - 1))" \
      "$(url_of "$s" range)/v1/chunks/$id")
    [[ $code == 206 ]] || die "$s: range GET $id answered $code, not 206"
    cmp -s "$WORK/got" "$WORK/expected.range" || die "$s: range GET $id returned different bytes"
  done
done < <(awk -v n="$VERIFY_SAMPLES" -v seed="$RANDOM" 'BEGIN { srand(seed) } { ids[NR] = $1 }
  END { for (i = 0; i < n; i++) print ids[int(rand() * NR) + 1] }' "$IDS")
rm -f "$WORK/got" "$WORK/expected.range"

# O_DIRECT check: the fds that chunkd and the directio nginx read through carry O_DIRECT
# (fdinfo flags are octal; O_DIRECT is 040000 on x86-64, 0200000 on arm).
case $(uname -m) in aarch64|arm*) O_DIRECT_FLAG=$((8#200000)) ;; *) O_DIRECT_FLAG=$((8#40000)) ;; esac
count_fds() { # pids..., path prefix -> "direct total"
  local prefix=${!#} direct=0 total=0 pid fd target flags
  for pid in "${@:1:$#-1}"; do
    for fd in /proc/"$pid"/fd/*; do
      target=$(readlink "$fd" 2>/dev/null) || continue
      [[ $target == "$prefix"* ]] || continue
      flags=$(awk '/^flags:/ { print $2 }' "/proc/$pid/fdinfo/${fd##*/}" 2>/dev/null) || continue
      [[ -n $flags ]] || continue
      total=$((total + 1))
      (( (8#$flags & O_DIRECT_FLAG) != 0 )) && direct=$((direct + 1))
    done
  done
  echo "$direct $total"
}
read -r cd_direct cd_total < <(count_fds "$CHUNKD_PID" "$DATA/devices/")
mapfile -t ngx_workers < <(pgrep -P "$NGINX_DIRECT_PID,$NGINX_DIRECT_RANGE_PID" || true)
read -r nd_direct nd_total < <(count_fds "${ngx_workers[@]}" "$ROOT/")
mapfile -t ngx_workers < <(pgrep -P "$NGINX_SENDFILE_PID" || true)
read -r ns_direct ns_total < <(count_fds "${ngx_workers[@]}" "$ROOT/")
ODIRECT_NOTE="O_DIRECT on open fds (/proc/PID/fdinfo): chunkd $cd_direct of $cd_total device fds; nginx-directio $nd_direct of $nd_total cached chunk fds; nginx-sendfile $ns_direct of $ns_total"
((cd_total > 0 && cd_direct == cd_total)) || die "chunkd's device fds are not all O_DIRECT ($cd_direct of $cd_total)"
((nd_total > 0 && nd_direct == nd_total)) || die "nginx-directio's chunk fds are not all O_DIRECT ($nd_direct of $nd_total): directio is not in effect"
((ns_direct == 0)) || die "nginx-sendfile has O_DIRECT fds ($ns_direct of $ns_total)"
log "$ODIRECT_NOTE"

# fio must read written blocks: an unwritten (fallocated) extent reads as zeros with no I/O.
UNWRITTEN_NOTE=""
if command -v filefrag >/dev/null; then
  for ((i = 0; i < TOTAL_SHARDS; i++)); do
    # filefrag -v: "ext: logical_offset: physical_offset: length: expected: flags"
    n=$(filefrag -v -b4096 "$DATA/devices/dev$i" 2>/dev/null | awk -F'[:.]+' -v lo=$((RESERVED / 4096)) \
      -v hi=$(((RESERVED + region) / 4096)) '/unwritten/ { s = $2 + 0; e = $3 + 0;
        if (e >= lo && s < hi) n += (e < hi ? e : hi - 1) - (s > lo ? s : lo) + 1 } END { print n + 0 }')
    ((n == 0)) || UNWRITTEN_NOTE+="dev$i has $n unwritten 4 KiB blocks in fio's region (fio would read zeros there); "
  done
  [[ -z $UNWRITTEN_NOTE ]] || log "WARNING: $UNWRITTEN_NOTE"
fi

sync  # nothing dirty left for writeback to disturb the measurements

# ---------------------------------------------------------------------------- load
cat >"$WORK/load.lua" <<'EOF'
-- wrk script: a random chunk per request; for "range" a random 64 KiB-aligned 64 KiB range.
-- args: ids_file mode chunk_bytes range_bytes
local ids, mode, chunk_bytes, range_bytes, slots = {}, "full", 524288, 65536, 8
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
function init(args)
  local f = assert(io.open(args[1], "r"))
  for line in f:lines() do if #line > 0 then ids[#ids + 1] = line end end
  f:close()
  mode, chunk_bytes, range_bytes = args[2], tonumber(args[3]), tonumber(args[4])
  slots = math.floor(chunk_bytes / range_bytes)
  math.randomseed(os.time() * 1000 + (tid or 0) * 7919 + math.floor(os.clock() * 1e6))
end
function request()
  local path = "/v1/chunks/" .. ids[math.random(#ids)]
  if mode == "range" then
    local a = (math.random(slots) - 1) * range_bytes
    return wrk.format("GET", path, { ["Range"] = "bytes=" .. a .. "-" .. (a + range_bytes - 1) })
  end
  return wrk.format("GET", path)
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT requests=%d bytes=%d duration_us=%d p50_us=%d p99_us=%d "
    .. "err_connect=%d err_read=%d err_write=%d err_status=%d err_timeout=%d\n",
    summary.requests, summary.bytes, summary.duration,
    latency:percentile(50), latency:percentile(99),
    e.connect, e.read, e.write, e.status, e.timeout))
end
EOF

body_of() { [[ ${1#hot-} == full ]] && echo $CHUNK_BYTES || echo $RANGE_BYTES; }
is_hot() { [[ $1 == hot-* ]]; }

# wrk_run case contestant seconds out -> appends "req/s bytes/s p50 p99 errors note"
wrk_run() {
  local case=$1 who=$2 secs=$3 out=$4 body
  body=$(body_of "$case")
  run_child wrk -t"$THREADS" -c"$CONNECTIONS" -d"${secs}s" --timeout 10s -s "$WORK/load.lua" \
    "$(url_of "$who" "${case#hot-}")" -- "$IDS" "${case#hot-}" $CHUNK_BYTES $RANGE_BYTES >"$out" 2>&1 \
    || { cat "$out" >&2; die "wrk failed against $who"; }
  awk -v body="$body" '/^RESULT / {
      for (i = 2; i <= NF; i++) { split($i, kv, "="); r[kv[1]] = kv[2] }
      s = r["duration_us"] / 1e6; n = r["requests"]
      err = r["err_connect"] + r["err_read"] + r["err_write"] + r["err_status"] + r["err_timeout"]
      note = "ok"
      if (n == 0) { note = "no-responses"; err++ }
      else if (r["bytes"] / n < body || r["bytes"] / n > body + 4096) {
        note = sprintf("wrong-size:%.0f-bytes/response", r["bytes"] / n); err++ }
      if (err > 0 && note == "ok")
        note = sprintf("errors:connect=%d,read=%d,write=%d,status=%d,timeout=%d", r["err_connect"],
          r["err_read"], r["err_write"], r["err_status"], r["err_timeout"])
      printf "%.1f %.1f %d %d %d %s\n", n / s, n * body / s, r["p50_us"], r["p99_us"], err, note
      found = 1 }
    END { if (!found) print "0 0 0 0 1 no-RESULT-line" }' "$out"
}

# fio_run case seconds out: O_DIRECT random reads over the region chunkd's shards occupy.
fio_run() {
  local case=$1 secs=$2 out=$3 files="" i bs depth per batch_args=()
  for ((i = 0; i < TOTAL_SHARDS; i++)); do files+="${files:+:}$DATA/devices/dev$i"; done
  if [[ $case == full ]]; then
    bs=$((CHUNK_BYTES / DATA_SHARDS)); depth=$((DATA_SHARDS * CONNECTIONS)); per=$DATA_SHARDS
    batch_args=(--iodepth_batch_submit=$DATA_SHARDS --iodepth_batch_complete_min=$DATA_SHARDS)
  else
    bs=$RANGE_BYTES; depth=$CONNECTIONS; per=1
  fi
  run_child fio --name=peer --filename="$files" --rw=randread --bs=$bs --direct=1 \
    --ioengine=io_uring --iodepth=$depth "${batch_args[@]}" "${FIO_MEM[@]}" --offset=$RESERVED \
    --size=$((region * TOTAL_SHARDS)) --randrepeat=0 --norandommap --runtime="${secs}s" --time_based \
    --group_reporting --output-format=terse --terse-version=3 >"$out" 2>&1 \
    || { cat "$out" >&2; die "fio failed"; }
  # terse v3: 6 read KiB, 8 IOPS, 9 runtime ms, 18-37 clat percentiles "P%=usec"
  awk -F';' -v per=$per -v body="$(body_of "$case")" '$1 == 3 {
      p50 = p99 = 0
      for (i = 18; i <= 37; i++) { split($i, kv, "%="); if (kv[1] + 0 == 50) p50 = kv[2]; if (kv[1] + 0 == 99) p99 = kv[2] }
      s = $9 / 1000; bytes = $6 * 1024
      printf "%.1f %.1f %d %d %d %s\n", bytes / s / body, bytes / s, p50, p99, ($5 != 0), ($5 != 0 ? "fio-error" : "ok")
      found = 1 }
    END { if (!found) print "0 0 0 0 1 no-terse-line" }' "$out"
}

DROP_NOTE="page cache dropped (sync; echo 3 > /proc/sys/vm/drop_caches) before every sendfile run"
drop_page_cache() {
  sync
  if ! echo 3 >/proc/sys/vm/drop_caches 2>/dev/null; then
    DROP_NOTE="COULD NOT drop the page cache: the sendfile runs were warm from the start"
  fi
}

measure() { # case contestant round seconds -> one result line on stdout (no subshell: see run_child)
  local case=$1 who=$2 round=$3 secs=$4 out=$WORK/runs/$1-$2-$3.out
  case $who in
    fio) fio_run "$case" "$secs" "$out" ;;
    nginx-sendfile) is_hot "$case" || drop_page_cache; wrk_run "$case" "$who" "$secs" "$out" ;;
    *) wrk_run "$case" "$who" "$secs" "$out" ;;
  esac
}

scrape_chunkd() { curl -sS -m 10 "$CHUNKD_URL/metrics" >"$1" 2>/dev/null || : >"$1"; }
scrape_chunkd "$WORK/metrics.before"

# Warms both hot contestants: every chunk read once from nginx-sendfile's files (the page
# cache) and from chunkd (admitted to its memory tier on PUT already, or now on this read).
warm_hot() {
  log "hot cases: reading every chunk once from chunkd and into the page cache"
  cat "$ROOT"/v1/chunks/* >/dev/null
  while read -r id; do printf 'url = "%s/v1/chunks/%s"\noutput = "/dev/null"\n' "$CHUNKD_URL" "$id"; done <"$IDS" >"$WORK/warm.curl"
  curl -sS -Z --parallel-max 4 -K "$WORK/warm.curl" >/dev/null 2>&1 || true
}

# p50 of chunkd's GETs from its own latency histogram, between two scrapes (interpolated
# within the bucket that holds the median, as Prometheus' histogram_quantile does).
histogram_p50_us() { # before after
  awk '
    /^chunkd_http_request_duration_seconds_bucket\{/ && /route="chunk"/ && /method="GET"/ {
      match($0, /le="[^"]*"/); le = substr($0, RSTART + 4, RLENGTH - 5)
      if (NR == FNR) { before[le] = $NF; next }
      n[le] = $NF - before[le]; if (!(le in seen)) { seen[le] = 1; les[++k] = le }
    }
    END {
      total = n["+Inf"]; if (total <= 0) { print "n/a"; exit }
      prev_le = 0; prev_n = 0
      for (i = 1; i <= k; i++) {
        le = les[i]; if (le == "+Inf") continue
        if (n[le] >= total / 2) {
          frac = (n[le] > prev_n) ? (total / 2 - prev_n) / (n[le] - prev_n) : 0
          printf "%.1f\n", (prev_le + (le - prev_le) * frac) * 1e6; exit
        }
        prev_le = le; prev_n = n[le]
      }
      print "over-the-last-bucket"
    }' "$1" "$2"
}

order=()
for c in chunkd nginx-directio nginx-sendfile fio; do has $c "$CONTESTANTS" && order+=("$c"); done
ANY_ERRORS=0
HOT_P50=""
WARMED=0
for case in ${CASES//,/ }; do
  who_list=("${order[@]}")
  if is_hot "$case"; then
    who_list=(chunkd); has nginx-sendfile "$CONTESTANTS" && who_list+=(nginx-sendfile)
    ((WARMED)) || { warm_hot; WARMED=1; }
  fi
  if ((WARMUP > 0)); then
    log "$case: warm-up ${WARMUP}s per contestant (discarded)"
    for who in "${who_list[@]}"; do measure "$case" "$who" warmup "$WARMUP" >/dev/null; done
  fi
  [[ $case == hot-full ]] && scrape_chunkd "$WORK/metrics.hot.before"
  for ((round = 1; round <= ROUNDS; round++)); do
    for who in "${who_list[@]}"; do
      measure "$case" "$who" "$round" "$DURATION" >"$WORK/line"
      read -r rps bps p50 p99 err note <"$WORK/line"
      printf '%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n' "$case" "$who" "$round" "$rps" "$bps" "$p50" "$p99" "$err" "$note" >>"$RES"
      log "$(printf '%-5s round %d %-15s %9.0f req/s %6.3f GB/s p50 %6.2f ms p99 %6.2f ms  %s' \
        "$case" "$round" "$who" "$rps" "$(awk -v b="$bps" 'BEGIN { print b / 1e9 }')" \
        "$(awk -v u="$p50" 'BEGIN { print u / 1000 }')" "$(awk -v u="$p99" 'BEGIN { print u / 1000 }')" "$note")"
      ((err == 0)) || ANY_ERRORS=1
    done
  done
  if [[ $case == hot-full ]]; then
    # Between the two scrapes chunkd served only this case's GETs (nginx's rounds send it
    # nothing; the scrapes are another route).
    scrape_chunkd "$WORK/metrics.hot.after"
    HOT_P50=$(histogram_p50_us "$WORK/metrics.hot.before" "$WORK/metrics.hot.after")
  fi
done

# ---------------------------------------------------------------------------- report
# What chunkd's own counters say about the load (differences over the measurements).
scrape_chunkd "$WORK/metrics.after"
CHUNKD_HEALTH=$(awk '
  /^#/ || NF < 2 { next }
  { key = substr($0, 1, length($0) - length($NF) - 1) }
  NR == FNR { before[key] = $NF; next }
  { d = $NF - before[key] }
  key ~ /^chunkd_http_requests_total/ && key ~ /status="5/ { s5 += d }
  key ~ /^chunkd_http_requests_total/ && key ~ /status="4/ { s4 += d }
  key ~ /^chunkd_connections_closed_total/ && d > 0 { match(key, /reason="[^"]*"/); cuts = cuts " " substr(key, RSTART + 8, RLENGTH - 9) "=" d }
  key ~ /^chunkd_store_shards_rebuilt_total/ { rebuilt += d }
  key ~ /^chunkd_store_chunks_unreadable_total/ { unreadable += d }
  key ~ /^chunkd_device_errors_total/ { deverr += d }
  END {
    bad = s5 + unreadable + deverr + rebuilt
    printf "%schunkd /metrics over the measurements: %d answers 5xx, %d answers 4xx, connections closed by chunkd:%s, %d shards rebuilt, %d chunks unreadable, %d device errors\n",
      (bad ? "WARNING: " : ""), s5, s4, (cuts == "" ? " none" : cuts), rebuilt, unreadable, deverr
  }' "$WORK/metrics.before" "$WORK/metrics.after" 2>/dev/null || echo "chunkd /metrics: could not be read")
[[ -s $WORK/metrics.after ]] || CHUNKD_HEALTH="chunkd /metrics: could not be read after the load"

ver_nginx=$(nginx -v 2>&1 | sed 's/^nginx version: //')
ver_wrk=$(wrk -v 2>&1 | awk 'NR == 1 { print $1, $2 }' || true)  # wrk -v exits 1
ver_fio=$(fio --version)
ver_chunkd=$("$CHUNKD_BIN" --version 2>&1 | awk 'NR == 1')
ver_git=$(git -C "$(dirname "$CHUNKD_BIN")" rev-parse --short HEAD 2>/dev/null || echo "?")

echo
echo "nginx_vs_chunkd: $CHUNKS distinct chunks of 512 KiB ($((CHUNKS * CHUNK_BYTES >> 20)) MiB) on $(df -PT "$WORK" | awk 'NR == 2 { print $1 " (" $2 ")" }'), $ROUNDS rounds of ${DURATION}s, warm-up ${WARMUP}s"
echo "versions: $ver_chunkd ($CHUNKD_BIN, git $ver_git); nginx $ver_nginx; $ver_wrk; $ver_fio; $(curl --version | awk 'NR == 1 { print $1, $2 }'); kernel $(uname -r); $(nproc) cores"
echo "load: wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s, HTTP/1.1 keep-alive, a random chunk per request; range case: Range: bytes=a-(a+65535), a a random multiple of 65536"
echo "chunkd: serve --cores $CHUNKD_CORES, $TOTAL_SHARDS devices of $((dev_bytes >> 20)) MiB, scheme 4+1, O_DIRECT via io_uring${CHUNKD_EXTRA_ARGS:+, extra: $CHUNKD_EXTRA_ARGS}"
echo "nginx: worker_processes $NGINX_WORKERS, open_file_cache, keepalive; directio: directio 4k, directio_alignment 4k, aio $NGINX_AIO, sendfile off, output_buffers $NGINX_BUFFERS_FULL (full) / $NGINX_BUFFERS_RANGE (range); sendfile: sendfile on, tcp_nopush on, aio $NGINX_SENDFILE_AIO"
echo "fio: io_uring, O_DIRECT, randread over chunkd's device files dev0..dev$((TOTAL_SHARDS - 1)), offset 1 MiB, $((region >> 20)) MiB each (where the shards are); full: bs 128k iodepth $((DATA_SHARDS * CONNECTIONS)) submitted and reaped $DATA_SHARDS at a time; range: bs 64k iodepth $CONNECTIONS"
echo "$ODIRECT_NOTE"
if has nginx-sendfile "$CONTESTANTS" && [[ ,$CASES, =~ ,(full|range), ]]; then
  echo "$DROP_NOTE (full and range cases): the nginx-sendfile figure INCLUDES PAGE-CACHE HITS ($((CHUNKS * CHUNK_BYTES >> 20)) MiB of chunks fit in memory; only the start of each run reads the disk) — context only"
fi
[[ $CASES == *hot-* ]] && echo "hot cases: every chunk read once from chunkd (its memory tier) and into the page cache before round 1; the page cache is not dropped; chunkd vs nginx-sendfile only"
[[ -z $UNWRITTEN_NOTE ]] || echo "WARNING: $UNWRITTEN_NOTE"
echo "$CHUNKD_HEALTH"
echo
awk -F'\t' -v conns="$CONNECTIONS" '
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
    if (!($1 in seen_case)) { seen_case[$1] = 1; cases[++ncases] = $1 }
    if (!(k in seen)) { seen[k] = 1; who[$1, ++nwho[$1]] = $2 }
    if ($2 == "nginx-sendfile" && $1 !~ /^hot/) has_sendfile = 1
    if ($2 == "fio") has_fio = 1
    if ($3 > rounds) rounds = $3 }
  END {
    label["full"] = "512 KiB GET"; label["range"] = "64 KiB range GET"
    label["hot-full"] = "512 KiB GET hot"; label["hot-range"] = "64 KiB range hot"
    printf "%-17s %-16s %10s %8s %8s %8s  %s\n", "case", "contestant", "req/s", "GB/s", "p50 ms", "p99 ms", "errors"
    for (c = 1; c <= ncases; c++) {
      cs = cases[c]
      for (w = 1; w <= nwho[cs]; w++) {
        name = who[cs, w]; k = cs SUBSEP name
        shown = name
        if (name == "nginx-sendfile" && cs !~ /^hot/) shown = name "*"
        if (name == "fio") shown = "fio**"
        printf "%-17s %-16s %10.0f %8.3f %8.2f %8.2f  %s\n", (w == 1 ? label[cs] : ""), shown,
          median(rps[k]), median(bps[k]) / 1e9, median(p50[k]) / 1000, median(p99[k]) / 1000,
          (errs[k] ? errs[k] " (" first[k] ")" : "0")
      }
    }
    print ""
    print "medians over rounds; GB/s counts response bodies only (same bytes for every contestant)"
    if (has_sendfile) print "*  nginx-sendfile serves mostly from the page cache (dropped before each run): context, not a target"
    if (has_fio) {
      print "** fio: req/s = chunk reads/s equivalent (IOPS / 4 for full GETs); p50/p99 are per I/O (one 128 KiB shard"
      print "   or one 64 KiB read), not per HTTP request — compare fio by GB/s only"
    }
    print ""
    print "ratios: median over rounds of (chunkd GB/s / peer GB/s in the same round)"
    for (c = 1; c <= ncases; c++) {
      cs = cases[c]
      split("nginx-directio fio nginx-sendfile", peers, " ")
      split("1.0 0.9 -", targets, " ")
      if (cs ~ /^hot-/) targets[3] = "1.2"
      for (p = 1; p <= 3; p++) {
        peer = peers[p]
        if (!((cs SUBSEP peer) in seen)) continue
        list = ""
        for (r = 1; r <= rounds; r++) {
          a = by_round[cs, "chunkd", r]; b = by_round[cs, peer, r]
          if (b > 0) list = list " " a / b
        }
        ratio = median(list)
        bad = errs[cs SUBSEP "chunkd"] + errs[cs SUBSEP peer]
        if (targets[p] == "-") verdict = "(context: page-cache hits)"
        else if (cs ~ /^hot-/ && p == 3 && bad) verdict = "target >= 1.20 (memory tier vs page cache)  INVALID (errors under load)"
        else if (cs ~ /^hot-/ && p == 3) verdict = sprintf("target >= 1.20 (memory tier vs page cache)  %s", (ratio >= 1.2 ? "met" : "MISSED"))
        else if (bad) verdict = sprintf("target >= %.2f  INVALID (errors under load)", targets[p])
        else verdict = sprintf("target >= %.2f  %s", targets[p], (ratio >= targets[p] ? "met" : "MISSED"))
        printf "%-17s chunkd / %-15s %5.2fx  %s\n", label[cs], peer, ratio, verdict
      }
    }
  }' "$RES"
[[ -n $HOT_P50 ]] && echo "chunkd server-side p50 of hot 512 KiB GETs (its /metrics latency histogram, hot-full rounds, wrk -c$CONNECTIONS): $HOT_P50 us"
echo
echo "per-round figures: $( ((KEEP)) && echo "$RES" || echo "(use --keep to keep $RES and the raw wrk/fio outputs)")"

if ((ANY_ERRORS)); then
  echo "ERROR: at least one server answered with errors or wrong sizes under load (see the errors column)" >&2
  exit 2
fi

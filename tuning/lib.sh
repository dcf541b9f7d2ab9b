# lib.sh — what the tuning scripts share (sourced by nginx_vs_chunkd.sh and
# origin_vs_nginx.sh): messages, checks, stopping a process by id, and running a child
# so that a signal is handled at once.

log() { printf '== %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
is_int() { [[ $1 =~ ^[0-9]+$ ]]; }

stop_pid() { # pid, first signal, seconds to wait before SIGKILL
  local pid=$1 sig=$2 wait_s=$3 i
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
  kill "-$sig" "$pid" 2>/dev/null || true
  for ((i = 0; i < wait_s * 10; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    [[ $sig == TERM ]] && kill -TERM "$pid" 2>/dev/null && sleep 0.5  # chunkd: 2nd signal = now
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

# Runs a command in the background and waits, so that a signal is handled at once
# (the caller's CUR_PID names it meanwhile, for the caller's cleanup).
run_child() {
  local rc=0
  "$@" & CUR_PID=$!
  wait "$CUR_PID" || rc=$?
  CUR_PID=""
  return "$rc"
}

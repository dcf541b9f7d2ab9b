# lib.sh — what the tuning scripts share (sourced by nginx_vs_chunkd.sh and
# origin_vs_nginx.sh): messages, checks, stopping a process by id, running a child so
# that a signal is handled at once, free ports and the scratch directory.

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

# Dies when something listens on a port from FIRST to LAST: a server already there would be
# measured instead of ours (chunkd binds with SO_REUSEPORT, so it would even share a port
# with another chunkd).
ports_free() { # first last
  local p
  for ((p = $1; p <= $2; p++)); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then die "port $p is in use: choose another --port"; fi
  done
}

# Makes a scratch directory NAME.XXXXXX under PARENT, which must be on a disk (chunkd's
# devices live there), and prints its path. Call as WORK=$(scratch_dir …) || exit 1: a die
# here ends only the command substitution.
scratch_dir() { # parent name
  local fstype work
  mkdir -p "$1"
  fstype=$(df -PT "$1" | awk 'NR == 2 { print $2 }')
  case $fstype in tmpfs|ramfs) die "$1 is $fstype: the scratch directory must be on a disk, as chunkd's devices and the data live there (use --work-dir)" ;; esac
  work=$(mktemp -d "$1/$2.XXXXXX")
  chmod 755 "$work"
  echo "$work"
}

#!/usr/bin/env bash
# Control command for stackflip's postgres driver (control_command in
# stackflip.yaml). Operations SQL cannot do:
#
#   pg-control.sh restart-as-standby DATA_DIRECTORY
#       stop (immediate), create standby.signal, start; exit 0 once the
#       server accepts connections. stackflip sets primary_conninfo (ALTER
#       SYSTEM) before calling this. Why immediate: the server is a fenced
#       former primary whose every commit the new primary has replayed; a
#       fast stop would write a shutdown checkpoint after the point where the
#       new primary's timeline forked, and the server could then never follow
#       it. Crash recovery on start replays only its own WAL, so nothing is
#       lost.
#   pg-control.sh rewind DATA_DIRECTORY SOURCE_CONNINFO
#       stop cleanly, pg_rewind from SOURCE_CONNINFO, create standby.signal,
#       start. The target keeps its own configuration files (pg_rewind would
#       copy the source's, including its listen_addresses); primary_conninfo
#       is set to SOURCE_CONNINFO only when the target has none.
#   pg-control.sh stop DATA_DIRECTORY      (success if already stopped)
#   pg-control.sh start DATA_DIRECTORY     (success if already running)
#
# Server log: DATA_DIRECTORY/../log/postgresql.log when that folder exists
# (the harness layout), else DATA_DIRECTORY.log next to the data directory.
# As root, PostgreSQL binaries run as the owner of DATA_DIRECTORY (runuser).
# PG_BIN defaults to /usr/lib/postgresql/15/bin.
set -euo pipefail

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}

fail() { echo "pg-control: $*" >&2; exit 1; }
usage() { sed -n '2,21p' "$0" >&2; exit 2; }

op=${1:-}; data=${2:-}
[[ -n $op && -n $data ]] || usage
[[ -d $data && -f $data/PG_VERSION ]] || fail "$data is not a PostgreSQL data directory"
data=$(cd "$data" && pwd)

owner=$(stat -c %U "$data")
run() { # run a PostgreSQL binary as the data directory's owner
  if [[ $EUID -eq 0 && $owner != root ]]; then runuser -u "$owner" -- "$@"; else "$@"; fi
}

if [[ -d $(dirname "$data")/log ]]; then logfile=$(dirname "$data")/log/postgresql.log
else logfile=$data.log; fi

tail_log() { [[ -r $logfile ]] && { echo "---- last lines of $logfile ----" >&2; tail -n 15 "$logfile" >&2; }; return 0; }

# A postmaster.pid whose process is gone or a zombie (PID 1 in containers may
# reap orphans late) is stale; PostgreSQL would refuse to start because of it.
clear_stale_pidfile() {
  local f=$data/postmaster.pid pid st
  [[ -e $f ]] || return 0
  pid=$(head -n1 "$f" 2>/dev/null)
  if [[ $pid =~ ^[0-9]+$ ]]; then
    st=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) || st=gone
    [[ $st == Z || $st == gone ]] || return 0
  fi
  # The socket lock file names the same dead pid and blocks the same way.
  local port sockdir; port=$(sed -n 4p "$f" 2>/dev/null); sockdir=$(sed -n 5p "$f" 2>/dev/null)
  [[ -n $port && -n $sockdir ]] && run rm -f "$sockdir/.s.PGSQL.$port.lock"
  run rm -f "$f"
}

running() { run "$PG_BIN/pg_ctl" -D "$data" status >/dev/null 2>&1; }

do_stop() { # [MODE]  fast (default: pg_rewind needs a clean shutdown) or immediate
  local mode=${1:-fast}
  running || return 0
  run "$PG_BIN/pg_ctl" -D "$data" -m "$mode" -w -t 60 stop >/dev/null 2>&1 ||
    { tail_log; fail "pg_ctl stop -m $mode failed for $data"; }
}

# pg_ctl -w returns once postmaster.pid says "ready" (a standby: consistent
# and accepting read-only connections); pg_isready double-checks the socket.
do_start() {
  if ! running; then
    clear_stale_pidfile
    run "$PG_BIN/pg_ctl" -D "$data" -l "$logfile" -w -t 120 start >/dev/null 2>&1 ||
      { tail_log; fail "pg_ctl start failed for $data"; }
  fi
  local pidfile=$data/postmaster.pid port sockdir
  port=$(sed -n 4p "$pidfile"); sockdir=$(sed -n 5p "$pidfile")
  for _ in $(seq 1 100); do
    "$PG_BIN/pg_isready" -q -h "${sockdir:-/tmp}" -p "$port" -U postgres -d postgres && return 0
    sleep 0.05
  done
  tail_log; fail "$data started but does not accept connections"
}

make_standby() { run touch "$data/standby.signal"; }

do_rewind() {
  local source=$1 keep f
  do_stop
  # pg_rewind copies the source's config files over the target's; keep ours.
  keep=$(mktemp -d)
  for f in "$data"/*.conf; do [[ -e $f ]] && cp -p "$f" "$keep/"; done
  if ! run "$PG_BIN/pg_rewind" --target-pgdata="$data" --source-server="$source" >"$keep/rewind.log" 2>&1; then
    cat "$keep/rewind.log" >&2; rm -rf "$keep"; fail "pg_rewind failed for $data"
  fi
  for f in "$keep"/*.conf; do [[ -e $f ]] && cp -p "$f" "$data/"; done
  if ! grep -q '^[[:space:]]*primary_conninfo' "$data/postgresql.auto.conf" 2>/dev/null; then
    printf "primary_conninfo = '%s'\n" "${source//\'/\'\'}" | run tee -a "$data/postgresql.auto.conf" >/dev/null
  fi
  rm -rf "$keep"
  make_standby
  do_start
}

case $op in
  stop) do_stop;;
  start) do_start;;
  restart-as-standby) do_stop immediate; make_standby; do_start;;
  rewind) [[ -n ${3:-} ]] || usage; do_rewind "$3";;
  *) usage;;
esac

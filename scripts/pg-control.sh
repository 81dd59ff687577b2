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
#   pg-control.sh bootstrap DATA_DIRECTORY SOURCE_CONNINFO
#       (issue 17; destroys this server's data) replace the data directory
#       with a base backup of SOURCE_CONNINFO and start it as a standby.
#       Resumable: a marker beside the data directory,
#       DATA_DIRECTORY.stackflip-bootstrap, records the phase: stop (set
#       before the server is stopped), copy (the old data directory is moved
#       aside to DATA_DIRECTORY.stackflip-old; the backup goes to
#       DATA_DIRECTORY.stackflip-new, removed and started again when a run
#       finds it half-written), start (the complete backup is renamed into
#       place, with the old data directory's *.conf files and
#       standby.signal; primary_conninfo from SOURCE_CONNINFO only when they
#       have none). Runs hold a lock on the data directory's parent folder,
#       so a re-run waits for one whose caller was killed. The old data is
#       never removed here. PG_CONTROL_MAX_RATE (if the host passes it on)
#       is pg_basebackup's --max-rate.
#   pg-control.sh bootstrap-finish DATA_DIRECTORY remove|keep
#       once the new standby streams: remove the old data directory (or keep
#       it as DATA_DIRECTORY.before-bootstrap-EPOCH), then the marker.
#   pg-control.sh bootstrap-state DATA_DIRECTORY
#       prints the marker's phase, or "none".
#   pg-control.sh stop DATA_DIRECTORY      (success if already stopped)
#   pg-control.sh start DATA_DIRECTORY     (success if already running)
#
# Server log: DATA_DIRECTORY/../log/postgresql.log when that folder exists
# (the harness layout), else DATA_DIRECTORY.log next to the data directory.
# As root, PostgreSQL binaries run as the owner of DATA_DIRECTORY (runuser),
# and so does every read and write of a file in the data directory or its log
# folder: that user can plant a symbolic link at any name there, and root
# must not follow it (issue 10). DATA_DIRECTORY itself must not be a symbolic
# link, and as root it must belong to a user other than root.
# PG_BIN defaults to /usr/lib/postgresql/15/bin.
set -euo pipefail

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}

fail() { echo "pg-control: $*" >&2; exit 1; }
usage() { sed -n '2,47p' "$0" >&2; exit 2; }

op=${1:-}; data=${2:-}
[[ -n $op && -n $data ]] || usage

# Issue 17: the bootstrap's names beside the data directory. They are
# checked before the data directory itself: while a bootstrap runs, the
# data directory may be absent (moved aside) and only these tell where it is.
data=${data%/}
marker=$data.stackflip-bootstrap aside=$data.stackflip-old fresh=$data.stackflip-new
if [[ $op == bootstrap-state ]]; then
  [[ -L $marker ]] && fail "$marker is a symbolic link: refused"
  if [[ -f $marker ]]; then sed -n 's/^phase=//p' "$marker" | head -n1; else echo none; fi
  exit 0
fi
if [[ $op == bootstrap* && ! -e $data && -f $marker && -d $aside && ! -L $aside ]]; then
  # Moved aside by an interrupted bootstrap: the owner is the old data's.
  owner=$(stat -c %U "$aside")
  [[ $EUID -eq 0 && $(stat -c %u "$aside") -eq 0 ]] && fail "$aside is owned by root: refused"
  run() { if [[ $EUID -eq 0 ]]; then runuser -u "$owner" -- "$@"; else "$@"; fi; }
  data_absent=1
fi
if [[ -z ${data_absent:-} ]]; then
[[ -L ${data%/} ]] && fail "$data is a symbolic link: refused (name the real directory)"
[[ -d $data ]] || fail "$data is not a PostgreSQL data directory"
data=$(cd "$data" && pwd)
owner=$(stat -c %U "$data")
[[ $EUID -eq 0 && $(stat -c %u "$data") -eq 0 ]] &&
  fail "$data is owned by root, not by the user PostgreSQL runs as: refused"
run() { # run a program as the data directory's owner
  if [[ $EUID -eq 0 ]]; then runuser -u "$owner" -- "$@"; else "$@"; fi
}
[[ -f $data/PG_VERSION && ! -L $data/PG_VERSION ]] || fail "$data is not a PostgreSQL data directory"
fi

if [[ -d $(dirname "$data")/log ]]; then logfile=$(dirname "$data")/log/postgresql.log
else logfile=$data.log; fi

tail_log() { run test -r "$logfile" && { echo "---- last lines of $logfile ----" >&2; run tail -n 15 "$logfile" >&2; }; return 0; }

# A postmaster.pid whose process is gone or a zombie (PID 1 in containers may
# reap orphans late) is stale; PostgreSQL would refuse to start because of it.
clear_stale_pidfile() {
  local f=$data/postmaster.pid pid st lines
  [[ -e $f || -L $f ]] || return 0
  mapfile -t lines < <(run head -n5 "$f" 2>/dev/null)
  pid=${lines[0]:-}
  if [[ $pid =~ ^[0-9]+$ ]]; then
    st=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) || st=gone
    [[ $st == Z || $st == gone ]] || return 0
  fi
  # The socket lock file names the same dead pid and blocks the same way.
  local port=${lines[3]:-} sockdir=${lines[4]:-}
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
# postmaster.pid (port, socket folder) is read by the owner, in the same
# runuser as the start: one runuser costs tens of milliseconds.
do_start() {
  local head lines port sockdir
  if ! running; then
    clear_stale_pidfile
    # shellcheck disable=SC2016
    # 9<&-: the server must not inherit a bootstrap's lock (it would hold
    # it for good); the lock is held until the server has started.
    head=$(run sh -c '"$1" -D "$2" -l "$3" -w -t 120 start >/dev/null 2>&1 && head -n5 "$2/postmaster.pid"' \
      start "$PG_BIN/pg_ctl" "$data" "$logfile" 9<&-) || { tail_log; fail "pg_ctl start failed for $data"; }
  else
    head=$(run head -n5 "$data/postmaster.pid")
  fi
  mapfile -t lines <<<"$head"
  port=${lines[3]:-}; sockdir=${lines[4]:-}
  for _ in $(seq 1 100); do
    "$PG_BIN/pg_isready" -q -h "${sockdir:-/tmp}" -p "$port" -U postgres -d postgres && return 0
    sleep 0.05
  done
  tail_log; fail "$data started but does not accept connections"
}

# standby.signal must be absent or a regular file: checked before the server
# is stopped (a planted link is refused while it still runs) and created by
# the owner, so nothing is followed with root's rights.
check_signal() { # [NOTE]
  local f=$data/standby.signal  # lstat only: nothing is read or followed as root
  if [[ -L $f ]] || [[ -e $f && ! -f $f ]]; then
    fail "$f is a symbolic link or not a regular file: refused${1:-}"
  fi
  return 0
}
make_standby() {
  check_signal " (remove it and try again)"
  run touch "$data/standby.signal"
}

do_rewind() {
  local source=$1 keep
  check_signal ", the server was left running (remove it and try again)"
  do_stop
  # pg_rewind copies the source's config files over the target's; keep ours:
  # the regular ones only, copied by the owner (a link is not followed), and
  # put back in place of whatever pg_rewind left at the name.
  keep=$(run mktemp -d)
  # shellcheck disable=SC2016
  run bash -c 'for f in "$1"/*.conf; do
      if [[ -f $f && ! -L $f ]]; then cp -p "$f" "$2/"
      elif [[ -L $f ]]; then echo "pg-control: $f is a symbolic link: not kept across pg_rewind" >&2; fi
    done' keep "$data" "$keep"
  local out
  if ! out=$(run "$PG_BIN/pg_rewind" --target-pgdata="$data" --source-server="$source" 2>&1); then
    echo "$out" >&2; run rm -rf "$keep"; fail "pg_rewind failed for $data"
  fi
  # shellcheck disable=SC2016
  run bash -c 'for f in "$1"/*.conf; do [[ -f $f ]] && cp -p --remove-destination "$f" "$2/"; done; true' \
    restore "$keep" "$data"
  if ! run grep -q '^[[:space:]]*primary_conninfo' "$data/postgresql.auto.conf" 2>/dev/null; then
    printf "primary_conninfo = '%s'\n" "${source//\'/\'\'}" | run tee -a "$data/postgresql.auto.conf" >/dev/null
  fi
  run rm -rf "$keep"
  make_standby
  do_start
}

# ---- issue 17: bootstrap a standby from a base backup
set_phase() { # PHASE: the marker is written by the owner, replaced atomically
  run sh -c 'printf "phase=%s\n" "$1" >"$2.tmp" && mv -f "$2.tmp" "$2"' phase "$1" "$marker"
}
phase_of() {
  if [[ -f $marker && ! -L $marker ]]; then run sed -n 's/^phase=//p' "$marker" | head -n1; fi
  return 0
}
# Held for the whole run (the server started at its end does not inherit
# it): a run whose caller was killed keeps it until its pg_basebackup ends
# and its server started, and the next one waits instead of racing it.
lock_parent() {
  exec 9<"$(dirname "$data")" || fail "cannot open $(dirname "$data") to lock it"
  flock -w 3600 9 || fail "another bootstrap of $data holds the lock"
}
do_bootstrap() {
  local source=$1 phase out
  lock_parent
  local n
  for n in "$marker" "$aside" "$fresh"; do
    if [[ -L $n ]]; then fail "$n is a symbolic link: refused"; fi
  done
  phase=$(phase_of)
  if [[ -z $phase ]]; then
    [[ -e $aside ]] && fail "$aside exists from an earlier bootstrap: move or remove it first"
    check_signal ", the server was left running (remove it and try again)"
    set_phase stop; phase=stop
  fi
  if [[ $phase == stop ]]; then
    if [[ -z ${data_absent:-} ]]; then
      [[ -e $aside ]] && fail "$aside exists from an earlier bootstrap: move or remove it first"
      do_stop
      run mv -T -- "$data" "$aside"
    fi
    set_phase copy; phase=copy
  fi
  if [[ $phase == copy ]]; then
    if [[ -e $data ]]; then  # renamed into place before the marker said so
      set_phase start; phase=start
    else
      run rm -rf -- "$fresh"
      local rate=()
      if [[ -n ${PG_CONTROL_MAX_RATE:-} ]]; then rate=(--max-rate="$PG_CONTROL_MAX_RATE"); fi
      if ! out=$(run "$PG_BIN/pg_basebackup" -D "$fresh" -R -X stream -c fast "${rate[@]}" \
        -d "$source" 2>&1); then
        echo "$out" >&2; fail "pg_basebackup into $fresh failed (the old data stays at $aside)"
      fi
      # The server's own configuration, as pg_rewind's path keeps it.
      # shellcheck disable=SC2016
      run bash -c 'for f in "$1"/*.conf; do [[ -f $f && ! -L $f ]] && cp -p --remove-destination "$f" "$2/"; done; true' \
        restore "$aside" "$fresh"
      if ! run grep -q '^[[:space:]]*primary_conninfo' "$fresh/postgresql.auto.conf" 2>/dev/null; then
        printf "primary_conninfo = '%s'\n" "${source//\'/\'\'}" | run tee -a "$fresh/postgresql.auto.conf" >/dev/null
      fi
      run touch "$fresh/standby.signal"
      run mv -T -- "$fresh" "$data"
      set_phase start; phase=start
    fi
  fi
  [[ $phase == start || $phase == finish ]] || fail "$marker says phase '$phase': unknown"
  data=$(cd "$data" && pwd); data_absent=
  do_start
}
do_bootstrap_finish() {
  local how=$1 phase
  lock_parent
  phase=$(phase_of)
  [[ -z $phase ]] && return 0
  [[ $phase == start || $phase == finish ]] || fail "$marker says phase '$phase': the new standby is not in place"
  set_phase finish
  if [[ -e $aside ]]; then
    if [[ $how == keep ]]; then run mv -T -- "$aside" "$data.before-bootstrap-$(date +%s)"
    else run rm -rf -- "$aside"; fi
  fi
  run rm -f -- "$marker"
}

case $op in
  bootstrap) [[ -n ${3:-} ]] || usage; do_bootstrap "$3";;
  bootstrap-finish) [[ ${3:-} == remove || ${3:-} == keep ]] || usage; do_bootstrap_finish "$3";;
  stop) do_stop;;
  start) do_start;;
  restart-as-standby) check_signal ", the server was left running (remove it and try again)"; do_stop immediate; make_standby; do_start;;
  rewind) [[ -n ${3:-} ]] || usage; do_rewind "$3";;
  *) usage;;
esac

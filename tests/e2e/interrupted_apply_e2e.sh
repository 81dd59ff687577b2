#!/usr/bin/env bash
# Kill points: for each step k of the seven-step switch, `apply` is killed
# with SIGKILL right after step k finished, then run again. Each time the
# group must converge, no acknowledged row may be lost, and the monitor must
# never see two writable databases. The switches alternate direction.
# Usage (CTest): bash tests/e2e/interrupted_apply_e2e.sh STACKFLIP E2E_TOOL
source "$(dirname "$0")/lib.sh"
e2e_start "$@"

count_done() { grep -c ' ok in ' "$1" 2>/dev/null || true; }

# Reads apply's progress lines as they are written (they are flushed) and
# kills apply the moment the K-th step reports ok.
kill_after() { # K  (builtins only in the loop: a fork here costs ms)
  local n=0 line pid=
  while IFS= read -r line; do
    [[ -z $pid ]] && read -r pid <"$DIR/apply.pid"
    [[ $line == *" ok in "* ]] && n=$((n + 1))
    ((n == $1)) && kill -9 "$pid" 2>/dev/null
    echo "$line" >>"$DIR/apply.txt"
  done
}

converge() { # CONFIG: re-run apply until a plan shows no changes (bounded)
  local i
  for i in 1 2 3 4 5; do
    "$SF" apply -c "$1" --auto-approve >>"$DIR/rerun.txt" 2>&1
    "$SF" plan -c "$1" --detailed-exitcode >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  grep -vE '^ +(reason|guard):' "$DIR/rerun.txt" | tail -25
  return 1
}

configs=("$DIR/standby-active.yaml" "$CONFIG")
hosts=(127.0.0.2 127.0.0.1)
for k in 1 2 3 4 5 6 7; do
  i=$(((k + 1) % 2))
  config=${configs[$i]} new=${hosts[$i]}
  echo "--- kill after step $k (switch to $new)"
  start_app
  : >"$DIR/apply.txt"
  "$SF" apply -c "$config" --auto-approve > >(kill_after "$k") 2>&1 &
  apply_pid=$!
  echo "$apply_pid" >"$DIR/apply.pid"
  wait "$apply_pid" 2>/dev/null
  sleep 0.1  # let the watcher drain the pipe
  echo "  killed after $(count_done "$DIR/apply.txt") finished steps"
  : >"$DIR/rerun.txt"
  check "kill after step $k: a re-run converges" converge "$config"
  stop_app
  check_eq "kill after step $k: never two writable databases" 0 "$MONITOR_RC"
  check "kill after step $k: no acknowledged row lost" "$TOOL" check "$new" "$PG_PORT" "$DIR/acked"
  check_eq "kill after step $k: DNS answers the new primary" "$new" "$(dns_answer)"
  check "kill after step $k: new primary accepts writes" not_in_recovery "$new"
done

"$SF" history -n 200 >"$DIR/history.txt"
check "history shows the interrupted steps as started with no end" grep -q "no end recorded\|started" "$DIR/history.txt"
e2e_finish

#!/usr/bin/env bash
# Faults in the middle of a switch, on real PostgreSQL 15 + PowerDNS, with a
# writer and a two-writable monitor running. Each fault must end the group at
# a safe point with a clear error (after bounded retries), and a later pass
# must converge once the fault is gone:
#   a. PowerDNS stopped after the new primary opened (traffic.switch fails);
#   b. PowerDNS frozen (SIGSTOP): the HTTP call hangs until its timeout;
#   c. the standby's PostgreSQL killed before its promotion, and the fenced
#      old primary then writes WAL the standby lacks (it catches up first);
#   d. the fenced old primary writes WAL after the promotion (pg_rewind, once).
# Usage (CTest): bash tests/e2e/faults_e2e.sh STACKFLIP E2E_TOOL
source "$(dirname "$0")/lib.sh"
e2e_start "$@"
# Shorter HTTP timeout for the hang case (the default is 5 s, tried 3 times).
sed -i 's/api_key: "${env:PDNS_API_KEY}"}/api_key: "${env:PDNS_API_KEY}", timeout_ms: 1000}/' "$CONFIG"
sed 's/^    active: primary$/    active: standby/' "$CONFIG" >"$DIR/standby-active.yaml"

pdns_pid() { cat "$DIR"/pdns/*.pid 2>/dev/null | head -1; }
safe_after_fault() { # LABEL NEW_HOST
  check_eq "$1: never two writable databases" 0 "$MONITOR_RC"
  check "$1: no acknowledged row lost" "$TOOL" check "$2" "$PG_PORT" "$DIR/acked"
}
converges() { # CONFIG: the loop's next passes (bounded): a restarted server may need a moment
  local i
  : >"$DIR/rerun.txt"
  for i in 1 2 3 4 5; do
    "$SF" apply -c "$1" --auto-approve >>"$DIR/rerun.txt" 2>&1
    "$SF" plan -c "$1" --detailed-exitcode >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  grep -vE '^ +(reason|guard):' "$DIR/rerun.txt" | tail -20
  return 1
}

echo "--- a. PowerDNS stops during the switch"
start_app
apply_hooked "$DIR/standby-active.yaml" 5 harness stop-pdns
check_eq "a: apply exits 1" 1 $?
check "a: the error names PowerDNS and the failed step" grep -q "traffic.switch.*PowerDNS" "$DIR/apply.txt"
check "a: the new primary is open (a safe point: the old one is fenced)" not_in_recovery 127.0.0.2
check_eq "a: the old primary is fenced" on "$(maintenance_of 127.0.0.1)"
harness start-pdns
check "a: a later pass converges" converges "$DIR/standby-active.yaml"
check_eq "a: DNS answers the new primary" 127.0.0.2 "$(dns_answer)"
stop_app
safe_after_fault a 127.0.0.2

echo "--- b. PowerDNS hangs during the switch"
start_app
freeze() { kill -STOP "$(pdns_pid)"; }
t0=$SECONDS
apply_hooked "$CONFIG" 5 freeze
rc=$?
check_eq "b: apply exits 1" 1 "$rc"
check "b: the error says the call timed out" grep -qi "timed out\|timeout" "$DIR/apply.txt"
check "b: bounded: apply gave up within 20 s" test $((SECONDS - t0)) -lt 20
kill -CONT "$(pdns_pid)"
check "b: a later pass converges" converges "$CONFIG"
check_eq "b: DNS answers the new primary" 127.0.0.1 "$(dns_answer)"
stop_app
safe_after_fault b 127.0.0.1

echo "--- c. the standby's PostgreSQL stops before its promotion"
start_app
apply_hooked "$DIR/standby-active.yaml" 3 harness kill-pg 2
check_eq "c: apply exits 1" 1 $?
check "c: the error names the standby's database" grep -q "database.promote standby" "$DIR/apply.txt"
check_eq "c: DNS still answers the old primary" 127.0.0.1 "$(dns_answer)"
check_eq "c: the old primary stayed fenced (no writable database)" on "$(maintenance_of 127.0.0.1)"
harness start-pg 2
# The fenced old primary still writes background WAL (a standby snapshot, a
# checkpoint) that the standby, its replication stopped, lacks: forced here.
sql 127.0.0.1 CHECKPOINT >/dev/null
check "c: the plan resumes replication to catch up before the promotion" \
  grep -q "replication.start  standby from primary" <("$SF" plan -c "$DIR/standby-active.yaml")
check "c: a later pass converges" converges "$DIR/standby-active.yaml"
check_eq "c: DNS answers the new primary" 127.0.0.2 "$(dns_answer)"
stop_app
safe_after_fault c 127.0.0.2

echo "--- d. the fenced old primary writes WAL after the promotion"
# Right after the promotion, before the re-attach: the old primary has WAL
# past the fork and needs pg_rewind, while the new primary's end-of-recovery
# checkpoint (which pg_rewind reads the new timeline from) is still running.
start_app
apply_hooked "$CONFIG" 6 sql 127.0.0.2 CHECKPOINT
check_eq "d: apply exits 0 in one pass" 0 $?
check "d: the re-attach says it rewinds, and why" grep -q "past .* forked from it; running pg_rewind" "$DIR/apply.txt"
check "d: the re-attach succeeded on its first attempt" not grep -q "trying again" "$DIR/apply.txt"
check "d: converged" "$SF" plan -c "$CONFIG" --detailed-exitcode
check "d: the old primary streams from the new one" poll 10 streaming_from 127.0.0.2 127.0.0.1
stop_app
safe_after_fault d 127.0.0.1
e2e_finish

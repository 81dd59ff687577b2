#!/usr/bin/env bash
# End to end, the real stackflip binary on real PostgreSQL 15 and PowerDNS:
#   (a) steady state plans and applies nothing;
#   (b) a planned switch primary -> standby while a writer inserts rows
#       continuously: no acknowledged row lost, DNS answers the standby, the
#       old primary is a streaming replica of the new one and refuses writes;
#   (c) the switch back, same checks;
#   (d) drift: maintenance turned off by hand on the standby is turned on;
# and a monitor polling both databases never sees two writable at once.
# Usage (CTest): bash tests/e2e/switchover_e2e.sh STACKFLIP E2E_TOOL
source "$(dirname "$0")/lib.sh"
e2e_start "$@"

echo "--- (a) steady state"
"$SF" plan -c "$CONFIG" --detailed-exitcode >"$DIR/plan.txt"
check_eq "steady: plan --detailed-exitcode exits 0" 0 $?
check "steady: plan says no changes" grep -q "No changes" "$DIR/plan.txt"
"$SF" apply -c "$CONFIG" --auto-approve >"$DIR/apply.txt"
check_eq "steady: apply exits 0" 0 $?

switch_and_check() { # LABEL CONFIG NEW_HOST OLD_HOST
  local label=$1 config=$2 new=$3 old=$4
  echo "--- $label"
  start_app
  sleep 0.5  # let the writer run against the old primary
  "$SF" plan -c "$config" -o json --detailed-exitcode >"$DIR/plan.json"
  check_eq "$label: plan exits 2 (changes)" 2 $?
  "$SF" apply -c "$config" --auto-approve | tee "$DIR/apply.txt"
  check_eq "$label: apply exits 0" 0 "${PIPESTATUS[0]}"
  sleep 0.5  # and against the new one
  stop_app
  check_eq "$label: monitor never saw two writable databases" 0 "$MONITOR_RC"
  check "$label: no acknowledged row lost" "$TOOL" check "$new" "$PG_PORT" "$DIR/acked"
  check_eq "$label: rows were written through both databases" 2 \
    "$(sql "$new" "SELECT count(DISTINCT host) FROM writes WHERE id >= $FIRST_ID")"
  check_eq "$label: DNS answers the new address" "$new" "$(dns_answer)"
  check "$label: new primary is not in recovery" not_in_recovery "$new"
  check "$label: old primary is in recovery" in_recovery "$old"
  check "$label: old primary streams from the new one" poll 10 streaming_from "$old" "$new"
  check "$label: old primary refuses writes" refuses_writes "$old"
  check_eq "$label: old primary is in maintenance" on "$(maintenance_of "$old")"
  check_eq "$label: new primary is out of maintenance" off "$(maintenance_of "$new")"
  "$SF" plan -c "$config" --detailed-exitcode >/dev/null
  check_eq "$label: converged (plan exits 0)" 0 $?
}

switch_and_check "(b) planned switch to standby" "$DIR/standby-active.yaml" 127.0.0.2 127.0.0.1
switch_and_check "(c) switch back to primary" "$CONFIG" 127.0.0.1 127.0.0.2

echo "--- (d) drift"
sql 127.0.0.2 "ALTER SYSTEM RESET default_transaction_read_only" >/dev/null
sql 127.0.0.2 "SELECT pg_reload_conf()" >/dev/null
poll 5 test "$(maintenance_of 127.0.0.2)" = off
"$SF" plan -c "$CONFIG" -o json --detailed-exitcode >"$DIR/plan.json"
check_eq "drift: plan exits 2" 2 $?
check "drift: plan fences the standby" grep -q '"kind": "maintenance.on"' "$DIR/plan.json"
"$SF" apply -c "$CONFIG" --auto-approve >"$DIR/apply.txt"
check_eq "drift: apply exits 0" 0 $?
check_eq "drift: standby back in maintenance" on "$(maintenance_of 127.0.0.2)"

echo "--- journal"
"$SF" history >"$DIR/history.txt"
check "history lists the promotions" grep -q "database.promote" "$DIR/history.txt"

e2e_finish

#!/usr/bin/env bash
# End to end on THREE real PostgreSQL 15 clusters behind PowerDNS (issue 12):
# primary (127.0.0.1) and two streaming replicas, standby (127.0.0.2) and
# third (127.0.0.3), one group. A planned switch primary -> standby while a
# writer inserts rows continuously:
#   - apply exits 0; DNS answers the standby;
#   - third, which followed primary, is re-pointed at standby and streams
#     from it; the old primary is re-attached and streams from standby too;
#   - no acknowledged row lost: every one is on standby and, once third has
#     replayed standby's position, on third;
#   - a monitor never sees two writable databases (of primary and standby;
#     third is checked to be in recovery and refusing writes at the end);
#   - a second apply has no actions.
# Prints the figures: writes acknowledged, lost, the longest write gap.
# Usage (CTest): bash tests/e2e/three_stack_e2e.sh STACKFLIP E2E_TOOL
source "$(dirname "$0")/lib.sh"
export HARNESS_STACKS=3
e2e_start "$@"
A=127.0.0.1 B=127.0.0.2 C=127.0.0.3

echo "--- steady state, three stacks"
check "third streams from primary" poll 10 streaming_from "$C" "$A"
check "standby streams from primary" poll 10 streaming_from "$B" "$A"
"$SF" plan -c "$CONFIG" --detailed-exitcode >"$DIR/plan.txt"
check_eq "steady: plan exits 0" 0 $?

echo "--- planned switch primary -> standby with a writer"
start_app
sleep 0.5  # the writer runs against the old primary
"$SF" plan -c "$DIR/standby-active.yaml" -o json --detailed-exitcode >"$DIR/plan.json"
check_eq "switch: plan exits 2 (changes)" 2 $?
check "switch: plan re-points third at standby" \
  python3 -c 'import json,sys
a=json.load(open(sys.argv[1]))["actions"]
sys.exit(0 if any(x["kind"]=="replication.start" and x["stack"]=="third" and x.get("source")=="standby" for x in a) else 1)' "$DIR/plan.json"
"$SF" apply -c "$DIR/standby-active.yaml" --auto-approve | tee "$DIR/apply.txt"
check_eq "switch: apply exits 0" 0 "${PIPESTATUS[0]}"
sleep 0.5  # and against the new one
stop_app
check_eq "switch: monitor never saw two writable databases" 0 "$MONITOR_RC"
check_eq "switch: DNS answers standby" "$B" "$(dns_answer)"
check "switch: standby is not in recovery" not_in_recovery "$B"
check "switch: third is in recovery" in_recovery "$C"
check "switch: third streams from standby" poll 20 streaming_from "$C" "$B"
check "switch: old primary streams from standby" poll 20 streaming_from "$A" "$B"
check "switch: third refuses writes" refuses_writes "$C"
check_eq "switch: rows were written through both primaries" 2 \
  "$(sql "$B" "SELECT count(DISTINCT host) FROM writes WHERE id >= $FIRST_ID")"

# Every acknowledged row on the new primary, and on third once it replayed
# everything the new primary wrote.
"$TOOL" check "$B" "$PG_PORT" "$DIR/acked" >"$DIR/check_b.txt"
check "switch: no acknowledged row lost on standby" test $? -eq 0
target=$(sql "$B" "SELECT pg_current_wal_lsn()")
caught_up() { [[ $(sql "$C" "SELECT pg_last_wal_replay_lsn() >= '$target'::pg_lsn") == t ]]; }
check "switch: third replays standby's position" poll 20 caught_up
"$TOOL" check "$C" "$PG_PORT" "$DIR/acked" >"$DIR/check_c.txt"
check "switch: no acknowledged row lost on third" test $? -eq 0

echo "--- second apply"
"$SF" apply -c "$DIR/standby-active.yaml" --auto-approve >"$DIR/apply2.txt"
check_eq "second apply exits 0" 0 $?
check "second apply has no actions" grep -q "No changes" "$DIR/apply2.txt"
"$SF" plan -c "$DIR/standby-active.yaml" --detailed-exitcode >/dev/null
check_eq "converged (plan exits 0)" 0 $?

acked=$(wc -l <"$DIR/acked")
lost_b=$(sed -n 's/.*missing \([0-9]*\).*/\1/p' "$DIR/check_b.txt")
lost_c=$(sed -n 's/.*missing \([0-9]*\).*/\1/p' "$DIR/check_c.txt")
gap_ms=$(sql "$B" "SELECT coalesce(round(max(d) * 1000), -1) FROM (SELECT extract(epoch FROM at - lag(at) OVER (ORDER BY id)) AS d FROM writes WHERE id >= $FIRST_ID) g")
echo "three-stack switch: writes acknowledged $acked, lost on standby ${lost_b:-?}, lost on third ${lost_c:-?}, longest write gap ${gap_ms} ms"

e2e_finish

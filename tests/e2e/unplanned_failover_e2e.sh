#!/usr/bin/env bash
# Unplanned failover, fencing and rejoin on real PostgreSQL 15 + PowerDNS:
#   1. the primary is killed (SIGKILL; its port stays closed). A commit with
#      `active: standby` but no allow_data_loss: the promotion is blocked, the
#      reason names the unreachable primary and the last known lag. With
#      `allow_data_loss: true` it promotes, switches DNS, and states the
#      data-loss window it accepted (the last known LSN difference), which
#      must match the acknowledged rows that are really missing.
#   2. the old primary comes back writable: the next pass fences it before
#      anything else and never sends it traffic; without pg_rewind the
#      re-attach is refused (timelines diverged) and it stays fenced, saying
#      why; with `pg_rewind: true` it is rewound and streams from the new primary.
# Usage (CTest): bash tests/e2e/unplanned_failover_e2e.sh STACKFLIP E2E_TOOL
source "$(dirname "$0")/lib.sh"
e2e_start "$@"

lsn_bytes() { # X/Y -> decimal
  local hi=${1%/*} lo=${1#*/}
  echo $(((16#$hi << 32) + 16#$lo))
}

echo "--- 1. unplanned failover"
start_app
sleep 0.5
stop_app
# The loop's last observation before the crash: what stackflip will know.
"$SF" observe -c "$CONFIG" -o json >"$DIR/last.json"
p_lsn=$(jq -r '.groups.shop.stacks.primary.database.lsn' "$DIR/last.json")
s_lsn=$(jq -r '.groups.shop.stacks.standby.database.lsn' "$DIR/last.json")
lag=$(($(lsn_bytes "$p_lsn") - $(lsn_bytes "$s_lsn")))
echo "  last known: primary wrote $p_lsn, standby replayed $s_lsn: lag $lag bytes"
# `stackflip run` watches (issue 14 item 6): when the primary dies, the
# notification leads with the fact and the exact change to commit.
REPO=$DIR/repo
git init -q -b main "$REPO"
cp "$CONFIG" "$REPO/stackflip.yaml"
git -C "$REPO" add stackflip.yaml
git -C "$REPO" -c user.email=ops@example.test -c user.name=Ops -c commit.gpgsign=false \
  commit -q -m "primary active"
NPORT=$(free_port)
# start_app/stop_app own E2E_PIDS: these two have their own trap.
NOTIFY_PID=$(start_notify_receiver "$NPORT" "$DIR/notes.jsonl")
RUN_PID=
trap 'kill $NOTIFY_PID $RUN_PID 2>/dev/null; e2e_cleanup' EXIT
receiver_up() { (exec 3<>"/dev/tcp/127.0.0.1/$NPORT") 2>/dev/null; }
check "the webhook receiver listens" poll 20 receiver_up
"$SF" run --repo "file://$REPO" --interval 200ms --state "$DIR/run-state.db" \
  --notify-url "http://127.0.0.1:$NPORT/hook" >"$DIR/run.log" 2>&1 &
RUN_PID=$!
run_converged() { grep -q '^pass: .*no-changes' "$DIR/run.log"; }
check "run: a pass with nothing to do (positions remembered)" poll 30 run_converged
harness kill-pg 1
T_KILL=$(date +%s.%N)
check "the primary's port is closed" bash -c "! $PG_BIN/pg_isready -q -h 127.0.0.1 -p $PG_PORT"
told() { [[ -s $DIR/notes.jsonl ]]; }
check "run: a notification after the kill" poll 30 told
T_TOLD=$(date +%s.%N)
kill "$RUN_PID" "$NOTIFY_PID" 2>/dev/null
wait "$RUN_PID" 2>/dev/null
RUN_PID= NOTIFY_PID=
"$SF" status --state "$DIR/run-state.db" >"$DIR/status.txt" 2>&1
check "status leads with the outage" grep -q "^  active stack primary of group shop down since" <<<"$(sed -n 2p "$DIR/status.txt")"
check_eq "status: first line" "DOWN (as of the last pass):" "$(head -n 1 "$DIR/status.txt")"
first=$(head -n 1 "$DIR/notes.jsonl" | jq -r .text)
echo "  notification $(python3 -c "print('%.1f' % ($T_TOLD - $T_KILL))") s after the kill:"
sed 's/^/    /' <<<"$first"
check "it leads with the fact" grep -q "^active stack primary of group shop down since .* primary is unreachable" <<<"$(head -n 1 <<<"$first")"
check "it states the last known lag and the standby's state" grep -q "last known lag $lag byte" <<<"$first"
check "then the exact change, with what it accepts" \
  grep -q "^to fail over, commit .active: standby. with .allow_data_loss: true. for group shop (.*stackflip.yaml:[0-9]*): it accepts losing the writes standby has not replayed (last known lag $lag byte" <<<"$first"

"$SF" plan -c "$DIR/standby-active.yaml" -o json --detailed-exitcode >"$DIR/plan.json"
check_eq "without allow_data_loss: plan exits 3 (blocked)" 3 $?
why=$(jq -r '.actions[] | select(.kind == "database.promote") | .why_blocked' "$DIR/plan.json")
echo "  promote blocked: $why"
check "the reason names the unreachable old primary" grep -q "primary is unreachable" <<<"$why"
check "the reason states the last known lag" grep -q "last known lag $lag byte" <<<"$why"
check "the unreachable primary's fence is skipped, with a reason" \
  jq -e '[.skipped[] | select(.kind == "maintenance.on" and .stack == "primary")] | length == 1' "$DIR/plan.json"

sed 's/^    active: standby$/    active: standby\n    allow_data_loss: true/' "$DIR/standby-active.yaml" >"$DIR/forced.yaml"
"$SF" apply -c "$DIR/forced.yaml" --auto-approve >"$DIR/apply.txt"
check_eq "with allow_data_loss: apply exits 0" 0 $?
check "apply states the accepted data-loss window" grep -q "accepts losing the writes standby has not replayed (last known lag $lag byte" "$DIR/apply.txt"
check_eq "DNS answers the standby" 127.0.0.2 "$(dns_answer)"
check "the standby is the writable primary" not_in_recovery 127.0.0.2
"$TOOL" check 127.0.0.2 "$PG_PORT" "$DIR/acked" >"$DIR/check.txt"
missing=$(awk '{print $4}' "$DIR/check.txt")
echo "  acknowledged rows missing after the forced failover: $missing (accepted window: $lag bytes)"
if ((lag == 0)); then check_eq "no window accepted, no row lost" 0 "$missing"
else check "a non-empty window was accepted and reported" test "$lag" -gt 0; fi

echo "--- 2. the old primary returns writable"
harness start-pg 1
check_eq "the returned primary is writable" off "$(maintenance_of 127.0.0.1)"
sed 's/pg_rewind: true/pg_rewind: false/' "$DIR/forced.yaml" >"$DIR/no-rewind.yaml"
"$SF" plan -c "$DIR/no-rewind.yaml" -o json >"$DIR/plan.json"
check_eq "the first step fences the returned primary" "maintenance.on primary" \
  "$(jq -r '.actions[0] | .kind + " " + .stack' "$DIR/plan.json")"
"$SF" apply -c "$DIR/no-rewind.yaml" --auto-approve >"$DIR/apply.txt"
check_eq "without pg_rewind: apply exits 1 (re-attach refused)" 1 $?
check "the error says the timelines diverged and it stays fenced" \
  grep -q "stays fenced; set .pg_rewind: true" "$DIR/apply.txt"
check_eq "the returned primary is fenced" on "$(maintenance_of 127.0.0.1)"
check_eq "traffic never went back to it" 127.0.0.2 "$(dns_answer)"
# From here on (stackflip has fenced it) nothing may be doubly writable.
start_app

"$SF" apply -c "$DIR/forced.yaml" --auto-approve >"$DIR/apply.txt"
check_eq "with pg_rewind: apply exits 0" 0 $?
check "the old primary was rewound and streams from the new one" poll 10 streaming_from 127.0.0.1 127.0.0.2
check "the old primary refuses writes" refuses_writes 127.0.0.1
stop_app
check_eq "the monitor never saw two writable databases" 0 "$MONITOR_RC"
check "no row acknowledged by the new primary was lost" "$TOOL" check 127.0.0.2 "$PG_PORT" "$DIR/acked"
"$SF" plan -c "$DIR/forced.yaml" --detailed-exitcode >/dev/null
check_eq "converged" 0 $?
e2e_finish

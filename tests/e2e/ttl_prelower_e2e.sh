#!/usr/bin/env bash
# TTL pre-lowering (issue 15) against the real PowerDNS: the record has
# `ttl: 6, switch_ttl: 1`. A planned switch lowers the TTL to 1 s while the
# old primary keeps serving, waits the previous 6 s out, then fences; the
# switch restores 6 s. A kill -9 during the wait leaves the old primary
# serving with the lowered TTL, and the next apply waits only the rest (it
# reads when the TTL was lowered from the journal). An unplanned failover
# does not wait.
# Usage (CTest): bash tests/e2e/ttl_prelower_e2e.sh STACKFLIP E2E_TOOL
source "$(dirname "$0")/lib.sh"
e2e_start "$@"

TTL=6
for f in "$CONFIG" "$DIR/standby-active.yaml"; do
  sed -i "s/record: $RECORD, ttl: 60}/record: $RECORD, ttl: $TTL, switch_ttl: 1}/" "$f"
done
grep -q "switch_ttl: 1" "$CONFIG" || { echo "FAIL cannot set switch_ttl in $CONFIG"; exit 1; }
dns_ttl() { dig @127.0.0.1 -p "$PDNS_PORT" "$RECORD" A +noall +answer +time=1 +tries=1 | awk '{print $2; exit}'; }
# "t+N s" of the line of a step that finished, from apply's progress output.
t_of() { # FILE STEP-PREFIX (e.g. "traffic.ttl primary")
  grep -F " $2" "$1" | grep -F ' in ' | sed -n 's/.*(t+\([0-9.]*\) s).*/\1/p' | head -1
}
started_t() { # FILE STEP: apply's t+ when the step started = its end t+ less its own time
  grep -F " $2" "$1" | grep -F ' in ' |
    sed -n 's/.* in \([0-9.]*\) s (t+\([0-9.]*\) s).*/\2 \1/p' | awk '{printf "%.3f", $1 - $2; exit}'
}
ge() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 >= b + 0) }'; }

# The record gets the configured TTL first (a TTL drift is a traffic.switch).
check "the config with switch_ttl applies" "$SF" apply -c "$CONFIG" --auto-approve
check_eq "the record serves TTL $TTL" "$TTL" "$(dns_ttl)"

# --- The plan shows the new steps and the wait's bound.
"$SF" plan -c "$DIR/standby-active.yaml" >"$DIR/plan.txt" 2>&1
check "plan: traffic.ttl comes first" grep -q "1\. .*traffic.ttl" "$DIR/plan.txt"
check "plan: traffic.wait shows its bound" grep -q "traffic.wait.*up to $TTL s after the TTL was lowered" "$DIR/plan.txt"
"$SF" plan -c "$DIR/standby-active.yaml" -o json >"$DIR/plan.json" 2>/dev/null
check "plan -o json: wait_seconds" grep -q "\"wait_seconds\": *$TTL" "$DIR/plan.json"
"$SF" plan -c "$DIR/standby-active.yaml" -o markdown >"$DIR/plan.md" 2>/dev/null
check "plan -o markdown: traffic.wait" grep -q '`traffic.wait`' "$DIR/plan.md"

# --- A planned switch: lowered, waited out while the old primary serves, then fenced.
start_app
"$SF" apply -c "$DIR/standby-active.yaml" --auto-approve >"$DIR/apply1.txt" 2>&1 &
apply_pid=$!
check "during the wait the record serves TTL 1" poll 10 bash -c "[[ \$(dig @127.0.0.1 -p $PDNS_PORT $RECORD A +noall +answer | awk '{print \$2; exit}') == 1 ]]"
check "during the wait the old primary still accepts writes" not_in_recovery 127.0.0.1
check_eq "during the wait the old primary is not fenced" off "$(maintenance_of 127.0.0.1)"
wait "$apply_pid"
check_eq "the planned switch succeeds" 0 "$?"
stop_app
lowered=$(t_of "$DIR/apply1.txt" "traffic.ttl primary")
fenced=$(started_t "$DIR/apply1.txt" "maintenance.on primary")
echo "TTL lowered at t+$lowered s, fence started at t+$fenced s"
# apply prints its times to the millisecond and the fence's start is one
# printed figure less another: 2 ms is what the print cannot resolve.
check "the fence came at least $TTL s after the TTL was lowered" ge "$(awk -v a="$fenced" -v b="$lowered" 'BEGIN{print a-b+0.002}')" "$TTL"
check_eq "never two writable databases" 0 "$MONITOR_RC"
check "no acknowledged row lost" "$TOOL" check 127.0.0.2 "$PG_PORT" "$DIR/acked"
check_eq "DNS answers the new primary" 127.0.0.2 "$(dns_answer)"
check_eq "the switch restored TTL $TTL" "$TTL" "$(dns_ttl)"
check "converged" "$SF" plan -c "$DIR/standby-active.yaml" --detailed-exitcode

# --- kill -9 during the wait, then a re-run waits only the rest.
kill_in_wait() { # reads apply's output; kills apply 2 s into the wait
  local line pid=
  while IFS= read -r line; do
    [[ -z $pid ]] && read -r pid <"$DIR/apply.pid"
    echo "$line" >>"$DIR/apply2.txt"
    if [[ $line == *"traffic.wait standby"*"..."* ]]; then
      sleep 2
      kill -9 "$pid" 2>/dev/null
    fi
  done
}
start_app
: >"$DIR/apply2.txt"
"$SF" apply -c "$CONFIG" --auto-approve > >(kill_in_wait) 2>&1 &
apply_pid=$!
echo "$apply_pid" >"$DIR/apply.pid"
wait "$apply_pid"
check_eq "apply was killed (SIGKILL) in the wait" 137 "$?"
sleep 0.2
killed_at=$(date +%s.%N)
check "the wait had started" grep -q "traffic.wait standby" "$DIR/apply2.txt"
check_eq "after the kill the record still serves TTL 1" 1 "$(dns_ttl)"
check_eq "after the kill DNS still answers the old primary" 127.0.0.2 "$(dns_answer)"
check "after the kill the old primary still accepts writes" not_in_recovery 127.0.0.2
check_eq "after the kill the old primary is not fenced" off "$(maintenance_of 127.0.0.2)"
"$SF" plan -c "$CONFIG" >"$DIR/plan2.txt" 2>&1
check "the next plan starts with the wait (the TTL is already lowered)" grep -q "1\. .*traffic.wait" "$DIR/plan2.txt"
sleep 1
"$SF" apply -c "$CONFIG" --auto-approve >"$DIR/apply3.txt" 2>&1
check_eq "the re-run converges the switch" 0 "$?"
stop_app
grep -F "traffic.wait standby" "$DIR/apply3.txt"
waited=$(sed -n 's/.*traffic.wait standby.*waited \([0-9.]*\) s.*/\1/p' "$DIR/apply3.txt" | head -1)
echo "the re-run waited ${waited:-?} s of $TTL ($(awk -v a="$killed_at" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}') s since the kill)"
check "the re-run read the lowering from the journal" grep -q "traffic.wait standby.*the TTL was lowered [0-9.]* s ago from $TTL s" "$DIR/apply3.txt"
check "the re-run waited only the rest (less than $TTL - 2 s)" ge "$((TTL - 2))" "${waited:-99}"
check_eq "never two writable databases" 0 "$MONITOR_RC"
check "no acknowledged row lost" "$TOOL" check 127.0.0.1 "$PG_PORT" "$DIR/acked"
check_eq "DNS answers the new primary" 127.0.0.1 "$(dns_answer)"
check_eq "the switch restored TTL $TTL" "$TTL" "$(dns_ttl)"
check "converged" "$SF" plan -c "$CONFIG" --detailed-exitcode

# --- An unplanned failover (the primary is down) does not wait.
harness kill-pg 1
sed 's/^    active: primary$/    active: standby\n    allow_data_loss: true/' "$CONFIG" >"$DIR/forced.yaml"
"$SF" plan -c "$DIR/forced.yaml" >"$DIR/plan3.txt" 2>&1
check "unplanned: no traffic.ttl step" not grep -q "traffic.ttl" "$DIR/plan3.txt"
check "unplanned: no traffic.wait step" not grep -q "traffic.wait" "$DIR/plan3.txt"
"$SF" apply -c "$DIR/forced.yaml" --auto-approve >"$DIR/apply4.txt" 2>&1
check_eq "unplanned: DNS answers the standby" 127.0.0.2 "$(dns_answer)"
check_eq "unplanned: TTL $TTL" "$TTL" "$(dns_ttl)"

"$SF" history -n 50 >"$DIR/history.txt"
check "history shows the lowering with the previous TTL" grep -q "previous TTL $TTL s" "$DIR/history.txt"
e2e_finish

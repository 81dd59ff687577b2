#!/usr/bin/env bash
# Issue 11, item 5: a switch that cannot finish goes back to serving.
#   (a) Cloud 66 (the API fake, tests/tools/fake_cloud66_main.cc): failover
#       london -> dublin, then the switch back fences dublin and Cloud 66
#       refuses promote_slave_db on london ("no slave database server to
#       promote"). The refusal is not retried, dublin is re-opened
#       (maintenance off), the failover group stays on dublin, apply exits 1
#       with the reason.
#   (b) real PostgreSQL 15 + PowerDNS (scripts/harness.sh): the standby's
#       stack connects as a role that may do everything a switch needs except
#       pg_promote (not granted: "permission denied", SQLSTATE 42501). The
#       switch fences the primary, the promotion is refused, the primary is
#       re-opened and replication into the standby resumed; writes go on
#       being accepted on the primary, DNS still answers it.
# Usage (CTest): bash tests/e2e/failsafe_e2e.sh STACKFLIP E2E_TOOL
source "$(dirname "$0")/lib.sh"

SF=${1:?stackflip binary}
TOOL=${2:?e2e_tool binary}
FAKE=$(dirname "$TOOL")/fake_cloud66
[[ -x $FAKE ]] || { echo "SKIP: $FAKE not built"; exit 77; }
command -v jq >/dev/null || { echo "SKIP: jq missing"; exit 77; }
command -v curl >/dev/null || { echo "SKIP: curl missing"; exit 77; }

# ---------------------------------------------------------------- (a)
C66=$(mktemp -d "${TMPDIR:-/tmp}/stackflip-failsafe-c66.XXXXXX")
FAKE_PID=
c66_stop_fake() {
  [[ -n $FAKE_PID ]] && kill "$FAKE_PID" 2>/dev/null && wait "$FAKE_PID" 2>/dev/null
  FAKE_PID=
}
c66_cleanup() {
  c66_stop_fake
  [[ -n ${KEEP_E2E_DIR:-} ]] || rm -rf "$C66"
}
trap c66_cleanup EXIT

echo "--- (a) Cloud 66: london -> dublin -> london, the promotion of london refused"
LONDON=5999b763474b0eafa5fafb64bff0ba80
DUBLIN=7a1c0e2f9b8d4e6fa0b1c2d3e4f5a6b7
FG=fg-5c8c9a1e
export CLOUD66_TOKEN=c66-failsafe-token-$RANDOM
export NO_COLOR=1
cat >"$C66/fake.json" <<JSON
{"token": "$CLOUD66_TOKEN", "action_delay_ms": 20, "toggle_delay_ms": 20,
 "stacks": [{"uid": "$LONDON", "name": "shop-london", "maintenance_mode": false},
            {"uid": "$DUBLIN", "name": "shop-dublin", "maintenance_mode": true}],
 "groups": [{"uid": "$FG", "address": "203.0.113.66", "primary_stack_uid": "$LONDON",
             "secondary_stack_uid": "$DUBLIN", "current_stack": 1}]}
JSON
start_fake() { # CONFIG [PORT]
  rm -f "$C66/port"
  "$FAKE" --config "$1" --port "${2:-0}" --port-file "$C66/port" --requests-file "$C66/requests" \
    >"$C66/fake.out" 2>&1 &
  FAKE_PID=$!
  poll 10 test -s "$C66/port"
}
start_fake "$C66/fake.json" || { echo "FAIL fake_cloud66 did not start: $(cat "$C66/fake.out")"; echo "0 passed, 1 failed"; exit 1; }
PORT=$(cat "$C66/port")
BASE_URL="http://127.0.0.1:$PORT/api/3"
cat >"$C66/host.yaml" <<YAML
secrets:
  "\${env:CLOUD66_TOKEN}": ["http://127.0.0.1:$PORT"]
YAML
c66_config() { # ACTIVE
  cat <<YAML
apiVersion: stackflip/v1
providers:
  c66: {type: cloud66, token: "\${env:CLOUD66_TOKEN}", base_url: "$BASE_URL"}
groups:
  shop:
    active: $1
    allow_data_loss: true   # no database_dsn: the guard cannot be verified
    stacks:
      london: {provider: c66, stack_uid: $LONDON}
      dublin: {provider: c66, stack_uid: $DUBLIN}
    traffic: {provider: c66, failover_group: $FG}
YAML
}
c66_config dublin >"$C66/dublin.yaml"
c66_config london >"$C66/london.yaml"
c66() { STACKFLIP_HOST_CONFIG=$C66/host.yaml STACKFLIP_STATE_DIR=$C66/state "$SF" "$@"; }
api() { curl -sf --max-time 5 -H "Authorization: Bearer $CLOUD66_TOKEN" "$BASE_URL$1"; }
maint() { api "/stacks/$1.json" | jq -r .response.maintenance_mode; }
current() { api /failover_groups.json | jq -r ".response[] | select(.uid == \"$FG\") | .current_stack"; }
count() { grep -cF -- "$1" "$C66/requests"; }

c66 apply -c "$C66/dublin.yaml" --auto-approve >"$C66/apply1.out" 2>&1
check_eq "(a) the failover london -> dublin succeeds" 0 $?
check_eq "(a) traffic on dublin after the failover" 2 "$(current)"

# From now on Cloud 66 refuses to promote london: the fake restarts on the
# same port with the state after the failover and the refusal.
c66_stop_fake
jq --arg uid "$LONDON" '.stacks[0].maintenance_mode = true | .stacks[1].maintenance_mode = false
  | .groups[0].current_stack = 2
  | .refuse = [{"stack_uid": $uid, "command": "promote_slave_db",
                "message": "no slave database server to promote"}]' "$C66/fake.json" >"$C66/fake2.json"
start_fake "$C66/fake2.json" "$PORT" || fail "(a) fake_cloud66 restarted on port $PORT"
check_eq "(a) the fake holds the state after the failover (dublin serving)" "false 2" "$(maint $DUBLIN) $(current)"

c66 apply -c "$C66/london.yaml" --auto-approve >"$C66/apply2.out" 2>&1
rc=$?
sed 's/^/  | /' "$C66/apply2.out"
# The fake rewrites its request log every 20 ms and adds a body after its
# line: wait (at most 3 s) until no POST or PUT line lacks its body.
sleep 0.1
for _ in $(seq 30); do
  grep -qE '^(POST|PUT) [^ ]+$' "$C66/requests" || break
  sleep 0.1
done
echo "  requests: $(paste -sd'|' "$C66/requests")"
check_eq "(a) the switch back exits 1 (failed)" 1 "$rc"
check "(a) the reason names the refusal" grep -q "no slave database server to promote" "$C66/apply2.out"
check "(a) the refusal is reported as not retried" grep -q "permanent: not retried" "$C66/apply2.out"
check "(a) no second attempt" not grep -q "attempt 2 of" "$C66/apply2.out"
check "(a) the report says dublin was re-opened and traffic left on it" \
  grep -q "re-opened dublin, the only primary; traffic left on dublin" "$C66/apply2.out"
check_eq "(a) promote_slave_db was asked once" 1 "$(count promote_slave_db)"
fence_back=$(grep -F "$DUBLIN/actions.json" "$C66/requests" | grep -o '"value":[01]' | paste -sd' ' -)
check_eq "(a) dublin was fenced, then re-opened" '"value":1 "value":0' "$fence_back"
check_eq "(a) dublin is out of maintenance (serving)" false "$(maint $DUBLIN)"
check_eq "(a) london is still in maintenance" true "$(maint $LONDON)"
check_eq "(a) the failover group still points at dublin" 2 "$(current)"
check_eq "(a) the failover group was not switched" 0 "$(count "PUT /failover_groups")"
c66 history >"$C66/history.out" 2>&1
sed 's/^/  | /' "$C66/history.out"
# Newest first: the re-open ended after the refused promotion.
check "(a) the re-open is journaled after the refused promotion" bash -c \
  '[[ $(sed -n 2p "$1") =~ maintenance\.off\ +dublin\ +ok ]] && sed -n 4p "$1" | grep -q "database.promote  london  failed"' _ "$C66/history.out"
c66_cleanup
trap - EXIT

# ---------------------------------------------------------------- (b)
echo "--- (b) PostgreSQL: pg_promote refused (permission denied), the primary re-opened"
e2e_start "$SF" "$TOOL"
# A role that may fence, stop and resume replication and observe, but not
# promote: pg_promote is superuser-only unless granted.
sql 127.0.0.1 "CREATE ROLE limited LOGIN IN ROLE pg_monitor, pg_signal_backend" >/dev/null
sql 127.0.0.1 "GRANT ALTER SYSTEM ON PARAMETER default_transaction_read_only, primary_conninfo TO limited" >/dev/null
sql 127.0.0.1 "GRANT EXECUTE ON FUNCTION pg_reload_conf() TO limited" >/dev/null
limited_ok() {
  [[ $(PGCONNECT_TIMEOUT=3 "$PG_BIN/psql" -X -qAt "host=127.0.0.2 port=$PG_PORT user=limited dbname=$PG_DB" -c "SELECT 1" 2>&1) == 1 ]]
}
check "(b) the limited role reached the standby" poll 10 limited_ok
sed '/^      standby:$/,/dsn:/ s/user=[a-z]*/user=limited/' "$DIR/standby-active.yaml" >"$DIR/limited.yaml"
check "(b) the standby stack connects as the limited role" grep -q "host=127.0.0.2 .*user=limited" "$DIR/limited.yaml"
start_app
sleep 0.5
"$SF" apply -c "$DIR/limited.yaml" --auto-approve >"$DIR/apply.txt" 2>&1
rc=$?
applied_at=$(sql 127.0.0.1 "SELECT now()")
sed 's/^/  | /' "$DIR/apply.txt"
sleep 0.5  # writes go on after the failed switch
stop_app
check_eq "(b) the switch exits 1 (failed)" 1 "$rc"
check "(b) the reason is PostgreSQL's refusal" grep -q "permission denied for function pg_promote" "$DIR/apply.txt"
check "(b) the refusal is not retried" grep -q "permanent: not retried" "$DIR/apply.txt"
check "(b) the report says primary was re-opened" grep -q "re-opened primary, the only primary" "$DIR/apply.txt"
check_eq "(b) the monitor never saw two writable databases" 0 "$MONITOR_RC"
check "(b) no acknowledged row lost" "$TOOL" check 127.0.0.1 "$PG_PORT" "$DIR/acked"
check_eq "(b) the primary is out of maintenance" off "$(maintenance_of 127.0.0.1)"
check "(b) the primary is not in recovery" not_in_recovery 127.0.0.1
check "(b) the standby is still in recovery" in_recovery 127.0.0.2
check "(b) the standby streams from the primary again" poll 10 streaming_from 127.0.0.2 127.0.0.1
check_eq "(b) DNS still answers the primary" 127.0.0.1 "$(dns_answer)"
check_eq "(b) a new write is accepted on the primary" 1 \
  "$(sql 127.0.0.1 "INSERT INTO writes(id, host) VALUES (-7, 'after') RETURNING 1")"
late=$(sql 127.0.0.1 "SELECT count(*) FROM writes WHERE id >= $FIRST_ID AND at > '$applied_at'")
check "(b) the writer's rows kept coming after apply ended ($late rows)" test "${late:-0}" -gt 1
check "(b) the standby wrote nothing of its own (still a replica)" in_recovery 127.0.0.2

e2e_finish

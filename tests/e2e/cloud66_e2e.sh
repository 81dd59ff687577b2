#!/usr/bin/env bash
# Issue 5 at the CLI level: the real `stackflip` binary against the Cloud 66
# API fake (tests/tools/fake_cloud66_main.cc) on 127.0.0.1, with the config of
# examples/cloud66.yaml (no database_dsn: the Cloud 66 API alone). No
# PostgreSQL or PowerDNS needed; the real Cloud 66 API is never contacted.
#
# Acceptance: `plan` and `apply` produce the seed's five steps in the seed's
# order (maintenance on old, stop replication, promote new, maintenance off
# new, switch the failover group) with the guard's status stated: without a
# direct database connection the guard cannot be verified, so promotion is
# blocked unless `allow_data_loss: true`.
#
# See examples/cloud66.md, "What the guard can verify".
#
# Usage (CTest, from the repo root): bash tests/e2e/cloud66_e2e.sh STACKFLIP E2E_TOOL
source "$(dirname "$0")/lib.sh"

SF=${1:?stackflip binary}
FAKE=$(dirname "${2:?e2e_tool binary}")/fake_cloud66
[[ -x $FAKE ]] || { echo "SKIP: $FAKE not built"; exit 77; }
command -v jq >/dev/null || { echo "SKIP: jq missing (scripts/install-deps.sh installs it)"; exit 77; }

DIR=$(mktemp -d "${TMPDIR:-/tmp}/stackflip-c66.XXXXXX")
FAKE_PID=
cleanup() {
  [[ -n $FAKE_PID ]] && kill "$FAKE_PID" 2>/dev/null && wait "$FAKE_PID" 2>/dev/null
  [[ -n ${KEEP_E2E_DIR:-} ]] || rm -rf "$DIR"
}
trap cleanup EXIT

EU=5999b763474b0eafa5fafb64bff0ba80
US=7a1c0e2f9b8d4e6fa0b1c2d3e4f5a6b7
FG=fg-5c8c9a1e
export CLOUD66_TOKEN=c66-e2e-token-$RANDOM
export STACKFLIP_STATE_DIR=$DIR/state
export NO_COLOR=1

# eu serves (the failover group's primary stack); us is the clone in maintenance.
cat >"$DIR/fake.json" <<EOF
{"token": "$CLOUD66_TOKEN", "action_delay_ms": 30, "toggle_delay_ms": 30,
 "stacks": [{"uid": "$EU", "name": "storefront-eu", "maintenance_mode": false},
            {"uid": "$US", "name": "storefront-us", "maintenance_mode": true}],
 "groups": [{"uid": "$FG", "address": "203.0.113.66", "primary_stack_uid": "$EU",
             "secondary_stack_uid": "$US", "current_stack": 1}]}
EOF
"$FAKE" --config "$DIR/fake.json" --port-file "$DIR/port" --requests-file "$DIR/requests" \
  >"$DIR/fake.out" 2>&1 &
FAKE_PID=$!
poll 10 test -s "$DIR/port" || { echo "FAIL fake_cloud66 did not start: $(cat "$DIR/fake.out")"; echo "0 passed, 1 failed"; exit 1; }
BASE_URL="http://127.0.0.1:$(cat "$DIR/port")/api/3"
# The host binds the token to the fake (issue 10): nothing else may get it.
cat >"$DIR/host.yaml" <<EOF
secrets:
  "\${env:CLOUD66_TOKEN}": ["http://127.0.0.1:$(cat "$DIR/port")"]
EOF
export STACKFLIP_HOST_CONFIG=$DIR/host.yaml

# The example's keys, pointed at the fake; the failover commit flips `active`.
# database_dsn / database_password go: this suite is the Cloud 66 API alone.
config() { # ALLOW_DATA_LOSS(true|false) > config
  sed -e '/database_dsn:/d' -e '/database_password:/d' \
      -e "s|^\(    token: .*\)$|\1\n    base_url: $BASE_URL|" \
      -e 's|^    active: eu .*$|    active: us|' "$E2E_REPO/examples/cloud66.yaml" |
    if [[ $1 == true ]]; then sed 's|^    active: us$|    active: us\n    allow_data_loss: true|'; else cat; fi
}
config false >"$DIR/c66.yaml"
config true >"$DIR/c66-forced.yaml"
check "config points at the fake" grep -q "base_url: $BASE_URL" "$DIR/c66.yaml"
check "config flips active to us" grep -q '^    active: us$' "$DIR/c66.yaml"

changes() { cat "$DIR/requests"; }
sent() { grep -qF -- "$1" "$DIR/requests"; }
not_sent() { ! sent "$1"; }
jqe() { jq -e "$@" >/dev/null; }
line_of() { grep -nF -- "$1" "$DIR/requests" | head -1 | cut -d: -f1; }
steps() { jq -r '.actions[] | "\(.kind) \(.stack) \(.status)"' "$1" | paste -sd, -; }

# -- validate ------------------------------------------------------------
STACKFLIP_HOST_CONFIG= "$SF" validate "$E2E_REPO/examples/cloud66.yaml" >"$DIR/validate-example.out" 2>&1
check_eq "validate examples/cloud66.yaml" 0 $?
"$SF" validate "$DIR/c66.yaml" "$DIR/c66-forced.yaml" >"$DIR/validate.out" 2>&1
check_eq "validate the suite's configs" 0 $?

# -- plan without allow_data_loss: the guard's status is stated ----------
"$SF" plan -c "$DIR/c66.yaml" --detailed-exitcode >"$DIR/plan.txt" 2>"$DIR/plan.err"
check_eq "plan without allow_data_loss exits 3 (blocked)" 3 $?
"$SF" plan -c "$DIR/c66.yaml" -o json >"$DIR/plan.json" 2>>"$DIR/plan.err"
echo "  plan: $(steps "$DIR/plan.json")"
promote_why=$(jq -r '.actions[] | select(.kind == "database.promote") | .why_blocked // ""' "$DIR/plan.json")
echo "  promote blocked because: $promote_why"
check "promote us is planned and blocked" \
  jqe '[.actions[] | select(.kind == "database.promote" and .stack == "us" and .status == "blocked")] | length == 1' "$DIR/plan.json"
check "traffic is not switched while the promotion is blocked" \
  jqe '[.actions[] | select(.kind == "traffic.switch" and .status == "pending")] | length == 0' "$DIR/plan.json"
check "the text plan shows the blocked promotion" grep -q "blocked" "$DIR/plan.txt"
check "the plan says the no-data-loss guard cannot be verified and names allow_data_loss" \
  bash -c '[[ $1 == *"cannot be verified"* && $1 == *allow_data_loss* ]]' _ "$promote_why"
check "the plan lists the seed's steps in order (blocked from the promotion on)" \
  bash -c '[[ $1 == "maintenance.on eu blocked,replication.stop us blocked,database.promote us blocked,maintenance.off us blocked,traffic.switch us blocked" ]]' _ "$(steps "$DIR/plan.json")"
check "the serving stack eu is not fenced for a promotion that cannot happen" \
  jqe '[.actions[] | select(.kind == "maintenance.on" and .stack == "eu" and .status == "pending")] | length == 0' "$DIR/plan.json"

# -- plan with allow_data_loss: the seed's five steps, in order ----------
"$SF" plan -c "$DIR/c66-forced.yaml" -o json >"$DIR/plan-forced.json" 2>"$DIR/plan-forced.err"
echo "  forced plan: $(steps "$DIR/plan-forced.json")"
check "with allow_data_loss the plan is the seed's five steps, all pending" \
  bash -c '[[ $1 == "maintenance.on eu pending,replication.stop us pending,database.promote us pending,maintenance.off us pending,traffic.switch us pending" ]]' _ "$(steps "$DIR/plan-forced.json")"
forced_reason=$(jq -r '.actions[] | select(.kind == "database.promote") | .reason' "$DIR/plan-forced.json")
check "the forced promotion's reason states that data loss is accepted unverified" \
  bash -c '[[ $1 == *"allow_data_loss: true"* ]]' _ "$forced_reason"

# -- apply with allow_data_loss ------------------------------------------
"$SF" apply -c "$DIR/c66-forced.yaml" --auto-approve >"$DIR/apply.out" 2>&1
apply_rc=$?
sed 's/^/  | /' "$DIR/apply.out"
# The fake rewrites its request log every 20 ms, and a request's body is
# added after its line: under ASan a fixed 0.1 s once read the PUT without
# its body. Wait (at most 3 s) until no POST or PUT line lacks its body.
sleep 0.1
for _ in $(seq 30); do
  grep -qE '^(POST|PUT) [^ ]+$' "$DIR/requests" || break
  sleep 0.1
done
echo "  requests: $(changes | paste -sd'|' -)"
check "apply never contacts anything but the fake (token not printed)" \
  bash -c '! grep -qF -- "$1" "$2"' _ "$CLOUD66_TOKEN" "$DIR/apply.out"
if sent promote_slave_db; then
  # Whatever else happens: the old stack is fenced before the promotion.
  fence_at=$(line_of "POST /stacks/$EU/actions.json {\"command\":\"maintenance_mode\",\"value\":1}")
  promote_at=$(line_of promote_slave_db)
  check "maintenance on eu precedes promote_slave_db on us" test "${fence_at:-999}" -lt "$promote_at"
else
  check "no promotion is sent while the plan blocks it" not_sent promote_slave_db
  check "the failover group is not switched while the promotion is blocked" not_sent "PUT /failover_groups"
fi
expected_requests="POST /stacks/$EU/actions.json {\"command\":\"maintenance_mode\",\"value\":1}
POST /stacks/$US/actions.json {\"command\":\"promote_slave_db\"}
POST /stacks/$US/actions.json {\"command\":\"maintenance_mode\",\"value\":0}
PUT /failover_groups/$FG {\"current_stack\":2}"
check "apply performs the seed's steps on Cloud 66, in order, and exits 0" \
  bash -c '[[ $1 == 0 && $2 == "$3" ]]' _ "$apply_rc" "$(changes)" "$expected_requests"

# -- converged -----------------------------------------------------------
"$SF" plan -c "$DIR/c66-forced.yaml" --detailed-exitcode >"$DIR/plan-after.txt" 2>&1
after_rc=$?
check "plan after apply is converged (exit 0, no actions)" \
  test "$after_rc" = 0

# -- a rejected token is a configuration error, not "unreachable" (issue 12) --
# The fake answers 401 to any other token. Exit 3 means a safety guard
# stopped the run; a credential the provider refuses is an error: exit 1.
wrong=c66-wrong-token-$RANDOM
cp "$DIR/requests" "$DIR/requests.before-401"
CLOUD66_TOKEN=$wrong "$SF" plan -c "$DIR/c66.yaml" --detailed-exitcode >"$DIR/plan-401.txt" 2>&1
check_eq "plan with a rejected token exits 1, not 3 (issue 12)" 1 $?
CLOUD66_TOKEN=$wrong "$SF" plan -c "$DIR/c66.yaml" -o json >"$DIR/plan-401.json" 2>/dev/null
check "the JSON plan lists the group's configuration error (issue 12)" \
  jqe '.config_errors.storefront | contains("Cloud 66 rejected the token from ${env:CLOUD66_TOKEN} (HTTP 401)")' "$DIR/plan-401.json"
check "no blocked step of that plan calls a stack unreachable (issue 12)" \
  jqe '[.actions[] | select(.why_blocked // "" | contains("is unreachable"))] | length == 0' "$DIR/plan-401.json"
CLOUD66_TOKEN=$wrong "$SF" apply -c "$DIR/c66-forced.yaml" --auto-approve >"$DIR/apply-401.out" 2>&1
apply401_rc=$?
sed 's/^/  | /' "$DIR/apply-401.out" | tail -4
check_eq "apply with a rejected token exits 1, not 3 (issue 12)" 1 $apply401_rc
check "apply names the cause: configuration error, the token's source (issue 12)" \
  bash -c 'grep -q "configuration error" "$1" && grep -qF "rejected the token from \${env:CLOUD66_TOKEN} (HTTP 401)" "$1"' _ "$DIR/apply-401.out"
check "apply with a rejected token prints no token (issue 12)" \
  bash -c '! grep -qF -- "$1" "$3" && ! grep -qF -- "$2" "$3"' _ "$wrong" "$CLOUD66_TOKEN" "$DIR/apply-401.out"
check "apply with a rejected token changes nothing (issue 12)" \
  bash -c '! grep -qE "^(POST|PUT) " <(diff "$1" "$2" | sed -n "s/^> //p")' _ "$DIR/requests.before-401" "$DIR/requests"

e2e_finish

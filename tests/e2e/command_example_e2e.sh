#!/usr/bin/env bash
# Issue 5 at the CLI level, command driver: the real `stackflip` binary runs
# examples/command.yaml with the example scripts (examples/command/*.sh),
# whose state lives in JSON files under STACKFLIP_EXAMPLE_STATE. A planned
# switch blue → green: plan lists the runbook in order, apply performs it,
# and the next plan is converged. No servers needed; needs jq.
#
# Usage (CTest, from the repo root): bash tests/e2e/command_example_e2e.sh STACKFLIP E2E_TOOL
source "$(dirname "$0")/lib.sh"

SF=${1:?stackflip binary}
command -v jq >/dev/null || { echo "SKIP: jq missing (scripts/install-deps.sh installs it)"; exit 77; }

DIR=$(mktemp -d "${TMPDIR:-/tmp}/stackflip-cmd.XXXXXX")
trap '[[ -n ${KEEP_E2E_DIR:-} ]] || rm -rf "$DIR"' EXIT
export STACKFLIP_EXAMPLE_STATE=$DIR/example-state
export STACKFLIP_STATE_DIR=$DIR/state
export NO_COLOR=1
mkdir -p "$STACKFLIP_EXAMPLE_STATE"
cd "$E2E_REPO" || exit 1  # the example names its scripts relative to the repo root
# The host allows the example scripts and passes them their state folder
# (issue 10: children never get stackflip's own environment).
cat >"$DIR/host.yaml" <<EOF
commands: ["$(realpath examples/command)/*"]
command_env: [STACKFLIP_EXAMPLE_STATE]
EOF
export STACKFLIP_HOST_CONFIG=$DIR/host.yaml

# blue serves and is primary; green is its streaming replica, in maintenance.
cat >"$STACKFLIP_EXAMPLE_STATE/blue.json" <<'EOF'
{"maintenance": false, "role": "primary", "upstream": null, "lsn": "0/3000060", "timeline": 1}
EOF
cat >"$STACKFLIP_EXAMPLE_STATE/green.json" <<'EOF'
{"maintenance": true, "role": "replica", "upstream": "blue", "lsn": "0/3000060", "timeline": 1}
EOF
echo '{"content": "10.0.1.10"}' >"$STACKFLIP_EXAMPLE_STATE/traffic.json"

sed 's|^    active: blue$|    active: green|' examples/command.yaml >"$DIR/green.yaml"
check "config flips active to green" grep -q '^    active: green$' "$DIR/green.yaml"
steps() { jq -r '.actions[] | "\(.kind) \(.stack)\(if .source then "<" + .source else "" end) \(.status)"' "$1" | paste -sd, -; }
field() { jq -r "$2" "$STACKFLIP_EXAMPLE_STATE/$1.json"; }

"$SF" validate examples/command.yaml "$DIR/green.yaml" >"$DIR/validate.out" 2>&1
check_eq "validate examples/command.yaml" 0 $?

# Before the commit: the example as written is converged.
"$SF" plan -c examples/command.yaml --detailed-exitcode >"$DIR/plan0.txt" 2>&1
check_eq "plan of examples/command.yaml on its own state is converged" 0 $?

"$SF" plan -c "$DIR/green.yaml" -o json >"$DIR/plan.json" 2>"$DIR/plan.err"
check_eq "plan -o json exits 0" 0 $?
echo "  plan: $(steps "$DIR/plan.json")"
check_eq "plan: the runbook in order, all pending" \
  "maintenance.on blue pending,replication.wait green<blue pending,replication.stop green pending,database.promote green pending,maintenance.off green pending,traffic.switch green pending,replication.start blue<green pending" \
  "$(steps "$DIR/plan.json")"
"$SF" plan -c "$DIR/green.yaml" --detailed-exitcode >/dev/null 2>&1
check_eq "plan --detailed-exitcode exits 2 (changes)" 2 $?

"$SF" apply -c "$DIR/green.yaml" --auto-approve >"$DIR/apply.out" 2>&1
rc=$?
sed 's/^/  | /' "$DIR/apply.out"
check_eq "apply --auto-approve exits 0" 0 "$rc"
check_eq "green is primary" primary "$(field green .role)"
check_eq "green accepts writes" false "$(field green .maintenance)"
check_eq "green's timeline moved on" 2 "$(field green .timeline)"
check_eq "blue is fenced" true "$(field blue .maintenance)"
check_eq "blue replicates from green" "replica green" "$(field blue '"\(.role) \(.upstream)"')"
check_eq "traffic points at green's address" 10.0.2.10 "$(field traffic .content)"

"$SF" plan -c "$DIR/green.yaml" --detailed-exitcode >"$DIR/plan-after.txt" 2>&1
check_eq "plan after apply is converged (exit 0)" 0 $?
"$SF" plan -c "$DIR/green.yaml" -o json >"$DIR/plan-after.json" 2>&1
check_eq "plan after apply has no actions" 0 "$(jq '.actions | length' "$DIR/plan-after.json")"

# A failing command stops apply with its stderr in the message.
sed 's|^    active: green$|    active: blue|' "$DIR/green.yaml" >"$DIR/blue.yaml"
mv "$STACKFLIP_EXAMPLE_STATE/green.json" "$DIR/green.json.away"
"$SF" apply -c "$DIR/blue.yaml" --auto-approve >"$DIR/apply-broken.out" 2>&1
rc=$?
mv "$DIR/green.json.away" "$STACKFLIP_EXAMPLE_STATE/green.json"
check "a stack whose command fails is reported with the command's stderr" \
  grep -q "no state for stack green" "$DIR/apply-broken.out"
check "nothing changed on blue while green could not be observed" \
  test "$(field blue '"\(.role) \(.maintenance)"')" = "replica true"

e2e_finish

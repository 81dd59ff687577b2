#!/usr/bin/env bash
# Issue 17, item 4: `stackflip init` adopts the harness's pair (PostgreSQL 15
# primary on 127.0.0.1, its streaming replica on 127.0.0.2, the PowerDNS
# record shop.example.test. at 127.0.0.1), with the harness's host policy.
#
# (a) init on the converged pair exits 0; its config names the primary
#     active, found the zone by asking PowerDNS, holds the API key only as
#     its reference, validates, and plans "No changes" (exit 0);
# (b) the same config with `active:` flipped (sed) applies a real switch:
#     DNS answers the replica's address, which is now the primary, and the
#     old primary streams from it; the flipped file then plans "No changes";
# (c) init again after the switch adopts the new arrangement (exit 0);
# (d) ambiguous: traffic addresses that the record does not hold (--address
#     of neither server), a record in no zone PowerDNS serves, a server
#     stopped: exit 2, `# DECIDE:` notes in the config and on stderr, and
#     the config still validates;
# (e) refused, exit 1 and nothing written: an API key the host policy does
#     not grant (nothing is contacted), a literal password in a DSN (never
#     echoed).
#
# Usage: init_e2e.sh STACKFLIP E2E_TOOL
source "$(dirname "$0")/lib.sh"
e2e_start "$@"

DSN1="host=$PG1_HOST port=$PG_PORT user=$PG_USER dbname=$PG_DB"
DSN2="host=$PG2_HOST port=$PG_PORT user=$PG_USER dbname=$PG_DB"
# init OUT ARGS...: init of the harness pair into $DIR/OUT.yaml, stderr in
# $DIR/OUT.err; returns init's exit code. The record is $INIT_RECORD.
INIT_RECORD=$RECORD
init() {
  local out=$1
  shift
  # shellcheck disable=SC2016 # the reference is for stackflip, not the shell
  "$SF" init --postgres "$DSN1" --postgres "$DSN2" --powerdns "$PDNS_API_URL" \
    --api-key '${env:PDNS_API_KEY}' --record "$INIT_RECORD" "$@" >"$DIR/$out.yaml" 2>"$DIR/$out.err"
}
plan_code() { "$SF" plan -c "$1" --detailed-exitcode >"$DIR/plan.txt" 2>&1; echo $?; }
show() { echo "--- $1"; cat "$1"; }

# ---------------------------------------------------------------- (a)
init adopted
check_eq "(a) init exits 0 on the converged pair" 0 $?
show "$DIR/adopted.yaml"
show "$DIR/adopted.err"
check "(a) the modeline comes first" grep -q '^# yaml-language-server: \$schema=' <(head -1 "$DIR/adopted.yaml")
check "(a) the primary is active" grep -qx '    active: "127-0-0-1"' "$DIR/adopted.yaml"
check "(a) the zone was looked up" grep -qx "      zone: \"$ZONE\"" "$DIR/adopted.yaml"
check "(a) the API key only as its reference" grep -qF 'api_key: "${env:PDNS_API_KEY}"' "$DIR/adopted.yaml"
check "(a) never the key itself" not grep -qF "$PDNS_API_KEY" "$DIR/adopted.yaml"
check "(a) no DECIDE note" not grep -q 'DECIDE' "$DIR/adopted.yaml"
check "(a) stderr says so" grep -q 'the first plan is "No changes"' "$DIR/adopted.err"
check "(a) validates" "$SF" validate "$DIR/adopted.yaml"
check_eq "(a) plans No changes (--detailed-exitcode 0)" 0 "$(plan_code "$DIR/adopted.yaml")"
check "(a) the plan says No changes" grep -q 'No changes' "$DIR/plan.txt"

# ---------------------------------------------------------------- (b)
sed 's/^    active: "127-0-0-1"$/    active: "127-0-0-2"/' "$DIR/adopted.yaml" >"$DIR/flipped.yaml"
check "(b) the failover commit is a one-line diff" \
  test "$(diff "$DIR/adopted.yaml" "$DIR/flipped.yaml" | grep -c '^[<>]')" = 2
"$SF" apply -c "$DIR/flipped.yaml" --auto-approve >"$DIR/apply.txt" 2>&1
rc=$?
cat "$DIR/apply.txt"
check_eq "(b) apply of the flipped config completes" 0 "$rc"
check_eq "(b) DNS answers the other server" "$PG2_HOST" "$(dns_answer)"
check "(b) the other server is primary" not_in_recovery "$PG2_HOST"
check "(b) the old primary streams from it" poll 20 streaming_from "$PG1_HOST" "$PG2_HOST"
check_eq "(b) the flipped config then plans No changes" 0 "$(plan_code "$DIR/flipped.yaml")"

# ---------------------------------------------------------------- (c)
init again
check_eq "(c) init after the switch exits 0" 0 $?
check "(c) and names the new primary active" grep -qx '    active: "127-0-0-2"' "$DIR/again.yaml"

# ---------------------------------------------------------------- (d)
init elsewhere --address 192.0.2.1 --address 192.0.2.2 --name fra --name ams
check_eq "(d) a record at neither address: exit 2" 2 $?
show "$DIR/elsewhere.err"
check "(d) the DECIDE note in the config" grep -q '# DECIDE: .*holds the address of no stack given' "$DIR/elsewhere.yaml"
check "(d) and on stderr" grep -q 'holds the address of no stack given' "$DIR/elsewhere.err"
check "(d) stderr lists the first plan" grep -q 'traffic.switch ams' "$DIR/elsewhere.err"
check "(d) the --name flags are used" grep -qx '    active: ams' "$DIR/elsewhere.yaml"
check "(d) it validates all the same" "$SF" validate "$DIR/elsewhere.yaml"

INIT_RECORD=shop.nowhere.invalid. init nozone
check_eq "(d) a record in no zone: exit 2" 2 $?
show "$DIR/nozone.err"
check "(d) the zone is a guess, said so" grep -q '# DECIDE: zone nowhere.invalid. is a guess' "$DIR/nozone.yaml"
check "(d) it validates all the same" "$SF" validate "$DIR/nozone.yaml"

harness kill-pg 1
init stopped
check_eq "(d) a server stopped: exit 2" 2 $?
show "$DIR/stopped.err"
check "(d) the stopped server is named" grep -q '# DECIDE: 127-0-0-1 could not be observed' "$DIR/stopped.yaml"
check "(d) the running primary is active" grep -qx '    active: "127-0-0-2"' "$DIR/stopped.yaml"
check "(d) it validates all the same" "$SF" validate "$DIR/stopped.yaml"
harness start-pg 1

# ---------------------------------------------------------------- (e)
# shellcheck disable=SC2016
"$SF" init --postgres "$DSN1" --postgres "$DSN2" --powerdns "$PDNS_API_URL" \
  --api-key '${env:NOT_GRANTED}' --record "$RECORD" >"$DIR/refused.yaml" 2>"$DIR/refused.err"
check_eq "(e) a key the host policy does not grant: exit 1" 1 $?
cat "$DIR/refused.err"
check "(e) the policy is named" grep -q 'NOT_GRANTED' "$DIR/refused.err"
check "(e) nothing is written" test ! -s "$DIR/refused.yaml"
"$SF" init --postgres "$DSN1 password=hunter22" --postgres "$DSN2" --powerdns "$PDNS_API_URL" \
  --api-key "\${env:PDNS_API_KEY}" --record "$RECORD" >"$DIR/literal.yaml" 2>"$DIR/literal.err"
check_eq "(e) a literal password in a DSN: exit 1" 1 $?
check "(e) refused as a password" grep -q 'the DSN holds a password' "$DIR/literal.err"
check "(e) never echoed" not grep -q hunter22 "$DIR/literal.err"

e2e_finish

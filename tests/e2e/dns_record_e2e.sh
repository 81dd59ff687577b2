#!/usr/bin/env bash
# Issue 17, item 3: a traffic record, or its zone, that does not exist, on
# the real harness (PostgreSQL 15 + PowerDNS with its HTTP API).
#
# (a) the record deleted through the API: observe says absent (reachable,
#     not unreachable), plan shows its creation pointing at the active
#     stack and nothing else (no fence, no promotion), apply creates it (DNS
#     answers the active stack's address with the desired TTL), then the
#     plan has no changes and the databases are as before;
# (b) a second A value added by hand: the plan refuses with a blocker naming
#     the value, apply changes nothing (the record and the databases stay),
#     and a failover commit does not fence the primary for it;
# (c) a CNAME at the name: refused likewise, left untouched; removed by
#     hand, the record is created;
# (d) a zone that does not exist, without create_zone: a configuration error
#     (exit 1) naming the zone and the setting, never "unreachable", and
#     nothing created; (e) with `create_zone: true` plan shows the creation
#     of both, apply creates the zone and the record, and it converges.
#
# Usage: dns_record_e2e.sh STACKFLIP E2E_TOOL
source "$(dirname "$0")/lib.sh"
e2e_start "$@"

NEW_ZONE=new.test.
NEW_RECORD=shop.$NEW_ZONE

# ---------------------------------------------------------------- helpers
api() { # METHOD PATH [BODY]: the PowerDNS API, as an operator would call it
  curl -sS -m 5 -o "$DIR/api.out" -w '%{http_code}' -X "$1" -H "X-API-Key: $PDNS_API_KEY" \
    -H 'Content-Type: application/json' "$PDNS_API_URL/api/v1/servers/localhost$2" ${3:+--data "$3"}
}
api_ok() { local code; code=$(api "$@"); [[ $code == 2* ]] || { echo "  API $1 $2: HTTP $code $(head -c 300 "$DIR/api.out")"; return 1; }; }
rrset() { # ZONE NAME TYPE TTL VALUE...: replace an rrset by hand
  local zone=$1 name=$2 type=$3 ttl=$4 recs='' v
  shift 4
  for v in "$@"; do recs+="${recs:+,}{\"content\":\"$v\",\"disabled\":false}"; done
  api_ok PATCH "/zones/$zone" \
    "{\"rrsets\":[{\"name\":\"$name\",\"type\":\"$type\",\"ttl\":$ttl,\"changetype\":\"REPLACE\",\"records\":[$recs]}]}"
}
rrset_delete() { # ZONE NAME TYPE
  api_ok PATCH "/zones/$1" "{\"rrsets\":[{\"name\":\"$2\",\"type\":\"$3\",\"changetype\":\"DELETE\"}]}"
}
rrset_of() { # ZONE NAME TYPE -> "TTL value ..." as PowerDNS holds it, "" when none
  api GET "/zones/$1" >/dev/null
  python3 -c '
import json, sys
try:
    z = json.load(open(sys.argv[1]))
except ValueError:
    sys.exit(0)
for rr in z.get("rrsets", []):
    if rr["name"] == sys.argv[2] and rr["type"] == sys.argv[3]:
        print(rr["ttl"], *sorted(r["content"] for r in rr["records"]))' "$DIR/api.out" "$2" "$3"
}
zone_status() { api GET "/zones/$1"; }  # prints the HTTP status
# answer NAME TYPE -> "TTL value" lines as DNS answers them, sorted, one line
answer() {
  dig @127.0.0.1 -p "$PDNS_PORT" "$1" "$2" +noall +answer +time=1 +tries=1 |
    awk '{print $2, $5}' | sort | tr '\n' ' ' | sed 's/ $//'
}
answer_is() { [[ $(answer "$1" "$2") == "$3" ]]; }
dbstate() { # recovery and read-only flag of both servers
  echo "pg1 $(sql 127.0.0.1 "SELECT pg_is_in_recovery()") $(maintenance_of 127.0.0.1)" \
       "pg2 $(sql 127.0.0.2 "SELECT pg_is_in_recovery()") $(maintenance_of 127.0.0.2)"
}
plan_of() { "$SF" plan -c "$1" --detailed-exitcode >"$DIR/plan.txt" 2>&1; }
apply_of() { "$SF" apply -c "$1" --auto-approve >"$DIR/apply.txt" 2>&1; }
show() { grep -vE '^ +guard:' "$1" | sed 's/^/  | /'; }
check_or_show() { # FILE NAME CMD...: a check that shows FILE when it fails
  local file=$1 name=$2
  shift 2
  if "$@"; then pass "$name"; else fail "$name"; show "$file"; fi
}
no_step() { ! grep -qE "^ +[0-9]+\. ($1) " "$2"; }
section() { echo "--- $* (t+${SECONDS}s)"; }
traffic_json() { # CONFIG -> the group's traffic as observe -o json says, one line
  "$SF" observe -c "$1" -o json 2>/dev/null |
    python3 -c 'import json,sys; t=json.load(sys.stdin)["groups"]["shop"]["traffic"]; print(json.dumps({k: t.get(k) for k in ("reachable", "target", "absent", "config_error")}, sort_keys=True))'
}

# The harness config with the record's TTL at 45 (so the created record is
# seen to take the desired TTL), and the same with the standby active.
T45=$DIR/ttl45.yaml
sed "s/record: $RECORD, ttl: 60}/record: $RECORD, ttl: 45}/" "$CONFIG" >"$T45"
grep -q 'ttl: 45}' "$T45" || fail "setup: TTL 45 config"
T45S=$DIR/ttl45-standby.yaml
sed 's/^    active: primary$/    active: standby/' "$T45" >"$T45S"
rrset "$ZONE" "$RECORD" A 45 127.0.0.1 || fail "setup: the record at TTL 45"
plan_of "$T45"
check_eq "setup: converged (plan exits 0)" 0 $?
before=$(dbstate)
check_eq "setup: pg1 primary, pg2 replica in maintenance" "pg1 f off pg2 t on" "$before"

section "(a) the record deleted through the API is created by the plan"
check "(a) delete the record through the API" rrset_delete "$ZONE" "$RECORD" A
check_eq "(a) DNS has no answer for it" "" "$(answer "$RECORD" A)"
check_eq "(a) observe -o json: reachable, absent record, no target" \
  '{"absent": "record", "config_error": null, "reachable": null, "target": null}' "$(traffic_json "$T45")"
plan_of "$T45"
check_eq "(a) plan exits 2 (changes)" 2 $?
check_or_show "$DIR/plan.txt" "(a) plan: the creation pointing at primary with the desired TTL" \
  grep -qF "$RECORD A does not exist: create it pointing at primary with TTL 45 (\`active: primary\`)" "$DIR/plan.txt"
check_or_show "$DIR/plan.txt" "(a) plan: one traffic.switch, nothing blocked" \
  grep -q "^Plan: 1 action in 1 group, 0 blocked" "$DIR/plan.txt"
check "(a) plan: no fence, no promotion" no_step "maintenance\.on|database\.promote" "$DIR/plan.txt"
check "(a) plan: nothing unreachable" not grep -qi "unreachable" "$DIR/plan.txt"
apply_of "$T45"
rc=$?
show "$DIR/apply.txt" | grep -E "ok in|failed|blocked|complete|stopped"
check_eq "(a) apply exits 0" 0 "$rc"
check_eq "(a) PowerDNS holds the primary's address with TTL 45" "45 127.0.0.1" "$(rrset_of "$ZONE" "$RECORD" A)"
check "(a) DNS answers the primary's address with TTL 45" poll 5 answer_is "$RECORD" A "45 127.0.0.1"
plan_of "$T45"
check_eq "(a) then converged (plan exits 0)" 0 $?
check_or_show "$DIR/plan.txt" "(a) plan says No changes" grep -q "No changes" "$DIR/plan.txt"
check_eq "(a) databases unchanged: nothing fenced, nothing promoted" "$before" "$(dbstate)"

section "(b) a second A value added by hand is refused and left untouched"
check "(b) add 192.0.2.77 beside the primary's address by hand" rrset "$ZONE" "$RECORD" A 45 127.0.0.1 192.0.2.77
plan_of "$T45"
check_eq "(b) plan exits 3 (blocked)" 3 $?
blocker="$RECORD A holds 192.0.2.77, which is no stack's address, beside 127.0.0.1"
check_or_show "$DIR/plan.txt" "(b) plan: the traffic step is blocked, naming the value" \
  grep -qF "$blocker" "$DIR/plan.txt"
apply_of "$T45"
check_eq "(b) apply exits 3" 3 $?
check_eq "(b) PowerDNS still holds both values" "45 127.0.0.1 192.0.2.77" "$(rrset_of "$ZONE" "$RECORD" A)"
check_eq "(b) DNS still answers both" "45 127.0.0.1 45 192.0.2.77" "$(answer "$RECORD" A)"
plan_of "$T45S"
check_eq "(b) a failover commit: plan exits 3" 3 $?
check_or_show "$DIR/plan.txt" "(b) failover commit: the fence is BLOCKED, naming the value" \
  grep -qE "^  1\. maintenance\.on +primary +BLOCKED: .*192\.0\.2\.77, which is no stack's address.*the serving primary is not fenced" "$DIR/plan.txt"
apply_of "$T45S"
check_eq "(b) failover commit: apply exits 3" 3 $?
check_eq "(b) failover commit: databases unchanged" "$before" "$(dbstate)"
check_eq "(b) failover commit: the record untouched" "45 127.0.0.1 192.0.2.77" "$(rrset_of "$ZONE" "$RECORD" A)"

section "(c) a CNAME at the name is refused and left untouched"
check "(c) replace the A record with a CNAME by hand" api_ok PATCH "/zones/$ZONE" "{\"rrsets\":[
  {\"name\":\"$RECORD\",\"type\":\"A\",\"changetype\":\"DELETE\"},
  {\"name\":\"$RECORD\",\"type\":\"CNAME\",\"ttl\":60,\"changetype\":\"REPLACE\",
   \"records\":[{\"content\":\"elsewhere.example.net.\",\"disabled\":false}]}]}"
plan_of "$T45"
check_eq "(c) plan exits 3 (blocked)" 3 $?
check_or_show "$DIR/plan.txt" "(c) plan: blocked, naming the CNAME and its target" \
  grep -qF "$RECORD holds a CNAME record, and PowerDNS keeps no A record beside a CNAME (CNAME elsewhere.example.net.; remove it by hand" "$DIR/plan.txt"
check_eq "(c) observe -o json: not absent, not unreachable" \
  '{"absent": null, "config_error": null, "reachable": null, "target": null}' "$(traffic_json "$T45")"
apply_of "$T45"
check_eq "(c) apply exits 3" 3 $?
check_eq "(c) the CNAME untouched" "60 elsewhere.example.net." "$(rrset_of "$ZONE" "$RECORD" CNAME)"
check_eq "(c) no A record written" "" "$(rrset_of "$ZONE" "$RECORD" A)"
check "(c) the CNAME removed by hand" rrset_delete "$ZONE" "$RECORD" CNAME
apply_of "$T45"
check_eq "(c) then apply creates the record (exit 0)" 0 $?
check "(c) DNS answers the primary's address with TTL 45" poll 5 answer_is "$RECORD" A "45 127.0.0.1"
check_eq "(c) databases unchanged" "$before" "$(dbstate)"

section "(d) a zone that does not exist, without create_zone"
NZ=$DIR/new-zone.yaml
sed "s/zone: $ZONE, record: $RECORD, ttl: 45}/zone: $NEW_ZONE, record: $NEW_RECORD, ttl: 45}/" "$T45" >"$NZ"
grep -q "record: $NEW_RECORD" "$NZ" || fail "(d) setup: config in zone $NEW_ZONE"
check_eq "(d) PowerDNS has no zone $NEW_ZONE" 404 "$(zone_status "$NEW_ZONE")"
check_eq "(d) observe -o json: a configuration error" \
  '{"absent": null, "config_error": true, "reachable": false, "target": null}' "$(traffic_json "$NZ")"
plan_of "$NZ"
check_eq "(d) plan exits 1 (an error, not blocked)" 1 $?
check_or_show "$DIR/plan.txt" "(d) plan names the zone, and how to fix it" \
  grep -qF "zone $NEW_ZONE does not exist on PowerDNS ($PDNS_API_URL/api/v1/servers/localhost/zones/$NEW_ZONE: HTTP 404): create it, or set \`create_zone: true\` on provider 'dns'" "$DIR/plan.txt"
check_or_show "$DIR/plan.txt" "(d) plan calls it a configuration error" grep -qi "configuration error" "$DIR/plan.txt"
check "(d) plan does not call it unreachable" not grep -qi "unreachable" "$DIR/plan.txt"
apply_of "$NZ"
check_eq "(d) apply exits 1" 1 $?
check_eq "(d) the zone was not created" 404 "$(zone_status "$NEW_ZONE")"
check_eq "(d) databases unchanged" "$before" "$(dbstate)"

section "(e) with create_zone: true the zone and the record are created"
NZC=$DIR/new-zone-create.yaml
sed 's/^  dns: {type: powerdns, \(.*\)}$/  dns: {type: powerdns, \1, create_zone: true}/' "$NZ" >"$NZC"
grep -q 'create_zone: true}' "$NZC" || fail "(e) setup: create_zone in the config"
"$SF" validate "$NZC" >"$DIR/validate.txt" 2>&1
check_eq "(e) the config validates" 0 $?
check_eq "(e) observe -o json: reachable, absent zone" \
  '{"absent": "zone", "config_error": null, "reachable": null, "target": null}' "$(traffic_json "$NZC")"
plan_of "$NZC"
check_eq "(e) plan exits 2 (changes)" 2 $?
check_or_show "$DIR/plan.txt" "(e) plan: the creation of zone and record" \
  grep -qF "$NEW_RECORD A does not exist, nor its zone: create both pointing at primary with TTL 45" "$DIR/plan.txt"
check "(e) plan: no fence, no promotion" no_step "maintenance\.on|database\.promote" "$DIR/plan.txt"
apply_of "$NZC"
rc=$?
show "$DIR/apply.txt" | grep -E "ok in|failed|blocked|complete|stopped"
check_eq "(e) apply exits 0" 0 "$rc"
check_eq "(e) PowerDNS has the zone now" 200 "$(zone_status "$NEW_ZONE")"
check_eq "(e) PowerDNS holds the record" "45 127.0.0.1" "$(rrset_of "$NEW_ZONE" "$NEW_RECORD" A)"
check "(e) DNS answers the primary's address with TTL 45" poll 5 answer_is "$NEW_RECORD" A "45 127.0.0.1"
plan_of "$NZC"
check_eq "(e) then converged (plan exits 0)" 0 $?
check_eq "(e) databases unchanged" "$before" "$(dbstate)"

e2e_finish

#!/usr/bin/env bash
# Issue 11, items 2-4: traffic seen and switched whole, on the real harness
# (PostgreSQL 15 + PowerDNS). One group `shop` switches three names: two in
# the harness zone (shop.example.test. A, and www.example.test. dual-stack:
# A and AAAA) and one in a second zone made through the PowerDNS API
# (shop.other.test. A). IPv6 values are documentation addresses, DNS data
# only; nothing connects to them.
#
# (b) a record owned by two groups, or listed twice in one group, is refused
#     by validate with both file:line:col places; nothing is applied;
# (d) an IPv6 address on an A record is refused by validate at the address;
# (a) a failover commit switches all four rrsets in one traffic.switch;
# (c) a record holding both stacks' addresses (an operator's hand edit) is
#     observed as mixed, planned as drift naming the extra address, and
#     replaced by the active stack's address (with either stack active: with
#     the primary active its address is the first value PowerDNS returns,
#     which the old observation took for the whole record);
#     hand edits: the old address disabled beside the new one (converged),
#     the active address disabled, a TTL, a deleted AAAA, a value of no
#     stack alone: each planned with its reason and converged by apply; a
#     value of no stack beside the stack's is refused and left (issue 17);
# (e) a switch whose traffic step cannot succeed (the zone deleted; a zone
#     that does not exist; a wrong API key) is held before the fence: both
#     databases unchanged, the primary still writable; each is a
#     configuration error (exit 1) that names its cause (issue 17: a
#     missing zone says to create it or set create_zone);
# (f) a CNAME at a switched name blocks likewise; once removed by hand, the
#     switch runs and converges;
# (g) the zone deleted in the middle of a switch (after the new primary
#     opened): apply stops at traffic.switch naming the record; the loop's
#     next pass should move the names whose zone still exists (today it
#     blocks the whole traffic step: they stay on the fenced old primary);
#     once the zone is back a later pass converges.
# Also: validate's messages for an operator's typos (file:line:col each),
# and two bad files validated at once (each diagnostic on its own line).
#
# Usage: traffic_e2e.sh STACKFLIP E2E_TOOL
source "$(dirname "$0")/lib.sh"
e2e_start "$@"

OTHER=other.test.

# ---------------------------------------------------------------- helpers
api() { # METHOD PATH [BODY]: the PowerDNS API, as an operator would call it
  curl -sS -m 5 -o "$DIR/api.out" -w '%{http_code}' -X "$1" -H "X-API-Key: $PDNS_API_KEY" \
    -H 'Content-Type: application/json' "$PDNS_API_URL/api/v1/servers/localhost$2" ${3:+--data "$3"}
}
api_ok() { local code; code=$(api "$@"); [[ $code == 2* ]] || { echo "  API $1 $2: HTTP $code $(head -c 300 "$DIR/api.out")"; return 1; }; }
# rrset ZONE NAME TYPE TTL VALUE...: replace an rrset by hand; VALUE:off is disabled.
rrset() {
  local zone=$1 name=$2 type=$3 ttl=$4 recs= v
  shift 4
  for v in "$@"; do
    local off=false
    [[ $v == *:off ]] && { off=true; v=${v%:off}; }
    recs+="${recs:+,}{\"content\":\"$v\",\"disabled\":$off}"
  done
  api_ok PATCH "/zones/$zone" \
    "{\"rrsets\":[{\"name\":\"$name\",\"type\":\"$type\",\"ttl\":$ttl,\"changetype\":\"REPLACE\",\"records\":[$recs]}]}"
}
rrset_delete() { # ZONE NAME TYPE
  api_ok PATCH "/zones/$1" "{\"rrsets\":[{\"name\":\"$2\",\"type\":\"$3\",\"changetype\":\"DELETE\"}]}"
}
make_zone() { api_ok POST /zones "{\"name\":\"$1\",\"kind\":\"Native\",\"nameservers\":[\"ns1.$ZONE\"]}"; }
# rrset_of ZONE NAME TYPE -> "TTL value value:off ..." as PowerDNS holds it
rrset_of() {
  api GET "/zones/$1" >/dev/null
  python3 -c '
import json, sys
z = json.load(open(sys.argv[1]))
for rr in z.get("rrsets", []):
    if rr["name"] == sys.argv[2] and rr["type"] == sys.argv[3]:
        print(rr["ttl"], *sorted(r["content"] + (":off" if r["disabled"] else "") for r in rr["records"]))' \
    "$DIR/api.out" "$2" "$3"
}
ask() { dig @127.0.0.1 -p "$PDNS_PORT" "$1" "$2" +short +time=1 +tries=1 | sort | tr '\n' ' ' | sed 's/ $//'; }
# What DNS answers for the four rrsets the group switches.
answers() {
  echo "shop=$(ask "shop.$ZONE" A) www=$(ask "www.$ZONE" A) www6=$(ask "www.$ZONE" AAAA) other=$(ask "shop.$OTHER" A)"
}
on_primary="shop=127.0.0.1 www=127.0.0.1 www6=2001:db8::1 other=127.0.0.1"
on_standby="shop=127.0.0.2 www=127.0.0.2 www6=2001:db8::2 other=127.0.0.2"
dbstate() { # recovery and read-only flag of both servers
  echo "pg1 $(sql 127.0.0.1 "SELECT pg_is_in_recovery()") $(maintenance_of 127.0.0.1)" \
       "pg2 $(sql 127.0.0.2 "SELECT pg_is_in_recovery()") $(maintenance_of 127.0.0.2)"
}
NEXT_ID=1
accepts_write() { # HOST: a plain INSERT commits
  NEXT_ID=$((NEXT_ID + 1))
  local out; out=$(sql "$1" "INSERT INTO writes(id, host) VALUES ($NEXT_ID, 'probe') RETURNING id")
  [[ $out == "$NEXT_ID" ]] || { echo "  INSERT on $1 said: $out"; return 1; }
}
journal_count() { # ACTION STATUS: entries in the journal
  "$SF" history --limit 1000 2>/dev/null | awk -v a="$1" -v s="$2" '$4 == a && $0 ~ " " s " " {n++} END {print n + 0}'
}
line_of() { grep -nF -- "$2" "$1" | sed -n "${3:-1}p" | cut -d: -f1; }
col_of() { # FILE LINE TEXT: column where TEXT starts on LINE
  sed -n "${2}p" "$1" | awk -v t="$3" '{print index($0, t)}'
}
plan_of() { # CONFIG -> $DIR/plan.txt, returns plan's detailed exit code
  "$SF" plan -c "$1" --detailed-exitcode >"$DIR/plan.txt" 2>&1
}
apply_of() { # CONFIG -> $DIR/apply.txt, returns apply's exit code
  "$SF" apply -c "$1" --auto-approve >"$DIR/apply.txt" 2>&1
}
show() { grep -vE '^ +guard:' "$1" | sed 's/^/  | /'; }
check_or_show() { # FILE NAME CMD...: a check that shows FILE when it fails
  local file=$1 name=$2
  shift 2
  if "$@"; then pass "$name"; else fail "$name"; show "$file"; fi
}
re() { sed 's/[.[\*^$]/\\&/g' <<<"$1"; }  # TEXT as an extended regex matching it literally
section() { echo "--- $* (t+${SECONDS}s)"; }

# write_three FILE ACTIVE [ZONE3 RECORD3]: the group with three names (four
# rrsets), dual-stack addresses on both stacks.
write_three() {
  local zone3=${3:-$OTHER} rec3=${4:-shop.$OTHER}
  {
    sed -n '1,/^groups:$/p' "$CONFIG"
    cat <<EOF
  shop:
    active: $2
    stacks:
      primary:
        provider: db
        dsn: "host=$PG1_HOST port=$PG_PORT user=$PG_USER dbname=$PG_DB"
        address: [$PG1_HOST, "2001:db8::1"]
        control_command: ["$PG_CONTROL"]
      standby:
        provider: db
        dsn: "host=$PG2_HOST port=$PG_PORT user=$PG_USER dbname=$PG_DB"
        address: [$PG2_HOST, "2001:db8::2"]
        control_command: ["$PG_CONTROL"]
    replication: {max_lag_bytes: 0}
    traffic:
      - {provider: dns, zone: $ZONE, record: shop.$ZONE, ttl: 60}
      - {provider: dns, zone: $ZONE, record: www.$ZONE, record_type: [A, AAAA], ttl: 60}
      - {provider: dns, zone: $zone3, record: $rec3, ttl: 60}
EOF
  } >"$1"
}
T1=$DIR/three-primary.yaml
T2=$DIR/three-standby.yaml
write_three "$T1" primary
write_three "$T2" standby

# ---------------------------------------------------------------- setup
# The records as they stood before stackflip managed them: all on the primary.
make_zone "$OTHER" || fail "setup: create zone $OTHER"
rrset "$ZONE" "www.$ZONE" A 60 127.0.0.1 && rrset "$ZONE" "www.$ZONE" AAAA 60 2001:db8::1 &&
  rrset "$OTHER" "shop.$OTHER" A 60 127.0.0.1 || fail "setup: records"
check_eq "setup: DNS answers the primary for all four" "$on_primary" "$(answers)"
"$SF" validate "$T1" >"$DIR/validate.txt" 2>&1
check_eq "setup: the three-record config validates" 0 $?
plan_of "$T1"
check_eq "setup: converged (plan exits 0)" 0 $?
before=$(dbstate)
check_eq "setup: pg1 primary, pg2 replica in maintenance" "pg1 f off pg2 t on" "$before"

section "(b) a record owned twice is refused, with both places"
two_groups=$DIR/two-groups.yaml
{
  cat "$T1"
  cat <<EOF
  blog:
    active: fra
    stacks:
      fra: {provider: db, dsn: "host=127.0.0.3 port=$PG_PORT user=$PG_USER dbname=$PG_DB", address: 127.0.0.3}
      ams: {provider: db, dsn: "host=127.0.0.4 port=$PG_PORT user=$PG_USER dbname=$PG_DB", address: 127.0.0.4}
    traffic:
      - {provider: dns, zone: $ZONE, record: blog.$ZONE}
      - {provider: dns, zone: $OTHER, record: shop.$OTHER}
EOF
} >"$two_groups"
first=$(line_of "$two_groups" "record: shop.$OTHER" 1)
second=$(line_of "$two_groups" "record: shop.$OTHER" 2)
first_col=$(col_of "$two_groups" "$first" "shop.$OTHER")
second_col=$(col_of "$two_groups" "$second" "shop.$OTHER")
"$SF" validate "$two_groups" >"$DIR/validate.txt" 2>&1
rc=$?
show "$DIR/validate.txt"
check_eq "(b) two groups: validate exits 1" 1 "$rc"
check "(b) two groups: the error is at blog's record ($second:$second_col)" \
  grep -qF "$two_groups:$second:$second_col: error: record 'shop.$OTHER' of provider 'dns' is already owned by group 'shop'" "$DIR/validate.txt"
check "(b) two groups: the error names shop's record as file:line:col ($two_groups:$first:$first_col)" \
  grep -qF "owned by group 'shop' ($two_groups:$first:$first_col)" "$DIR/validate.txt"

listed_twice=$DIR/listed-twice.yaml
awk -v z="$ZONE" '{print} /record: shop.example.test.,/ {print "      - {provider: dns, zone: " z ", record: Shop.Example.Test., ttl: 60}"}' \
  "$T1" >"$listed_twice"
first=$(line_of "$listed_twice" "record: shop.$ZONE,")
second=$(line_of "$listed_twice" "record: Shop.Example.Test.")
first_col=$(col_of "$listed_twice" "$first" "shop.$ZONE")
second_col=$(col_of "$listed_twice" "$second" "Shop.Example.Test.")
"$SF" validate "$listed_twice" >"$DIR/validate.txt" 2>&1
rc=$?
show "$DIR/validate.txt"
check_eq "(b) listed twice (another case): validate exits 1" 1 "$rc"
check "(b) listed twice: the error is at the second listing ($second:$second_col)" \
  grep -qF "$listed_twice:$second:$second_col: error: record 'Shop.Example.Test.' (type A) is listed twice in the traffic of group 'shop'" "$DIR/validate.txt"
check "(b) listed twice: the error names the first listing as file:line:col ($listed_twice:$first:$first_col)" \
  grep -qF "$listed_twice:$first:$first_col)" "$DIR/validate.txt"
# A record listed once with [A, AAAA] and once more as AAAA: the same type twice.
twice_aaaa=$DIR/twice-aaaa.yaml
awk -v z="$ZONE" '{print} /record_type: \[A, AAAA\]/ {print "      - {provider: dns, zone: " z ", record: www." z ", record_type: AAAA}"}' \
  "$T1" >"$twice_aaaa"
"$SF" validate "$twice_aaaa" >"$DIR/validate.txt" 2>&1
rc=$?
show "$DIR/validate.txt"
check_eq "(b) www AAAA listed again beside [A, AAAA]: validate exits 1" 1 "$rc"
check "(b) www AAAA listed again: the error says so, at file:line:col" \
  grep -qE "^$twice_aaaa:$(line_of "$twice_aaaa" "record_type: AAAA}"):[0-9]+: error: .*www.$ZONE' \(type AAAA\) is listed twice" "$DIR/validate.txt"

for f in "$two_groups" "$listed_twice"; do
  apply_of "$f"
  rc=$?
  check_eq "(b) apply refuses ${f##*/} (exit 1)" 1 "$rc"
done
check "(b) apply ran no step" not grep -q "ok in" "$DIR/apply.txt"
check_eq "(b) nothing applied: databases unchanged" "$before" "$(dbstate)"
check_eq "(b) nothing applied: DNS unchanged" "$on_primary" "$(answers)"

section "(d) an IPv6 address on an A record is refused by validate"
v6_on_a=$DIR/v6-on-a.yaml
sed 's/^        address: 127.0.0.2$/        address: "2001:db8::20"/' "$CONFIG" >"$v6_on_a"
sed -i 's/^    active: primary$/    active: standby/' "$v6_on_a"
at=$(line_of "$v6_on_a" 'address: "2001:db8::20"')
col=$(col_of "$v6_on_a" "$at" '"2001:db8::20"')
"$SF" validate "$v6_on_a" >"$DIR/validate.txt" 2>&1
rc=$?
show "$DIR/validate.txt"
check_eq "(d) validate exits 1" 1 "$rc"
check "(d) the error is at the address ($at:$col) and names the record and its type" \
  grep -qF "$v6_on_a:$at:$col: error: address '2001:db8::20' is an IPv6 address, but no record of group 'shop' holds one ($RECORD A)" "$DIR/validate.txt"
check "(d) the error says how to hold it" grep -qF "record_type: AAAA, or [A, AAAA]" "$DIR/validate.txt"
plan_of "$v6_on_a"
check_eq "(d) plan refuses it too (exit 1)" 1 $?
check "(d) plan names the place" grep -qF "$v6_on_a:$at:$col: error:" "$DIR/plan.txt"
apply_of "$v6_on_a"
check_eq "(d) apply refuses it (exit 1)" 1 $?
check "(d) apply ran no step: nothing fenced, nothing promoted" not grep -q "ok in" "$DIR/apply.txt"
check_eq "(d) nothing applied: databases unchanged" "$before" "$(dbstate)"
check_eq "(d) nothing applied: DNS unchanged" "$on_primary" "$(answers)"
check_eq "(d) the journal has no entry" 0 "$(journal_count traffic.switch started)"

section "(a) a failover commit switches all three names in one apply"
apply_of "$T2"
rc=$?
show "$DIR/apply.txt"
check_eq "(a) apply exits 0" 0 "$rc"
check_eq "(a) DNS answers the standby for all four rrsets" "$on_standby" "$(answers)"
check_eq "(a) PowerDNS holds exactly the standby's A for shop" "60 127.0.0.2" "$(rrset_of "$ZONE" "shop.$ZONE" A)"
check_eq "(a) PowerDNS holds exactly the standby's AAAA for www" "60 2001:db8::2" "$(rrset_of "$ZONE" "www.$ZONE" AAAA)"
check_eq "(a) PowerDNS holds exactly the standby's A in the second zone" "60 127.0.0.2" "$(rrset_of "$OTHER" "shop.$OTHER" A)"
check_eq "(a) apply ran one traffic.switch step" 1 "$(grep -c 'traffic.switch standby .* ok in' "$DIR/apply.txt")"
check_eq "(a) the journal has one traffic.switch, ok" "1 1" \
  "$(journal_count traffic.switch started) $(journal_count traffic.switch ok)"
check "(a) the plan's reason named all four rrsets" \
  grep -qF "shop.$ZONE A points at primary; www.$ZONE A points at primary; www.$ZONE AAAA points at primary; shop.$OTHER A points at primary" "$DIR/apply.txt"
"$SF" observe -c "$T2" >"$DIR/observe.txt" 2>&1
check "(a) observe says all on standby" grep -q "traffic: all on standby" "$DIR/observe.txt"
plan_of "$T2"
check_eq "(a) converged (plan exits 0)" 0 $?
check "(a) the new primary accepts writes" accepts_write 127.0.0.2
check "(a) the old primary streams from the new one" poll 10 streaming_from 127.0.0.1 127.0.0.2

# mixed LABEL CONFIG ACTIVE ACTIVE_IP OTHER OTHER_IP ANSWERS: an operator
# adds the other stack's address to shop's A record by hand.
mixed() {
  local l=$1 config=$2 act=$3 act_ip=$4 other=$5 other_ip=$6 all=$7
  rrset "$ZONE" "shop.$ZONE" A 60 "$other_ip" "$act_ip"
  check_eq "$l DNS answers both (the hand edit)" "127.0.0.1 127.0.0.2" "$(ask "shop.$ZONE" A)"
  "$SF" observe -c "$config" -o json >"$DIR/observe.json" 2>&1
  local seen
  seen=$(python3 -c '
import json, sys
t = json.load(open(sys.argv[1]))["groups"]["shop"]["traffic"]
p = [a for a in t["addresses"] if a["name"] == sys.argv[2]][0]
print("target=%s" % t.get("target"), "part_target=%s" % p.get("target"),
      " ".join(sorted("%s:%s" % (r["content"], r.get("stack")) for r in p["records"])))' "$DIR/observe.json" "shop.$ZONE A" 2>&1)
  check_eq "$l observe -o json: no target, the record's two values with their stacks" \
    "target=None part_target=None 127.0.0.1:primary 127.0.0.2:standby" "$seen"
  "$SF" observe -c "$config" >"$DIR/observe.txt" 2>&1
  check_or_show "$DIR/observe.txt" "$l observe says MIXED" \
    grep -qF "shop.$ZONE A: MIXED: 127.0.0.1 (primary), 127.0.0.2 (standby)" "$DIR/observe.txt"
  plan_of "$config"
  check_eq "$l plan exits 2 (drift)" 2 $?
  check_or_show "$DIR/plan.txt" "$l plan: a traffic.switch whose reason names the extra address" \
    grep -qF "shop.$ZONE A is mixed: besides $act's address it holds $other_ip ($other)" "$DIR/plan.txt"
  check "$l plan: nothing but the traffic step" grep -q "^Plan: 1 action in 1 group, 0 blocked" "$DIR/plan.txt"
  apply_of "$config"
  check_eq "$l apply exits 0" 0 $?
  check_eq "$l PowerDNS holds $act's address only" "60 $act_ip" "$(rrset_of "$ZONE" "shop.$ZONE" A)"
  check_eq "$l DNS answers $act only" "$act_ip" "$(ask "shop.$ZONE" A)"
  check_eq "$l the other rrsets are on $act" "$all" "$(answers)"
  plan_of "$config"
  check_eq "$l converged" 0 $?
}
section "(c) a record holding both stacks' addresses is mixed"
mixed "(c) standby active:" "$T2" standby 127.0.0.2 primary 127.0.0.1 "$on_standby"

# hand_edit LABEL EXPECTED_PLAN_RC REASON_TEXT: plan; when it plans a
# change, apply and converged.
hand_edit() {
  local label=$1 want=$2 reason=$3 rc
  plan_of "$T2"
  rc=$?
  check_eq "$label: plan exits $want" "$want" "$rc"
  if ((want == 0)); then
    check_eq "$label: DNS answers the standby everywhere" "$on_standby" "$(answers)"
    return
  fi
  if [[ -n $reason ]]; then
    check_or_show "$DIR/plan.txt" "$label: plan says: $reason" grep -qF -- "$reason" "$DIR/plan.txt"
  fi
  apply_of "$T2"
  check_eq "$label: apply exits 0" 0 $?
  plan_of "$T2"
  check_eq "$label: converged afterwards" 0 $?
  check_eq "$label: DNS answers the standby everywhere" "$on_standby" "$(answers)"
}
section "hand edits an operator might make"
rrset "$ZONE" "shop.$ZONE" A 60 127.0.0.2 127.0.0.1:off
hand_edit "old address disabled beside the new" 0 ""
"$SF" observe -c "$T2" >"$DIR/observe.txt" 2>&1
check "old address disabled: observe counts it as disabled" grep -qF "shop.$ZONE A: standby (127.0.0.2), 1 disabled" "$DIR/observe.txt"
check_eq "old address disabled: left as the operator wrote it (not traffic)" "60 127.0.0.1:off 127.0.0.2" \
  "$(rrset_of "$ZONE" "shop.$ZONE" A)"
rrset "$ZONE" "shop.$ZONE" A 60 127.0.0.2:off
hand_edit "the active address disabled" 2 "shop.$ZONE A points at no stack"
check_eq "the active address disabled: enabled again" "60 127.0.0.2" "$(rrset_of "$ZONE" "shop.$ZONE" A)"
rrset "$OTHER" "shop.$OTHER" A 300 127.0.0.2
hand_edit "TTL 300 on one of the records" 2 "shop.$OTHER A TTL is 300, desired 60"
check_eq "TTL: back to 60" "60 127.0.0.2" "$(rrset_of "$OTHER" "shop.$OTHER" A)"
rrset_delete "$ZONE" "www.$ZONE" AAAA
hand_edit "the AAAA deleted by hand" 2 "www.$ZONE AAAA does not exist: create it pointing at standby with TTL 60"
# Issue 17: a value of no stack beside the stack's is someone else's (a
# round robin by hand): refused, never overwritten; the operator removes it.
rrset "$ZONE" "www.$ZONE" A 60 127.0.0.2 203.0.113.9
plan_of "$T2"
check_eq "a second A value of no stack: plan exits 3 (refused)" 3 $?
check_or_show "$DIR/plan.txt" "a second A value of no stack: the plan names it" \
  grep -qF "www.$ZONE A holds 203.0.113.9, which is no stack's address, beside 127.0.0.2" "$DIR/plan.txt"
apply_of "$T2"
check_eq "a second A value of no stack: apply exits 3" 3 $?
check_eq "a second A value of no stack: left as the operator wrote it" "60 127.0.0.2 203.0.113.9" \
  "$(rrset_of "$ZONE" "www.$ZONE" A)"
rrset "$ZONE" "www.$ZONE" A 60 127.0.0.2
hand_edit "the value of no stack removed by hand" 0 ""
rrset "$ZONE" "shop.$ZONE" A 60 203.0.113.9
hand_edit "a value of no stack alone" 2 "shop.$ZONE A holds 203.0.113.9 (no stack of the group)"
rrset "$ZONE" "www.$ZONE" AAAA 60 2001:DB8:0:0::2
hand_edit "the AAAA written in another form (2001:DB8:0:0::2)" 0 ""

section "(e) a switch whose traffic step cannot succeed is blocked before the fence"
after_a=$(dbstate)
check_eq "(e) start: pg2 primary, pg1 a replica in maintenance" "pg1 t on pg2 f off" "$after_a"
blocked_before_fence() { # LABEL CONFIG REASON_REGEX [ENV...]
  local label=$1 config=$2 reason=$3 rc dns_before
  shift 3
  dns_before=$(answers)
  env "$@" "$SF" plan -c "$config" --detailed-exitcode >"$DIR/plan.txt" 2>&1
  rc=$?
  check_eq "$label: plan exits 3 (blocked)" 3 "$rc"
  check_or_show "$DIR/plan.txt" "$label: the fence is BLOCKED, naming the reason" \
    grep -qE "^  1\. maintenance\.on +standby +BLOCKED: .*$reason.*so traffic could not follow the switch; the serving primary is not fenced" "$DIR/plan.txt"
  env "$@" "$SF" apply -c "$config" --auto-approve >"$DIR/apply.txt" 2>&1
  rc=$?
  check_eq "$label: apply exits 3" 3 "$rc"
  check "$label: apply says the group stopped blocked" grep -q "group shop stopped (blocked): " "$DIR/apply.txt"
  check "$label: apply ran no step" grep -q "0 of 7 actions done" "$DIR/apply.txt"
  check_eq "$label: both databases unchanged" "$after_a" "$(dbstate)"
  check "$label: the primary still accepts writes" accepts_write 127.0.0.2
  check_eq "$label: DNS unchanged" "$dns_before" "$(answers)"
}
# A wrong API key (issue 12) or a missing zone (issue 17) is not a safety
# guard but a configuration error: exit 1, named as such; still nothing is
# applied.
config_error_before_fence() { # LABEL CONFIG REASON_REGEX [ENV...]
  local label=$1 config=$2 reason=$3 rc dns_before
  shift 3
  dns_before=$(answers)
  env "$@" "$SF" plan -c "$config" --detailed-exitcode >"$DIR/plan.txt" 2>&1
  rc=$?
  check_eq "$label: plan exits 1 (an error, not blocked)" 1 "$rc"
  check_or_show "$DIR/plan.txt" "$label: the plan names a configuration error and the cause" \
    grep -qiE "configuration error.*$reason" "$DIR/plan.txt"
  check "$label: the plan does not call it unreachable" not_grep "unreachable" "$DIR/plan.txt"
  check_or_show "$DIR/plan.txt" "$label: the fence is BLOCKED: traffic could not follow" \
    grep -qE "^  1\. maintenance\.on +standby +BLOCKED: .*configuration error.*so traffic could not follow the switch; the serving primary is not fenced" "$DIR/plan.txt"
  env "$@" "$SF" apply -c "$config" --auto-approve >"$DIR/apply.txt" 2>&1
  rc=$?
  check_eq "$label: apply exits 1" 1 "$rc"
  check_or_show "$DIR/apply.txt" "$label: apply names the configuration error" \
    grep -qi "configuration error" "$DIR/apply.txt"
  check_eq "$label: both databases unchanged" "$after_a" "$(dbstate)"
  check "$label: the primary still accepts writes" accepts_write 127.0.0.2
  check_eq "$label: DNS unchanged" "$dns_before" "$(answers)"
}
not_grep() { ! grep -qi "$1" "$2"; }
missing=$DIR/missing-zone.yaml
write_three "$missing" primary missing.test. shop.missing.test.
config_error_before_fence "(e) a zone that does not exist" "$missing" \
  "shop\.missing\.test\. A: zone missing\.test\. does not exist on PowerDNS .*/zones/missing\.test\.: HTTP 404\): create it, or set .create_zone: true. on provider 'dns'"
check "(e) delete zone $OTHER through the API" api_ok DELETE "/zones/$OTHER"
config_error_before_fence "(e) the zone deleted" "$T1" "shop\.other\.test\. A: zone other\.test\. does not exist on PowerDNS"
restore_other() { make_zone "$OTHER" && rrset "$OTHER" "shop.$OTHER" A 60 127.0.0.2; }
check "(e) zone $OTHER restored by hand" restore_other
config_error_before_fence "(e) a wrong API key" "$T1" "HTTP 401" PDNS_API_KEY=not-the-key

section "(f) a CNAME at a switched name blocks before the fence"
api_ok PATCH "/zones/$ZONE" "{\"rrsets\":[
  {\"name\":\"www.$ZONE\",\"type\":\"A\",\"changetype\":\"DELETE\"},
  {\"name\":\"www.$ZONE\",\"type\":\"AAAA\",\"changetype\":\"DELETE\"},
  {\"name\":\"www.$ZONE\",\"type\":\"CNAME\",\"ttl\":60,\"changetype\":\"REPLACE\",
   \"records\":[{\"content\":\"shop.$ZONE\",\"disabled\":false}]}]}" || fail "(f) set the CNAME"
check_eq "(f) www is a CNAME now (by hand)" "shop.$ZONE" "$(ask "www.$ZONE" CNAME)"
blocked_before_fence "(f) a CNAME at www" "$T1" "$(re "www.$ZONE A: www.$ZONE holds a CNAME record, and PowerDNS keeps no A record beside a CNAME")"
"$SF" observe -c "$T1" >"$DIR/observe.txt" 2>&1
check "(f) observe says the record cannot be switched" grep -qF "www.$ZONE A: no stack; cannot switch: www.$ZONE holds a CNAME" "$DIR/observe.txt"
rrset_delete "$ZONE" "www.$ZONE" CNAME
plan_of "$T1"
check_eq "(f) CNAME removed by hand: the switch is planned (exit 2)" 2 $?
apply_of "$T1"
rc=$?
show "$DIR/apply.txt" | grep -E "ok in|failed|blocked|complete|stopped"
check_eq "(f) the switch back runs (apply exits 0)" 0 "$rc"
check_eq "(f) DNS answers the primary for all four" "$on_primary" "$(answers)"
plan_of "$T1"
check_eq "(f) converged" 0 $?
check "(f) the old primary streams from the new one" poll 10 streaming_from 127.0.0.2 127.0.0.1

# The issue's case: the active stack's address is the first value PowerDNS
# returns (it sorts them), which the old observation took for the target.
mixed "(c) primary active:" "$T1" primary 127.0.0.1 standby 127.0.0.2 "$on_primary"

section "(g) the zone deleted in the middle of a switch"
apply_hooked "$T2" 5 api_ok DELETE "/zones/$OTHER"
rc=$?
show "$DIR/apply.txt" | grep -E "ok in|failed|blocked|complete|stopped|error|attempt"
check_eq "(g) apply exits 1" 1 "$rc"
check "(g) apply stops before the traffic step, naming the record and the 404" \
  grep -qE "traffic.switch standby .*shop\.other\.test\. A: PowerDNS .*HTTP 404" "$DIR/apply.txt"
check "(g) the new primary is open (a safe point)" accepts_write 127.0.0.2
check_eq "(g) the old primary is fenced" on "$(maintenance_of 127.0.0.1)"
# The loop's next pass, the zone still missing: the names whose zone exists
# should not stay on the fenced old primary.
apply_of "$T2"
rc=$?
show "$DIR/apply.txt" | grep -E "ok in|failed|blocked|complete|stopped|attempt"
check_eq "(g) next pass, zone still missing: the names in the zone that exists follow the new primary" \
  "shop=127.0.0.2 www=127.0.0.2 www6=2001:db8::2" "$(answers | sed 's/ other=.*//')"
make_zone "$OTHER" || fail "(g) recreate zone $OTHER"
apply_of "$T2"
check_eq "(g) with the zone back, a later pass converges (apply exits 0)" 0 $?
check_eq "(g) DNS answers the standby for all four" "$on_standby" "$(answers)"
plan_of "$T2"
check_eq "(g) converged" 0 $?

section "typos an operator makes, each refused at file:line:col"
typo() { # LABEL SED_EXPR EXPECTED_TEXT
  local f=$DIR/typo.yaml rc
  sed "$2" "$T1" >"$f"
  cmp -s "$f" "$T1" && { fail "$1: the edit did not apply"; return; }
  "$SF" validate "$f" >"$DIR/validate.txt" 2>&1
  rc=$?
  check_eq "$1: validate exits 1" 1 "$rc"
  check_or_show "$DIR/validate.txt" "$1: $3" grep -qE "^$f:[0-9]+:[0-9]+: error: .*$3" "$DIR/validate.txt"
}
typo "record outside its zone" "s/zone: $OTHER, record: shop.$OTHER/zone: $ZONE, record: shop.$OTHER/" \
  "record 'shop\.other\.test\.' is not inside zone 'example\.test\.'"
typo "record without the final dot" "s/record: shop.$OTHER,/record: shop.other.test,/" "fully qualified name ending with '\.'"
typo "record type MX" "s/record_type: \[A, AAAA\]/record_type: [A, MX]/" "got 'MX'"
typo "the standby without its IPv6 address" "s/address: \[$PG2_HOST, \"2001:db8::2\"\]/address: $PG2_HOST/" \
  "stack 'standby' has no address for record www\.example\.test\. AAAA"
typo "an address mistyped (127.0.0.256)" "s/address: \[$PG2_HOST,/address: [127.0.0.256,/" \
  "address '127\.0\.0\.256' is neither an IP address nor a host name"
typo "both stacks with one IPv6 address" "s/\"2001:db8::2\"/\"2001:DB8:0::1\"/" \
  "address '2001:DB8:0::1' is also stack 'primary''s"
typo "an address twice in one stack" "s/address: \[$PG2_HOST,/address: [$PG2_HOST, $PG2_HOST,/" "listed twice in 'address'"
typo "a traffic key misspelt" "s/record: www.$ZONE, record_type/record: www.$ZONE, recordtype/" "unknown key 'recordtype'"

# Two bad files at once: every diagnostic on its own line.
sed "s/record_type: \[A, AAAA\]/record_type: [A, MX]/" "$T1" >"$DIR/bad1.yaml"
sed "s/record: shop.$OTHER,/record: shop.other.test,/" "$T1" >"$DIR/bad2.yaml"
"$SF" validate "$DIR/bad1.yaml" "$DIR/bad2.yaml" >"$DIR/validate.txt" 2>&1
check_eq "validate of two bad files exits 1" 1 $?
check "validate of two bad files: every line starts with its file:line:col" \
  not grep -qvE "^$DIR/bad[12]\.yaml:[0-9]+:[0-9]+: error: " "$DIR/validate.txt"
check_eq "validate of two bad files: one line names bad2.yaml's error on its own" 1 \
  "$(grep -cE "^$DIR/bad2\.yaml:[0-9]+:[0-9]+: error: " "$DIR/validate.txt")"

e2e_finish

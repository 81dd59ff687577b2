#!/usr/bin/env bash
# Issue 11, item 1: one owner per database server, on the real harness.
#
# (a) Two groups (shop, blog) whose stacks name the harness's two servers:
#     `validate` refuses the config, naming both places (file:line:col).
# (b) The same two servers under other names (blog: `localhost` for pg1 and
#     pg2's Unix socket folder; shop: 127.0.0.1 and 127.0.0.2): validate
#     cannot tell, so observe must (system identifier + postmaster start
#     time). observe and plan report both groups blocked; `apply
#     --auto-approve` exits 3 and changes nothing on either server.
# (c) The harness's own config: pg2 is a streaming replica of pg1, so both
#     report one system identifier; they are NOT taken for one server.
#
# Usage: shared_server_e2e.sh STACKFLIP E2E_TOOL
source "$(dirname "$0")/lib.sh"
e2e_start "$@"

# ---------------------------------------------------------------- (a)
# The harness config plus a group `blog` over the same two servers, ams active.
same_names=$DIR/same-names.yaml
{
  cat "$CONFIG"
  cat <<EOF
  blog:
    active: ams
    stacks:
      fra:
        provider: db
        dsn: "host=$PG1_HOST port=$PG_PORT user=$PG_USER dbname=$PG_DB"
        address: $PG1_HOST
      ams:
        provider: db
        dsn: "host=$PG2_HOST port=$PG_PORT user=$PG_USER dbname=postgres"
        address: $PG2_HOST
    traffic: {provider: dns, zone: $ZONE, record: blog.$ZONE, ttl: 60}
EOF
} >"$same_names"
line_of() { grep -n "$2" "$1" | head -n1 | cut -d: -f1; }
shop_primary=$(line_of "$same_names" "dsn: \"host=$PG1_HOST ")
shop_standby=$(line_of "$same_names" "dsn: \"host=$PG2_HOST ")
blog_fra=$(grep -n "dsn: \"host=$PG1_HOST " "$same_names" | sed -n 2p | cut -d: -f1)
blog_ams=$(grep -n "dsn: \"host=$PG2_HOST " "$same_names" | sed -n 2p | cut -d: -f1)
out=$("$SF" validate "$same_names" 2>&1)
rc=$?
echo "$out"
check_eq "(a) validate refuses two groups naming the same servers" 1 "$rc"
check "(a) the error is at blog/fra's dsn and names shop/primary's" \
  grep -qF "$same_names:$blog_fra:14: error: stack 'fra' of group 'blog' names database server postgres://127.0.0.1:$PG_PORT, which stack 'primary' of group 'shop' already names ($same_names:$shop_primary:14)" <<<"$out"
check "(a) the error is at blog/ams's dsn and names shop/standby's" \
  grep -qF "$same_names:$blog_ams:14: error: stack 'ams' of group 'blog' names database server postgres://127.0.0.2:$PG_PORT, which stack 'standby' of group 'shop' already names ($same_names:$shop_standby:14)" <<<"$out"

# ---------------------------------------------------------------- (c)
"$SF" plan -c "$CONFIG" --detailed-exitcode >"$DIR/plan-harness.txt" 2>&1
check_eq "(c) a primary and its replica are two servers: the harness config plans no changes" 0 $?
"$SF" observe -c "$CONFIG" -o json >"$DIR/observe-harness.json" 2>&1
ids=$(python3 -c '
import json, sys
g = json.load(open(sys.argv[1]))["groups"]["shop"]["stacks"]
p, s = g["primary"]["database"], g["standby"]["database"]
print("same-system" if p["system_id"] == s["system_id"] else "different-system",
      "same-start" if p["started_at"] == s["started_at"] else "different-start")' "$DIR/observe-harness.json" 2>&1)
check_eq "(c) observe reads system_id (shared by the replica) and started_at (its own)" \
  "same-system different-start" "$ids"

# ---------------------------------------------------------------- (b)
other_names=$DIR/other-names.yaml
{
  cat "$CONFIG"
  cat <<EOF
  blog:
    active: ams
    stacks:
      fra:
        provider: db
        dsn: "host=localhost port=$PG_PORT user=$PG_USER dbname=$PG_DB"
        address: 192.0.2.10
      ams:
        provider: db
        dsn: "host=$HARNESS_DIR/pg2/sock port=$PG_PORT user=$PG_USER dbname=postgres"
        address: 192.0.2.20
    traffic: {provider: dns, zone: $ZONE, record: blog.$ZONE, ttl: 60}
EOF
} >"$other_names"
"$SF" validate "$other_names" >"$DIR/validate-other.txt" 2>&1
check_eq "(b) names that differ pass validate (only observation can tell)" 0 $?

state() { # recovery and read-only flag of both servers
  echo "pg1 $(sql 127.0.0.1 "SELECT pg_is_in_recovery()") $(maintenance_of 127.0.0.1)" \
       "pg2 $(sql 127.0.0.2 "SELECT pg_is_in_recovery()") $(maintenance_of 127.0.0.2)"
}
before=$(state)
echo "before: $before"
check_eq "(b) the harness starts as pg1 primary, pg2 replica" "pg1 f off pg2 t on" "$before"
dns_before=$(dns_answer)

"$SF" observe -c "$other_names" >"$DIR/observe.txt" 2>&1
cat "$DIR/observe.txt"
blocked_lines=$(grep -c "^  BLOCKED: .*are one PostgreSQL server" "$DIR/observe.txt")
check_eq "(b) observe reports both groups blocked" 2 "$blocked_lines"
check "(b) observe names both stacks on pg1" \
  grep -qF "stack fra of group blog and stack primary of group shop are one PostgreSQL server" "$DIR/observe.txt"
check "(b) observe names both stacks on pg2" \
  grep -qF "stack ams of group blog and stack standby of group shop are one PostgreSQL server" "$DIR/observe.txt"

"$SF" plan -c "$other_names" --detailed-exitcode >"$DIR/plan.txt" 2>&1
rc=$?
cat "$DIR/plan.txt"
check_eq "(b) plan --detailed-exitcode says blocked" 3 "$rc"
check_eq "(b) plan blocks both groups as a whole" 2 "$(grep -c "^  GROUP BLOCKED: .*are one PostgreSQL server" "$DIR/plan.txt")"
check "(b) blog's switch is planned but blocked" grep -q "maintenance.on .*fra *BLOCKED: " "$DIR/plan.txt"

"$SF" apply -c "$other_names" --auto-approve >"$DIR/apply.txt" 2>&1
rc=$?
cat "$DIR/apply.txt"
check_eq "(b) apply exits 3 (blocked by a guard)" 3 "$rc"
check "(b) apply reports shop stopped" grep -q "group shop stopped (blocked): .*one PostgreSQL server" "$DIR/apply.txt"
check "(b) apply reports blog stopped" grep -q "group blog stopped (blocked): .*one PostgreSQL server" "$DIR/apply.txt"
check "(b) apply ran no action" grep -q "0 of [0-9]* actions done" "$DIR/apply.txt"
after=$(state)
echo "after: $after"
check_eq "(b) nothing changed on either server" "$before" "$after"
check_eq "(b) shop's DNS record is unchanged" "$dns_before" "$(dns_answer)"
# A second pass, as a loop would run it: still blocked, still nothing done.
"$SF" apply -c "$other_names" --auto-approve >"$DIR/apply2.txt" 2>&1
check_eq "(b) a second apply is blocked too" 3 $?
check_eq "(b) still nothing changed" "$before" "$(state)"

e2e_finish

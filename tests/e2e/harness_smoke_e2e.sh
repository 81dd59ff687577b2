#!/usr/bin/env bash
# Smoke test of the local harness (scripts/harness.sh): replication, DNS,
# the PowerDNS API and a replica crash/restart all work as the other e2e
# tests and the integration tests assume.
#
# Usage (CTest, from the repo root): bash tests/e2e/harness_smoke_e2e.sh [STACKFLIP_BINARY]
# The binary is not used here. Exit 77 = skipped (servers not installed).
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HARNESS=$REPO/scripts/harness.sh

passed=0 failed=0
ok()   { echo "PASS $*"; passed=$((passed + 1)); }
bad()  { echo "FAIL $*"; failed=$((failed + 1)); }
check() { # NAME CMD...
  local name=$1; shift
  if "$@"; then ok "$name"; else bad "$name"; fi
}

DIR=$(mktemp -d "${TMPDIR:-/tmp}/stackflip-smoke.XXXXXX")
cleanup() { "$HARNESS" stop "$DIR" >/dev/null 2>&1; rm -rf "$DIR"; }
trap cleanup EXIT

t0=$(date +%s.%N)
"$HARNESS" start "$DIR"
rc=$?
t1=$(date +%s.%N)
if ((rc == 77)); then echo "SKIP harness prerequisites missing"; exit 77; fi
if ((rc != 0)); then echo "FAIL harness start (exit $rc)"; echo "0 passed, 1 failed"; exit 1; fi
printf 'harness start took %.2f s\n' "$(echo "$t1 - $t0" | bc -l 2>/dev/null || python3 -c "print($t1-$t0)")"

# shellcheck disable=SC1091
source "$DIR/env"
sql() { # HOST SQL
  PGCONNECT_TIMEOUT=3 "$PG_BIN/psql" -X -qAt -v ON_ERROR_STOP=1 \
    "host=$1 port=$PG_PORT user=$PG_USER dbname=$PG_DB" -c "$2" 2>/dev/null
}
poll() { # SECONDS CMD...  (short polling, no fixed sleeps)
  local deadline=$((SECONDS + $1)); shift
  until "$@"; do ((SECONDS < deadline)) || return 1; sleep 0.05; done
}
sql_is() { [[ $(sql "$1" "$2") == "$3" ]]; }
dns() { dig @127.0.0.1 -p "$PDNS_PORT" "$RECORD" A +short +tries=1 +time=1 2>/dev/null; }
dns_is() { [[ $(dns) == "$1" ]]; }
api_patch() { # ADDRESS
  curl -fsS -m 5 -X PATCH -H "X-API-Key: $PDNS_API_KEY" -H 'Content-Type: application/json' \
    "$PDNS_API_URL/api/v1/servers/localhost/zones/$ZONE" \
    -d "{\"rrsets\":[{\"name\":\"$RECORD\",\"type\":\"A\",\"ttl\":60,\"changetype\":\"REPLACE\",\"records\":[{\"content\":\"$1\",\"disabled\":false}]}]}"
}
streaming() { [[ $(sql "$PG1_HOST" "select count(*) from pg_stat_replication where application_name='standby' and state='streaming'") == 1 ]]; }

for v in HARNESS_DIR PG_BIN PG_PORT PG1_HOST PG2_HOST PG1_DATA PG2_DATA PG_USER PG_DB PDNS_PORT \
         PDNS_API_PORT PDNS_API_URL PDNS_API_KEY ZONE RECORD PG_CONTROL; do
  [[ -n ${!v:-} ]] || bad "env defines $v"
done
check "env file defines all variables" true
check "stackflip.yaml written with the harness ports" \
  grep -q "port=$PG_PORT user=stackflip dbname=app" "$DIR/stackflip.yaml"

check "pg1 ($PG1_HOST:$PG_PORT) is primary" test "$(sql "$PG1_HOST" 'select pg_is_in_recovery()')" = f
check "pg2 ($PG2_HOST:$PG_PORT) is a replica" test "$(sql "$PG2_HOST" 'select pg_is_in_recovery()')" = t
check "pg2 streams from pg1" streaming
check "pg2 receiver connected to 127.0.0.1" \
  test "$(sql "$PG2_HOST" "select sender_host||' '||status from pg_stat_wal_receiver")" = "127.0.0.1 streaming"

sql "$PG1_HOST" "create table smoke(id int primary key, note text); insert into smoke values (1, 'hello')" >/dev/null
check "row inserted on pg1 appears on pg2" poll 10 sql_is "$PG2_HOST" 'select note from smoke where id=1' hello
check "pg2 refuses writes" bash -c "! PGCONNECT_TIMEOUT=3 '$PG_BIN/psql' -X -qAt 'host=$PG2_HOST port=$PG_PORT user=$PG_USER dbname=$PG_DB' -c 'insert into smoke values (2, null)' >/dev/null 2>&1"

check "dig answers 127.0.0.1" dns_is 127.0.0.1
check "API PATCH to 127.0.0.2 accepted" api_patch 127.0.0.2
check "dig answers 127.0.0.2 at once" dns_is 127.0.0.2
check "API PATCH back to 127.0.0.1 accepted" api_patch 127.0.0.1
check "dig answers 127.0.0.1 again" dns_is 127.0.0.1
check "API rejects a wrong key" bash -c \
  "[[ \$(curl -s -o /dev/null -w '%{http_code}' -H 'X-API-Key: wrong' '$PDNS_API_URL/api/v1/servers/localhost') == 401 ]]"

check "kill-pg 2 succeeds" "$HARNESS" kill-pg 2 "$DIR"
check "pg2 is down after kill-pg" bash -c "! '$PG_BIN/pg_isready' -q -h $PG2_HOST -p $PG_PORT -t 2"
check "pg1 still primary after replica crash" test "$(sql "$PG1_HOST" 'select pg_is_in_recovery()')" = f
sql "$PG1_HOST" "insert into smoke values (3, 'while pg2 was down')" >/dev/null
check "start-pg 2 succeeds" "$HARNESS" start-pg 2 "$DIR"
check "pg2 streams again after restart" poll 30 streaming
check "pg2 caught up with the write made while it was down" poll 10 sql_is "$PG2_HOST" 'select count(*) from smoke' 2

check "status prints both clusters" bash -c "'$HARNESS' status '$DIR' | grep -q 'pg2 .*replica'"

echo "$passed passed, $failed failed"
((failed == 0))

#!/usr/bin/env bash
# Smoke test of the local harness (scripts/harness.sh): replication, DNS,
# the PowerDNS API, a replica crash/restart and the 3-member etcd cluster
# (quorum kept with one member down, lost with two, back after restarts; a
# frozen member) all work as the other e2e tests and the integration tests
# assume.
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
not() { ! "$@"; }
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
         PDNS_API_PORT PDNS_API_URL PDNS_API_KEY ZONE RECORD PG_CONTROL \
         ETCD_ENDPOINTS ETCD1_URL ETCD2_URL ETCD3_URL; do
  [[ -n ${!v:-} ]] || bad "env defines $v"
done
check "env file defines all variables" true
# An env without them (an older harness): a closed port, so the etcd checks fail, not the script.
for v in ETCD1_URL ETCD2_URL ETCD3_URL; do [[ -n ${!v:-} ]] || printf -v "$v" %s http://127.0.0.1:1; done
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

# ---------------------------------------------------------------- etcd
# Through the v3 JSON gateway (keys and values base64), as stackflip talks to it.
b64() { printf %s "$1" | base64 -w0; }
etcd_put() { # URL KEY VALUE [MAX_SECONDS]
  curl -fsS -o /dev/null -m "${4:-3}" -X POST "$1/v3/kv/put" \
    -d "{\"key\":\"$(b64 "$2")\",\"value\":\"$(b64 "$3")\"}" 2>/dev/null
}
etcd_get() { # URL KEY -> value, by a linearizable read (needs a quorum)
  curl -fsS -m 3 -X POST "$1/v3/kv/range" -d "{\"key\":\"$(b64 "$2")\"}" 2>/dev/null |
    sed -n 's/.*"value":"\([^"]*\)".*/\1/p' | base64 -d 2>/dev/null
}
etcd_get_is() { [[ $(etcd_get "$1" "$2") == "$3" ]]; }
etcd_member_ids() { # URL -> "name=ID" of the started members, sorted
  curl -fsS -m 3 -X POST "$1/v3/cluster/member/list" -d '{}' 2>/dev/null | python3 -c '
import json, sys
print(" ".join(sorted(m["name"] + "=" + m["ID"] for m in json.load(sys.stdin)["members"] if m.get("name"))))' 2>/dev/null
}
etcd_leaders() { # -> "member_id leader" as each member reports them, one line each
  local u
  for u in "$ETCD1_URL" "$ETCD2_URL" "$ETCD3_URL"; do
    curl -fsS -m 3 -X POST "$u/v3/maintenance/status" -d '{}' 2>/dev/null |
      python3 -c 'import json, sys; j = json.load(sys.stdin); print(j["header"]["member_id"], j["leader"])' 2>/dev/null
  done
}
one_leader() { # all three agree on a leader, and it is exactly one of them
  local out; out=$(etcd_leaders)
  [[ $(wc -l <<<"$out") == 3 ]] || return 1
  [[ $(awk '{print $2}' <<<"$out" | sort -u | wc -l) == 1 ]] || return 1
  [[ $(awk '$1 == $2' <<<"$out" | wc -l) == 1 ]]
}
# A request to URL gets no answer within 1 s (curl exit 28: timed out, not refused).
times_out() { curl -sS -o /dev/null -m 1 "$1/version" 2>/dev/null; [[ $? == 28 ]]; }
refused() { ! curl -fsS -o /dev/null -m 1 "$1/version" 2>/dev/null; }
etcd_procs() { pgrep -f -- "--data-dir $DIR/etcd[123]/data" || true; }
elapsed() { printf '%.2f' "$(python3 -c "print($(date +%s.%N) - $1)")"; }

ids=$(etcd_member_ids "$ETCD1_URL")
check "etcd has 3 started members etcd1..3 ($ids)" \
  bash -c "[[ '$ids' =~ ^etcd1=([0-9]+)\ etcd2=([0-9]+)\ etcd3=([0-9]+)$ ]]"
check "the 3 member IDs are distinct" test "$(tr ' ' '\n' <<<"$ids" | cut -d= -f2 | sort -u | wc -l)" = 3
check "member 3 sees the same membership" test "$(etcd_member_ids "$ETCD3_URL")" = "$ids"
check "the 3 members agree on one leader" one_leader
check "a key written through member 1 ..." etcd_put "$ETCD1_URL" smoke/a one
check "... is read through member 3" etcd_get_is "$ETCD3_URL" smoke/a one

check "kill-etcd 1 succeeds" "$HARNESS" kill-etcd 1 "$DIR"
check "member 1 is down" refused "$ETCD1_URL"
t=$(date +%s.%N)
# If member 1 led, members 2 and 3 first elect a new leader (1-2 s election timeout).
check "2 of 3 members left: a write through member 2 succeeds" poll 15 etcd_put "$ETCD2_URL" smoke/b two
echo "  (write through member 2 accepted $(elapsed "$t") s after kill-etcd 1)"
check "kill-etcd 2 succeeds" "$HARNESS" kill-etcd 2 "$DIR"
t=$(date +%s.%N)
check "1 of 3 members left: a write through member 3 fails (no quorum)" not etcd_put "$ETCD3_URL" smoke/c three 5
check "... within the bounded time" python3 -c "import sys; sys.exit(not $(elapsed "$t") < 6)"
check "... and so does a linearizable read through member 3" not etcd_get_is "$ETCD3_URL" smoke/a one

check "start-etcd 1 succeeds" "$HARNESS" start-etcd 1 "$DIR"
check "start-etcd 2 succeeds" "$HARNESS" start-etcd 2 "$DIR"
check "start-etcd 2 again is a no-op" "$HARNESS" start-etcd 2 "$DIR"
t=$(date +%s.%N)
check "quorum back: a write through member 3 succeeds" poll 15 etcd_put "$ETCD3_URL" smoke/d four
echo "  (write through member 3 accepted $(elapsed "$t") s after start-etcd 1 and 2)"
check "member 1 rejoined with its data: it serves the write made while it was down" \
  poll 10 etcd_get_is "$ETCD1_URL" smoke/b two
check "member 2 serves the write made after the restarts" poll 10 etcd_get_is "$ETCD2_URL" smoke/d four
check "membership unchanged after the restarts (same IDs)" test "$(etcd_member_ids "$ETCD2_URL")" = "$ids"
check "one leader again" poll 10 one_leader

check "freeze-etcd 3 succeeds" "$HARNESS" freeze-etcd 3 "$DIR"
check "a request to frozen member 3 times out (1 s)" times_out "$ETCD3_URL"
check "member 1 serves while member 3 is frozen" poll 15 etcd_put "$ETCD1_URL" smoke/e five
check "status shows member 3 frozen" bash -c "'$HARNESS' status '$DIR' | grep -q '^etcd3 .* frozen'"
check "thaw-etcd 3 succeeds" "$HARNESS" thaw-etcd 3 "$DIR"
check "member 3 serves again, with the write made while it was frozen" poll 15 etcd_get_is "$ETCD3_URL" smoke/e five
check "status shows the 3 members and one leader" \
  bash -c "[[ \$('$HARNESS' status '$DIR' | grep -c '^etcd[123] .*\(leader\|follower\)') == 3 &&
              \$('$HARNESS' status '$DIR' | grep -c '^etcd[123] .*leader') == 1 ]]"

# stop thaws a frozen member before it TERMs it.
"$HARNESS" freeze-etcd 2 "$DIR"
check "3 etcd processes of this harness before stop" test "$(etcd_procs | wc -l)" = 3
t=$(date +%s.%N)
check "stop succeeds (with member 2 frozen)" "$HARNESS" stop "$DIR"
echo "  (stop took $(elapsed "$t") s)"
check "no etcd process of this harness remains after stop" test -z "$(etcd_procs)"
check "stop again succeeds (idempotent)" "$HARNESS" stop "$DIR"

# Without etcd the harness skips (exit 77), as for missing PostgreSQL or PowerDNS.
NODIR=$(mktemp -d "${TMPDIR:-/tmp}/stackflip-smoke-noetcd.XXXXXX")
ETCD_BIN=/nonexistent/etcd "$HARNESS" start "$NODIR" 2>/dev/null
rc=$?
# Had it started anything after all, stop it.
"$HARNESS" stop "$NODIR" >/dev/null 2>&1
rm -rf "$NODIR"
check "start without etcd exits 77 (skip)" test "$rc" = 77

echo "$passed passed, $failed failed"
((failed == 0))

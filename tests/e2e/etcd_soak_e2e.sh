#!/usr/bin/env bash
# Soak with etcd, end to end (issue 13): two instances (fra-1, ams-1) on the
# real harness, passing every 20 ms:
#   - warm-up: a switch to the standby, then WARM passes of each instance;
#   - measured: IDLE more passes of each, a switch back in the middle;
#   - per instance, anonymous memory may grow by at most LIMIT_KB from the
#     end of the warm-up to the end, its descriptors other than sockets and
#     both instances' PostgreSQL sessions must not grow, and its TCP
#     connections to etcd stay within the client pool's bound;
#   - at rest idle passes write nothing to etcd: its revision does not
#     move, but for the group's observation when PostgreSQL itself moved
#     the primary's WAL position (a standby snapshot, logged within 15 s of
#     the switch's last WAL, is 56 bytes; observations are written only when
#     they change); and the keys under the prefix stay as many as after the
#     warm-up plus the switch's journal.
# SOAK_WARM_PASSES, SOAK_IDLE_PASSES, SOAK_LIMIT_KB override (a longer soak:
# SOAK_IDLE_PASSES=40000 is about half an hour).
# Usage (CTest): bash tests/e2e/etcd_soak_e2e.sh STACKFLIP E2E_TOOL
source "$(dirname "$0")/lib.sh"
skip_under_asan "${1:-}"
WARM=${SOAK_WARM_PASSES:-200}
IDLE=${SOAK_IDLE_PASSES:-800}
LIMIT_KB=${SOAK_LIMIT_KB:-4096}
e2e_start "$@"
source "$(dirname "$0")/etcd_lib.sh"
etcd_setup

ETCD_PORTS=$(for u in "$ETCD1_URL" "$ETCD2_URL" "$ETCD3_URL"; do echo "${u##*:}"; done | paste -sd'|')
pid_of() { echo "${INST_PID[$1]}"; }
rss_kb() { awk '/^RssAnon:/ {print $2}' "/proc/$(pid_of "$1")/status"; }
# Descriptors other than sockets and Git pack files (see soak_e2e.sh).
fds() {
  find "/proc/$(pid_of "$1")/fd" -mindepth 1 -printf '%l\n' 2>/dev/null | grep -v '^socket:' |
    grep -vc '\.pack$'
}
etcd_conns() { # established TCP connections of NAME to an etcd member
  ss -Htnp state established 2>/dev/null | grep "pid=$(pid_of "$1")," |
    awk '{print $4}' | grep -cE ":($ETCD_PORTS)\$"
}
etcd_revision() {
  curl -fsS -m 2 -X POST "$ETCD1_URL/v3/kv/range" -d '{"key":"AA==","limit":1}' |
    python3 -c "import json,sys; print(json.load(sys.stdin)['header']['revision'])"
}
etcd_keys() { # under /stackflip/
  curl -fsS -m 2 -X POST "$ETCD1_URL/v3/kv/range" \
    -d '{"key":"L3N0YWNrZmxpcC8=","range_end":"L3N0YWNrZmxpcDA=","count_only":true}' |
    python3 -c "import json,sys; print(json.load(sys.stdin).get('count', 0))"
}
# The most memory and the least descriptors/connections/sessions of 10
# samples 50 ms apart (a pass in progress holds transient ones).
settled() { # NAME → "RSS_KB FDS ETCD_CONNS"
  local r f e rmax=0 fmin=99999 emin=99999
  for _ in $(seq 10); do
    r=$(rss_kb "$1"); f=$(fds "$1"); e=$(etcd_conns "$1")
    ((r > rmax)) && rmax=$r
    ((f < fmin)) && fmin=$f
    ((e < emin)) && emin=$e
    sleep 0.05
  done
  echo "$rmax $fmin $emin"
}
sessions_settled() {
  local s smin=99999
  for _ in $(seq 10); do s=$(pg_sessions); ((s < smin)) && smin=$s; sleep 0.05; done
  echo "$smin"
}
both_converged() { converged_on fra-1 "$1" && converged_on ams-1 "$1"; }
both_passed() { passes_at_least fra-1 "$1" && passes_at_least ams-1 "$1"; }

C1=$(commit "$DIR/fra-active.yaml" "primary (fra) active")
INST_INTERVAL=20ms start_instance fra-1 fra "$ETCD_ENDPOINTS"
INST_INTERVAL=20ms start_instance ams-1 ams "$ETCD_ENDPOINTS" 
check "both converge on the first commit" poll 60 both_converged "$C1"

echo "--- warm-up: a switch to the standby, then $WARM passes each"
C2=$(commit "$DIR/ams-active.yaml" "fail over to standby (ams)")
check "warm-up switch: both converge" poll 60 both_converged "$C2"
check_eq "warm-up: DNS answers the standby" 127.0.0.2 "$(dns_answer)"
check "warm-up: $WARM passes each" poll 120 both_passed "$WARM"
declare -A RSS1 FD1 EC1 RSS2 FD2 EC2 N1 N2
for i in fra-1 ams-1; do
  N1[$i]=$(passes $i)
  read -r RSS1[$i] FD1[$i] EC1[$i] < <(settled $i)
  echo "$i after warm-up: RssAnon ${RSS1[$i]} kB, ${FD1[$i]} fds, ${EC1[$i]} etcd connections after ${N1[$i]} passes"
done
PG1=$(sessions_settled)
REV1=$(etcd_revision)
LSN1=$(sql 127.0.0.2 "SELECT pg_current_wal_lsn()")
KEYS1=$(etcd_keys)
echo "after warm-up: $PG1 PostgreSQL sessions; etcd revision $REV1, $KEYS1 keys under /stackflip/"

echo "--- at rest: $((IDLE / 2)) passes each, etcd's revision must not move"
T0=$SECONDS
check "at rest: $((IDLE / 2)) more passes each" poll 1800 both_passed $((${N1[fra-1]} + IDLE / 2))
REV_REST=$(etcd_revision)
LSN_REST=$(sql 127.0.0.2 "SELECT pg_current_wal_lsn()")
# Keys written at rest, and how many of them are not the observation.
written_at_rest() {
  curl -fsS -m 2 -X POST "$ETCD1_URL/v3/kv/range" -d '{"key":"L3N0YWNrZmxpcC8=","range_end":"L3N0YWNrZmxpcDA=","keys_only":true}' |
    python3 -c "
import base64, json, sys
for kv in json.load(sys.stdin).get('kvs', []):
    if int(kv.get('mod_revision', 0)) > $REV1: print(base64.b64decode(kv['key']).decode(errors='replace'))"
}
WRITTEN=$(written_at_rest)
echo "at rest: etcd revision $REV1 -> $REV_REST; the primary's WAL $LSN1 -> $LSN_REST; written: ${WRITTEN:-nothing}"
rest_ok() {
  [[ $REV1 == "$REV_REST" ]] && return 0
  # Only the observation, only because the WAL position moved, and no more
  # writes than a few such moves (a deleted key would move the revision
  # without being listed: the key count is checked below).
  [[ $WRITTEN == /stackflip/observed/shop && $LSN1 != "$LSN_REST" ]] && ((REV_REST - REV1 <= 3))
}
check "at rest: nothing written to etcd but the observation, when PostgreSQL's own WAL moved" rest_ok
if ! rest_ok; then # what was written (a deleted key shows as gone)
  curl -fsS -m 2 -X POST "$ETCD1_URL/v3/kv/range" -d '{"key":"L3N0YWNrZmxpcC8=","range_end":"L3N0YWNrZmxpcDA="}' |
    python3 -c "
import base64, json, sys
for kv in json.load(sys.stdin).get('kvs', []):
    if int(kv.get('mod_revision', 0)) > $REV1:
        print('  written at rest:', base64.b64decode(kv['key']).decode(errors='replace'),
              'revision', kv['mod_revision'], 'lease', kv.get('lease', '0'))
        print('    now:', base64.b64decode(kv.get('value', '')).decode(errors='replace')[:1500])"
  curl -fsS -m 2 -X POST "$ETCD1_URL/v3/kv/range" -d "{\"key\":\"L3N0YWNrZmxpcC8=\",\"range_end\":\"L3N0YWNrZmxpcDA=\",\"revision\":$REV1}" |
    python3 -c "
import base64, json, sys
for kv in json.load(sys.stdin).get('kvs', []):
    k = base64.b64decode(kv['key']).decode(errors='replace')
    if k.startswith('/stackflip/observed/'):
        print('    before (' + k + '):', base64.b64decode(kv.get('value', '')).decode(errors='replace')[:1500])"
  for i in fra-1 ams-1; do echo "--- $i: its last lines but idle passes"; grep -v "pass: no-changes" "$DIR/$i.log" | tail -n 15 | cut -c1-200; done
fi
echo "at rest: $(( $(passes fra-1) - ${N1[fra-1]} )) + $(( $(passes ams-1) - ${N1[ams-1]} )) passes in $((SECONDS - T0)) s"

echo "--- a switch back, then the other half"
C3=$(commit "$DIR/fra-active.yaml" "back to primary (fra)")
check "measured switch: both converge" poll 60 both_converged "$C3"
check_eq "measured: DNS answers the primary" 127.0.0.1 "$(dns_answer)"
M=$(passes fra-1)
check "measured: second half" poll 1800 both_passed $((M + IDLE / 2))
for i in fra-1 ams-1; do
  N2[$i]=$(passes $i)
  read -r RSS2[$i] FD2[$i] EC2[$i] < <(settled $i)
  echo "$i end: RssAnon ${RSS2[$i]} kB, ${FD2[$i]} fds, ${EC2[$i]} etcd connections after ${N2[$i]} passes"
  check "$i: still alive" kill -0 "$(pid_of $i)"
  GROW=$((${RSS2[$i]} - ${RSS1[$i]}))
  echo "$i: RssAnon grew by $GROW kB over $((${N2[$i]} - ${N1[$i]})) passes (limit $LIMIT_KB kB)"
  check "$i: RssAnon grew by at most $LIMIT_KB kB ($GROW)" test "$GROW" -le "$LIMIT_KB"
  check "$i: no more descriptors than after the warm-up (${FD1[$i]} -> ${FD2[$i]})" test "${FD2[$i]}" -le "${FD1[$i]}"
  # Each call takes a client from a pool that keeps up to 8 idle, each with
  # its kept-alive connection; which ones a burst of calls used is chance.
  check "$i: at most 10 etcd connections (pool of 8, the watch, a keep-alive): ${EC1[$i]} -> ${EC2[$i]}" test "${EC2[$i]}" -le 10
  check_eq "$i: no state store error" 0 "$(metric $i stackflip_state_store_errors_total)"
done
PG2=$(sessions_settled)
KEYS2=$(etcd_keys)
check "PostgreSQL sessions of both instances did not grow ($PG1 -> $PG2)" test "$PG2" -le "$PG1"
# The switch back journals 7 actions (start and end in one key each).
check "etcd keys grew by the switch's journal only ($KEYS1 -> $KEYS2)" test "$KEYS2" -le $((KEYS1 + 7))
e2e_finish

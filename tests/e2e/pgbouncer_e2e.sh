#!/usr/bin/env bash
# End to end through PgBouncer (issue 15): the real stackflip binary, the
# harness's PostgreSQL 15 pair, PowerDNS and PgBouncer 1.18 (transaction
# pooling). The group's traffic is the DNS record and the PgBouncer entry.
#   (a) steady state: nothing to do; observe reports the entry at pg1;
#   (b) a planned switch to the standby and (c) back, while a client writes
#       one row per transaction through PgBouncer over one kept connection:
#       the plan pauses the database before the fence and resumes it after
#       the switch; the client sees no error, loses no acknowledged row, and
#       its longest wait is printed;
#   (d) apply killed (SIGKILL) right after the pause step: PgBouncer holds
#       the clients; the next apply resumes and converges, the client again
#       without an error;
#   (e) the databases file changed by hand (and reloaded, and not): observed
#       and corrected;
#   (f) a pause that cannot finish (a transaction held open longer than
#       pause_timeout_ms): apply fails saying why, PgBouncer is resumed, the
#       old primary serves on.
# Usage (CTest): bash tests/e2e/pgbouncer_e2e.sh STACKFLIP E2E_TOOL
export HARNESS_PGBOUNCER=1
source "$(dirname "$0")/lib.sh"
e2e_start "$@"
[[ -n ${PGB_PORT:-} ]] || { echo "SKIP: the harness started no PgBouncer"; exit 77; }
export PGB_ADMIN_PASSWORD

# The harness config with the PgBouncer provider and a second traffic address.
pgb_config() { # IN OUT
  sed -e "s|^  dns: {type: powerdns, \(.*\)}$|&\n  pgb: {type: pgbouncer, admin_dsn: \"$PGB_ADMIN_DSN\", password: \"\${env:PGB_ADMIN_PASSWORD}\", databases_file: \"$PGB_DATABASES_FILE\", pause_timeout_ms: 3000}|" \
    -e "s|^    traffic: \(.*\)$|    traffic:\n      - \1\n      - {provider: pgb, database: $PGB_DATABASE}|" "$1" >"$2"
}
pgb_config "$CONFIG" "$DIR/pgb-primary.yaml"
pgb_config "$DIR/standby-active.yaml" "$DIR/pgb-standby.yaml"
P_CONFIG=$DIR/pgb-primary.yaml S_CONFIG=$DIR/pgb-standby.yaml
"$SF" validate "$P_CONFIG" "$S_CONFIG" >"$DIR/validate.txt" 2>&1
check_eq "the PgBouncer configs validate" 0 $?
grep -q "provider: pgb" "$P_CONFIG" || { cat "$DIR/validate.txt"; echo "0 passed, 1 failed"; exit 1; }

admin() { PGCONNECT_TIMEOUT=3 PGPASSWORD=$PGB_ADMIN_PASSWORD "$PG_BIN/psql" -X -qAt "$PGB_ADMIN_DSN" -c "$1" 2>&1; }
# "host:port paused disabled" of the entry, as PgBouncer has it loaded.
entry() { admin "SHOW DATABASES" | awk -F'|' -v db="$PGB_DATABASE" '$1 == db {print $2 ":" $3 " " $(NF-1) " " $NF}'; }
client_dsn="host=127.0.0.1 port=$PGB_PORT user=$PG_USER dbname=$PGB_DATABASE"

# The client: Python over libpq (ctypes), one row per transaction into
# writes(id, host) over one kept connection, reconnecting when it is lost;
# `host` is the server that took the row.
# Lines: "ack ID T" once COMMIT is acknowledged; "err ID T MESSAGE" for a
# failed attempt (retried with the same id; "dup ID T" when it had committed).
APP=$DIR/pgb_client.py
cp "$E2E_REPO/tests/e2e/libpq.py" "$DIR/"  # imported by the client, from its folder
cat >"$APP" <<'PY'
import os, sys, time
from libpq import Conn, PgError

dsn, out, stop, i = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
c = None
with open(out, "a") as f:
    while not os.path.exists(stop):
        try:
            if c is None:
                c = Conn(dsn + " connect_timeout=5 application_name=pgb-client")
            c.q("BEGIN")
            c.q("INSERT INTO writes(id, host) VALUES (%d, host(inet_server_addr()))" % i)
            if c.q("COMMIT")[0] != "COMMIT":
                raise PgError("COMMIT not acknowledged")
            f.write("ack %d %.6f\n" % (i, time.time())); f.flush()
            i += 1
            time.sleep(0.005)
        except PgError as e:
            if e.sqlstate == "23505":
                f.write("dup %d %.6f\n" % (i, time.time())); f.flush()
                i += 1
            else:
                f.write("err %d %.6f %s\n" % (i, time.time(), " ".join(str(e).split())[:200])); f.flush()
            if c is not None:
                if not c.ok():
                    c.close(); c = None
                else:
                    try:
                        c.q("ROLLBACK")
                    except PgError:
                        c.close(); c = None
            time.sleep(0.02)
if c is not None:
    c.close()
PY

CLIENT_FIRST=0
start_client() {
  rm -f "$DIR/client.stop"
  CLIENT_FIRST=$((CLIENT_FIRST + 10000000))
  : >"$DIR/client.out"
  python3 "$APP" "$client_dsn" "$DIR/client.out" "$DIR/client.stop" "$CLIENT_FIRST" &
  CLIENT=$!
  E2E_PIDS="$CLIENT"
  poll 10 grep -q '^ack' "$DIR/client.out"
}
stop_client() {
  touch "$DIR/client.stop"
  wait "$CLIENT"
  E2E_PIDS=
}
client_errors() { grep -c '^err' "$DIR/client.out"; }
# The longest time between two acknowledged commits, in ms.
longest_wait() { awk '$1 == "ack" {if (t) {g = ($3 - t) * 1000; if (g > m) m = g} t = $3} END {printf "%.0f", m}' "$DIR/client.out"; }
# Every acknowledged id is on HOST (the primary now).
none_lost() { # HOST
  local acked have
  acked=$(awk '$1 == "ack" {print $2}' "$DIR/client.out" | sort -u)
  have=$(sql "$1" "SELECT id FROM writes WHERE id >= $CLIENT_FIRST" | sort -u)
  local missing; missing=$(comm -23 <(echo "$acked") <(echo "$have") | wc -l)
  echo "  $(echo "$acked" | wc -l) acknowledged, $missing missing on $1"
  ((missing == 0))
}

echo "--- (a) steady state"
"$SF" plan -c "$P_CONFIG" --detailed-exitcode >"$DIR/plan.txt" 2>&1
check_eq "steady: plan exits 0" 0 $?
"$SF" observe -c "$P_CONFIG" -o json >"$DIR/observed.json" 2>&1
check "steady: observe reports the entry not paused" grep -Eq '"paused": ?false' "$DIR/observed.json"
check_eq "steady: PgBouncer forwards to pg1" "127.0.0.1:$PG_PORT 0 0" "$(entry)"
check_eq "steady: a client through PgBouncer reaches pg1" 127.0.0.1 \
  "$(PGCONNECT_TIMEOUT=3 "$PG_BIN/psql" -X -qAt "$client_dsn" -c "SELECT inet_server_addr()" 2>&1)"

switch_through_pgbouncer() { # LABEL CONFIG NEW_HOST OLD_HOST
  local label=$1 config=$2 new=$3 old=$4
  echo "--- $label"
  start_client
  sleep 0.5
  "$SF" plan -c "$config" -o json --detailed-exitcode >"$DIR/plan.json" 2>&1
  check_eq "$label: plan exits 2 (changes)" 2 $?
  check "$label: the plan pauses PgBouncer" grep -q '"kind": "traffic.pause"' "$DIR/plan.json"
  check "$label: the plan resumes PgBouncer" grep -q '"kind": "traffic.resume"' "$DIR/plan.json"
  check "$label: the pause comes before the fence" python3 - "$DIR/plan.json" <<'PY'
import json, sys
kinds = [a["kind"] for a in json.load(open(sys.argv[1]))["actions"]]
sys.exit(0 if kinds.index("traffic.pause") < kinds.index("maintenance.on")
         < kinds.index("traffic.switch") < kinds.index("traffic.resume") else 1)
PY
  "$SF" apply -c "$config" --auto-approve >"$DIR/apply.txt" 2>&1
  check_eq "$label: apply exits 0" 0 $?
  sleep 0.5
  stop_client
  echo "  longest wait between acknowledged commits: $(longest_wait) ms"
  check_eq "$label: the client saw no error" 0 "$(client_errors)"
  check "$label: no acknowledged row lost" none_lost "$new"
  check_eq "$label: rows went through both servers" "$old $new" \
    "$(sql "$new" "SELECT string_agg(host, ' ' ORDER BY min) FROM (SELECT host, min(id) FROM writes WHERE id >= $CLIENT_FIRST GROUP BY host) s")"
  check_eq "$label: PgBouncer forwards to the new primary, not paused" "$new:$PG_PORT 0 0" "$(entry)"
  check_eq "$label: DNS answers the new address" "$new" "$(dns_answer)"
  check "$label: old primary streams from the new one" poll 10 streaming_from "$old" "$new"
  "$SF" plan -c "$config" --detailed-exitcode >/dev/null 2>&1
  check_eq "$label: converged (plan exits 0)" 0 $?
}
switch_through_pgbouncer "(b) planned switch to standby" "$S_CONFIG" 127.0.0.2 127.0.0.1
switch_through_pgbouncer "(c) switch back to primary" "$P_CONFIG" 127.0.0.1 127.0.0.2

echo "--- (d) apply killed while PgBouncer is paused"
# Reads apply's progress lines and SIGKILLs it the moment the pause step is ok.
kill_after_pause() {
  local line pid=
  while IFS= read -r line; do
    [[ -z $pid ]] && read -r pid <"$DIR/apply.pid"
    [[ $line == *traffic.pause*" ok in "* ]] && kill -9 "$pid" 2>/dev/null
    echo "$line" >>"$DIR/apply-killed.txt"
  done
}
start_client
sleep 0.3
: >"$DIR/apply-killed.txt"
"$SF" apply -c "$S_CONFIG" --auto-approve > >(kill_after_pause) 2>&1 &
apply_pid=$!
echo "$apply_pid" >"$DIR/apply.pid"
wait "$apply_pid" 2>/dev/null
killed_rc=$?
sleep 0.1
check_eq "killed: apply died of SIGKILL" 137 "$killed_rc"
check "killed: it had paused PgBouncer" grep -q "traffic.pause.* ok in " "$DIR/apply-killed.txt"
check_eq "killed: PgBouncer holds the clients" "127.0.0.1:$PG_PORT 1 0" "$(entry)"
"$SF" plan -c "$S_CONFIG" -o json >"$DIR/plan-after-kill.json" 2>&1
check "killed: the next plan resumes PgBouncer" grep -q '"kind": "traffic.resume"' "$DIR/plan-after-kill.json"
"$SF" apply -c "$S_CONFIG" --auto-approve >"$DIR/apply-rerun.txt" 2>&1
check_eq "killed: the next apply exits 0" 0 $?
"$SF" plan -c "$S_CONFIG" --detailed-exitcode >/dev/null 2>&1
check_eq "killed: converged" 0 $?
sleep 0.3
stop_client
echo "  longest wait between acknowledged commits: $(longest_wait) ms"
check_eq "killed: the client saw no error" 0 "$(client_errors)"
check "killed: no acknowledged row lost" none_lost 127.0.0.2
check_eq "killed: PgBouncer forwards to the standby, not paused" "127.0.0.2:$PG_PORT 0 0" "$(entry)"

echo "--- (e) the databases file changed by hand"
printf '[databases]\n%s = host=127.0.0.1 port=%s dbname=%s\n' "$PGB_DATABASE" "$PG_PORT" "$PG_DB" >"$PGB_DATABASES_FILE"
"$SF" plan -c "$S_CONFIG" -o json --detailed-exitcode >"$DIR/plan-edit.json" 2>&1
check_eq "hand edit, not reloaded: plan exits 2" 2 $?
check "hand edit, not reloaded: plan switches the entry" grep -q '"kind": "traffic.switch"' "$DIR/plan-edit.json"
admin RELOAD >/dev/null
check_eq "hand edit, reloaded: PgBouncer forwards to the fenced pg1" "127.0.0.1:$PG_PORT 0 0" "$(entry)"
"$SF" observe -c "$S_CONFIG" >"$DIR/observe-edit.txt" 2>&1
check "hand edit, reloaded: observe shows it" grep -q "127.0.0.1:$PG_PORT" "$DIR/observe-edit.txt"
"$SF" apply -c "$S_CONFIG" --auto-approve >"$DIR/apply-edit.txt" 2>&1
check_eq "hand edit: apply exits 0" 0 $?
check_eq "hand edit: corrected" "127.0.0.2:$PG_PORT 0 0" "$(entry)"
check "hand edit: the file is stackflip's again" grep -q "^; Written by stackflip" "$PGB_DATABASES_FILE"
"$SF" plan -c "$S_CONFIG" --detailed-exitcode >/dev/null 2>&1
check_eq "hand edit: converged" 0 $?

echo "--- (f) a pause that cannot finish"
# A transaction held open through PgBouncer for longer than pause_timeout_ms.
( PGCONNECT_TIMEOUT=3 "$PG_BIN/psql" -X -qAt "$client_dsn" -c "BEGIN" -c "SELECT pg_sleep(8)" -c "COMMIT" \
  >"$DIR/long-tx.out" 2>&1 ) &
long_tx=$!
# shellcheck disable=SC2034 # read by e2e_cleanup (lib.sh)
E2E_PIDS="$long_tx"  # killed by e2e_cleanup on an early exit
# Until PgBouncer has given it a server connection (SHOW POOLS sv_active).
one_busy() {
  [[ $(PGCONNECT_TIMEOUT=3 PGPASSWORD=$PGB_ADMIN_PASSWORD "$PG_BIN/psql" -X -qA "$PGB_ADMIN_DSN" -c "SHOW POOLS" |
    awk -F'|' -v db="$PGB_DATABASE" 'NR == 1 {for (i = 1; i <= NF; i++) if ($i == "sv_active") c = i} $1 == db {print $c}') == 1 ]]
}
poll 5 one_busy
"$SF" apply -c "$P_CONFIG" --auto-approve >"$DIR/apply-stuck.txt" 2>&1
stuck_rc=$?
check "stuck pause: apply fails" test "$stuck_rc" -ne 0
check "stuck pause: it says a transaction is still running" grep -q "a transaction still running" "$DIR/apply-stuck.txt"
check_eq "stuck pause: PgBouncer is resumed" "127.0.0.2:$PG_PORT 0 0" "$(entry)"
check "stuck pause: the serving primary was not fenced" not_in_recovery 127.0.0.2
check_eq "stuck pause: and takes writes" off "$(maintenance_of 127.0.0.2)"
wait "$long_tx"
check "stuck pause: the long transaction committed" not grep -q ERROR "$DIR/long-tx.out"
"$SF" apply -c "$P_CONFIG" --auto-approve >"$DIR/apply-after-stuck.txt" 2>&1
check_eq "stuck pause: once it ended, the switch goes through" 0 $?
check_eq "stuck pause: PgBouncer forwards to pg1" "127.0.0.1:$PG_PORT 0 0" "$(entry)"

e2e_finish

#!/usr/bin/env bash
# Issue 17: bootstrap a standby. The harness's third cluster (127.0.0.3) is
# made again with plain initdb: an unrelated cluster with a table of its
# own, another system identifier, so it can never stream from primary.
#   - without `bootstrap:` the plan and apply leave it alone, blocked, with
#     an error that says what to set; its own table is untouched;
#   - with `bootstrap: basebackup` the plan shows a destructive
#     replication.bootstrap step naming what it removes (its databases and
#     their sizes); apply is killed -9 during the base backup (slowed down
#     with pg_basebackup's --max-rate through the host's command_env), and
#     a re-run converges: third streams from primary with primary's data,
#     its old data is removed, nothing of primary's is lost while a writer
#     keeps writing (0 acknowledged rows lost);
#   - then a planned switch to third works.
# Usage (CTest): bash tests/e2e/bootstrap_e2e.sh STACKFLIP E2E_TOOL
source "$(dirname "$0")/lib.sh"
export HARNESS_STACKS=3
e2e_start "$@"
A=127.0.0.1 C=127.0.0.3
as_pg() { runuser -u postgres -- "$@"; }

echo "--- third made again with initdb: an unrelated cluster"
check "third streams from primary (harness)" poll 10 streaming_from "$C" "$A"
as_pg "$PG_BIN/pg_ctl" -D "$PG3_DATA" -m fast -w stop >/dev/null
as_pg cp -p "$PG3_DATA/harness.conf" "$DIR/pg3/harness.conf.keep"
as_pg rm -rf "$PG3_DATA"
as_pg "$PG_BIN/initdb" -D "$PG3_DATA" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 \
  --no-sync >"$DIR/pg3/log/initdb2.log" 2>&1
check_eq "third: initdb of an unrelated cluster" 0 $?
as_pg cp -p "$DIR/pg3/harness.conf.keep" "$PG3_DATA/harness.conf"
echo "include 'harness.conf'" | as_pg tee -a "$PG3_DATA/postgresql.conf" >/dev/null
as_pg cp "$PG1_DATA/pg_hba.conf" "$PG3_DATA/pg_hba.conf"
as_pg "$PG_BIN/pg_ctl" -D "$PG3_DATA" -l "$DIR/pg3/log/postgresql.log" -w start >/dev/null
check_eq "third: the new cluster starts" 0 $?
psql3() { PGCONNECT_TIMEOUT=3 "$PG_BIN/psql" -X -qAt -v ON_ERROR_STOP=1 -h "$C" -p "$PG_PORT" -U postgres -d "$1" -c "$2" 2>&1; }
psql3 postgres "CREATE ROLE $PG_USER LOGIN SUPERUSER" >/dev/null
psql3 postgres "CREATE DATABASE $PG_DB OWNER $PG_USER" >/dev/null
psql3 postgres "CREATE DATABASE legacy" >/dev/null
psql3 legacy "CREATE TABLE mine AS SELECT g AS id FROM generate_series(1, 50000) g" >/dev/null
check_eq "third: its own table" 50000 "$(psql3 legacy "SELECT count(*) FROM mine")"
sysid() { sql "$1" "SELECT system_identifier FROM pg_control_system()"; }
check "third: another system identifier" test "$(sysid "$C")" != "$(sysid "$A")"

# Primary holds some data of the group's, so the base backup takes a while
# at a low rate: 16 MiB of rows.
sql "$A" "CREATE TABLE bulk AS SELECT g AS id, repeat('x', 200) AS pad FROM generate_series(1, 60000) g" >/dev/null

echo "--- without bootstrap: left alone, saying what to set"
"$SF" plan -c "$CONFIG" --detailed-exitcode >"$DIR/plan-off.txt" 2>&1
check_eq "without bootstrap: plan exits 3 (blocked)" 3 $?
check "without bootstrap: the plan says what to set" \
  grep -q 'set `bootstrap: basebackup` (and `data_directory:`) on stack third' "$DIR/plan-off.txt"
"$SF" apply -c "$CONFIG" --auto-approve >"$DIR/apply-off.txt" 2>&1
check_eq "without bootstrap: apply exits 3 (blocked)" 3 $?
check "without bootstrap: apply says what to set" grep -q 'bootstrap: basebackup' "$DIR/apply-off.txt"
check_eq "without bootstrap: third's own table untouched" 50000 "$(psql3 legacy "SELECT count(*) FROM mine")"
check "without bootstrap: third is not in recovery" not_in_recovery "$C"

echo "--- with bootstrap: the plan shows the destructive step"
BOOT=$DIR/bootstrap.yaml
awk -v data="$PG3_DATA" '{print} /^      third:/{t=1} t && /control_command/ {
  print "        bootstrap: basebackup"; print "        data_directory: \"" data "\""; t=0}' \
  "$CONFIG" >"$BOOT"
"$SF" validate "$BOOT" >/dev/null
check_eq "with bootstrap: the config validates" 0 $?
"$SF" plan -c "$BOOT" -o json >"$DIR/plan-boot.json"
check "with bootstrap: a destructive replication.bootstrap of third that names legacy and its size" \
  python3 -c '
import json, re, sys
a = json.load(open(sys.argv[1]))["actions"]
b = [x for x in a if x["kind"] == "replication.bootstrap"]
ok = len(b) == 1 and b[0]["stack"] == "third" and b[0]["source"] == "primary" and b[0].get("destructive") is True \
  and re.search(r"legacy \([0-9.]+ MiB\)", b[0]["removes"]) and b[0]["status"] == "pending"
print(b[0]["removes"] if b else "no bootstrap step")
sys.exit(0 if ok else 1)' "$DIR/plan-boot.json"
"$SF" plan -c "$BOOT" >"$DIR/plan-boot.txt"
check "with bootstrap: the text plan says DESTRUCTIVE" grep -q 'DESTRUCTIVE' "$DIR/plan-boot.txt"

echo "--- apply killed -9 during the base backup, with a writer"
start_app
# The host lets the control command see a rate limit for pg_basebackup.
echo "command_env: [PG_CONTROL_MAX_RATE]" >>"$STACKFLIP_HOST_CONFIG"
export PG_CONTROL_MAX_RATE=2M
"$SF" apply -c "$BOOT" --auto-approve >"$DIR/apply-killed.txt" 2>&1 &
APPLY=$!
copying() { [[ -d $PG3_DATA.stackflip-new/base ]]; }
check "killed: the base backup is under way" poll 60 copying
kill -9 "$APPLY"
wait "$APPLY" 2>/dev/null
check_eq "killed: the marker says copy" "phase=copy" "$(cat "$PG3_DATA.stackflip-bootstrap" 2>/dev/null)"
check "killed: the old data is aside" test -f "$PG3_DATA.stackflip-old/PG_VERSION"
check "killed: the data directory is gone (moved aside)" test ! -e "$PG3_DATA"
"$SF" plan -c "$BOOT" >"$DIR/plan-resume.txt" 2>&1
check "killed: the next plan resumes the bootstrap" grep -q 'resume the interrupted bootstrap of third (phase copy' "$DIR/plan-resume.txt"
"$SF" apply -c "$BOOT" --auto-approve >"$DIR/apply-resume.txt" 2>&1
rc=$?
check_eq "re-run: apply exits 0" 0 "$rc"
((rc == 0)) || cat "$DIR/apply-resume.txt"
# It waited for the killed apply's base backup (the lock), not raced it.
check "re-run: the bootstrap needed no second attempt" not grep -q 'attempt 1 failed' "$DIR/apply-resume.txt"
check "re-run: third is in recovery" in_recovery "$C"
check "re-run: third streams from primary" poll 20 streaming_from "$C" "$A"
check_eq "re-run: third has primary's system identifier" "$(sysid "$A")" "$(sysid "$C")"
check_eq "re-run: third has primary's data" "$(sql "$A" "SELECT count(*) FROM bulk")" "$(sql "$C" "SELECT count(*) FROM bulk")"
check "re-run: third's old databases are gone" test -z "$(psql3 postgres "SELECT 1 FROM pg_database WHERE datname = 'legacy'")"
check "re-run: the old data directory was removed" test ! -e "$PG3_DATA.stackflip-old"
check "re-run: the marker is gone" test ! -e "$PG3_DATA.stackflip-bootstrap"
check "re-run: third refuses writes (fenced)" refuses_writes "$C"
"$SF" plan -c "$BOOT" --detailed-exitcode >/dev/null
check_eq "re-run: converged (plan exits 0)" 0 $?
"$SF" history -n 20 >"$DIR/history.txt"
check "re-run: the journal has the bootstrap" grep -q 'replication.bootstrap' "$DIR/history.txt"

echo "--- planned switch to third"
sed 's/^    active: primary$/    active: third/' "$BOOT" >"$DIR/third-active.yaml"
"$SF" apply -c "$DIR/third-active.yaml" --auto-approve >"$DIR/apply-switch.txt" 2>&1
check_eq "switch: apply exits 0" 0 $?
check_eq "switch: DNS answers third" "$C" "$(dns_answer)"
check "switch: third is not in recovery" not_in_recovery "$C"
sleep 0.5  # the writer writes through the new primary
stop_app
check_eq "switch: monitor never saw two writable databases" 0 "$MONITOR_RC"
"$TOOL" check "$C" "$PG_PORT" "$DIR/acked" >"$DIR/check_c.txt"
check "switch: no acknowledged row lost on third" test $? -eq 0
cat "$DIR/check_c.txt"
check "switch: rows were written through third" \
  test "$(sql "$C" "SELECT count(*) FROM writes WHERE host = '$C' AND id >= $FIRST_ID")" -gt 0
grep -h 'replication.bootstrap third from primary  ' "$DIR/apply-resume.txt"

e2e_finish

#!/usr/bin/env bash
# Automatic failover on an application health check (issue 14 item 1), on
# real PostgreSQL 15 + PowerDNS, a real Git repository (file://) and a real
# HTTP health endpoint, one instance (witnesses: 1, after 2s):
#   0. A health URL whose origin the host policy does not grant is refused at
#      load time with file:line:col, nothing applied.
#   1. /healthz fails for 1 s only (shorter than `after`): no commit.
#   2. /healthz answers 503 for good while the database is fine: stackflip
#      commits `active: standby` WITHOUT allow_data_loss (the old primary
#      answers: the planner fences it and waits for the standby to catch up),
#      and the next pass applies it. Timed from the first 503: (a) the
#      commit, (b) the standby writable, (c) DNS. No acknowledged write lost;
#      the monitor never sees two writable databases; the old primary
#      streams from the new one; no fail back.
# Usage (CTest): bash tests/e2e/health_failover_e2e.sh STACKFLIP E2E_TOOL
source "$(dirname "$0")/lib.sh"
e2e_start "$@"

AFTER=2
HEALTH_PORT=$(free_port)
HEALTH_URL=http://127.0.0.1:$HEALTH_PORT/healthz
echo 200 >"$DIR/health.status"
# The application's health endpoint: answers the status in health.status.
python3 - "$HEALTH_PORT" "$DIR/health.status" >"$DIR/health.log" 2>&1 <<'EOF' &
import http.server, sys
port, status_file = int(sys.argv[1]), sys.argv[2]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        status = int(open(status_file).read().strip() or 200)
        body = b"ok\n" if status == 200 else b"down\n"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
EOF
# Its own variable: start_app and stop_app (lib.sh) reset E2E_PIDS, and the
# server then outlived the test.
HEALTH_PID=$!
trap 'kill $HEALTH_PID 2>/dev/null; e2e_cleanup' EXIT
health_up() { [[ $(curl -s -o /dev/null -w '%{http_code}' -m 1 "$HEALTH_URL") == 200 ]]; }
check "the health endpoint answers" poll 10 health_up

ORIGIN=$DIR/origin.git
WORK=$DIR/work
git init -q -b main "$WORK"
sed -e "s/^    active: primary$/    active: primary\n    auto_failover: {after: ${AFTER}s, witnesses: 1}/" \
  -e "0,/^        address: \(.*\)$/s||        address: \1\n        health: {url: \"$HEALTH_URL\", timeout: 1s}|" \
  "$CONFIG" >"$WORK/stackflip.yaml"
check "the config has the health check on the primary" \
  grep -q "^        health: {url: \"$HEALTH_URL\", timeout: 1s}" "$WORK/stackflip.yaml"

echo "--- 0. an origin the host does not grant"
"$SF" plan -c "$WORK/stackflip.yaml" >"$DIR/plan-refused.txt" 2>&1
rc=$?
sed 's/^/    /' "$DIR/plan-refused.txt" | head -5
check_eq "plan without the grant: exit 1" 1 "$rc"
check "plan without the grant: the place and the fix" grep -qE \
  "stackflip.yaml:[0-9]+:[0-9]+: error: health check of stack 'primary': this host does not allow requests to http://127.0.0.1:$HEALTH_PORT .*health_urls" \
  "$DIR/plan-refused.txt"
printf 'health_urls: ["http://127.0.0.1:%s"]\n' "$HEALTH_PORT" >>"$DIR/host.yaml"
"$SF" plan -c "$WORK/stackflip.yaml" >"$DIR/plan-granted.txt" 2>&1
check_eq "plan with the grant: exit 0" 0 "$?"

git -C "$WORK" add stackflip.yaml
git -C "$WORK" -c user.email=ops@example.test -c user.name=Ops commit -q -m "shop: fail over when /healthz fails for ${AFTER}s"
git clone -q --bare "$WORK" "$ORIGIN"
FIRST=$(git -C "$ORIGIN" rev-parse main)

start_app
RUN_PID=
trap 'kill $RUN_PID $HEALTH_PID 2>/dev/null; e2e_cleanup' EXIT
"$SF" run --repo "file://$ORIGIN" --interval 500ms --state "$DIR/run-state.db" >"$DIR/run.log" 2>&1 &
RUN_PID=$!
run_converged() { grep -q '^pass: .*no-changes' "$DIR/run.log"; }
check "run: a pass with nothing to do" poll 30 run_converged

echo "--- 1. /healthz fails for 1 s (after: ${AFTER}s)"
echo 503 >"$DIR/health.status"
sleep 1
echo 200 >"$DIR/health.status"
sleep $((AFTER + 2))
check_eq "a short failure: no commit" "$FIRST" "$(git -C "$ORIGIN" rev-parse main)"
check "a short failure: it was seen" grep -q "its health check fails (GET $HEALTH_URL: HTTP 503)" "$DIR/run.log"

echo "--- 2. /healthz fails for good, the database is fine"
T_FAIL=$(date +%s.%N)
echo 503 >"$DIR/health.status"
"$SF" observe -c "$WORK/stackflip.yaml" >"$DIR/observe.txt" 2>&1
"$SF" observe -c "$WORK/stackflip.yaml" -o json >"$DIR/observe.json" 2>&1
check "observe: the active stack's health check failing, in words" \
  grep -q "^  primary: primary .*; HEALTH CHECK FAILING (GET $HEALTH_URL: HTTP 503)" "$DIR/observe.txt"
check_eq "observe -o json: health_error" "GET $HEALTH_URL: HTTP 503" \
  "$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['groups']['shop']['stacks']['primary'].get('health_error'))" "$DIR/observe.json")"
time_failover 40 "$ORIGIN" "$FIRST"
since() { python3 -c "print('%.2f' % ($1 - $T_FAIL))"; }
check "(a) a failover commit landed on the branch" test -n "$T_COMMIT"
check "(b) the standby became writable" test -n "$T_WRITABLE"
check "(c) DNS answers the standby's address" test -n "$T_DNS"
echo "  from the first 503 (after: ${AFTER}s): (a) commit $(since "${T_COMMIT:-$T_FAIL}") s, (b) writable $(since "${T_WRITABLE:-$T_FAIL}") s, (c) DNS $(since "${T_DNS:-$T_FAIL}") s"
check "the commit came no sooner than after" python3 -c "import sys; sys.exit(0 if ${T_COMMIT:-0} - $T_FAIL >= $AFTER else 1)"

COMMIT=$(git -C "$ORIGIN" rev-parse main)
git -C "$ORIGIN" log -1 --format=%B main >"$DIR/message.txt"
sed 's/^/    /' "$DIR/message.txt"
check "the message: the witness saw the health check fail" \
  grep -q "failing since .*: health check: GET $HEALTH_URL: HTTP 503" "$DIR/message.txt"
git -C "$ORIGIN" diff "$FIRST" "$COMMIT" >"$DIR/diff.txt"
check_eq "the diff flips active: only (no allow_data_loss: the old primary answers)" \
  "-    active: primary|+    active: standby" "$(grep '^[-+] ' "$DIR/diff.txt" | paste -sd '|')"
check "run: the pass that applied it" poll 30 grep -q "^pass: applied at ${COMMIT:0:12}" "$DIR/run.log"
check "the old primary streams from the new one" poll 30 streaming_from 127.0.0.1 127.0.0.2
check "it refuses writes" refuses_writes 127.0.0.1
stop_app
check_eq "the monitor never saw two writable databases" 0 "$MONITOR_RC"
check "no acknowledged write was lost (a planned switch)" "$TOOL" check 127.0.0.2 "$PG_PORT" "$DIR/acked"
sleep 2  # passes after the switch, /healthz of the old primary still 503
check_eq "traffic stays on the standby (no fail back)" 127.0.0.2 "$(dns_answer)"
check_eq "no second automatic commit" "$COMMIT" "$(git -C "$ORIGIN" rev-parse main)"
kill "$RUN_PID"; wait "$RUN_PID" 2>/dev/null; RUN_PID=
e2e_finish

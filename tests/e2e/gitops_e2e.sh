#!/usr/bin/env bash
# End to end, GitOps: the real stackflip binary reconciles from a Git
# repository made here, against real PostgreSQL 15 and PowerDNS:
#   (a) first commit: reconcile records it, nothing to do; idle passes are cheap
#   (b) a commit flipping `active:` makes the next reconcile switch (writer running)
#   (c) a broken commit applies nothing, records the error, keeps the last good
#       commit in force, and notifies
#   (d) --require-signed: an unsigned commit and one by an untrusted key are
#       refused; a commit signed by a trusted SSH key is accepted
#   (e) `run`: /healthz, /status, /metrics, /observed (and the CI command that
#       plans from it), a second run refuses, a bad webhook gets 401, a good one
#       starts a pass within a second
#   (f) `run` killed with SIGKILL mid-switch and restarted converges
#   (g) SIGTERM stops `run` cleanly
# Usage (CTest): bash tests/e2e/gitops_e2e.sh STACKFLIP E2E_TOOL
source "$(dirname "$0")/lib.sh"
command -v git >/dev/null && command -v ssh-keygen >/dev/null && command -v curl >/dev/null ||
  { echo "SKIP: git, ssh-keygen or curl missing"; exit 77; }
e2e_start "$@"
MY_PIDS=
trap 'kill $MY_PIDS 2>/dev/null; e2e_cleanup' EXIT

REPO=$DIR/repo
URL=file://$REPO
git init -q -b main "$REPO"
git -C "$REPO" config user.email ops@example.test
git -C "$REPO" config user.name Ops
git -C "$REPO" config commit.gpgsign false
commit() { # FILE MESSAGE [git options...]  → prints the new head
  cp "$1" "$REPO/stackflip.yaml"
  git -C "$REPO" add stackflip.yaml
  git -C "$REPO" "${@:3}" commit -q --allow-empty -m "$2" || return 1
  git -C "$REPO" rev-parse HEAD
}
in_force() { sqlite3 "$STACKFLIP_STATE_DIR/state.db" "SELECT value FROM kv WHERE key='gitops.commit'" 2>/dev/null ||
  "$SF" status | sed -n 's/^Commit in force: \([0-9a-f]*\).*/\1/p'; }

# A Slack stand-in on loopback: appends each POSTed body to notify.log.
NPORT=$(free_port)
MY_PIDS="$MY_PIDS $(start_notify_receiver "$NPORT" "$DIR/notify.log")"

echo "--- (a) first commit"
C1=$(commit "$CONFIG" "primary active")
"$SF" reconcile --repo "$URL" >"$DIR/r.out" 2>&1
check_eq "first reconcile exits 0" 0 $?
check "first reconcile: no changes" grep -q "no-changes" "$DIR/r.out"
"$SF" reconcile --repo "$URL" >"$DIR/r.out" 2>&1
check_eq "second reconcile exits 0" 0 $?
check "second reconcile sees the head unchanged" grep -q "head unchanged" "$DIR/r.out"
IDLE_MS=$(python3 - "$SF" "$URL" <<'PY'
import resource, statistics, subprocess, sys
xs = []
for _ in range(9):
    b = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.argv[1], "reconcile", "--repo", sys.argv[2]], stdout=subprocess.DEVNULL)
    a = resource.getrusage(resource.RUSAGE_CHILDREN)
    xs.append((a.ru_utime - b.ru_utime + a.ru_stime - b.ru_stime) * 1000)
print("%.1f" % statistics.median(xs))
PY
)
echo "idle reconcile (whole process, head unchanged, converged): median CPU $IDLE_MS ms over 9 runs"

echo "--- (b) a commit flipping active switches"
start_app
sleep 0.5
C2=$(commit "$DIR/standby-active.yaml" "fail over to standby")
"$SF" reconcile --repo "$URL" | tee "$DIR/r.out"
check_eq "switch: reconcile exits 0" 0 "${PIPESTATUS[0]}"
sleep 0.5
stop_app
check_eq "switch: monitor never saw two writable databases" 0 "$MONITOR_RC"
check "switch: no acknowledged row lost" "$TOOL" check 127.0.0.2 "$PG_PORT" "$DIR/acked"
check_eq "switch: DNS answers the standby" 127.0.0.2 "$(dns_answer)"
check "switch: old primary streams from the new one" poll 10 streaming_from 127.0.0.1 127.0.0.2
check "switch: journal origin is the commit" grep -q "${C2:0:12}" <("$SF" history)
check_eq "switch: commit in force" "$C2" "$(in_force)"

echo "--- (c) a broken commit"
{ cat "$DIR/standby-active.yaml"; echo "  broken: [unclosed"; } >"$DIR/broken.yaml"
sed -i 's/^    active: standby$/    active: primary/' "$DIR/broken.yaml"
C3=$(commit "$DIR/broken.yaml" "broken yaml")
"$SF" reconcile --repo "$URL" --notify-url "http://127.0.0.1:$NPORT/hook" >"$DIR/r.out" 2>"$DIR/r.err"
check_eq "broken: reconcile exits 1" 1 $?
check "broken: error names stackflip.yaml:line:col" grep -qE "^stackflip.yaml:[0-9]+:[0-9]+: error" "$DIR/r.err"
check_eq "broken: DNS still answers the standby" 127.0.0.2 "$(dns_answer)"
check "broken: standby still the primary" not_in_recovery 127.0.0.2
check_eq "broken: last good commit stays in force" "$C2" "$(in_force)"
"$SF" status >"$DIR/status.txt"
check "broken: status shows the invalid run" grep -qE "${C3:0:12} +invalid" "$DIR/status.txt"
check "broken: status shows the last good run" grep -q "Last good run: *${C2:0:12}" "$DIR/status.txt"
check "broken: notified" poll 5 grep -q "invalid" "$DIR/notify.log"
check "broken: notification has no API key" bash -c "! grep -qF '$PDNS_API_KEY' '$DIR/notify.log'"

echo "--- (d) signatures"
ssh-keygen -q -t ed25519 -N "" -C ops -f "$DIR/ops_key"
ssh-keygen -q -t ed25519 -N "" -C stranger -f "$DIR/stranger_key"
echo "ops@example.test $(cat "$DIR/ops_key.pub")" >"$DIR/allowed_signers"
SIGNED=(--require-signed --allowed-signers "$DIR/allowed_signers")
sign_with() { echo -c gpg.format=ssh -c "user.signingkey=$1" -c commit.gpgsign=true; }
C4=$(commit "$DIR/standby-active.yaml" "unsigned")
"$SF" reconcile --repo "$URL" "${SIGNED[@]}" >"$DIR/r.out" 2>"$DIR/r.err"
check_eq "unsigned: reconcile exits 1" 1 $?
check "unsigned: says why" grep -q "is not signed" "$DIR/r.err"
C5=$(commit "$DIR/standby-active.yaml" "by a stranger" $(sign_with "$DIR/stranger_key"))
"$SF" reconcile --repo "$URL" "${SIGNED[@]}" >"$DIR/r.out" 2>"$DIR/r.err"
check_eq "untrusted key: reconcile exits 1" 1 $?
check "untrusted key: says why" grep -q "not in $DIR/allowed_signers" "$DIR/r.err"
check_eq "refused commits leave the last good in force" "$C2" "$(in_force)"
C6=$(commit "$DIR/standby-active.yaml" "signed" $(sign_with "$DIR/ops_key"))
"$SF" reconcile --repo "$URL" "${SIGNED[@]}" >"$DIR/r.out" 2>"$DIR/r.err"
check_eq "trusted signature: reconcile exits 0" 0 $?
check_eq "trusted signature: commit in force" "$C6" "$(in_force)"

echo "--- (e) run: HTTP endpoint and webhook"
PORT=$(free_port)
export HOOK_SECRET=e2e-$RANDOM$RANDOM
RUN_ARGS=(run --repo "$URL" --interval 1h --listen "127.0.0.1:$PORT" --webhook-secret '${env:HOOK_SECRET}')
start_run() { "$SF" "${RUN_ARGS[@]}" >>"$DIR/run.log" 2>&1 & RUN_PID=$!; MY_PIDS="$MY_PIDS $RUN_PID"; }
status_field() { curl -fsS "http://127.0.0.1:$PORT/status" | python3 -c "import json,sys; print(json.load(sys.stdin).get('$1'))"; }
passes() { grep -c "^pass: " "$DIR/run.log"; }
passes_at_least() { (($(passes) >= $1)); }  # evaluated afresh on each poll
converged_on() { [[ "$(status_field last_commit 2>/dev/null) $(status_field converged 2>/dev/null)" == "$1 True" ]]; }
start_run
check "run: /healthz answers" poll 10 curl -fsS -o /dev/null "http://127.0.0.1:$PORT/healthz"
check "run: first pass done" poll 10 passes_at_least 1
check_eq "run: /status last commit" "$C6" "$(status_field last_commit)"
check_eq "run: /status converged" True "$(status_field converged)"
curl -fsS "http://127.0.0.1:$PORT/metrics" >"$DIR/metrics.txt"
check "run: /metrics counts passes" grep -q "^stackflip_reconcile_total 1$" "$DIR/metrics.txt"
check "run: /metrics active stack" grep -q 'stackflip_group_active_stack{group="shop",stack="standby"} 1' "$DIR/metrics.txt"
# What the CI examples run: validate, then plan a pull request against the
# published snapshot.
check "run: CI validate of the repository file" "$SF" validate "$REPO/stackflip.yaml"
curl -fsS "http://127.0.0.1:$PORT/observed" -o "$DIR/observed.json"
check_eq "run: /observed is a snapshot plan accepts" 0 \
  "$("$SF" plan -c "$DIR/standby-active.yaml" --observed "$DIR/observed.json" -o markdown >"$DIR/pr.md"; echo $?)"
"$SF" plan -c "$CONFIG" --observed "$DIR/observed.json" -o markdown --detailed-exitcode >"$DIR/pr.md"
check_eq "run: PR plan from the snapshot shows changes" 2 $?
check "run: PR comment lists the promotion" grep -q "database.promote" "$DIR/pr.md"
"$SF" "${RUN_ARGS[@]/$PORT/$(free_port)}" >"$DIR/run2.out" 2>&1
check_eq "run: a second run refuses to start" 1 $?
check "run: and says why" grep -q "another stackflip process (pid $RUN_PID)" "$DIR/run2.out"
# Idle CPU inside the loop: 20 SIGHUP-triggered passes, CPU from /proc.
ticks() { awk '{print $14 + $15}' "/proc/$RUN_PID/stat"; }
N0=$(passes); T0=$(ticks)
for i in $(seq 20); do kill -HUP "$RUN_PID"; poll 5 passes_at_least $((N0 + i)); done
T1=$(ticks)
LOOP_MS=$(python3 -c "import os; print('%.1f' % (($T1 - $T0) * 1000 / os.sysconf('SC_CLK_TCK') / 20))")
echo "idle pass inside run (SIGHUP x20): mean CPU $LOOP_MS ms per pass"
check "run: idle passes were idle" grep -q "(idle)" "$DIR/run.log"

BODY='{"ref":"refs/heads/main"}'
N0=$(passes)
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "X-Hub-Signature-256: sha256=$(printf %s "$BODY" | openssl dgst -sha256 -hmac wrong | sed 's/^.* //')" -d "$BODY" "http://127.0.0.1:$PORT/webhook")
check_eq "webhook: bad signature gets 401" 401 "$code"
sleep 1
check_eq "webhook: bad signature starts nothing" "$N0" "$(passes)"
C7=$(commit "$CONFIG" "back to primary")
SIG=$(printf %s "$BODY" | openssl dgst -sha256 -hmac "$HOOK_SECRET" | sed 's/^.* //')
STEPS0=$(grep -c "shop 1/" "$DIR/run.log")
steps_started() { (($(grep -c "shop 1/" "$DIR/run.log") > STEPS0)); }
T0=$(date +%s%N)
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "X-Hub-Signature-256: sha256=$SIG" -d "$BODY" "http://127.0.0.1:$PORT/webhook")
check_eq "webhook: good signature accepted" 202 "$code"
poll 5 steps_started
START_MS=$((($(date +%s%N) - T0) / 1000000))
echo "webhook to first step: $START_MS ms"
check "webhook: the switch starts within a second ($START_MS ms)" test "$START_MS" -lt 1000
check "webhook: pass converges on the new commit" poll 20 converged_on "$C7"
check_eq "webhook: DNS answers the primary" 127.0.0.1 "$(dns_answer)"

echo "--- (f) SIGKILL mid-switch, restart converges"
C8=$(commit "$DIR/standby-active.yaml" "fail over again")
STEPS0=$(grep -c "shop 1/" "$DIR/run.log")
kill -HUP "$RUN_PID"
for _ in $(seq 1000); do steps_started && break; sleep 0.01; done
kill -KILL "$RUN_PID"
wait "$RUN_PID" 2>/dev/null
echo "killed during: $(grep 'shop [0-9]/' "$DIR/run.log" | tail -1)"
start_run
check "restart: converges on the new commit" poll 30 converged_on "$C8"
check_eq "restart: DNS answers the standby" 127.0.0.2 "$(dns_answer)"
check "restart: standby is primary" not_in_recovery 127.0.0.2
check "restart: old primary streams from the new one" poll 10 streaming_from 127.0.0.1 127.0.0.2
check_eq "restart: old primary in maintenance" on "$(maintenance_of 127.0.0.1)"

echo "--- (g) SIGTERM"
kill -TERM "$RUN_PID"
wait "$RUN_PID"
check_eq "run: SIGTERM exits 0" 0 $?
check "run: says it stopped" grep -q "^stopped$" "$DIR/run.log"
"$SF" status >"$DIR/status.txt"
check "status: lists the runs" grep -q "${C8:0:12}" "$DIR/status.txt"

echo "idle-pass CPU: reconcile process median ${IDLE_MS} ms; inside run ${LOOP_MS} ms"
e2e_finish

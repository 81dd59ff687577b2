#!/usr/bin/env bash
# Automatic failover that writes the commit (issue 14), on real PostgreSQL 15
# + PowerDNS and a real Git repository (file://), one instance (witnesses: 1):
#   1. `stackflip run --require-signed` watches a group with auto_failover
#      (after 2s). The primary is SIGKILLed (port closed) under a writer and
#      a two-writable-databases monitor. Timed from the kill: (a) the signed
#      failover commit on the branch, (b) the standby writable, (c) DNS
#      answering the standby's address. The commit is stackflip's, verifies
#      with `git verify-commit`, flips only `active:` (+ allow_data_loss), and
#      its message holds the evidence; the writes lost are within the lag it
#      accepted, and reported.
#   2. The old primary comes back: fenced, rewound and re-attached by the
#      loop; traffic never goes back to it (no fail back), and no second
#      automatic commit.
# Usage (CTest): bash tests/e2e/auto_failover_e2e.sh STACKFLIP E2E_TOOL
source "$(dirname "$0")/lib.sh"
e2e_start "$@"

AFTER=2
ORIGIN=$DIR/origin.git
WORK=$DIR/work
ssh-keygen -q -t ed25519 -N "" -C ops -f "$DIR/ops_key"
ssh-keygen -q -t ed25519 -N "" -C stackflip -f "$DIR/stackflip_key"
{ echo "ops@example.test $(cat "$DIR/ops_key.pub")"
  echo "stackflip@localhost $(cat "$DIR/stackflip_key.pub")"; } >"$DIR/allowed_signers"
git init -q -b main "$WORK"
sed "s/^    active: primary$/    active: primary\n    auto_failover: {after: ${AFTER}s, max_data_loss_bytes: 1048576, witnesses: 1}/" \
  "$CONFIG" >"$WORK/stackflip.yaml"
git -C "$WORK" add stackflip.yaml
git -C "$WORK" -c user.email=ops@example.test -c user.name=Ops -c gpg.format=ssh \
  -c user.signingkey="$DIR/ops_key" -c commit.gpgsign=true commit -q -m "shop: automatic failover after ${AFTER}s"
git clone -q --bare "$WORK" "$ORIGIN"
FIRST=$(git -C "$ORIGIN" rev-parse main)

start_app
RUN_PID=
trap 'kill $RUN_PID 2>/dev/null; e2e_cleanup' EXIT
"$SF" run --repo "file://$ORIGIN" --interval 500ms --state "$DIR/run-state.db" \
  --require-signed --allowed-signers "$DIR/allowed_signers" \
  --commit-signing-key "$DIR/stackflip_key" >"$DIR/run.log" 2>&1 &
RUN_PID=$!
run_converged() { grep -q '^pass: .*no-changes' "$DIR/run.log"; }
check "run: a pass with nothing to do" poll 30 run_converged
sleep 1  # a few passes: the positions it will know are recent ones

echo "--- 1. the primary is killed"
T_KILL=$(date +%s.%N)  # just before: the kill comes no sooner
harness kill-pg 1
time_failover 30 "$ORIGIN" "$FIRST"
since() { python3 -c "print('%.2f' % ($1 - $T_KILL))"; }
check "(a) a failover commit landed on the branch" test -n "$T_COMMIT"
check "(b) the standby became writable" test -n "$T_WRITABLE"
check "(c) DNS answers the standby's address" test -n "$T_DNS"
echo "  from the kill (after: ${AFTER}s): (a) commit $(since "${T_COMMIT:-$T_KILL}") s, (b) writable $(since "${T_WRITABLE:-$T_KILL}") s, (c) DNS $(since "${T_DNS:-$T_KILL}") s (aim: after + 2 s = $((AFTER + 2)) s)"
check "the commit came no sooner than after" python3 -c "import sys; sys.exit(0 if ${T_COMMIT:-0} - $T_KILL >= $AFTER else 1)"

COMMIT=$(git -C "$ORIGIN" rev-parse main)
check_eq "the commit's author" "stackflip <stackflip@localhost>" "$(git -C "$ORIGIN" log -1 --format='%an <%ae>' main)"
check_eq "it is on top of the operators' commit" "$FIRST" "$(git -C "$ORIGIN" rev-parse main~1)"
check "its signature verifies (git verify-commit, the allowed signers)" \
  git -C "$ORIGIN" -c gpg.ssh.allowedSignersFile="$DIR/allowed_signers" verify-commit "$COMMIT"
git -C "$ORIGIN" log -1 --format=%B main >"$DIR/message.txt"
sed 's/^/    /' "$DIR/message.txt"
check "the message: subject" grep -q "^stackflip: fail over group shop from primary to standby$" "$DIR/message.txt"
check "the message: the witness and its verdict" grep -q "^  stackflip on .* (site unknown): failing since .*: .*" "$DIR/message.txt"
check "the message: the positions and lag" grep -q "^Positions (last known): primary wrote up to .*, standby replayed up to .*; lag [0-9]* byte" "$DIR/message.txt"
check "the message: the policy" grep -q "^Policy: auto_failover after ${AFTER}s, max_data_loss_bytes 1048576, cooldown 30m, witnesses: 1" "$DIR/message.txt"
git -C "$ORIGIN" diff "$FIRST" "$COMMIT" >"$DIR/diff.txt"
check_eq "the diff changes only active: and adds allow_data_loss" \
  "-    active: primary|+    active: standby|+    allow_data_loss: true" \
  "$(grep '^[-+] ' "$DIR/diff.txt" | paste -sd '|')"
check "run: the pass that applied it" poll 20 grep -q "^pass: applied at ${COMMIT:0:12}" "$DIR/run.log"
check "run: the decision was logged" grep -q "automatic failover to standby committed as ${COMMIT:0:12}" "$DIR/run.log"

lag=$(sed -n 's/.*; lag \([0-9]*\) byte.*/\1/p' "$DIR/message.txt")
stop_app
"$TOOL" check 127.0.0.2 "$PG_PORT" "$DIR/acked" >"$DIR/check.txt"
missing=$(awk '{print $4}' "$DIR/check.txt")
echo "  $(cat "$DIR/check.txt"); the policy accepted a last known lag of $lag bytes (writes after the last observation of the primary are not counted)"
check_eq "the monitor never saw two writable databases" 0 "$MONITOR_RC"
# Asynchronous replication loses the writes acknowledged after the standby's
# last replay, never older ones.
if ((missing > 0)); then check "only the last acknowledged writes are lost" grep -q "(the last acknowledged)" "$DIR/check.txt"; fi

echo "--- 2. the old primary comes back"
harness start-pg 1
T_BACK=$(date +%s.%N)
fenced() { [[ $(maintenance_of 127.0.0.1) == on ]] || in_recovery 127.0.0.1; }
check "the loop fences it" poll 30 fenced
echo "  fenced (or a replica) $(python3 -c "print('%.2f' % ($(date +%s.%N) - $T_BACK))") s after it came back"
# From here on (stackflip has fenced it) nothing may be doubly writable.
start_app
check "it is rewound and streams from the new primary" poll 60 streaming_from 127.0.0.1 127.0.0.2
check "it refuses writes" refuses_writes 127.0.0.1
sleep 2  # passes after its return
check_eq "traffic stays on the standby (no fail back)" 127.0.0.2 "$(dns_answer)"
check_eq "no second automatic commit" "$COMMIT" "$(git -C "$ORIGIN" rev-parse main)"
stop_app
check_eq "the monitor never saw two writable databases" 0 "$MONITOR_RC"
check "no row acknowledged by the new primary was lost" "$TOOL" check 127.0.0.2 "$PG_PORT" "$DIR/acked"
kill "$RUN_PID"; wait "$RUN_PID" 2>/dev/null; RUN_PID=
e2e_finish

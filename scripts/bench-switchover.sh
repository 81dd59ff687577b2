#!/usr/bin/env bash
# Switchover benchmark: N planned switches (default 7, alternating direction)
# on the local harness (two PostgreSQL 15 clusters + PowerDNS on loopback),
# each with a writer running. Reports the median and range of each step's
# time (from the progress lines), of DNS answering the new address and of
# the first write acknowledged through the record.
#
#   bash scripts/bench-switchover.sh [N]        `stackflip apply`, timed from
#     just before it starts (process start, config, observation included)
#   bash scripts/bench-switchover.sh --run [N]  `stackflip run` on a local Git
#     repository: each switch is a commit flipping `active:` and a signed
#     webhook, timed from the webhook request being sent
#
# After a build: build/stackflip and build/tests/e2e_tool; STACKFLIP_BIN and
# E2E_TOOL measure other builds on the same machine (A/B runs), and
# BENCH_RESULTS=FILE keeps the raw rows ("switch name ms") to pool them.
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=apply
if [[ ${1:-} == --run ]]; then MODE=run; shift; fi
N=${1:-7}
SF=${STACKFLIP_BIN:-$PWD/build/stackflip}     # STACKFLIP_BIN: compare another build
TOOL=${E2E_TOOL:-$PWD/build/tests/e2e_tool}   # E2E_TOOL: the tool of another build tree
[[ -x $SF && -x $TOOL ]] || { echo "build first (cmake --build build)"; exit 1; }
if [[ $MODE == run ]]; then command -v git >/dev/null && command -v openssl >/dev/null ||
  { echo "--run needs git and openssl"; exit 1; }; fi

DIR=$(mktemp -d "${TMPDIR:-/tmp}/stackflip-bench.XXXXXX")
chmod 755 "$DIR"
RUN_PID=
cleanup() {
  touch "$DIR/stop"
  [[ -z $RUN_PID ]] || { kill -TERM "$RUN_PID" 2>/dev/null; wait "$RUN_PID" 2>/dev/null; }
  wait 2>/dev/null
  bash scripts/harness.sh stop "$DIR" >/dev/null 2>&1
  rm -rf "$DIR"
}
trap cleanup EXIT
bash scripts/harness.sh start "$DIR" >/dev/null
# shellcheck disable=SC1091
source "$DIR/env"
export PDNS_API_KEY STACKFLIP_STATE_DIR=$DIR/state
"$PG_BIN/psql" -X -qAt "host=127.0.0.1 port=$PG_PORT user=$PG_USER dbname=$PG_DB" \
  -c "CREATE TABLE writes(id bigint PRIMARY KEY, host text, at timestamptz DEFAULT now())"
sed 's/^    active: primary$/    active: standby/' "$DIR/stackflip.yaml" >"$DIR/standby.yaml"

if [[ $MODE == run ]]; then
  # The repository `run` follows, the webhook's secret and its signed body.
  REPO=$DIR/repo
  git init -q -b main "$REPO"
  git -C "$REPO" config user.email bench@example.test
  git -C "$REPO" config user.name bench
  git -C "$REPO" config commit.gpgsign false
  commit() { cp "$1" "$REPO/stackflip.yaml" && git -C "$REPO" add stackflip.yaml &&
    git -C "$REPO" commit -q --allow-empty -m "$2"; }
  commit "$DIR/stackflip.yaml" "primary active"
  export HOOK_SECRET=bench-$RANDOM$RANDOM
  BODY='{"ref":"refs/heads/main"}'
  SIG=$(printf %s "$BODY" | openssl dgst -sha256 -hmac "$HOOK_SECRET" | sed 's/^.* //')
  PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
  # shellcheck disable=SC2016  # the secret reference is stackflip's, not the shell's
  "$SF" -v -v run --repo "file://$REPO" --interval 1h --listen "127.0.0.1:$PORT" \
    --webhook-secret '${env:HOOK_SECRET}' >"$DIR/run.log" 2>&1 &
  RUN_PID=$!
  passes() { grep -c "^pass: " "$DIR/run.log" || true; }
  wait_passes() { # COUNT: until `run` has finished that many passes (60 s at most)
    for _ in $(seq 6000); do (($(passes) >= $1)) && return 0; sleep 0.01; done
    echo "run: no pass $1 after 60 s"; tail -20 "$DIR/run.log"; exit 1
  }
  wait_passes 1
  # The webhook, sent from this shell (no process start in the measurement):
  # stamps the time the request is written and returns the HTTP status.
  webhook() { # → prints "SECONDS_SENT STATUS"
    local sent status
    exec 3<>"/dev/tcp/127.0.0.1/$PORT"
    sent=$EPOCHREALTIME
    printf 'POST /webhook HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nX-Hub-Signature-256: sha256=%s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s' \
      "$SIG" "${#BODY}" "$BODY" >&3
    read -r _ status _ <&3 || status=none
    exec 3<&-
    echo "$sent $status"
  }
fi

"$TOOL" writer "$RECORD" "$PDNS_PORT" "$PG_PORT" "$DIR/acked" "$DIR/stop" >"$DIR/writer.out" 2>&1 &
WRITER_PID=$!
: >"$DIR/results"
REWINDS=0
for i in $(seq 1 "$N"); do
  if ((i % 2)); then cfg=$DIR/standby.yaml new=127.0.0.2; else cfg=$DIR/stackflip.yaml new=127.0.0.1; fi
  sleep 1  # writer traffic on the current primary between switches
  if [[ $MODE == apply ]]; then
    "$TOOL" waitswitch "$RECORD" "$PDNS_PORT" "$PG_PORT" "$new" >"$DIR/wait.out" &
    wpid=$!
    t0=$(date +%s%N)
    "$SF" -v -v apply -c "$cfg" --auto-approve >"$DIR/apply.out" 2>"$DIR/apply.err"
    t1=$(date +%s%N)
    total=$(((t1 - t0) / 1000000))
    wait "$wpid"
    read -r _ dns _ write <"$DIR/wait.out"
  else
    commit "$cfg" "switch $i to $new"
    before=$(passes)
    lines=$(wc -l <"$DIR/run.log")
    # waitswitch's clock starts as it is exec'd (stamped just before):
    # its figures are re-based on the webhook's sending time.
    (echo "$EPOCHREALTIME" >"$DIR/wait.t0"; exec "$TOOL" waitswitch "$RECORD" "$PDNS_PORT" "$PG_PORT" "$new") >"$DIR/wait.out" &
    wpid=$!
    sleep 0.2
    read -r sent status < <(webhook)
    [[ $status == 202 ]] || { echo "webhook answered $status"; exit 1; }
    wait "$wpid"
    wait_passes $((before + 1))
    tail -n +"$((lines + 1))" "$DIR/run.log" >"$DIR/apply.out"
    : >"$DIR/apply.err"  # run.log has both
    read -r _ dns _ write <"$DIR/wait.out"
    read -r ws0 <"$DIR/wait.t0"
    shift_ms=$(python3 -c "print(round(($sent - $ws0) * 1000, 1))")
    dns=$(python3 -c "print(round($dns - $shift_ms, 1))")
    write=$(python3 -c "print(round($write - $shift_ms, 1))")
    total=$(sed -n 's/^pass: .* in \([0-9]*\) ms.*/\1/p' "$DIR/apply.out" | tail -1)
  fi
  # The old primary wrote WAL after the fork (a standby snapshot): rewound.
  grep -q "running pg_rewind" "$DIR/apply.out" "$DIR/apply.err" 2>/dev/null && REWINDS=$((REWINDS + 1))
  # "  shop 3/7 replication.stop standby ... ok in 0.037 s (t+0.324 s)"
  awk -v run="$i" '/ ok in / { for (f = 1; f <= NF; f++) if ($f == "in") print run, $3, $(f+1) * 1000 }' \
    "$DIR/apply.out" >>"$DIR/results"
  # The driver's own timings (debug lines): the CHECKPOINT before the fence,
  # the rest of maintenance.on / maintenance.off up to new sessions seeing
  # the setting, and pg_promote until out of recovery.
  cat "$DIR/apply.out" "$DIR/apply.err" 2>/dev/null | awk -v run="$i" '
    /CHECKPOINT before the fence took/ { ck = $(NF-1); print run, "pg.checkpoint_before_fence", ck }
    /new sessions see default_transaction_read_only=on after/ { print run, "pg.fence_after_checkpoint", $(NF-1) - ck }
    /new sessions see default_transaction_read_only=off after/ { print run, "pg.unfence", $(NF-1) }
    /: promoted after/ { print run, "pg.promote_polled", $(NF-1) }' >>"$DIR/results"
  echo "$i dns_answers_new_address $dns" >>"$DIR/results"
  echo "$i first_write_through_dns $write" >>"$DIR/results"
  if [[ $MODE == apply ]]; then what=apply; else what=pass; fi
  echo "$i ${what}_total $total" >>"$DIR/results"
  echo "switch $i to $new: dns ${dns} ms, first write ${write} ms, $what $total ms" >&2
done
touch "$DIR/stop"
wait "$WRITER_PID" || true
[[ -z ${BENCH_RESULTS:-} ]] || cp "$DIR/results" "$BENCH_RESULTS"  # raw rows, to pool A/B runs
echo "writer: $(cat "$DIR/writer.out"); lost: $("$TOOL" check "$new" "$PG_PORT" "$DIR/acked" 2>/dev/null || true)"
echo "re-attaches that needed pg_rewind: $REWINDS of $N"
echo
if [[ $MODE == apply ]]; then
  echo "Switchover (stackflip apply, from its start) on $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), $N switches:"
else
  echo "Switchover (stackflip run, from the webhook) on $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), $N switches:"
fi
python3 - "$DIR/results" <<'PY'
import sys, statistics
rows = {}
order = []
for line in open(sys.argv[1]):
    run, name, ms = line.split()
    if name not in rows: order.append(name); rows[name] = []
    rows[name].append(float(ms))
print(f"{'step':<28}{'median ms':>10}{'min':>9}{'max':>9}")
for name in order:
    v = rows[name]
    print(f"{name:<28}{statistics.median(v):>10.1f}{min(v):>9.1f}{max(v):>9.1f}")
PY

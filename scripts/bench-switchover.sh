#!/usr/bin/env bash
# Switchover benchmark: N planned switches (default 7, alternating direction)
# on the local harness (two PostgreSQL 15 clusters + PowerDNS on loopback),
# each with a writer running. Reports the median and range of each step's
# time (from apply's progress lines), of DNS answering the new address and of
# the first write acknowledged through the record, both measured from just
# before `apply` starts.
#
#   bash scripts/bench-switchover.sh [N]     (after a build: build/stackflip;
#   STACKFLIP_BIN=other/stackflip to measure another build on the same machine)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-7}
SF=${STACKFLIP_BIN:-$PWD/build/stackflip}  # STACKFLIP_BIN: compare another build
TOOL=$PWD/build/tests/e2e_tool
[[ -x $SF && -x $TOOL ]] || { echo "build first (cmake --build build)"; exit 1; }

DIR=$(mktemp -d "${TMPDIR:-/tmp}/stackflip-bench.XXXXXX")
chmod 755 "$DIR"
trap 'touch "$DIR/stop"; wait 2>/dev/null; bash scripts/harness.sh stop "$DIR" >/dev/null 2>&1; rm -rf "$DIR"' EXIT
bash scripts/harness.sh start "$DIR" >/dev/null
# shellcheck disable=SC1091
source "$DIR/env"
export PDNS_API_KEY STACKFLIP_STATE_DIR=$DIR/state
"$PG_BIN/psql" -X -qAt "host=127.0.0.1 port=$PG_PORT user=$PG_USER dbname=$PG_DB" \
  -c "CREATE TABLE writes(id bigint PRIMARY KEY, host text, at timestamptz DEFAULT now())"
sed 's/^    active: primary$/    active: standby/' "$DIR/stackflip.yaml" >"$DIR/standby.yaml"

"$TOOL" writer "$RECORD" "$PDNS_PORT" "$PG_PORT" "$DIR/acked" "$DIR/stop" >"$DIR/writer.out" 2>&1 &
: >"$DIR/results"
REWINDS=0
for i in $(seq 1 "$N"); do
  if ((i % 2)); then cfg=$DIR/standby.yaml new=127.0.0.2; else cfg=$DIR/stackflip.yaml new=127.0.0.1; fi
  sleep 1  # writer traffic on the current primary between switches
  "$TOOL" waitswitch "$RECORD" "$PDNS_PORT" "$PG_PORT" "$new" >"$DIR/wait.out" &
  wpid=$!
  t0=$(date +%s%N)
  "$SF" apply -c "$cfg" --auto-approve >"$DIR/apply.out" 2>"$DIR/apply.err"
  t1=$(date +%s%N)
  # The old primary wrote WAL after the fork (a standby snapshot): rewound.
  grep -q "running pg_rewind" "$DIR/apply.err" && REWINDS=$((REWINDS + 1))
  wait "$wpid"
  # "  shop 3/7 replication.stop standby ... ok in 0.037 s (t+0.324 s)"
  awk -v run="$i" '/ ok in / { for (f = 1; f <= NF; f++) if ($f == "in") print run, $3, $(f+1) * 1000 }' \
    "$DIR/apply.out" >>"$DIR/results"
  read -r _ dns _ write <"$DIR/wait.out"
  echo "$i dns_answers_new_address $dns" >>"$DIR/results"
  echo "$i first_write_through_dns $write" >>"$DIR/results"
  echo "$i apply_total $(((t1 - t0) / 1000000))" >>"$DIR/results"
  echo "switch $i to $new: dns ${dns} ms, first write ${write} ms, apply $(((t1 - t0) / 1000000)) ms" >&2
done
touch "$DIR/stop"
wait
echo "writer: $(cat "$DIR/writer.out"); lost: $("$TOOL" check 127.0.0.1 "$PG_PORT" "$DIR/acked" 2>/dev/null || true)"
echo "re-attaches that needed pg_rewind: $REWINDS of $N"
echo
echo "Switchover on $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), $N switches:"
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

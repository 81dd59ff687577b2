#!/usr/bin/env bash
# The local demo: a real failover between two PostgreSQL 15 clusters behind
# PowerDNS, all on loopback in a temporary folder, torn down at the end.
#
#   installs what is needed (Debian 12, as root), builds stackflip, starts the
#   harness, writes rows through the DNS name, then runs
#   validate -> plan -> apply for the commit that flips `active:`, and shows
#   the DNS answer and the row counts before and after.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

if [[ -z ${DEMO_SKIP_INSTALL:-} ]]; then
  say "Installing dependencies (apt)"
  bash scripts/install-deps.sh
fi
say "Building"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target stackflip e2e_tool | tail -1
SF=$REPO/build/stackflip
TOOL=$REPO/build/tests/e2e_tool

DIR=$(mktemp -d "${TMPDIR:-/tmp}/stackflip-demo.XXXXXX")
chmod 755 "$DIR"
cleanup() {
  [[ -n ${WRITER:-} ]] && { touch "$DIR/stop"; wait "$WRITER" 2>/dev/null || true; }
  bash scripts/harness.sh stop "$DIR" >/dev/null 2>&1 || true
  rm -rf "$DIR"
  echo "(harness stopped, $DIR removed)"
}
trap cleanup EXIT

say "Starting two PostgreSQL clusters (streaming replication) and PowerDNS on loopback"
bash scripts/harness.sh start "$DIR"
# shellcheck disable=SC1091
source "$DIR/env"
export PDNS_API_KEY STACKFLIP_STATE_DIR=$DIR/state
sql() { "$PG_BIN/psql" -X -qAt "host=$1 port=$PG_PORT user=$PG_USER dbname=$PG_DB" -c "$2" 2>&1; }
show() {
  echo "DNS $RECORD -> $(dig @127.0.0.1 -p "$PDNS_PORT" "$RECORD" A +short)"
  for h in 127.0.0.1 127.0.0.2; do
    printf '  %s: recovery=%s read_only=%s rows=%s\n' "$h" \
      "$(sql $h 'SELECT pg_is_in_recovery()')" "$(sql $h 'SHOW default_transaction_read_only')" \
      "$(sql $h 'SELECT count(*) FROM writes')"
  done
}

sql 127.0.0.1 "CREATE TABLE writes(id bigint PRIMARY KEY, host text, at timestamptz DEFAULT now())" >/dev/null
say "An application writes through $RECORD (one row per transaction)"
"$TOOL" writer "$RECORD" "$PDNS_PORT" "$PG_PORT" "$DIR/acked" "$DIR/stop" >"$DIR/writer.out" 2>&1 &
WRITER=$!
sleep 1
show

CONFIG=$DIR/stackflip.yaml
say "The config in Git ($CONFIG)"
sed -n '/^groups:/,$p' "$CONFIG"
sed 's/^    active: primary$/    active: standby/' "$CONFIG" >"$DIR/failover.yaml"
say "The failover commit: one line"
diff -u "$CONFIG" "$DIR/failover.yaml" | tail -n +3 || true

say "stackflip validate"
run "$SF" validate "$DIR/failover.yaml"
say "stackflip plan (what the pull request comment shows)"
set +e
run "$SF" plan -c "$DIR/failover.yaml" --detailed-exitcode
echo "(exit $? = changes present)"
set -e
say "stackflip apply"
run "$SF" apply -c "$DIR/failover.yaml" --auto-approve

sleep 1
touch "$DIR/stop"; wait "$WRITER"; WRITER=
say "After the failover"
show
echo "writer: $(cat "$DIR/writer.out")"
echo "acknowledged rows missing on the new primary: $("$TOOL" check 127.0.0.2 "$PG_PORT" "$DIR/acked")"
say "stackflip plan again (converged)"
run "$SF" plan -c "$DIR/failover.yaml"
say "stackflip history"
run "$SF" history -n 14

#!/usr/bin/env bash
# Security (issue 10, items 6, 7, 12 and 13), the real binary against a local
# Git repository; the stacks are unreachable on purpose (closed loopback
# ports): what matters is which commit is in force (`stackflip status`).
#   (a) signed A (primary active) then signed B (standby active) in force; the
#       branch reset to A ("force-push" of an older signed commit):
#       `reconcile --require-signed` exits 1, says why, keeps B, notifies;
#       with --allow-rewind, A is adopted
#   (b) `apply` and `reconcile` while `run` holds the state lock: refused,
#       naming run's pid
#   (c) an HTTPS URL with a token: the Git cache's config holds it without
#       the token; state store 0600, cache folders 0700
#   (d) a read-only state store is named as such (not "is it an SQLite
#       database?")
#   (e) the disk fills up under `run` (a file size limit, SIGXFSZ ignored):
#       /metrics counts stackflip_state_store_errors_total, /status shows
#       the store's error
# Usage (CTest): bash tests/security/rollback_sec.sh STACKFLIP E2E_TOOL
source "$(dirname "$0")/../e2e/lib.sh"
SF=${1:?stackflip binary}
command -v git >/dev/null && command -v ssh-keygen >/dev/null && command -v python3 >/dev/null ||
  { echo "SKIP: git, ssh-keygen or python3 missing"; exit 77; }
DIR=$(mktemp -d "${TMPDIR:-/tmp}/stackflip-sec-rollback.XXXXXX")
MY_PIDS=
cleanup() {
  [[ -n $MY_PIDS ]] && kill $MY_PIDS 2>/dev/null
  wait 2>/dev/null
  command -v chattr >/dev/null && chattr -i "$DIR/ro/state.db" 2>/dev/null
  rm -rf "$DIR"
}
trap cleanup EXIT

export PDNS_API_KEY=sec-$RANDOM
CLOSED=$(free_port) # nothing listens there: every stack is unreachable at once
# After the host-policy merge a config's secret must be granted to its endpoint.
cat >"$DIR/host.yaml" <<EOF
secrets:
  "\${env:PDNS_API_KEY}": ["http://127.0.0.1:$CLOSED"]
EOF
export STACKFLIP_HOST_CONFIG=$DIR/host.yaml
config() { # ACTIVE
  cat <<EOF
apiVersion: stackflip/v1
providers:
  db: {type: postgres}
  dns: {type: powerdns, url: "http://127.0.0.1:$CLOSED", api_key: "\${env:PDNS_API_KEY}"}
groups:
  shop:
    active: $1
    stacks:
      primary: {provider: db, dsn: "host=127.0.0.1 port=$CLOSED user=u dbname=d connect_timeout=2", address: 127.0.0.1}
      standby: {provider: db, dsn: "host=127.0.0.2 port=$CLOSED user=u dbname=d connect_timeout=2", address: 127.0.0.2}
    traffic: {provider: dns, zone: example.test., record: shop.example.test.}
EOF
}

REPO=$DIR/repo
URL=file://$REPO
STATE=$DIR/state/state.db
git init -q -b main "$REPO"
git -C "$REPO" config user.email ops@example.test
git -C "$REPO" config user.name Ops
ssh-keygen -q -t ed25519 -N "" -C ops -f "$DIR/ops_key"
echo "ops@example.test $(cat "$DIR/ops_key.pub")" >"$DIR/allowed_signers"
commit_signed() { # ACTIVE MESSAGE → prints the new head
  config "$1" >"$REPO/stackflip.yaml"
  git -C "$REPO" add stackflip.yaml
  git -C "$REPO" -c gpg.format=ssh -c "user.signingkey=$DIR/ops_key" -c commit.gpgsign=true \
    commit -q --allow-empty -m "$2" || return 1
  git -C "$REPO" rev-parse HEAD
}
in_force() { "$SF" status --state "$STATE" | sed -n 's/^Commit in force: \([0-9a-f]*\).*/\1/p'; }
reconcile() { "$SF" reconcile --repo "$URL" --state "$STATE" --require-signed \
  --allowed-signers "$DIR/allowed_signers" "$@" >"$DIR/r.out" 2>"$DIR/r.err"; }

NPORT=$(free_port)
MY_PIDS="$MY_PIDS $(start_notify_receiver "$NPORT" "$DIR/notify.log")"

echo "--- (a) a force-push back to an older signed commit"
A=$(commit_signed primary "primary active")
reconcile
check_eq "A: commit in force" "$A" "$(in_force)"
B=$(commit_signed standby "fail over to standby")
reconcile
check_eq "B: commit in force" "$B" "$(in_force)"
reconcile
check "B seen again: idle pass, not a rewind" grep -q "head unchanged" "$DIR/r.out"
git -C "$REPO" reset -q --hard "$A" # what `git push --force` of A does to the branch
reconcile --notify-url "http://127.0.0.1:$NPORT/hook"
rc=$?
check_eq "rewind: reconcile exits 1" 1 "$rc"
check "rewind: says why" grep -q "does not descend from the commit in force ${B:0:12}" "$DIR/r.err"
check "rewind: names the way out" grep -q -- "--allow-rewind" "$DIR/r.err"
check_eq "rewind: B stays in force" "$B" "$(in_force)"
check "rewind: status shows the refused run" grep -qE "${A:0:12} +invalid" <("$SF" status --state "$STATE")
check "rewind: notified" poll 5 grep -q "does not descend" "$DIR/notify.log"
reconcile
check_eq "rewind: refused again on the next pass" 1 $?
check_eq "rewind: still B" "$B" "$(in_force)"
reconcile --allow-rewind
check "--allow-rewind: not refused" bash -c "! grep -q 'refusing it' '$DIR/r.err'"
check "--allow-rewind: says it adopts a rewind" grep -q "adopting it (--allow-rewind)" "$DIR/r.err"
check_eq "--allow-rewind: A adopted" "$A" "$(in_force)"

echo "--- (b) the state lock"
RPORT=$(free_port)
"$SF" run --repo "$URL" --state "$STATE" --interval 1h --listen "127.0.0.1:$RPORT" >"$DIR/run.log" 2>&1 &
RUN_PID=$!
MY_PIDS="$MY_PIDS $RUN_PID"
check "run: first pass done" poll 20 grep -q "^pass: " "$DIR/run.log"
config primary >"$DIR/a.yaml"
"$SF" apply -c "$DIR/a.yaml" --auto-approve --state "$STATE" >"$DIR/apply.out" 2>&1
check_eq "apply beside run: exits 1" 1 $?
check "apply beside run: names run's pid" grep -q "another stackflip process (pid $RUN_PID)" "$DIR/apply.out"
check "apply beside run: did nothing" bash -c "! grep -q 'Applying' '$DIR/apply.out'"
"$SF" reconcile --repo "$URL" --state "$STATE" >"$DIR/r2.out" 2>&1
check_eq "reconcile beside run: exits 1" 1 $?
check "reconcile beside run: names run's pid" grep -q "another stackflip process (pid $RUN_PID)" "$DIR/r2.out"
kill -TERM "$RUN_PID"
wait "$RUN_PID" 2>/dev/null
"$SF" apply -c "$DIR/a.yaml" --auto-approve --state "$STATE" >"$DIR/apply.out" 2>&1
check "apply after run stopped: takes the lock" bash -c "! grep -q 'another stackflip process' '$DIR/apply.out'"

echo "--- (c) files: no credential in the Git cache, private modes"
TOKEN=tok-$RANDOM$RANDOM
"$SF" reconcile --repo "http://x-access-token:$TOKEN@127.0.0.1:$CLOSED/o/r.git" \
  --state "$DIR/c/state.db" --cache-dir "$DIR/c/cache" >"$DIR/c.out" 2>&1
check "cache: a config file was written" test -f "$DIR/c/cache/config"
check "cache: its config holds no token" bash -c "! grep -qF '$TOKEN' '$DIR/c/cache/config'"
# No remote is kept in the cache at all (each fetch uses an in-memory one).
check "cache: its config names no remote URL" bash -c "! grep -q 'url =' '$DIR/c/cache/config'"
check "cache: no token in the output" bash -c "! grep -qF '$TOKEN' '$DIR/c.out'"
mode() { stat -c %a "$1"; }
check_eq "cache folder 0700" 700 "$(mode "$DIR/c/cache")"
check_eq "cache config 0600" 600 "$(mode "$DIR/c/cache/config")"
check_eq "state.db 0600" 600 "$(mode "$STATE")"
check_eq "state folder 0700" 700 "$(mode "$DIR/state")"
check_eq "default cache folder 0700" 700 "$(mode "$DIR/state/git")"

echo "--- (d) a read-only state store"
mkdir -p "$DIR/ro"
cp "$STATE" "$DIR/ro/state.db"
if [[ $(id -u) == 0 ]]; then
  chattr +i "$DIR/ro/state.db" 2>/dev/null || { echo "SKIP (d): chattr +i not possible here"; RO=no; }
else
  chmod 0444 "$DIR/ro/state.db"
fi
if [[ ${RO:-yes} == yes ]]; then
  "$SF" reconcile --repo "$URL" --state "$DIR/ro/state.db" >"$DIR/ro.out" 2>&1
  check_eq "read-only store: reconcile exits 1" 1 $?
  check "read-only store: says read-only" grep -q "read-only" "$DIR/ro.out"
  check "read-only store: not 'is it an SQLite database?'" bash -c "! grep -q 'SQLite database' '$DIR/ro.out'"
fi

echo "--- (e) the disk fills up under run"
ESTATE=$DIR/e/state.db
"$SF" reconcile --repo "$URL" --state "$ESTATE" >/dev/null 2>&1 # cache and store made first
LIMIT_KB=$(($(stat -c %s "$ESTATE") / 1024 + 24))                  # a few passes of WAL more
EPORT=$(free_port)
(trap '' XFSZ; ulimit -f "$LIMIT_KB"; exec "$SF" run --repo "$URL" --state "$ESTATE" \
  --interval 100ms --listen "127.0.0.1:$EPORT") >"$DIR/e.log" 2>&1 &
E_PID=$!
MY_PIDS="$MY_PIDS $E_PID"
store_errors() { curl -fsS "http://127.0.0.1:$EPORT/metrics" 2>/dev/null |
  sed -n 's/^stackflip_state_store_errors_total \([0-9]*\)$/\1/p'; }
has_store_errors() { (($(store_errors || echo 0) > 0)); }
check "disk full: /metrics counts state store errors" poll 20 has_store_errors
curl -fsS "http://127.0.0.1:$EPORT/metrics" >"$DIR/e.metrics"
check "disk full: they count as reconcile errors" \
  grep -qE '^stackflip_reconcile_errors_total [1-9]' "$DIR/e.metrics"
curl -fsS "http://127.0.0.1:$EPORT/status" >"$DIR/e.status"
check "disk full: /status shows the store's error" \
  python3 -c "import json,sys; e=json.load(open(sys.argv[1])).get('state_store_error'); print(e); sys.exit(not e or 'journal' not in e)" "$DIR/e.status"
check "disk full: the log says so" grep -q "state store: " "$DIR/e.log"
kill -TERM "$E_PID"
wait "$E_PID" 2>/dev/null

e2e_finish

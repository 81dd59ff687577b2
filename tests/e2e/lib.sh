# Shared by the *_e2e.sh scripts (sourced, not run): start the harness in a
# temporary folder (stopped on exit, also after a failure), count checks,
# print the closing "N passed, M failed" line.
#
# Callers: source "$(dirname "$0")/lib.sh"; e2e_start "$@"; ...; e2e_finish
set -uo pipefail

E2E_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
E2E_PASSED=0
E2E_FAILED=0

pass() { echo "PASS $*"; E2E_PASSED=$((E2E_PASSED + 1)); }
fail() { echo "FAIL $*"; E2E_FAILED=$((E2E_FAILED + 1)); }
check() { # NAME CMD...
  local name=$1; shift
  if "$@"; then pass "$name"; else fail "$name"; fi
}
check_eq() { # NAME EXPECTED ACTUAL
  if [[ "$2" == "$3" ]]; then pass "$1"; else fail "$1 (expected '$2', got '$3')"; fi
}

e2e_cleanup() {
  [[ -n ${E2E_PIDS:-} ]] && kill $E2E_PIDS 2>/dev/null
  "$E2E_REPO/scripts/harness.sh" stop "$DIR" >/dev/null 2>&1
  [[ -n ${KEEP_E2E_DIR:-} ]] || rm -rf "$DIR"
}

# e2e_start STACKFLIP E2E_TOOL
e2e_start() {
  SF=${1:?stackflip binary}
  TOOL=${2:?e2e_tool binary}
  DIR=$(mktemp -d "${TMPDIR:-/tmp}/stackflip-e2e.XXXXXX")
  chmod 755 "$DIR"
  trap e2e_cleanup EXIT
  "$E2E_REPO/scripts/harness.sh" start "$DIR"
  local rc=$?
  if ((rc == 77)); then echo "SKIP: harness prerequisites missing"; exit 77; fi
  if ((rc != 0)); then echo "FAIL harness start (exit $rc)"; echo "0 passed, 1 failed"; exit 1; fi
  # shellcheck disable=SC1091
  source "$DIR/env"
  export PDNS_API_KEY
  export STACKFLIP_STATE_DIR=$DIR/state
  CONFIG=$DIR/stackflip.yaml
  # The same config with the other stack active: the failover commit's diff.
  sed 's/^    active: primary$/    active: standby/' "$CONFIG" >"$DIR/standby-active.yaml"
  grep -q 'active: standby' "$DIR/standby-active.yaml" || { echo "FAIL cannot flip active"; exit 1; }
  sql 127.0.0.1 "CREATE TABLE writes(id bigint PRIMARY KEY, host text, at timestamptz DEFAULT now())" >/dev/null
}

sql() { # HOST SQL  (prints the result, unaligned)
  PGCONNECT_TIMEOUT=3 "$PG_BIN/psql" -X -qAt -v ON_ERROR_STOP=1 \
    "host=$1 port=$PG_PORT user=$PG_USER dbname=$PG_DB" -c "$2" 2>&1
}
dns_answer() { dig @127.0.0.1 -p "$PDNS_PORT" "$RECORD" A +short +time=1 +tries=1; }
poll() { # SECONDS CMD...  (short polling, no fixed sleeps)
  local deadline=$((SECONDS + $1)); shift
  until "$@"; do ((SECONDS < deadline)) || return 1; sleep 0.05; done
}
not() { ! "$@"; }
in_recovery() { [[ $(sql "$1" "SELECT pg_is_in_recovery()") == t ]]; }
not_in_recovery() { [[ $(sql "$1" "SELECT pg_is_in_recovery()") == f ]]; }
streaming_from() { # HOST UPSTREAM_HOST
  [[ $(sql "$1" "SELECT status || ' ' || sender_host FROM pg_stat_wal_receiver") == "streaming $2" ]]
}
refuses_writes() { # HOST: a new session's INSERT fails as read-only (SQLSTATE 25006)
  local out; out=$(sql "$1" "INSERT INTO writes(id, host) VALUES (-1, 'probe')")
  [[ $out == *"read-only transaction"* ]] || { echo "  INSERT on $1 said: $out"; return 1; }
}
maintenance_of() { sql "$1" "SHOW default_transaction_read_only"; }

# Background application: a writer and a two-writable-databases monitor.
# Each start writes a fresh range of ids (FIRST_ID), into a fresh acked file.
FIRST_ID=1
start_app() {
  rm -f "$DIR/stop" "$DIR/acked"
  FIRST_ID=$((FIRST_ID + 10000000))
  "$TOOL" writer "$RECORD" "$PDNS_PORT" "$PG_PORT" "$DIR/acked" "$DIR/stop" "$FIRST_ID" >"$DIR/writer.out" 2>&1 &
  WRITER=$!
  "$TOOL" monitor "$PG_PORT" "$DIR/stop" >"$DIR/monitor.out" 2>&1 &
  MONITOR=$!
  E2E_PIDS="$WRITER $MONITOR"
  poll 10 test -s "$DIR/acked"
}
stop_app() {
  touch "$DIR/stop"
  wait "$WRITER"
  wait "$MONITOR"
  MONITOR_RC=$?
  E2E_PIDS=
  echo "writer: $(cat "$DIR/writer.out"); monitor: $(cat "$DIR/monitor.out")"
}

e2e_finish() {
  echo "$E2E_PASSED passed, $E2E_FAILED failed"
  ((E2E_FAILED == 0))
}

# apply_hooked CONFIG K CMD...: runs `apply --auto-approve`; the moment its
# K-th step reports ok, apply is frozen (SIGSTOP), CMD runs (stop a server,
# freeze one, ...), and apply resumes: the fault is in place before the next
# step starts. Output in $DIR/apply.txt; returns apply's exit code.
on_step() { # K CMD...
  local k=$1 n=0 line fired= pid=
  shift
  while IFS= read -r line; do
    [[ -z $pid ]] && read -r pid <"$DIR/apply.pid"
    [[ $line == *" ok in "* ]] && n=$((n + 1))
    if ((n == k)) && [[ -z $fired ]]; then
      fired=1
      kill -STOP "$pid"
      "$@"
      kill -CONT "$pid"
    fi
    echo "$line" >>"$DIR/apply.txt"
  done
}
apply_hooked() { # CONFIG K CMD...
  local config=$1 rc
  shift
  : >"$DIR/apply.txt"
  "$SF" apply -c "$config" --auto-approve > >(on_step "$@") 2>&1 &
  local pid=$!
  echo "$pid" >"$DIR/apply.pid"
  wait "$pid"
  rc=$?
  sleep 0.2  # let the reader drain the pipe
  return "$rc"
}
harness() { "$E2E_REPO/scripts/harness.sh" "$@" "$DIR" >/dev/null 2>&1; }

# The soaks measure the plain build: under AddressSanitizer RssAnon counts its
# quarantine and shadow memory, not stackflip's (LeakSanitizer checks the
# other e2e runs of `run` at exit).
skip_under_asan() { # STACKFLIP
  if ldd "${1:-}" 2>/dev/null | grep -q libasan; then
    echo "SKIP: $1 is built with AddressSanitizer; the soak measures the plain build"; exit 77
  fi
}
# stackflip's PostgreSQL sessions on both clusters (999 per cluster unreadable).
pg_sessions() {
  local n=0 h c
  for h in 127.0.0.1 127.0.0.2; do
    c=$(sql "$h" "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'stackflip'")
    [[ $c =~ ^[0-9]+$ ]] || c=999
    n=$((n + c))
  done
  echo "$n"
}
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }

# A Slack stand-in on loopback: appends each POSTed body to FILE. Prints its pid.
start_notify_receiver() { # PORT FILE
  python3 -c '
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        open(sys.argv[2], "ab").write(body + b"\n")
        self.send_response(200); self.end_headers()
    def log_message(self, *a): pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()' "$1" "$2" >/dev/null 2>&1 &
  echo $!
}

# time_failover SECONDS [ORIGIN FIRST]: from now, polls every 20 ms until the
# standby (127.0.0.2) is writable and DNS answers it, or SECONDS pass; sets
# T_WRITABLE and T_DNS (epoch seconds, "" when not seen) and, given a bare
# repository ORIGIN, T_COMMIT: when its main moved from FIRST.
time_failover() {
  local deadline=$((SECONDS + $1)) now
  T_COMMIT= T_WRITABLE= T_DNS=
  while ((SECONDS < deadline)) && [[ -z $T_DNS ]]; do
    now=$(date +%s.%N)
    [[ -n ${2:-} && -z $T_COMMIT && $(git -C "$2" rev-parse main 2>/dev/null) != "$3" ]] && T_COMMIT=$now
    [[ -z $T_WRITABLE && $(sql 127.0.0.2 "SELECT pg_is_in_recovery()") == f ]] && T_WRITABLE=$now
    [[ -n $T_WRITABLE && $(dns_answer) == 127.0.0.2 ]] && T_DNS=$now
    sleep 0.02
  done
}

# Chromium for the page tests (issue 16): headless, reaching nothing but
# 127.0.0.1 (every host name resolves to nothing) with its background
# services off. Profiles live in $DIR; screenshots go to $SHOTS.
# MODE: js (scripts run, 5 s of virtual time for a page's own refresh) or nojs.
CHROMIUM=${CHROMIUM:-$(command -v chromium || true)}
chrome() { # MODE URL ARGS...
  local mode=$1 url=$2; shift 2
  local flags=(--headless --no-sandbox --disable-gpu --no-first-run --no-default-browser-check
    --disable-background-networking --disable-component-update --disable-sync
    --disable-default-apps --disable-extensions --disable-breakpad --disable-domain-reliability
    --metrics-recording-only --no-pings "--disable-features=Translate,OptimizationHints,MediaRouter"
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1" "--user-data-dir=$DIR/chromium-$mode"
    "--window-size=1200,1400")
  # JavaScript off as a user turns it off: the profile's content setting
  # (--blink-settings=scriptEnabled=false also stops --dump-dom itself).
  if [[ $mode == nojs && ! -e $DIR/chromium-nojs ]]; then
    mkdir -p "$DIR/chromium-nojs/Default"
    echo '{"profile":{"default_content_setting_values":{"javascript":2}}}' >"$DIR/chromium-nojs/Default/Preferences"
  fi
  [[ $mode == js ]] && flags+=(--virtual-time-budget=5000)
  timeout 60 "$CHROMIUM" "${flags[@]}" "$@" "$url" 2>>"$DIR/chromium.log"
}
shot() { # URL FILE [FLAGS...]
  local url=$1 file=$2; shift 2
  chrome nojs "$url" "--screenshot=$SHOTS/$file" "$@" >/dev/null && [[ -s $SHOTS/$file ]]
}

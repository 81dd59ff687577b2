#!/usr/bin/env bash
# hostile_json_sec.sh STACKFLIP E2E_TOOL — issue 10, items 3 and 12: deep,
# oversized and escape-laden input must be refused with a clear message,
# never crash the process (a signal shows as an exit code >= 128).
#
# No harness: a fake PowerDNS (python3 on 127.0.0.1, a free port) serves a
# zone of 200,000 '[' and a 9 MiB zone; the PostgreSQL provider points at a
# closed port (unreachable is a state). Also: a deep snapshot for
# `plan --observed`, a deep plan file for `apply PLAN`, a command provider
# printing deep JSON and an over-long answer, a 10,000-deep YAML flow
# sequence, a `server_id` of "../../x" and a key name holding ESC.
set -uo pipefail

SF=${1:?stackflip binary}
SF=$(cd "$(dirname "$SF")" && pwd)/$(basename "$SF")
command -v python3 >/dev/null || { echo "SKIP: python3 missing"; exit 77; }

PASSED=0
FAILED=0
pass() { echo "PASS $*"; PASSED=$((PASSED + 1)); }
fail() { echo "FAIL $*"; FAILED=$((FAILED + 1)); }
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }

DIR=$(mktemp -d "${TMPDIR:-/tmp}/stackflip-sec-json.XXXXXX")
PIDS=""
cleanup() {
  for p in $PIDS; do kill "$p" 2>/dev/null; done
  [[ -n ${KEEP_SEC_DIR:-} ]] || rm -rf "$DIR"
}
trap cleanup EXIT
cd "$DIR" || exit 1
export STACKFLIP_STATE_DIR=$DIR/state NO_COLOR=1

# run NAME CMD... : runs with a 60 s bound; output in $DIR/NAME.out, exit code in RC
run() {
  local name=$1; shift
  timeout 60 "$@" >"$DIR/$name.out" 2>&1
  RC=$?
}
# expect NAME WANT_RC PATTERN: exit code (any non-signal one when WANT_RC is
# "any"), no signal, and the output holding PATTERN (fixed string).
expect() {
  local name=$1 want=$2 pattern=$3
  if ((RC >= 124)); then
    fail "$name: killed or timed out (exit $RC): $(head -c 300 "$DIR/$name.out")"
  elif [[ $want != any && $RC != "$want" ]]; then
    fail "$name: exit $RC, expected $want: $(head -c 300 "$DIR/$name.out")"
  elif ! grep -qF -- "$pattern" "$DIR/$name.out"; then
    fail "$name: output lacks '$pattern': $(head -c 300 "$DIR/$name.out")"
  else
    pass "$name (exit $RC)"
  fi
}

# ---------------------------------------------------------------- fake PowerDNS
PDNS_PORT=$(free_port)
cat >"$DIR/pdns.py" <<'PY'
import http.server, sys
port = int(sys.argv[1])
DEEP = b"[" * 200000
BIG = b'{"rrsets": [], "pad": "' + b"x" * (9 << 20) + b'"}'
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = DEEP if "/zones/deep.test." in self.path else BIG if "/zones/big.test." in self.path else b'{"rrsets": []}'
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client stopped reading at its cap
    def log_message(self, *a):
        pass
s = http.server.ThreadingHTTPServer(("127.0.0.1", port), H)
s.timeout = 1
for _ in range(600):  # bounded: at most ~10 minutes, one request or second at a time
    s.handle_request()
PY
python3 "$DIR/pdns.py" "$PDNS_PORT" &
PIDS="$PIDS $!"
for _ in $(seq 100); do
  python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$PDNS_PORT),0.2)" 2>/dev/null && break
  sleep 0.05
done

PG_PORT=$(free_port)  # nothing listens there
export PDNS_API_KEY=sec-test-key
# The operator's host policy (honoured once the host-config change is merged).
cat >"$DIR/host.yaml" <<EOF2
commands: ["$DIR/deep.sh", "$DIR/long.sh"]
secrets:
  "\${env:PDNS_API_KEY}": ["http://127.0.0.1:$PDNS_PORT"]
EOF2
export STACKFLIP_HOST_CONFIG=$DIR/host.yaml

pdns_config() { # ZONE [SERVER_ID]
  cat <<EOF2
apiVersion: stackflip/v1
providers:
  db: {type: postgres}
  dns:
    type: powerdns
    url: "http://127.0.0.1:$PDNS_PORT"
    api_key: "\${env:PDNS_API_KEY}"
    server_id: "${2:-localhost}"
    timeout_ms: 5000
groups:
  shop:
    active: primary
    stacks:
      primary: {provider: db, dsn: "host=127.0.0.1 port=$PG_PORT user=x dbname=postgres connect_timeout=2", address: 127.0.0.1}
      standby: {provider: db, dsn: "host=127.0.0.2 port=$PG_PORT user=y dbname=postgres connect_timeout=2", address: 127.0.0.2}
    traffic: {provider: dns, zone: $1, record: shop.$1, ttl: 60}
EOF2
}
pdns_config deep.test. >"$DIR/deep.yaml"
pdns_config big.test. >"$DIR/big.yaml"
pdns_config ok.test. >"$DIR/ok.yaml"

# 1. A PowerDNS answer of 200,000 '[' (was SIGSEGV in RapidJSON's recursive parse).
run observe_deep "$SF" observe -c "$DIR/deep.yaml"
expect observe_deep any "nesting deeper than 64 levels"
# 2. An answer over the 8 MiB cap: refused, the message names the cap.
run observe_big "$SF" observe -c "$DIR/big.yaml"
expect observe_big any "larger than the 8 MiB limit"

# 3. A snapshot nested 200,000 deep (was SIGSEGV in the duplicate-key check).
{ printf '{"apiVersion": "stackflip/v1", "groups": '; head -c 200000 /dev/zero | tr '\0' '['; printf '}\n'; } >"$DIR/deep.json"
run plan_deep "$SF" plan -c "$DIR/ok.yaml" --observed "$DIR/deep.json"
expect plan_deep 1 "deep.json:1:105: error: nesting deeper than 64 levels"

# 4. A plan file nested 200,000 deep (was SIGSEGV).
{ printf '{"apiVersion": '; head -c 200000 /dev/zero | tr '\0' '['; printf '}\n'; } >"$DIR/deep-plan.json"
run apply_deep "$SF" apply -c "$DIR/ok.yaml" "$DIR/deep-plan.json" --auto-approve
expect apply_deep 1 "deep-plan.json: offset 78: not valid JSON: nesting deeper than 64 levels"

# 5. A command provider printing 200,000 '[' (was SIGSEGV), and one printing
#    a valid answer padded past the 1 MiB cap (was parsed as if complete).
printf '#!/bin/sh\nhead -c 200000 /dev/zero | tr "\\0" "["\n' >"$DIR/deep.sh"
printf '#!/bin/sh\nprintf %s "{\\"reachable\\": true, \\"maintenance\\": false}"\nhead -c 1048576 /dev/zero | tr "\\0" " "\n' '%s' >"$DIR/long.sh"
chmod +x "$DIR/deep.sh" "$DIR/long.sh"
command_config() { # SCRIPT
  cat <<EOF2
apiVersion: stackflip/v1
providers:
  cmd:
    type: command
    timeout_ms: 10000
    commands:
      observe: ["$1"]
      observe_traffic: ["$1"]
      maintenance_on: ["$1"]
      maintenance_off: ["$1"]
      replication_stop: ["$1"]
      replication_start: ["$1"]
      promote: ["$1"]
      traffic_switch: ["$1"]
groups:
  billing:
    active: blue
    stacks:
      blue: {provider: cmd, address: 10.0.1.10}
      green: {provider: cmd, address: 10.0.2.10}
    traffic: {provider: cmd, ttl: 30}
EOF2
}
command_config "$DIR/deep.sh" >"$DIR/cmd-deep.yaml"
command_config "$DIR/long.sh" >"$DIR/cmd-long.yaml"
run command_deep "$SF" observe -c "$DIR/cmd-deep.yaml"
expect command_deep any "observe command printed invalid JSON: nesting deeper than 64 levels"
run command_long "$SF" observe -c "$DIR/cmd-long.yaml"
expect command_long any "printed more than 1 MiB on stdout"

# 6. A config holding a 10,000-deep YAML flow sequence: one file:line:col error.
{ pdns_config ok.test. | sed '/^    traffic:/d'
  printf '    traffic: {provider: dns, zone: ok.test., record: shop.ok.test., x: '
  head -c 10000 /dev/zero | tr '\0' '['; head -c 10000 /dev/zero | tr '\0' ']'; printf '}\n'; } >"$DIR/deep-yaml.yaml"
run validate_deep_yaml "$SF" validate "$DIR/deep-yaml.yaml"
expect validate_deep_yaml 1 "deep-yaml.yaml:16:"
expect validate_deep_yaml 1 ": error: nesting is too deep"

# 7. A server_id that would climb out of the API path.
pdns_config ok.test. "../../x" >"$DIR/server-id.yaml"
run validate_server_id "$SF" validate "$DIR/server-id.yaml"
expect validate_server_id 1 "server-id.yaml:8:16: error: invalid 'server_id' '../../x'"

# 8. A key name holding ESC sequences: escaped in the output, never raw.
{ pdns_config ok.test.; printf '    "x\033]0;owned\007\033[31mred": 1\n'; } >"$DIR/esc.yaml"
run validate_esc "$SF" validate "$DIR/esc.yaml"
expect validate_esc 1 'x\x1b]0;owned\x07\x1b[31mred'
if LC_ALL=C grep -q $'[\x01-\x08\x0b-\x1f\x7f]' "$DIR/validate_esc.out"; then
  fail "validate_esc: raw control characters in the output"
else
  pass "validate_esc: no raw control characters in the output"
fi

echo "$PASSED passed, $FAILED failed"
((FAILED == 0))

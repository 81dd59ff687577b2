#!/usr/bin/env bash
# Security, the `stackflip run` HTTP endpoint (issue 10 items 4, 5, 9, 10),
# against the real binary with a local Git repository whose stacks are
# unreachable (no harness needed: passes run and block, which is enough):
#   (a) bodies: an unsigned 500 MB chunked POST to /webhook, then three in
#       parallel, grow the process's VmRSS by less than 64 MB; a 600 MB
#       Content-Length is answered 413 at once, before any of it is sent
#   (b) connections: 8, then 200 slow-loris connections, then 500 idle
#       sockets (the attackers reconnect when dropped): /healthz answers
#       within 1 s throughout, and a SIGHUP still gets a pass
#   (c) webhook: a form-encoded signed GitHub push of 20 KB gets 202 and a
#       pass; unsigned 401
#   (d) a second run with --gitlab-webhook-token, --api-token and
#       --webhook-listen: GitLab's token right 202, wrong 401; /status and
#       /observed 401 without the bearer token, 200 with it; /healthz and
#       /metrics open; /webhook only on the webhook listener
# Every attack is bounded in count and time; everything started is stopped.
# Usage (CTest): bash tests/security/endpoint_sec.sh STACKFLIP [E2E_TOOL]
set -uo pipefail
SF=$(realpath "${1:?stackflip binary}")
for tool in git curl python3 openssl; do
  command -v "$tool" >/dev/null || { echo "SKIP: $tool missing"; exit 77; }
done
PASSED=0
FAILED=0
pass() { echo "PASS $*"; PASSED=$((PASSED + 1)); }
fail() { echo "FAIL $*"; FAILED=$((FAILED + 1)); }
check() { # NAME CMD...
  local name=$1; shift
  if "$@"; then pass "$name"; else fail "$name"; fi
}
check_eq() { # NAME EXPECTED ACTUAL
  if [[ "$2" == "$3" ]]; then pass "$1"; else fail "$1 (expected '$2', got '$3')"; fi
}
poll() { # SECONDS CMD...
  local end=$((SECONDS + $1)); shift
  until "$@"; do ((SECONDS < end)) || return 1; sleep 0.1; done
}
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }

DIR=$(mktemp -d)
MY_PIDS=
cleanup() {
  [[ -n $MY_PIDS ]] && kill $MY_PIDS 2>/dev/null
  wait 2>/dev/null
  [[ -n ${KEEP_SEC_DIR:-} ]] || rm -rf "$DIR"
}
trap cleanup EXIT

# ------------------------------------------------------------------ setup
cat >"$DIR/stackflip.yaml" <<'EOF'
apiVersion: stackflip/v1
providers:
  db:
    type: postgres
  dns:
    type: powerdns
    url: http://127.0.0.1:9
    api_key: ${env:PDNS_API_KEY}
groups:
  shop:
    active: primary
    stacks:
      primary:
        provider: db
        dsn: "host=127.0.0.1 port=9 user=x dbname=postgres connect_timeout=1"
        address: 127.0.0.1
      standby:
        provider: db
        dsn: "host=127.0.0.2 port=9 user=x dbname=postgres connect_timeout=1"
        address: 127.0.0.2
    traffic:
      provider: dns
      zone: example.test.
      record: shop.example.test.
EOF
cat >"$DIR/host.yaml" <<'EOF'
secrets:
  "${env:PDNS_API_KEY}": ["http://127.0.0.1:9"]
EOF
export STACKFLIP_HOST_CONFIG=$DIR/host.yaml
export PDNS_API_KEY=unused-key
export STACKFLIP_STATE_DIR=$DIR/state
REPO=$DIR/repo
git init -q -b main "$REPO"
cp "$DIR/stackflip.yaml" "$REPO/stackflip.yaml"
git -C "$REPO" add stackflip.yaml
git -C "$REPO" -c user.email=ops@example.test -c user.name=Ops -c commit.gpgsign=false \
  commit -q -m "unreachable stacks"

# The attacking clients: raw sockets, so the test decides every byte.
cat >"$DIR/client.py" <<'PY'
import select, socket, sys, time

def connect(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=2)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s

def chunked(port, megabytes, seconds):
    """POST /webhook with a chunked body of `megabytes`, unsigned; prints the
    status seen (or 'none') and the megabytes the server took."""
    s = connect(port)
    s.setblocking(False)
    s.sendall(b"POST /webhook HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
              b"Content-Type: application/json\r\n\r\n")
    data = b"x" * 65536
    chunk = b"%x\r\n" % len(data) + data + b"\r\n"
    total, sent, got, pending = megabytes << 20, 0, b"", b""
    end = time.time() + seconds
    while time.time() < end and sent < total:
        r, w, _ = select.select([s], [s], [], 0.5)
        try:
            if r:
                b = s.recv(65536)
                if not b:
                    break
                got += b
            if w:
                if not pending:
                    pending = chunk
                n = s.send(pending)
                sent += n
                pending = pending[n:]
        except OSError:
            break
    if sent >= total:
        try:
            s.setblocking(True); s.settimeout(max(0.1, end - time.time()))
            s.sendall(b"0\r\n\r\n")
            while b" " not in got:
                b = s.recv(65536)
                if not b:
                    break
                got += b
        except OSError:
            pass
    status = got.split(b" ")[1].decode() if got.startswith(b"HTTP/") else "none"
    print(status, sent >> 20)

def bigcl(port):
    """Announces 600 MB and sends none of it; prints the status and ms."""
    s = connect(port)
    t0 = time.time()
    s.sendall(b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 629145600\r\n\r\n")
    s.settimeout(5)
    try:
        got = s.recv(4096)
    except OSError:
        got = b""
    status = got.split(b" ")[1].decode() if got.startswith(b"HTTP/") else "none"
    print(status, int((time.time() - t0) * 1000))

def hold(port, n, seconds, slow):
    """Keeps n connections open for `seconds`, reconnecting dropped ones.
    slow: a partial head, then one more header byte each second."""
    end = time.time() + seconds
    conns = [None] * n
    while time.time() < end:
        for i in range(n):
            try:
                if conns[i] is None:
                    conns[i] = connect(port)
                    if slow:
                        conns[i].sendall(b"POST /webhook HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                elif slow:
                    conns[i].sendall(b"a")
            except OSError:
                if conns[i] is not None:
                    conns[i].close()
                conns[i] = None
        time.sleep(1)

cmd = sys.argv[1]
if cmd == "chunked": chunked(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]))
elif cmd == "bigcl": bigcl(int(sys.argv[2]))
elif cmd == "slowloris": hold(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), True)
elif cmd == "idle": hold(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), False)
PY
client() { python3 "$DIR/client.py" "$@"; }

RUN_PID=
start_run() { # LOG ARGS...
  local log=$1; shift
  "$SF" run --repo "file://$REPO" --interval 1h "$@" >"$log" 2>&1 &
  RUN_PID=$!
  MY_PIDS="$MY_PIDS $RUN_PID"
}
stop_run() {
  kill "$RUN_PID" 2>/dev/null
  for _ in $(seq 50); do kill -0 "$RUN_PID" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$RUN_PID" 2>/dev/null
  wait "$RUN_PID" 2>/dev/null
}
healthz_up() { [[ $(code "http://127.0.0.1:$PORT/healthz") == 200 ]]; }
alive() { kill -0 "$RUN_PID" 2>/dev/null; }
rss_mb() { awk '/^VmRSS/ {printf "%d", $2 / 1024}' "/proc/$RUN_PID/status" 2>/dev/null || echo 0; }
passes() { grep -c "^pass: " "$1"; }
more_passes() { (($(passes "$1") > $2)); }
code() { # URL [curl options...] → HTTP status, 000 when none within 2 s
  local url=$1; shift
  curl -s -o /dev/null -m 2 -w '%{http_code}' "$@" "$url"
}
# Milliseconds /healthz takes, 9999 when it does not answer 200 within 1 s.
healthz_ms() {
  local out
  out=$(curl -s -o /dev/null -m 1 -w '%{http_code} %{time_total}' "http://127.0.0.1:$1/healthz")
  [[ ${out%% *} == 200 ]] && python3 -c "print(int(float('${out#* }') * 1000))" || echo 9999
}
# Runs CMD in the background while sampling the run's VmRSS every 50 ms
# (at most SECONDS); prints the peak in MB, CMD's output goes to FILE.
peak_rss_during() { # SECONDS FILE CMD...
  local limit=$1 file=$2; shift 2
  "$@" >"$file" 2>&1 &
  local pid=$! peak=0 r end=$((SECONDS + limit))
  while kill -0 "$pid" 2>/dev/null && ((SECONDS < end)); do
    r=$(rss_mb); ((r > peak)) && peak=$r
    sleep 0.05
  done
  kill "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  echo "$peak"
}
# /healthz three times, 1 s apart, while attackers run; prints the slowest.
slowest_healthz() { # PORT
  local worst=0 ms
  for _ in 1 2 3; do
    ms=$(healthz_ms "$1"); ((ms > worst)) && worst=$ms
    sleep 1
  done
  echo "$worst"
}

export HOOK_SECRET=gh-$RANDOM$RANDOM
PORT=$(free_port)
LOG=$DIR/run.log
start_run "$LOG" --listen "127.0.0.1:$PORT" --webhook-secret '${env:HOOK_SECRET}'
check "run: /healthz answers" poll 10 healthz_up
check "run: first pass done" poll 10 more_passes "$LOG" 0
RSS0=$(rss_mb)
echo "run: VmRSS after the first pass ${RSS0} MB"

# ------------------------------------------------------------------ (a) bodies
echo "--- (a) request bodies"
PEAK1=$(peak_rss_during 40 "$DIR/chunked1.out" client chunked "$PORT" 500 30)
echo "one unsigned 500 MB chunked POST: answer $(cat "$DIR/chunked1.out") MB taken; peak VmRSS ${PEAK1} MB"
check "chunked 500 MB: the process stays alive" alive
check "chunked 500 MB: VmRSS grows by less than 64 MB (peak ${PEAK1} MB, ${RSS0} MB before)" \
  test $((PEAK1 - RSS0)) -lt 64
check "chunked 500 MB: no pass triggered (answer $(cut -d' ' -f1 "$DIR/chunked1.out"))" \
  test "$(cut -d' ' -f1 "$DIR/chunked1.out")" != 202
three() {
  local i
  for i in 1 2 3; do client chunked "$PORT" 500 30 >"$DIR/chunked3.$i.out" & done
  wait
}
PEAK3=$(peak_rss_during 40 "$DIR/chunked3.out" three)
echo "three in parallel: answers $(cat "$DIR"/chunked3.*.out | tr '\n' ' '); peak VmRSS ${PEAK3} MB"
check "chunked 3 x 500 MB in parallel: the process stays alive" alive
check "chunked 3 x 500 MB in parallel: VmRSS grows by less than 64 MB (peak ${PEAK3} MB, ${RSS0} MB before)" \
  test $((PEAK3 - RSS0)) -lt 64
read -r BIG_STATUS BIG_MS < <(client bigcl "$PORT")
echo "600 MB Content-Length, no body sent: $BIG_STATUS in $BIG_MS ms"
check_eq "oversized Content-Length: 413 before the body is sent" 413 "$BIG_STATUS"
check "oversized Content-Length: answered within 1 s ($BIG_MS ms)" test "${BIG_MS:-9999}" -lt 1000
head -c $((2 * 1024 * 1024)) /dev/zero >"$DIR/2mb.bin"
check_eq "2 MB body with Content-Length (curl): 413" 413 \
  "$(code "http://127.0.0.1:$PORT/webhook" -H 'Content-Type: application/json' --data-binary @"$DIR/2mb.bin")"
check_eq "chunked 10 KB body (curl): 411" 411 \
  "$(head -c 10240 /dev/zero | code "http://127.0.0.1:$PORT/webhook" -H 'Transfer-Encoding: chunked' --data-binary @-)"

# ------------------------------------------------------------------ (b) connections
echo "--- (b) slow and idle connections"
attack() { # WHAT N  (for 8 s, in the background)
  client "$1" "$PORT" "$2" 8 &
  ATTACK_PID=$!
  MY_PIDS="$MY_PIDS $ATTACK_PID"
  sleep 2  # let the connections open and start dripping
}
for spec in "slowloris 8" "slowloris 200" "idle 500"; do
  set -- $spec
  N0=$(passes "$LOG")
  attack "$1" "$2"
  kill -HUP "$RUN_PID"
  WORST=$(slowest_healthz "$PORT")
  echo "$2 $1 connections: slowest /healthz ${WORST} ms"
  check "$2 $1 connections: /healthz within 1 s (slowest ${WORST} ms)" test "$WORST" -lt 1000
  check "$2 $1 connections: a SIGHUP pass still runs" poll 5 more_passes "$LOG" "$N0"
  kill "$ATTACK_PID" 2>/dev/null
  wait "$ATTACK_PID" 2>/dev/null
done
check "connections: the process stays alive" alive

# ------------------------------------------------------------------ (c) GitHub webhook
echo "--- (c) GitHub webhook, form-encoded"
# GitHub's "application/x-www-form-urlencoded" content type: payload=<url-encoded JSON>.
python3 -c "import urllib.parse; print('payload=' + urllib.parse.quote('{\"ref\":\"refs/heads/main\",\"pad\":\"' + 'x' * 20000 + '\"}'), end='')" >"$DIR/form.txt"
SIG=$(openssl dgst -sha256 -hmac "$HOOK_SECRET" <"$DIR/form.txt" | sed 's/^.* //')
echo "form-encoded push body: $(wc -c <"$DIR/form.txt") bytes"
N0=$(passes "$LOG")
check_eq "signed form-encoded push (20 KB): 202" 202 \
  "$(code "http://127.0.0.1:$PORT/webhook" -H "X-Hub-Signature-256: sha256=$SIG" \
     -H 'X-GitHub-Event: push' --data-binary @"$DIR/form.txt")"
check "signed form-encoded push: a pass starts" poll 5 more_passes "$LOG" "$N0"
N0=$(passes "$LOG")
check_eq "unsigned form-encoded push: 401" 401 \
  "$(code "http://127.0.0.1:$PORT/webhook" --data-binary @"$DIR/form.txt")"
sleep 1
check_eq "unsigned form-encoded push: no pass" "$N0" "$(passes "$LOG")"
RSS1=$(rss_mb)
echo "run: VmRSS after the attacks ${RSS1} MB (${RSS0} MB before)"
stop_run

# ------------------------------------------------------------------ (d) second run
echo "--- (d) GitLab token, api token, webhook listener"
export GITLAB_TOKEN=gl-$RANDOM$RANDOM API_TOKEN=api-$RANDOM$RANDOM
PORT=$(free_port)
HOOK_PORT=$(free_port)
LOG2=$DIR/run2.log
start_run "$LOG2" --listen "127.0.0.1:$PORT" --webhook-listen "127.0.0.1:$HOOK_PORT" \
  --webhook-secret '${env:HOOK_SECRET}' --gitlab-webhook-token '${env:GITLAB_TOKEN}' \
  --api-token '${env:API_TOKEN}'
check "run with tokens: /healthz answers" poll 10 healthz_up
check "run with tokens: first pass done" poll 10 more_passes "$LOG2" 0
N0=$(passes "$LOG2")
check_eq "GitLab push with the right X-Gitlab-Token: 202" 202 \
  "$(code "http://127.0.0.1:$HOOK_PORT/webhook" -H "X-Gitlab-Token: $GITLAB_TOKEN" \
     -H 'X-Gitlab-Event: Push Hook' -H 'Content-Type: application/json' -d '{"object_kind":"push"}')"
check "GitLab push: a pass starts" poll 5 more_passes "$LOG2" "$N0"
check_eq "GitLab push with a wrong X-Gitlab-Token: 401" 401 \
  "$(code "http://127.0.0.1:$HOOK_PORT/webhook" -H "X-Gitlab-Token: ${GITLAB_TOKEN}x" -d '{}')"
check_eq "GitLab push without a token: 401" 401 \
  "$(code "http://127.0.0.1:$HOOK_PORT/webhook" -H 'X-Gitlab-Event: Push Hook' -d '{}')"
check_eq "webhook listener: signed GitHub push 202" 202 \
  "$(code "http://127.0.0.1:$HOOK_PORT/webhook" -H "X-Hub-Signature-256: sha256=$SIG" --data-binary @"$DIR/form.txt")"
check_eq "webhook listener: the main listener has no /webhook" 404 \
  "$(code "http://127.0.0.1:$PORT/webhook" -H "X-Hub-Signature-256: sha256=$SIG" --data-binary @"$DIR/form.txt")"
check_eq "webhook listener: serves nothing else (/status)" 404 \
  "$(code "http://127.0.0.1:$HOOK_PORT/status" -H "Authorization: Bearer $API_TOKEN")"
for path in status observed; do
  check_eq "api token: /$path without a token 401" 401 "$(code "http://127.0.0.1:$PORT/$path")"
  check_eq "api token: /$path with a wrong token 401" 401 \
    "$(code "http://127.0.0.1:$PORT/$path" -H "Authorization: Bearer ${API_TOKEN}x")"
  check_eq "api token: /$path with the token 200" 200 \
    "$(code "http://127.0.0.1:$PORT/$path" -H "Authorization: Bearer $API_TOKEN")"
done
for path in healthz metrics; do
  check_eq "api token: /$path stays open" 200 "$(code "http://127.0.0.1:$PORT/$path")"
done
not_leaking() { ! curl -s -m 2 "$1" | grep -q last_commit; }
check "api token: /status body is not served without it" \
  not_leaking "http://127.0.0.1:$PORT/status"
stop_run

echo "$PASSED passed, $FAILED failed"
((FAILED == 0))

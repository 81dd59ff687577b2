#!/usr/bin/env bash
# Many-groups benchmark (issue 11): 10 groups, each a PostgreSQL 15 primary +
# streaming replica (20 clusters, shared_buffers 8MB), behind one PowerDNS zone
# (one A record per group), a writer per group, all on loopback in a temp dir.
#
#   site-wide failover  one Git commit flips `active:` of every group; applied by
#                       `stackflip reconcile --repo`; time from the start of the
#                       pass until every group's record answers its new address
#                       (dig against PowerDNS), median of RUNS (back and forth)
#   single-group switch the same for a commit flipping one group, median of RUNS
#   writes              every acknowledged row is on the group's primary after
#                       each failover and at the end (0 lost expected)
#   idle pass           CPU (user+sys, whole process) and wall time of a
#                       reconcile pass with nothing to do, and wall time of
#                       `stackflip observe`, for 1 and for 10 groups
#   PowerDNS requests   API requests per idle pass, from PowerDNS's own log
#
# Group g: stack `a` at 127.0.1.g, stack `b` at 127.0.2.g, both on the group's
# own port (no two stacks name one server); record g<g>.example.test.
# Writers (python3 + libpq through ctypes, one thread per group, 20 rows/s
# each) resolve the group's record through the local PowerDNS before every
# write, as an application honouring the TTL would, and connect to that address
# on the group's port. A row counts as acknowledged only when its INSERT's
# autocommit returned OK; a failed attempt is retried with the same id
# (ON CONFLICT DO NOTHING: an attempt whose commit happened but whose answer
# was lost is acknowledged once the row is seen to exist).
#
#   bash scripts/bench-groups.sh        (as root or as a user that can run
#   PostgreSQL; after a build: build/stackflip. Env: STACKFLIP_BIN=other build,
#   BENCH_GROUPS (10), BENCH_RUNS (3), BENCH_IDLE_PASSES (5),
#   BENCH_RECONCILE_ARGS="--flag value" extra arguments for every reconcile)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT_REPO=$PWD
NG=${BENCH_GROUPS:-10}
RUNS=${BENCH_RUNS:-3}
IDLE=${BENCH_IDLE_PASSES:-5}
read -r -a SF_ARGS <<<"${BENCH_RECONCILE_ARGS:-}"
SF=${STACKFLIP_BIN:-$PWD/build/stackflip}
[[ -x $SF ]] || { echo "build first (cmake --build build)"; exit 1; }
((NG >= 1 && NG <= 50 && RUNS >= 1 && RUNS <= 9 && IDLE >= 1 && IDLE <= 50)) || { echo "bad BENCH_* value"; exit 2; }
BENCH_T0=$SECONDS
say() { echo "bench-groups: +$((SECONDS - BENCH_T0))s $*" >&2; }

# ---------------------------------------------------------------- harness
# The harness's functions (cluster creation, port picking, PowerDNS), without
# running its command line: everything before its `cmd=` line.
HARNESS=$PWD/scripts/harness.sh
grep -q '^cmd=\${1:-}; shift' "$HARNESS" || die "scripts/harness.sh changed: cannot reuse its functions"
# shellcheck disable=SC1090
source <(sed '/^cmd=\${1:-}; shift/,$d' "$HARNESS")
SCRIPT_DIR=$ROOT_REPO/scripts REPO_DIR=$ROOT_REPO HARNESS_QUIET=1
die() { echo "bench-groups: $*" >&2; exit 1; }
check_tools
# Twenty clusters on a small machine: small memory, few sessions.
eval "harness_$(declare -f write_pg_conf)"
write_pg_conf() {
  harness_write_pg_conf "$1"
  as_pg tee -a "$(pg_data "$1")/harness.conf" >/dev/null <<'EOF'
# scripts/bench-groups.sh: twenty clusters on one machine
shared_buffers = 8MB
max_connections = 20
max_wal_senders = 4
max_replication_slots = 4
wal_keep_size = 64MB
EOF
}
# PowerDNS logs each API request (the figure "requests per pass").
eval "harness_$(declare -f write_pdns_conf)"
write_pdns_conf() {
  harness_write_pdns_conf
  printf 'loglevel=6\nwebserver-loglevel=normal\n' >>"$DIR/pdns/pdns.conf"
}

ROOT=$(mktemp -d "${TMPDIR:-/tmp}/stackflip-bench-groups.XXXXXX")
chmod 755 "$ROOT"
BG_PIDS=()
cleanup() {
  touch "$ROOT/stop"
  local p
  for p in "${BG_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${BG_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  local stops=() g
  bash "$HARNESS" stop "$ROOT/dns" >/dev/null 2>&1 || true
  for g in $(seq 1 "$NG"); do
    [[ -d $ROOT/g$g ]] || continue
    bash "$HARNESS" stop "$ROOT/g$g" >/dev/null 2>&1 & stops+=($!)
  done
  for p in "${stops[@]}"; do wait "$p" 2>/dev/null || true; done
  [[ -n ${KEEP_BENCH_DIR:-} ]] && echo "kept $ROOT" >&2 || rm -rf "$ROOT"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

addr() { if [[ $1 == a ]]; then echo "127.0.1.$2"; else echo "127.0.2.$2"; fi; }  # SITE GROUP

# One group's pair, with the harness's own steps; runs in a subshell.
setup_group() { # G
  DIR=$ROOT/g$1 PG1_HOST=$(addr a "$1") PG2_HOST=$(addr b "$1")
  mkdir -p "$DIR"
  start_postgres || return 1
  wait_for 30 streaming || { tail_log "$(pg_logfile 2)"; return 1; }
  psql_n 1 "CREATE TABLE writes(id bigint PRIMARY KEY, host text, at timestamptz DEFAULT now())" >/dev/null
  # The standby is kept in maintenance (as the harness does).
  psql_n 2 "ALTER SYSTEM SET default_transaction_read_only = on" >/dev/null
  psql_n 2 "SELECT pg_reload_conf()" >/dev/null
  echo "$PG_PORT" >"$DIR/port"
}

say "starting PowerDNS and $((2 * NG)) PostgreSQL clusters under $ROOT"
export PDNS_API_KEY
PDNS_API_KEY=$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')
(
  DIR=$ROOT/dns
  pdns_create_db
  for g in $(seq 1 "$NG"); do
    pdnsutil --config-dir="$DIR/pdns" add-record "$ZONE" "g$g" A 60 "$(addr a "$g")" >>"$DIR/pdns/pdnsutil.log" 2>&1
  done
  start_pdns
  echo "PDNS_PORT=$PDNS_PORT PDNS_API_PORT=$PDNS_API_PORT PDNS_API_URL=$PDNS_API_URL" >"$DIR/pdns/ports"
) || die "PowerDNS did not start"
eval "$(cat "$ROOT/dns/pdns/ports")"
PDNS_LOG=$ROOT/dns/pdns/pdns.log
# Two groups at a time (2 cores); each group's steps are sequential.
for g in $(seq 1 2 "$NG"); do
  jobs_=()
  for h in $g $((g + 1)); do
    ((h <= NG)) || continue
    ( setup_group "$h" ) >"$ROOT/setup$h.log" 2>&1 & jobs_+=($!)
  done
  for p in "${jobs_[@]}"; do wait "$p" || { cat "$ROOT"/setup*.log >&2; die "a group did not start"; }; done
done
PORTS=()
for g in $(seq 1 "$NG"); do PORTS[g]=$(cat "$ROOT/g$g/port"); done
say "clusters up (ports ${PORTS[*]})"

# ---------------------------------------------------------------- config + Git
DIR=$ROOT write_host_policy
export STACKFLIP_HOST_CONFIG=$ROOT/host.yaml
gen_config() { # STATES (one letter a|b per group) [NGROUPS]  → stdout
  local states=$1 n=${2:-$NG} g s
  cat <<EOF
apiVersion: stackflip/v1
providers:
  db: {type: postgres, connect_timeout_ms: 2000, statement_timeout_ms: 5000, pg_rewind: true}
  dns: {type: powerdns, url: "$PDNS_API_URL", api_key: "\${env:PDNS_API_KEY}"}
groups:
EOF
  for g in $(seq 1 "$n"); do
    cat <<EOF
  g$g:
    active: ${states:g-1:1}
    stacks:
EOF
    for s in a b; do
      cat <<EOF
      $s:
        provider: db
        dsn: "host=$(addr $s "$g") port=${PORTS[g]} user=$PG_USER dbname=$PG_DB"
        address: $(addr $s "$g")
        control_command: ["$ROOT_REPO/scripts/pg-control.sh"]
EOF
    done
    cat <<EOF
    replication: {max_lag_bytes: 0}
    traffic: {provider: dns, zone: $ZONE, record: g$g.$ZONE, ttl: 60}
EOF
  done
}
new_repo() { # DIR
  git init -q -b main "$1"
  git -C "$1" config user.email bench@example.test
  git -C "$1" config user.name Bench
  git -C "$1" config commit.gpgsign false
}
commit() { # REPO_DIR MESSAGE  (stackflip.yaml from stdin)
  cat >"$1/stackflip.yaml"
  git -C "$1" add stackflip.yaml
  git -C "$1" commit -q --allow-empty -m "$2"
}
REPO=$ROOT/repo
new_repo "$REPO"
export STACKFLIP_STATE_DIR=$ROOT/state
STATE=$(printf 'a%.0s' $(seq 1 "$NG"))
gen_config "$STATE" | commit "$REPO" "all groups on site a"
"$SF" validate "$REPO/stackflip.yaml" >/dev/null || die "config does not validate"
reconcile() { "$SF" reconcile --repo "file://$REPO" "${SF_ARGS[@]}"; }
reconcile >"$ROOT/first.out" 2>&1 || { cat "$ROOT/first.out" >&2; die "first reconcile failed"; }
grep -q no-changes "$ROOT/first.out" || { cat "$ROOT/first.out" >&2; die "first reconcile was not idle"; }

# ---------------------------------------------------------------- writers
cat >"$ROOT/writer.py" <<'PY'
"""Writers for bench-groups.sh: `writer DNS_PORT OUTDIR STOP MAX_S RATE G:PORT...`
and `check HOST PORT ACKED` (acked ids missing at HOST:PORT, acked file read first)."""
import ctypes, os, random, socket, struct, sys, threading, time

pq = ctypes.CDLL("libpq.so.5")
pq.PQconnectdb.restype, pq.PQconnectdb.argtypes = ctypes.c_void_p, [ctypes.c_char_p]
pq.PQstatus.restype, pq.PQstatus.argtypes = ctypes.c_int, [ctypes.c_void_p]
pq.PQexec.restype, pq.PQexec.argtypes = ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_char_p]
pq.PQresultStatus.restype, pq.PQresultStatus.argtypes = ctypes.c_int, [ctypes.c_void_p]
pq.PQntuples.restype, pq.PQntuples.argtypes = ctypes.c_int, [ctypes.c_void_p]
pq.PQgetvalue.restype, pq.PQgetvalue.argtypes = ctypes.c_char_p, [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
pq.PQclear.argtypes = [ctypes.c_void_p]
pq.PQfinish.argtypes = [ctypes.c_void_p]
CONNECTION_OK, PGRES_COMMAND_OK, PGRES_TUPLES_OK = 0, 1, 2

def connect(host, port):
    c = pq.PQconnectdb(f"host={host} port={port} user=stackflip dbname=app connect_timeout=2 "
                       "application_name=bench-writer".encode())
    if c and pq.PQstatus(c) == CONNECTION_OK:
        return c
    if c:
        pq.PQfinish(c)
    return None

def resolve(name, port):
    """The first A record of NAME from the DNS server at 127.0.0.1:PORT, or None."""
    qid = random.randrange(65536)
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    q += b"".join(bytes([len(l)]) + l.encode() for l in name.rstrip(".").split(".")) + b"\0"
    q += struct.pack(">HH", 1, 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(1)
    try:
        s.sendto(q, ("127.0.0.1", port))
        d = s.recv(1500)
    except OSError:
        return None
    finally:
        s.close()
    if len(d) < 12:
        return None
    rid, _, qd, an = struct.unpack(">HHHH", d[:8])
    if rid != qid:
        return None
    def skip(i):
        while d[i] != 0:
            if d[i] >= 0xC0:
                return i + 2
            i += d[i] + 1
        return i + 1
    i = 12
    for _ in range(qd):
        i = skip(i) + 4
    for _ in range(an):
        i = skip(i)
        typ, _, _, rdlen = struct.unpack(">HHIH", d[i:i + 10])
        i += 10
        if typ == 1 and rdlen == 4:
            return socket.inet_ntoa(d[i:i + 4])
        i += rdlen
    return None

def writer(group, pg_port, dns_port, outdir, stop, deadline, period, stats):
    record = f"g{group}.example.test."
    conn, conn_host, row, acked, failed = None, None, 1, 0, 0
    with open(os.path.join(outdir, f"acked.g{group}"), "a") as out:
        nxt = time.monotonic()
        while time.monotonic() < deadline and not os.path.exists(stop):
            ok = False
            host = resolve(record, dns_port)
            if host and (conn is None or host != conn_host or pq.PQstatus(conn) != CONNECTION_OK):
                if conn:
                    pq.PQfinish(conn)
                conn, conn_host = connect(host, pg_port), host
            if host and conn:
                r = pq.PQexec(conn, f"INSERT INTO writes(id, host) VALUES ({row}, '{host}') "
                                    "ON CONFLICT (id) DO NOTHING".encode())
                ok = pq.PQresultStatus(r) == PGRES_COMMAND_OK
                pq.PQclear(r)
            if ok:  # autocommit: the commit was acknowledged
                out.write(f"{row}\n")
                out.flush()
                row += 1
                acked += 1
                nxt += period
            else:
                failed += 1
                nxt = time.monotonic() + 0.01
            time.sleep(max(0.0, nxt - time.monotonic()))
    if conn:
        pq.PQfinish(conn)
    stats[group] = (acked, failed)

def main():
    if sys.argv[1] == "check":
        host, port, path = sys.argv[2], sys.argv[3], sys.argv[4]
        ids = [int(x) for x in open(path).read().split()]  # before the query
        c = connect(host, port)
        if not c:
            print(f"cannot connect to {host}:{port}")
            return 2
        r = pq.PQexec(c, b"SELECT id FROM writes")
        present = {int(pq.PQgetvalue(r, i, 0)) for i in range(pq.PQntuples(r))}
        pq.PQclear(r)
        pq.PQfinish(c)
        missing = sum(1 for x in ids if x not in present)
        print(f"acked {len(ids)} missing {missing}")
        return 1 if missing else 0
    dns_port, outdir, stop = int(sys.argv[2]), sys.argv[3], sys.argv[4]
    deadline = time.monotonic() + float(sys.argv[5])
    period = 1.0 / float(sys.argv[6])
    stats, threads = {}, []
    for spec in sys.argv[7:]:
        g, port = spec.split(":")
        t = threading.Thread(target=writer, args=(int(g), int(port), dns_port, outdir, stop, deadline, period, stats))
        t.start()
        threads.append(t)
    for t in threads:
        t.join()
    for g in sorted(stats):
        print(f"g{g} acked {stats[g][0]} failed_attempts {stats[g][1]}")
    return 0

sys.exit(main())
PY
WRITER_RATE=20
specs=()
for g in $(seq 1 "$NG"); do specs+=("$g:${PORTS[g]}"); done
rm -f "$ROOT/stop"
python3 "$ROOT/writer.py" writer "$PDNS_PORT" "$ROOT" "$ROOT/stop" 900 "$WRITER_RATE" "${specs[@]}" \
  >"$ROOT/writers.out" 2>&1 &
WRITER_PID=$!
BG_PIDS+=("$WRITER_PID")

# ---------------------------------------------------------------- switches
primary_of() { addr "${STATE:$1-1:1}" "$1"; }  # G → address of its active stack
psql_at() { # HOST PORT SQL
  PGCONNECT_TIMEOUT=3 "$PG_BIN/psql" -X -qAt "host=$1 port=$2 user=$PG_USER dbname=$PG_DB" -c "$3" 2>/dev/null
}
converged() { # every group: its active stack's server streams to one replica
  local g
  for g in $(seq 1 "$NG"); do
    [[ $(psql_at "$(primary_of "$g")" "${PORTS[g]}" \
      "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'") == 1 ]] || return 1
  done
}
writes_flowing() { # every writer acknowledged a row in the last second
  local g n
  for g in $(seq 1 "$NG"); do
    n=$(psql_at "$(primary_of "$g")" "${PORTS[g]}" "SELECT count(*) FROM writes WHERE at > now() - interval '1 s'")
    [[ ${n:-0} -ge 1 ]] || return 1
  done
}
LOST=0
check_writes() { # LABEL: acknowledged rows on each group's primary
  local g out
  for g in $(seq 1 "$NG"); do
    out=$(python3 "$ROOT/writer.py" check "$(primary_of "$g")" "${PORTS[g]}" "$ROOT/acked.g$g") || true
    [[ $out =~ missing\ ([0-9]+) ]] || { echo "  $1 g$g: $out" >&2; LOST=$((LOST + 1000000)); continue; }
    LOST=$((LOST + BASH_REMATCH[1]))
    ((BASH_REMATCH[1] == 0)) || echo "  $1 g$g: $out" >&2
  done
}
now_us() { echo "${EPOCHREALTIME/./}"; }
# PowerDNS's internal errors (its log: "HTTP ISE for ..."), e.g. SQLite's
# "database is locked" when two PATCHes of one zone run at once.
pdns_errors() { grep -c 'HTTP ISE' "$PDNS_LOG" || true; }

# switch KIND NEWSTATE: commit NEWSTATE, run one reconcile, poll the records of
# the groups that change until each answers its new address (bounded 120 s).
# Appends "KIND dns_ms apply_ms" to results.
: >"$ROOT/results"
switch() {
  local kind=$1 new=$2 g name
  local -A want=() got=()
  for g in $(seq 1 "$NG"); do
    [[ ${new:g-1:1} == "${STATE:g-1:1}" ]] || want[g$g.$ZONE]=$(addr "${new:g-1:1}" "$g")
  done
  gen_config "$new" | commit "$REPO" "$kind: $STATE -> $new"
  # A pass that fails (a step failed for good) is followed at once by another,
  # at most 3 passes: the DNS time then includes them, and they are reported.
  local t0 t1 rc=0 now out passes=1 ise0
  ise0=$(pdns_errors)
  t0=$(now_us)
  reconcile >"$ROOT/switch.out" 2>"$ROOT/switch.err" &
  local rpid=$!
  BG_PIDS+=("$rpid")
  local deadline=$((SECONDS + 180))
  while ((${#want[@]})) && ((SECONDS < deadline)); do
    local qs=()
    for name in "${!want[@]}"; do qs+=("$name" A); done
    out=$(dig @127.0.0.1 -p "$PDNS_PORT" +noall +answer +tries=1 +time=1 "${qs[@]}" 2>/dev/null) || true
    now=$(now_us)
    while read -r name _ _ _ a; do
      [[ -n $name && ${want[$name]:-} == "$a" ]] || continue
      got[$name]=$(((now - t0) / 1000)); unset "want[$name]"
    done <<<"$out"
    if ((${#want[@]})) && ! kill -0 "$rpid" 2>/dev/null; then
      rc=0; wait "$rpid" || rc=$?
      rpid=
      cat "$ROOT/switch.out" >>"$ROOT/steps.$kind"
      cat "$ROOT/switch.err" >>"$ROOT/failed-passes.log"
      ((rc != 0 && passes < 3)) || break
      say "$kind: pass $passes exited $rc with ${!want[*]} not switched: $(grep -m1 'stopped' "$ROOT/switch.err" || true); one more pass"
      passes=$((passes + 1))
      reconcile >"$ROOT/switch.out" 2>"$ROOT/switch.err" &
      rpid=$!
      BG_PIDS+=("$rpid")
    fi
  done
  if [[ -n $rpid ]]; then rc=0; wait "$rpid" || rc=$?; cat "$ROOT/switch.out" >>"$ROOT/steps.$kind"; fi
  ((${#want[@]} == 0)) || { cat "$ROOT/switch.out" "$ROOT/switch.err" >&2; die "$kind: DNS of ${!want[*]} did not change after $passes passes"; }
  if ((rc != 0)); then  # DNS switched but a later step failed: one more pass to converge
    cat "$ROOT/switch.err" >>"$ROOT/failed-passes.log"
    say "$kind: pass $passes exited $rc: $(grep -m1 'stopped' "$ROOT/switch.err" || true); one more pass"
    passes=$((passes + 1)); rc=0
    reconcile >"$ROOT/switch.out" 2>"$ROOT/switch.err" || rc=$?
    cat "$ROOT/switch.out" >>"$ROOT/steps.$kind"
    ((rc == 0)) || { cat "$ROOT/switch.out" "$ROOT/switch.err" >&2; die "$kind: reconcile exited $rc"; }
  fi
  t1=$(now_us)
  local worst=0
  for name in "${!got[@]}"; do
    if ((got[$name] > worst)); then worst=${got[$name]}; fi
  done
  STATE=$new
  local ise=$(($(pdns_errors) - ise0))
  echo "$kind $worst $(((t1 - t0) / 1000)) $passes $ise" >>"$ROOT/results"
  say "$kind to $new: every changed record answers its new address after $worst ms; reconcile $(((t1 - t0) / 1000)) ms, $passes pass(es), PowerDNS HTTP 500s: $ise"
  wait_for 60 converged || die "$kind: not converged 60 s after the pass (a replica is not streaming)"
  check_writes "$kind"
  wait_for 10 writes_flowing || say "warning: a writer acknowledged nothing in the last second"
}
flip() { tr ab ba <<<"$1"; }

wait_for 10 writes_flowing || { cat "$ROOT/writers.out" >&2; die "writers do not write"; }
say "writers running ($WRITER_RATE rows/s per group); $RUNS site-wide failovers"
for r in $(seq 1 "$RUNS"); do
  sleep 1  # writes on the current primaries between switches
  switch site-wide "$(flip "$STATE")"
done
say "$RUNS single-group switches (g1)"
for r in $(seq 1 "$RUNS"); do
  sleep 1
  switch single-group "$(flip "${STATE:0:1}")${STATE:1}"
done
touch "$ROOT/stop"
wait "$WRITER_PID" || true
check_writes final
ACKED=$(awk '{s += $3; f += $5} END {print s " acked, " f " failed attempts"}' "$ROOT/writers.out")
say "writers: $ACKED; lost: $LOST"

# ---------------------------------------------------------------- idle passes
# CPU (user+sys, the process and its children) and wall time per pass, and the
# PowerDNS API requests it made (PowerDNS's log: one line per request).
pdns_requests() { grep -c '"\(GET\|PUT\|PATCH\|POST\|DELETE\) /api/' "$PDNS_LOG" || true; }
idle_passes() { # LABEL REPO_DIR CONFIG_FILE → "LABEL cpu_ms wall_ms requests observe_ms"
  local label=$1 repo=$2 cfg=$3 r0 r1
  r0=$(pdns_requests)
  python3 - "$SF" "$IDLE" "file://$repo" "${SF_ARGS[@]}" >"$ROOT/idle.txt" <<'PY'
import resource, statistics, subprocess, sys, time
sf, n, url, extra = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
cpu, wall = [], []
for _ in range(n):
    b, t = resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic()
    out = subprocess.run([sf, "reconcile", "--repo", url, *extra], capture_output=True, text=True, timeout=120)
    wall.append((time.monotonic() - t) * 1000)
    a = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu.append((a.ru_utime - b.ru_utime + a.ru_stime - b.ru_stime) * 1000)
    if out.returncode != 0 or "no-changes" not in out.stdout + out.stderr:
        sys.exit("reconcile pass was not idle:\n" + out.stdout + out.stderr)
print("%.1f %.1f" % (statistics.median(cpu), statistics.median(wall)))
PY
  r1=$(pdns_requests)
  local obs
  obs=$(python3 - "$SF" "$IDLE" "$cfg" <<'PY'
import statistics, subprocess, sys, time
sf, n, cfg = sys.argv[1], int(sys.argv[2]), sys.argv[3]
wall = []
for _ in range(n):
    t = time.monotonic()
    subprocess.run([sf, "observe", "-c", cfg], stdout=subprocess.DEVNULL, check=True, timeout=120)
    wall.append((time.monotonic() - t) * 1000)
print("%.1f" % statistics.median(wall))
PY
  )
  echo "$label $(cat "$ROOT/idle.txt") $(python3 -c "print('%.1f' % (($r1 - $r0) / $IDLE))") $obs" >>"$ROOT/idle"
}
: >"$ROOT/idle"
say "idle passes, $NG groups"
gen_config "$STATE" >"$ROOT/all.yaml"
idle_passes "$NG" "$REPO" "$ROOT/all.yaml"
say "idle passes, 1 group"
REPO1=$ROOT/repo1
new_repo "$REPO1"
gen_config "$STATE" 1 | commit "$REPO1" "one group"
cp "$REPO1/stackflip.yaml" "$ROOT/one.yaml"
(
  export STACKFLIP_STATE_DIR=$ROOT/state1
  "$SF" reconcile --repo "file://$REPO1" "${SF_ARGS[@]}" >/dev/null 2>&1 || die "one-group reconcile failed"
  idle_passes 1 "$REPO1" "$ROOT/one.yaml"
)
grep -c "webserver" "$PDNS_LOG" >/dev/null || say "warning: PowerDNS logged no API requests (requests per pass not measured)"

# ---------------------------------------------------------------- report
parallel_note=$("$SF" reconcile --help | grep -iE 'parallel|at once|at a time' | sed 's/^ *//' || true)
echo
echo "Many groups on $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); $NG groups, $((2 * NG)) PostgreSQL 15 clusters (shared_buffers 8MB), one PowerDNS zone"
echo "stackflip $("$SF" --version 2>/dev/null | head -n1); groups applied at once: ${parallel_note:-default (no setting in this build)}${SF_ARGS[*]:+; reconcile args: ${SF_ARGS[*]}}"
echo "writers: $ACKED ($WRITER_RATE rows/s per group, DNS name through PowerDNS); acknowledged rows lost: $LOST"
python3 - "$ROOT/results" "$ROOT/idle" "$NG" "$ROOT/steps.site-wide" "$ROOT/steps.single-group" <<'PY'
import re, statistics, sys
res = {}
for line in open(sys.argv[1]):
    kind, dns, apply, passes, ise = line.split()
    res.setdefault(kind, []).append((float(dns), float(apply), int(passes), int(ise)))
med = lambda xs: statistics.median(xs)
print(f"\n{'switch (median of runs)':<34}{'runs':>5}{'all DNS ms':>12}{'min':>8}{'max':>8}{'reconcile ms':>14}{'passes':>8}{'PDNS 500s':>11}")
for kind in ("site-wide", "single-group"):
    v = res.get(kind, [])
    if v:
        d = [x[0] for x in v]
        print(f"{kind:<34}{len(v):>5}{med(d):>12.0f}{min(d):>8.0f}{max(d):>8.0f}{med([x[1] for x in v]):>14.0f}"
              f"{'/'.join(str(x[2]) for x in v):>8}{'/'.join(str(x[3]) for x in v):>11}")
if res.get("site-wide") and res.get("single-group"):
    s, o = med([x[0] for x in res["site-wide"]]), med([x[0] for x in res["single-group"]])
    sa, oa = med([x[1] for x in res["site-wide"]]), med([x[1] for x in res["single-group"]])
    print(f"{'ratio site-wide / single-group':<34}{'':>5}{s / o:>12.2f}{'':>16}{sa / oa:>14.2f}")
# Step times from apply's progress lines: "  g9 6/7 traffic.switch a   ok in 0.353 s (t+11.098 s)"
steps = {}
for kind, path in (("site-wide", sys.argv[4]), ("single-group", sys.argv[5])):
    try:
        for line in open(path):
            m = re.match(r"\s+g\d+ \d+/\d+ (\S+) .* ok in ([0-9.]+) s", line)
            if m:
                steps.setdefault(m[1], {}).setdefault(kind, []).append(float(m[2]) * 1000)
    except OSError:
        pass
if steps:
    print(f"\n{'step (all groups, all runs)':<28}{'site-wide median ms':>21}{'max':>9}{'single-group median ms':>24}{'max':>9}")
    for name, by in steps.items():
        cells = ""
        for kind, w in (("site-wide", 21), ("single-group", 24)):
            v = by.get(kind)
            cells += f"{statistics.median(v):>{w}.0f}{max(v):>9.0f}" if v else f"{'-':>{w}}{'-':>9}"
        print(f"{name:<28}{cells}")
rows = [l.split() for l in open(sys.argv[2])]
print(f"\n{'idle pass (median)':<20}{'groups':>7}{'CPU ms':>9}{'wall ms':>9}{'PDNS req/pass':>15}{'observe ms':>12}")
for g, cpu, wall, req, obs in sorted(rows, key=lambda r: int(r[0])):
    print(f"{'reconcile, head same':<20}{g:>7}{float(cpu):>9.1f}{float(wall):>9.1f}{float(req):>15.1f}{float(obs):>12.1f}")
if len(rows) == 2:
    a, b = sorted(rows, key=lambda r: int(r[0]))
    print(f"{'ratio ' + b[0] + ' / ' + a[0] + ' groups':<27}{float(b[1]) / float(a[1]):>9.2f}{float(b[2]) / float(a[2]):>9.2f}"
          f"{(float(b[3]) / float(a[3]) if float(a[3]) else float('nan')):>15.2f}{float(b[4]) / float(a[4]):>12.2f}")
PY
echo "(observe ms: wall time of the whole \`stackflip observe -c\` process; CPU: user+sys of the reconcile process and its children)"
echo "total benchmark time: $((SECONDS - BENCH_T0)) s"
((LOST == 0)) || exit 1

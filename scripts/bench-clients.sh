#!/usr/bin/env bash
# What clients see during a switch (issue 15): N planned switches per mode
# (default 5, alternating direction) on the local harness (two PostgreSQL 15
# clusters + PowerDNS on loopback), with a real client writing continuously,
# in these modes (run in this order; MODES picks some):
#
#   multihost     libpq with a multi-host connection string
#                 (host=127.0.0.1,127.0.0.2 target_session_attrs=read-write),
#                 reconnecting on error.
#   dns           the client resolves shop.example.test. with getaddrinfo (the
#                 system resolver) before each (re)connect, through a caching
#                 resolver (Debian's unbound), and keeps its connection while
#                 it works. The record's ttl is BENCH_TTL (default 30 s).
#   dns-prelower  the same with TTL pre-lowering: `switch_ttl:
#                 BENCH_SWITCH_TTL` (default 5 s) in the group's traffic.
#   pgbouncer     the client connects through the harness's PgBouncer
#                 (HARNESS_PGBOUNCER=1, the `pgbouncer` traffic provider);
#                 skipped when the harness has none.
#
# Every write is one INSERT of a new id in its own transaction. The client
# logs "ack ID NS" / "err NS MESSAGE" (NS: CLOCK_MONOTONIC in nanoseconds);
# per mode and switch this script reports the longest gap between
# acknowledged writes, the errors the client saw, and the acknowledged writes
# missing from the new primary once the client works there again (lost);
# then medians and ranges per mode, with the load average and cores.
#
#   bash scripts/bench-clients.sh [N] [MODES]     (as root; after a build:
#   build/stackflip; STACKFLIP_BIN=other/stackflip measures another build)
#   e.g. bash scripts/bench-clients.sh 3 "multihost dns"
#   KEEP_BENCH_DIR=1 keeps the folder (client logs, apply output; libpq's own
#   notices, e.g. a FATAL read on an idle connection, in client-MODE.log.err).
#
# The dns modes run the client and unbound in a network namespace of their
# own, sfbcPID, linked to the root namespace by a veth pair on a free
# 10.213.X.0/30 (X from 200 up: .1 in the root namespace, .2 in the
# namespace). The harness listens on loopback only, so inside the namespace
# 127.0.0.0/8 is not local (lo keeps no address) but routed over the veth
# (route_localnet on both ends): the client connects to the address DNS
# gave it, 127.0.0.1 or .2, and PostgreSQL sees it come from .2 (a pg_hba
# line for it is added to both clusters of this harness). unbound listens on
# .2:53 and sends the zone example.test. to PowerDNS at 127.0.0.1 (a stub
# zone); /etc/netns/sfbcPID/resolv.conf names it, which `ip netns exec`
# puts on /etc/resolv.conf for the client. The namespace has no other
# route: nothing goes anywhere but to this machine. On exit (trap) every
# process this script started is stopped, the namespace (with its veth) and
# /etc/netns/sfbcPID are removed and the harness is stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
N=${1:-5}
MODES=${2:-multihost dns dns-prelower pgbouncer}
SF=${STACKFLIP_BIN:-$REPO/build/stackflip}  # STACKFLIP_BIN: measure another build
TTL=${BENCH_TTL:-30}
SWITCH_TTL=${BENCH_SWITCH_TTL:-5}
SETTLE=${BENCH_SETTLE:-2}  # seconds of steady writes before each switch
[[ $N =~ ^[1-9][0-9]*$ && $N -le 50 ]] || { echo "bench-clients: N must be 1..50" >&2; exit 2; }
[[ -x $SF ]] || { echo "bench-clients: no $SF (build first, or set STACKFLIP_BIN)" >&2; exit 1; }
for m in $MODES; do
  case $m in multihost|dns|dns-prelower|pgbouncer) ;; *) echo "bench-clients: unknown mode $m" >&2; exit 2;; esac
done
NEED_NS=0
[[ " $MODES " == *" dns"* ]] && NEED_NS=1
if ((NEED_NS)); then
  ((EUID == 0)) || { echo "bench-clients: the dns modes need root (network namespace)" >&2; exit 1; }
  command -v unbound >/dev/null || { echo "bench-clients: no unbound (scripts/install-deps.sh)" >&2; exit 1; }
  command -v dig >/dev/null || { echo "bench-clients: no dig (scripts/install-deps.sh)" >&2; exit 1; }
fi
# Nothing of ours goes through a proxy.
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY no_proxy NO_PROXY
export NO_COLOR=1

DIR=$(mktemp -d "${TMPDIR:-/tmp}/stackflip-bench-clients.XXXXXX")
chmod 755 "$DIR"
NS=sfbc$$
VETH=sfbc$$r
NS_MADE=
ETC_NETNS_MADE=
PIDS=()

alive() { local st; st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) && [[ $st != Z ]]; }
stop_pid() { # PID: TERM, at most 5 s, then KILL
  local pid=$1
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 100); do alive "$pid" || break; sleep 0.05; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  local pid left
  touch "$DIR"/stop-all 2>/dev/null || true
  for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
  if [[ -n $NS_MADE ]]; then
    left=$(ip netns pids "$NS" 2>/dev/null || true)
    # shellcheck disable=SC2086
    [[ -z $left ]] || kill -KILL $left 2>/dev/null || true
    for _ in $(seq 1 40); do [[ -z $(ip netns pids "$NS" 2>/dev/null) ]] && break; sleep 0.05; done
    ip netns del "$NS" 2>/dev/null || echo "bench-clients: could not delete netns $NS" >&2
    ip link del "$VETH" 2>/dev/null || true
    rm -rf "/etc/netns/$NS"
    [[ -z $ETC_NETNS_MADE ]] || rmdir /etc/netns 2>/dev/null || true
  fi
  bash scripts/harness.sh stop "$DIR" >/dev/null 2>&1 || true
  if [[ -n ${KEEP_BENCH_DIR:-} ]]; then echo "bench-clients: kept $DIR" >&2; else rm -rf "$DIR"; fi
}
trap cleanup EXIT
trap 'exit 143' TERM INT HUP

# ---------------------------------------------------------------- the client
APP=$DIR/bench_client.py
cp tests/e2e/libpq.py "$DIR/"  # imported by the client, from its folder
cat >"$APP" <<'PY'
# bench_client.py — written by scripts/bench-clients.sh. Times are
# time.monotonic_ns() (CLOCK_MONOTONIC: one clock for every namespace).
#   write dsn|dns OUT STOP DEADLINE_S FIRST_ID TAG BASE_DSN [NAME]
#     INSERTs ids FIRST_ID, FIRST_ID+1, ... into bench(id), one per
#     transaction (autocommit), 5 ms apart; every attempt takes a new id.
#     dsn: connects with BASE_DSN as it is. dns: resolves NAME with
#     getaddrinfo (AF_INET) before each connect and connects to that address
#     (hostaddr). A connection is kept while its writes succeed; on any error
#     it is closed and the client connects again at once, then after 10, 20,
#     40, 80, 100, 100 ... ms, as an application with a pool would.
#     Lines: "ack ID NS", "err NS MESSAGE" (MESSAGE starts with resolve:,
#     connect: or write:), "resolve NS ADDR", "conn NS ADDR".
#   run TIMES CMD...     runs CMD; writes "T0 T1 RC" (before, after) to TIMES
#   recovered LOG ADDR SINCE_NS TIMEOUT_S
#     exits 0 once LOG's latest connection is to ADDR ("-": any) and it has 20
#     acks after SINCE_NS; 1 after TIMEOUT_S.
#   check HOST PORT LOG  prints "MISSING ACKED": LOG's acked ids not in
#                        bench on HOST
#   report SWITCHES      the per-switch table and the summary per mode
import os, socket, statistics, subprocess, sys, time

def now():
    return time.monotonic_ns()

from libpq import pq

def one_line(b):
    return " ".join((b or b"").decode(errors="replace").split())[:200]

def write(kind, out, stop, deadline_s, first, tag, base, name=None):
    p = pq
    deadline = now() + int(float(deadline_s) * 1e9)
    i = int(first)
    conn = None
    fails = 0
    delays = [0, 0.01, 0.02, 0.04, 0.08]
    with open(out, "a", buffering=1) as f:
        def err(msg):
            nonlocal fails
            f.write("err %d %s\n" % (now(), msg))
            time.sleep(delays[fails] if fails < len(delays) else 0.1)
            fails += 1
        while now() < deadline and not os.path.exists(stop):
            if conn is None:
                dsn = base + " connect_timeout=2 application_name=bench-" + tag
                if kind == "dns":
                    try:
                        addr = socket.getaddrinfo(name, None, socket.AF_INET, socket.SOCK_STREAM)[0][4][0]
                    except OSError as e:
                        err("resolve: " + " ".join(str(e).split()))
                        continue
                    f.write("resolve %d %s\n" % (now(), addr))
                    dsn += " host=%s hostaddr=%s" % (name, addr)
                c = p.PQconnectdb(dsn.encode())
                if p.PQstatus(c) != 0:
                    msg = one_line(p.PQerrorMessage(c))
                    p.PQfinish(c)
                    err("connect: " + msg)
                    continue
                conn = c
                f.write("conn %d %s\n" % (now(), (p.PQhostaddr(conn) or p.PQhost(conn) or b"?").decode()))
            r = p.PQexec(conn, ("INSERT INTO bench(id, mode) VALUES (%d, '%s')" % (i, tag)).encode())
            ok = p.PQresultStatus(r) == 1  # PGRES_COMMAND_OK
            msg = "" if ok else one_line(p.PQresultErrorMessage(r) or p.PQerrorMessage(conn))
            p.PQclear(r)
            i += 1
            if ok:
                f.write("ack %d %d\n" % (i - 1, now()))
                fails = 0
                time.sleep(0.005)
            else:
                p.PQfinish(conn)
                conn = None
                err("write: " + msg)
    if conn is not None:
        p.PQfinish(conn)

def run(times, cmd):
    t0 = now()
    rc = subprocess.call(cmd)
    t1 = now()
    with open(times, "w") as f:
        f.write("%d %d %d\n" % (t0, t1, rc))
    return rc

def recovered(log, addr, since, timeout_s):
    end = time.monotonic() + float(timeout_s)
    since = int(since)
    pos, rest, last, acks = 0, "", None, 0
    while True:
        with open(log) as f:
            f.seek(pos)
            data = f.read()
            pos = f.tell()
        lines = (rest + data).split("\n")
        rest = lines.pop()
        for ln in lines:
            w = ln.split()
            if w and w[0] == "conn":
                last, acks = w[2], 0
            elif w and w[0] == "ack" and int(w[2]) > since:
                acks += 1
        if (addr == "-" or last == addr) and acks >= 20:
            return 0
        if time.monotonic() > end:
            return 1
        time.sleep(0.05)

def acked_ids(log):
    ids = []
    with open(log) as f:
        for ln in f:
            w = ln.split()
            if len(w) == 3 and w[0] == "ack":
                ids.append(int(w[1]))
    return ids

def check(host, port, log):
    ids = acked_ids(log)
    if not ids:
        print("0 0")
        return 0
    p = pq
    c = p.PQconnectdb(("host=%s port=%s user=stackflip dbname=app connect_timeout=5" % (host, port)).encode())
    if p.PQstatus(c) != 0:
        sys.exit("check: " + one_line(p.PQerrorMessage(c)))
    r = p.PQexec(c, ("SELECT id FROM bench WHERE id BETWEEN %d AND %d" % (min(ids), max(ids))).encode())
    if p.PQresultStatus(r) != 2:
        sys.exit("check: " + one_line(p.PQresultErrorMessage(r)))
    have = {int(p.PQgetvalue(r, k, 0)) for k in range(p.PQntuples(r))}
    p.PQclear(r)
    p.PQfinish(c)
    print(len(set(ids) - have), len(ids))
    return 0

def events(log):
    acks, errs = [], []
    with open(log) as f:
        for ln in f:
            w = ln.split()
            if len(w) >= 3 and w[0] == "ack":
                acks.append(int(w[2]))
            elif len(w) >= 2 and w[0] == "err":
                errs.append((int(w[1]), " ".join(w[2:])))
    acks.sort()
    return acks, errs

def window(acks, errs, t0, tend):
    """Longest gap between acks that touches [t0, tend), the errors in it."""
    gap, prev = 0, None
    for t in acks:
        if t >= tend:
            if prev is not None and prev < tend and t - prev > gap:
                gap = t - prev
            break
        if prev is not None and t > t0:
            gap = max(gap, t - prev)
        prev = t
    else:
        if prev is not None:  # no ack after the window's end: counted to it
            gap = max(gap, tend - prev)
    e = [m for t, m in errs if t0 <= t < tend]
    return gap, e

def fmt(v, unit=""):
    return "%s%s" % (("%.0f" % v) if abs(v) >= 10 or v == int(v) else ("%.1f" % v), unit)

def report(switches):
    rows = [ln.split() for ln in open(switches) if ln.strip()]
    modes = []
    for r in rows:
        if r[0] not in modes:
            modes.append(r[0])
    summary = []
    print("%-13s %2s %-10s %8s %10s %7s %-9s %6s %9s  %s" % (
        "mode", "#", "to", "apply ms", "gap ms", "errors", "w/c/r", "lost", "acked", "first error"))
    for m in modes:
        mine = [r for r in rows if r[0] == m]
        sw = [r for r in mine if r[1] != "end"]
        end = int([r for r in mine if r[1] == "end"][0][2])
        acks, errs = events(mine[0][-1])
        gaps, nerrs, lost, prev_missing, applies, ran = [], [], [], 0, [], True
        for k, r in enumerate(sw):
            # MODE I T0 T1 RC NEW MISSING ACKED PRELOWER RECOVERED LOG
            t0, t1 = int(r[2]), int(r[3])
            tend = int(sw[k + 1][2]) if k + 1 < len(sw) else end
            gap, e = window(acks, errs, t0, tend)
            missing = int(r[6])
            gaps.append(gap / 1e6); nerrs.append(len(e)); lost.append(missing - prev_missing)
            applies.append((t1 - t0) / 1e6)
            prev_missing = missing
            note = []
            if r[4] != "0": note.append("apply failed rc %s" % r[4])
            if r[9] != "1": note.append("client not back on %s in time" % r[5])
            if m == "dns-prelower": note.append("pre-lowering steps %s" % ("ran" if r[8] != "0" else "NOT in the plan"))
            if m == "pgbouncer": note.append("pause/resume steps %s" % ("ran" if r[8] != "0" else "NOT in the plan"))
            kinds = "/".join(str(sum(1 for x in e if x.startswith(k))) for k in ("write:", "connect:", "resolve:"))
            print("%-13s %2s %-10s %8.0f %10.1f %7d %-9s %6d %9s  %s%s" % (
                m, r[1], r[5], applies[-1], gaps[-1], len(e), kinds, lost[-1], r[7],
                (e[0][:60] if e else "-"), ("  [" + "; ".join(note) + "]") if note else ""))
            ran = ran and r[8] != "0"
        summary.append((m, gaps, nerrs, lost, applies, len(acks), ran))
    print()
    print("errors w/c/r: failed writes / failed connects / failed lookups; lost: acknowledged"
          " ids missing on the new primary / all acknowledged")
    print()
    print("%-13s %8s %26s %20s %8s %20s" % ("mode", "switches", "gap ms: median (min-max)",
                                           "errors: median (range)", "lost", "apply ms: median"))
    for m, gaps, nerrs, lost, applies, nacks, ran in summary:
        print("%-13s %8d %26s %20s %8s %20s" % (
            m, len(gaps),
            "%s (%s-%s)" % (fmt(statistics.median(gaps)), fmt(min(gaps)), fmt(max(gaps))),
            "%s (%d-%d)" % (fmt(statistics.median(nerrs)), min(nerrs), max(nerrs)),
            "%d/%d" % (sum(lost), nacks), fmt(statistics.median(applies))))
        if m == "dns-prelower" and not ran:
            print("  (dns-prelower: this build's plan had no traffic.ttl/traffic.wait step in some"
                  " switch: no pre-lowering there)")
        if m == "pgbouncer" and not ran:
            print("  (pgbouncer: this build's plan had no traffic.pause/traffic.resume step in some"
                  " switch: no pause there)")
    return 0

cmd = sys.argv[1] if len(sys.argv) > 1 else ""
if cmd == "write": write(*sys.argv[2:])
elif cmd == "run": sys.exit(run(sys.argv[2], sys.argv[3:]))
elif cmd == "recovered": sys.exit(recovered(*sys.argv[2:6]))
elif cmd == "check": sys.exit(check(*sys.argv[2:5]))
elif cmd == "report": sys.exit(report(sys.argv[2]))
else: sys.exit("usage: bench_client.py write|run|recovered|check|report ...")
PY

# ---------------------------------------------------------------- harness
echo "bench-clients: harness in $DIR; modes: $MODES; $N switches each; ttl $TTL s, switch_ttl $SWITCH_TTL s" >&2
PGB=0
if [[ " $MODES " == *" pgbouncer "* ]]; then
  if grep -q HARNESS_PGBOUNCER scripts/harness.sh && [[ -x ${PGBOUNCER_BIN:-/usr/sbin/pgbouncer} ]]; then PGB=1
  else echo "bench-clients: pgbouncer mode skipped: the harness has no PgBouncer (HARNESS_PGBOUNCER) or pgbouncer is not installed" >&2
  fi
fi
HARNESS_PGBOUNCER=$PGB bash scripts/harness.sh start "$DIR" >/dev/null
# shellcheck disable=SC1091
source "$DIR/env"
export PDNS_API_KEY STACKFLIP_STATE_DIR=$DIR/state
psql_at() { # HOST SQL
  PGCONNECT_TIMEOUT=5 "$PG_BIN/psql" -X -qAt -v ON_ERROR_STOP=1 "host=$1 port=$PG_PORT user=$PG_USER dbname=$PG_DB" -c "$2"
}
psql_at 127.0.0.1 "CREATE TABLE bench(id bigint PRIMARY KEY, mode text, at timestamptz DEFAULT now())"

# The configs: per variant (p: ttl TTL; s: also switch_ttl), one per active stack.
sed -E "s/^(    traffic: \{.*), ttl: [0-9]+\}$/\1, ttl: $TTL}/" "$DIR/stackflip.yaml" >"$DIR/p-primary.yaml"
grep -q "^    traffic: {.*, ttl: $TTL}$" "$DIR/p-primary.yaml" || { echo "bench-clients: unexpected traffic line in the harness config" >&2; exit 1; }
sed "s/, ttl: $TTL}$/, ttl: $TTL, switch_ttl: $SWITCH_TTL}/" "$DIR/p-primary.yaml" >"$DIR/s-primary.yaml"
for v in p s; do
  sed 's/^    active: primary$/    active: standby/' "$DIR/$v-primary.yaml" >"$DIR/$v-standby.yaml"
done
# b: traffic is the harness's PgBouncer entry instead of the DNS record.
if ((PGB)); then
  for a in primary standby; do
    sed -e "s|^  dns: {.*|  pgb: {type: pgbouncer, admin_dsn: \"$PGB_ADMIN_DSN\", password: \"\${env:PGB_ADMIN_PASSWORD}\", databases_file: \"$PGB_DATABASES_FILE\"}|" \
      -e "s|^    traffic: {.*|    traffic: {provider: pgb, database: $PGB_DATABASE}|" "$DIR/p-$a.yaml" >"$DIR/b-$a.yaml"
  done
  "$SF" validate "$DIR/b-primary.yaml" >"$DIR/validate.out" 2>&1 ||
    { echo "bench-clients: the PgBouncer config does not validate:" >&2; cat "$DIR/validate.out" >&2; exit 1; }
fi
if [[ " $MODES " == *" dns-prelower "* ]] && ! "$SF" validate "$DIR/s-primary.yaml" >"$DIR/validate.out" 2>&1; then
  echo "bench-clients: this build does not take switch_ttl:" >&2; cat "$DIR/validate.out" >&2
fi
ACTIVE=primary
addr_of() { [[ $1 == primary ]] && echo 127.0.0.1 || echo 127.0.0.2; }
other() { [[ $1 == primary ]] && echo standby || echo primary; }

# ---------------------------------------------------------------- namespace
NET='' ROOT_ADDR='' CLIENT_ADDR=''
netns_up() {
  local x
  for x in $(seq 200 254); do
    ip -4 addr show | grep -q "inet 10\.213\.$x\." && continue
    ip -4 route show | grep -q "^10\.213\.$x\." && continue
    NET=10.213.$x
    break
  done
  [[ -n $NET ]] || { echo "bench-clients: no free 10.213.X.0/30 for the veth" >&2; return 1; }
  ROOT_ADDR=$NET.1 CLIENT_ADDR=$NET.2
  ip netns add "$NS"
  NS_MADE=1
  ip link add "$VETH" type veth peer name eth0 netns "$NS"
  sysctl -qw "net.ipv6.conf.$VETH.disable_ipv6=1" 2>/dev/null || true
  sysctl -qw "net.ipv4.conf.$VETH.route_localnet=1"
  ip addr add "$ROOT_ADDR/30" dev "$VETH"
  ip link set "$VETH" up
  ip netns exec "$NS" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 \
    net.ipv4.conf.all.route_localnet=1 net.ipv4.conf.eth0.route_localnet=1
  ip -n "$NS" link set lo up
  ip -n "$NS" addr del 127.0.0.1/8 dev lo
  ip -n "$NS" addr add "$CLIENT_ADDR/30" dev eth0
  ip -n "$NS" link set eth0 up
  ip -n "$NS" route add 127.0.0.0/8 via "$ROOT_ADDR" dev eth0
  [[ -d /etc/netns ]] || ETC_NETNS_MADE=1
  mkdir -p "/etc/netns/$NS"
  printf 'nameserver %s\noptions timeout:1 attempts:2\n' "$CLIENT_ADDR" >"/etc/netns/$NS/resolv.conf"
  # PostgreSQL sees the namespace's client come from CLIENT_ADDR.
  local n
  for n in 1 2; do
    echo "host all all $CLIENT_ADDR/32 trust  # bench-clients.sh" |
      runuser -u postgres -- tee -a "$DIR/pg$n/data/pg_hba.conf" >/dev/null
    psql_at "$(addr_of "$([[ $n == 1 ]] && echo primary || echo standby)")" "SELECT pg_reload_conf()" >/dev/null
  done
}

UNBOUND_PID=
unbound_start() { # a fresh cache for each dns mode
  local u=$DIR/unbound
  [[ -z $UNBOUND_PID ]] || { stop_pid "$UNBOUND_PID"; UNBOUND_PID=; }
  mkdir -p "$u"
  cat >"$u/unbound.conf" <<EOF
# Written by scripts/bench-clients.sh: a caching resolver for the benchmark's
# client, in namespace $NS. Only example.test. is answered (from PowerDNS);
# no DNSSEC validation (the zone is not signed), no prefetch, no stale answers.
server:
  interface: $CLIENT_ADDR
  port: 53
  access-control: $NET.0/30 allow
  do-ip6: no
  do-daemonize: no
  username: ""
  chroot: ""
  directory: "$u"
  pidfile: ""
  use-syslog: no
  logfile: ""
  verbosity: 1
  num-threads: 1
  module-config: "iterator"
  qname-minimisation: no
  do-not-query-localhost: no
  prefetch: no
  serve-expired: no
  local-zone: "test." nodefault
stub-zone:
  name: "$ZONE"
  stub-addr: 127.0.0.1@$PDNS_PORT
remote-control:
  control-enable: no
EOF
  ip netns exec "$NS" unbound -d -c "$u/unbound.conf" </dev/null >>"$u/unbound.log" 2>&1 &
  UNBOUND_PID=$!
  PIDS+=("$UNBOUND_PID")
  local ok=
  for _ in $(seq 1 100); do
    alive "$UNBOUND_PID" || break
    # Asked for ns1, not shop: the client's first lookup fills the cache.
    [[ -n $(ip netns exec "$NS" dig "@$CLIENT_ADDR" "ns1.$ZONE" A +short +tries=1 +time=1 2>/dev/null) ]] && { ok=1; break; }
    sleep 0.1
  done
  [[ -n $ok ]] || { echo "bench-clients: unbound does not answer" >&2; tail -n 20 "$u/unbound.log" >&2; return 1; }
}

# ---------------------------------------------------------------- a mode
SWITCHES=$DIR/switches
: >"$SWITCHES"
LOADS=()
MODE_NO=0

apply_cfg() { # VARIANT STACK → runs apply; its times in $DIR/times
  python3 "$APP" run "$DIR/times" "$SF" apply -c "$DIR/$1-$2.yaml" --auto-approve >"$DIR/apply.out" 2>"$DIR/apply.err"
}

run_mode() { # MODE
  local mode=$1 variant=p log=$DIR/client-$1.log stop=$DIR/stop-$1 cpid i new t0 t1 rc missing acked pre rec deadline
  MODE_NO=$((MODE_NO + 1))
  [[ $mode == dns-prelower ]] && variant=s
  [[ $mode == pgbouncer ]] && variant=b
  : >"$log"
  # Whatever ran before (mode a's switches, the harness) left the record's
  # TTL at something else: converge on this mode's config first.
  apply_cfg "$variant" "$ACTIVE" || { echo "bench-clients: converging apply failed" >&2; cat "$DIR/apply.err" >&2; return 1; }
  deadline=$((N * (3 * TTL + 60) + 60))
  case $mode in
    multihost)
      python3 "$APP" write dsn "$log" "$stop" "$deadline" "$((MODE_NO * 1000000000 + 1))" "$mode" \
        "host=127.0.0.1,127.0.0.2 port=$PG_PORT user=$PG_USER dbname=$PG_DB target_session_attrs=read-write" 2>>"$log.err" &
      ;;
    dns|dns-prelower)
      unbound_start || return 1
      ip netns exec "$NS" python3 "$APP" write dns "$log" "$stop" "$deadline" "$((MODE_NO * 1000000000 + 1))" "$mode" \
        "port=$PG_PORT user=$PG_USER dbname=$PG_DB" "${RECORD%.}" 2>>"$log.err" &
      ;;
    pgbouncer)
      python3 "$APP" write dsn "$log" "$stop" "$deadline" "$((MODE_NO * 1000000000 + 1))" "$mode" \
        "host=127.0.0.1 port=$PGBOUNCER_PORT user=$PG_USER dbname=$PG_DB" 2>>"$log.err" &
      ;;
  esac
  cpid=$!
  PIDS+=("$cpid")
  python3 "$APP" recovered "$log" "$([[ $mode == pgbouncer ]] && echo - || addr_of "$ACTIVE")" 0 30 ||
    { echo "bench-clients: $mode: the client does not write" >&2; tail -n 5 "$log" >&2; return 1; }
  LOADS+=("$mode $(cut -d' ' -f1-3 /proc/loadavg)")
  for i in $(seq 1 "$N"); do
    new=$(other "$ACTIVE")
    sleep "$SETTLE"
    rc=0
    apply_cfg "$variant" "$new" || rc=$?
    read -r t0 t1 _ <"$DIR/times"
    cp "$DIR/apply.out" "$DIR/apply-$mode-$i.out"; cp "$DIR/apply.err" "$DIR/apply-$mode-$i.err"
    # The steps of issue 15 this switch ran: pre-lowering, or PgBouncer's pause.
    case $mode in
      dns-prelower) pre=$(grep -Ec '^ +[a-z0-9_-]+ [0-9]+/[0-9]+ traffic\.(ttl|wait) .* ok in ' "$DIR/apply.out" || true);;
      pgbouncer) pre=$(grep -Ec '^ +[a-z0-9_-]+ [0-9]+/[0-9]+ traffic\.(pause|resume) .* ok in ' "$DIR/apply.out" || true);;
      *) pre=0;;
    esac
    if ((rc != 0)); then
      echo "bench-clients: $mode switch $i: apply failed (rc $rc):" >&2; tail -n 5 "$DIR/apply.err" >&2
    fi
    rec=1
    python3 "$APP" recovered "$log" "$([[ $mode == pgbouncer ]] && echo - || addr_of "$new")" "$t1" $((TTL + 30)) || rec=0
    read -r missing acked < <(python3 "$APP" check "$(addr_of "$new")" "$PG_PORT" "$log")
    echo "$mode $i $t0 $t1 $rc $(addr_of "$new") $missing $acked $pre $rec $log" >>"$SWITCHES"
    echo "bench-clients: $mode $i/$N to $new: apply $(((t1 - t0) / 1000000)) ms, client back: $((rec)), missing so far $missing of $acked" >&2
    ((rc == 0)) || return 1
    ACTIVE=$new
  done
  LOADS+=("$mode $(cut -d' ' -f1-3 /proc/loadavg)")
  touch "$stop"
  for _ in $(seq 1 100); do alive "$cpid" || break; sleep 0.05; done
  stop_pid "$cpid"
  echo "$mode end $(python3 -c 'import time; print(time.monotonic_ns())') $log" >>"$SWITCHES"
}

FAILED=
((NEED_NS == 0)) || netns_up
for m in $MODES; do
  [[ $m != pgbouncer || $PGB == 1 ]] || continue
  run_mode "$m" || { FAILED=$m; break; }
done

echo
echo "What clients see during a switch: $(nproc) cores; load average (1, 5, 15 min) at each mode's start and end:"
printf '  %s\n' "${LOADS[@]}"
echo "ttl $TTL s; dns-prelower: switch_ttl $SWITCH_TTL s; $SETTLE s of steady writes before each switch"
echo
if [[ -s $SWITCHES ]]; then
  # A mode cut short has no end line: its last switch's window ends now.
  for m in $MODES; do
    grep -q "^$m " "$SWITCHES" && ! grep -q "^$m end " "$SWITCHES" &&
      echo "$m end $(python3 -c 'import time; print(time.monotonic_ns())') $DIR/client-$m.log" >>"$SWITCHES"
  done
  python3 "$APP" report "$SWITCHES"
fi
[[ -z $FAILED ]] || { echo "bench-clients: stopped in mode $FAILED" >&2; exit 1; }

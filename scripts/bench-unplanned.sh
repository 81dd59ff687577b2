#!/usr/bin/env bash
# Unplanned failover, stackflip against Patroni (issue 14): the same kill —
# the primary's PostgreSQL SIGKILLed with whatever manages it on its site
# (its port closed, nothing restarts it) — N times each (default 5), on the
# same machine, the same PostgreSQL 15 and the same 3-member etcd. Reports
# the median and range of the time from the kill until the other database
# accepts writes, and for stackflip also until the failover commit is on the
# branch and DNS answers the new address (Patroni does not move traffic).
#
#   stackflip: `stackflip run --interval 500ms` (one instance outside the
#              primary's site, `auto_failover: {after: AFTER, witnesses: 1}`,
#              AFTER=10s by default: the same window as Patroni's ttl) on the
#              harness (two clusters + PowerDNS + a Git repository, file://);
#              the harness's primary cluster is SIGKILLed.
#   Patroni:   two nodes (Debian `patroni`, etcd3 against the harness's etcd,
#              ttl 10, loop_wait 1, retry_timeout 4); node 1's Patroni and
#              its PostgreSQL are SIGKILLed together (a site lost: a Patroni
#              left alive would restart its PostgreSQL, not fail over).
#
#   bash scripts/bench-unplanned.sh [N]   (after a build: build/stackflip;
#   AFTER=3s to try another window; ONLY=stackflip or ONLY=patroni for one
#   side; STACKFLIP_BIN=other/stackflip)
#
# Patroni is a benchmark dependency only (never a test dependency): as root,
# a missing `patroni` is installed from Debian's packages; otherwise the
# Patroni half is skipped with a message.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-5}
AFTER=${AFTER:-10s}
SF=${STACKFLIP_BIN:-$PWD/build/stackflip}
[[ -x $SF ]] || { echo "build first (cmake --build build)"; exit 1; }
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}

DIR=$(mktemp -d "${TMPDIR:-/tmp}/stackflip-bench-unplanned.XXXXXX")
chmod 755 "$DIR"
RESULTS=$DIR/results
: >"$RESULTS"
cleanup() {
  set +e  # everything below is tried, whatever failed before
  pkill -9 -f "patroni $DIR/" 2>/dev/null || true
  for d in "$DIR"/p*/node*/data; do
    [[ -f $d/postmaster.pid ]] && kill -9 "$(head -1 "$d/postmaster.pid")" 2>/dev/null || true
  done
  for h in "$DIR"/sf* "$DIR"/p*; do [[ -d $h ]] && bash scripts/harness.sh stop "$h" >/dev/null 2>&1 || true; done
  rm -rf "$DIR"
}
trap cleanup EXIT
now() { date +%s.%N; }
ms_since() { python3 -c "print(int(($2 - $1) * 1000))"; }
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }

# ------------------------------------------------------------------ stackflip
stackflip_round() { # I
  local h=$DIR/sf$1
  mkdir -p "$h" && chmod 755 "$h"
  bash scripts/harness.sh start "$h" >/dev/null
  (
    set +u
    # shellcheck disable=SC1091
    source "$h/env"
    export PDNS_API_KEY STACKFLIP_STATE_DIR=$h/state
    sql() { "$PG_BIN/psql" -X -qAt "host=$1 port=$PG_PORT user=$PG_USER dbname=$PG_DB connect_timeout=1" -c "$2" 2>/dev/null; }
    git init -q -b main "$h/work"
    sed "s/^    active: primary$/    active: primary\n    auto_failover: {after: $AFTER, max_data_loss_bytes: 1048576, witnesses: 1}/" \
      "$h/stackflip.yaml" >"$h/work/stackflip.yaml"
    git -C "$h/work" add stackflip.yaml
    git -C "$h/work" -c user.email=ops@example.test -c user.name=Ops commit -q -m "auto failover"
    git clone -q --bare "$h/work" "$h/origin.git"
    local first; first=$(git -C "$h/origin.git" rev-parse main)
    "$SF" run --repo "file://$h/origin.git" --interval 500ms --state "$h/run.db" >"$h/run.log" 2>&1 &
    local run=$!
    local end=$((SECONDS + 60))
    until grep -q '^pass: .*no-changes' "$h/run.log"; do
      ((SECONDS < end)) || { echo "stackflip: never converged" >&2; kill "$run"; exit 1; }
      sleep 0.1
    done
    sleep 2  # a few passes: recent positions
    local t_kill t_commit='' t_writable='' t_dns='' t
    t_kill=$(now)
    bash scripts/harness.sh kill-pg 1 "$h" >/dev/null
    end=$((SECONDS + 60))
    while ((SECONDS < end)) && [[ -z $t_dns ]]; do
      t=$(now)
      [[ -z $t_commit && $(git -C "$h/origin.git" rev-parse main) != "$first" ]] && t_commit=$t
      t=$(now)
      [[ -z $t_writable && $(sql 127.0.0.2 "SELECT pg_is_in_recovery()") == f ]] && t_writable=$t
      t=$(now)
      [[ -n $t_writable && $(dig @127.0.0.1 -p "$PDNS_PORT" "$RECORD" A +short +time=1 +tries=1) == 127.0.0.2 ]] && t_dns=$t
      sleep 0.02
    done
    kill "$run" 2>/dev/null; wait "$run" 2>/dev/null
    [[ -n $t_dns ]] || { echo "stackflip round $1: no failover within 60 s" >&2; exit 1; }
    echo "$1 stackflip_commit $(ms_since "$t_kill" "$t_commit")" >>"$RESULTS"
    echo "$1 stackflip_writable $(ms_since "$t_kill" "$t_writable")" >>"$RESULTS"
    echo "$1 stackflip_dns $(ms_since "$t_kill" "$t_dns")" >>"$RESULTS"
    echo "stackflip round $1: commit $(ms_since "$t_kill" "$t_commit") ms, writable $(ms_since "$t_kill" "$t_writable") ms, DNS $(ms_since "$t_kill" "$t_dns") ms" >&2
  )
  local rc=$?
  bash scripts/harness.sh stop "$h" >/dev/null 2>&1
  rm -rf "$h"
  return $rc
}

# ------------------------------------------------------------------ Patroni
# Runs `patroni CONFIG` as postgres (PostgreSQL refuses root).
as_postgres() { if ((EUID == 0)); then runuser -u postgres -- "$@"; else "$@"; fi; }

patroni_config() { # DIR NAME PG_PORT API_PORT ETCD_HOSTS SCOPE
  local d=$1 name=$2 pg=$3 api=$4 etcd=$5 scope=$6
  mkdir -p "$d/$name"
  chmod 700 "$d/$name"
  cat >"$d/$name.yaml" <<EOF
scope: $scope
name: $name
log: {level: WARNING, dir: $d/$name}
restapi: {listen: 127.0.0.1:$api, connect_address: 127.0.0.1:$api}
etcd3: {hosts: "$etcd"}
bootstrap:
  dcs:
    ttl: 10
    loop_wait: 1
    retry_timeout: 4
    maximum_lag_on_failover: 1048576
    postgresql:
      use_pg_rewind: true
      parameters: {wal_level: replica, hot_standby: "on", max_wal_senders: 5, max_replication_slots: 5, wal_log_hints: "on"}
  initdb: [{encoding: UTF8}]
  pg_hba:
    - local all all trust
    - host replication replicator 127.0.0.1/32 trust
    - host all all 127.0.0.1/32 trust
postgresql:
  listen: 127.0.0.1:$pg
  connect_address: 127.0.0.1:$pg
  data_dir: $d/$name/data
  bin_dir: $PG_BIN
  pgpass: $d/$name/pgpass
  authentication:
    replication: {username: replicator, password: rep}
    superuser: {username: postgres, password: pg}
    rewind: {username: rewinder, password: rw}
  parameters: {unix_socket_directories: "$d/$name"}
EOF
}

patroni_round() { # I
  local p=$DIR/p$1
  mkdir -p "$p" && chmod 755 "$p"
  bash scripts/harness.sh start "$p" >/dev/null  # for its etcd; its clusters are left alone
  (
    set +u
    # shellcheck disable=SC1091
    source "$p/env"
    local etcd="127.0.0.1:$ETCD1_PORT,127.0.0.1:$ETCD2_PORT,127.0.0.1:$ETCD3_PORT"
    local pg1 pg2 api1 api2
    pg1=$(free_port) pg2=$(free_port) api1=$(free_port) api2=$(free_port)
    patroni_config "$p" node1 "$pg1" "$api1" "$etcd" "bench$1"
    patroni_config "$p" node2 "$pg2" "$api2" "$etcd" "bench$1"
    ((EUID == 0)) && chown -R postgres "$p/node1" "$p/node2" "$p/node1.yaml" "$p/node2.yaml"
    api() { curl -s -o /dev/null -m 1 -w '%{http_code}' "http://127.0.0.1:$1/$2"; }
    wait_for() { # SECONDS WHAT CMD...
      local end=$((SECONDS + $1)) what=$2; shift 2
      until "$@"; do ((SECONDS < end)) || { echo "patroni: $what not within the time" >&2; return 1; }; sleep 0.2; done
    }
    as_postgres patroni "$p/node1.yaml" >"$p/node1.out" 2>&1 &
    answers() { [[ $(api "$1" "$2") == 200 ]]; }
    wait_for 90 "node1 leading" answers "$api1" primary || exit 1
    as_postgres patroni "$p/node2.yaml" >"$p/node2.out" 2>&1 &
    wait_for 90 "node2 streaming" answers "$api2" 'replica?lag=0' || exit 1
    sql() { "$PG_BIN/psql" -X -qAt "host=127.0.0.1 port=$1 user=postgres dbname=postgres connect_timeout=1" -c "$2" 2>/dev/null; }
    sql "$pg1" "CREATE TABLE w(i int)" >/dev/null
    sleep 3  # a few loops
    local pm t_kill t_writable='' end
    pm=$(head -1 "$p/node1/data/postmaster.pid")
    t_kill=$(now)
    # node 1's site is gone: its Patroni and its PostgreSQL at once.
    pkill -9 -f "patroni $p/node1.yaml" || true
    kill -9 "$pm" 2>/dev/null || true
    pkill -9 -P "$pm" || true
    end=$((SECONDS + 60))
    while ((SECONDS < end)) && [[ -z $t_writable ]]; do
      [[ $(sql "$pg2" "SELECT pg_is_in_recovery()") == f ]] && t_writable=$(now)
      sleep 0.02
    done
    pkill -TERM -f "patroni $p/node2.yaml" || true
    wait 2>/dev/null || true
    [[ -n $t_writable ]] || { echo "patroni round $1: no failover within 60 s" >&2; exit 1; }
    echo "$1 patroni_writable $(ms_since "$t_kill" "$t_writable")" >>"$RESULTS"
    echo "patroni round $1: writable $(ms_since "$t_kill" "$t_writable") ms" >&2
  )
  local rc=$?
  pkill -9 -f "patroni $p/" 2>/dev/null || true
  for d in "$p"/node*/data; do
    [[ -f $d/postmaster.pid ]] && kill -9 "$(head -1 "$d/postmaster.pid")" 2>/dev/null || true
  done
  bash scripts/harness.sh stop "$p" >/dev/null 2>&1
  rm -rf "$p"
  return $rc
}

HAVE_PATRONI=1
[[ ${ONLY:-patroni} == patroni ]] || HAVE_PATRONI=0
if ((HAVE_PATRONI)) && ! command -v patroni >/dev/null; then
  if ((EUID == 0)); then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q patroni >/dev/null || HAVE_PATRONI=0
  else
    HAVE_PATRONI=0
  fi
  ((HAVE_PATRONI)) || echo "patroni is not installed (apt-get install patroni): its half is skipped" >&2
fi

for i in $(seq 1 "$N"); do
  [[ ${ONLY:-stackflip} != stackflip ]] || stackflip_round "$i"
  if ((HAVE_PATRONI)) && [[ ${ONLY:-patroni} == patroni ]]; then patroni_round "$i"; fi
done

echo
echo "Unplanned failover on $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), $N kills each;"
[[ ${ONLY:-stackflip} != stackflip ]] || echo "stackflip: auto_failover after $AFTER (one instance, interval 500ms)"
((HAVE_PATRONI == 0)) || echo "Patroni $(patroni --version 2>/dev/null | cut -d' ' -f2): ttl 10, loop_wait 1, retry_timeout 4"
python3 - "$RESULTS" <<'PY'
import sys, statistics
rows, order = {}, []
for line in open(sys.argv[1]):
    run, name, ms = line.split()
    if name not in rows: order.append(name); rows[name] = []
    rows[name].append(float(ms) / 1000)
labels = {"stackflip_commit": "stackflip: failover commit in Git",
          "stackflip_writable": "stackflip: standby writable",
          "stackflip_dns": "stackflip: DNS answers it",
          "patroni_writable": "Patroni: replica writable"}
print(f"{'from the kill':<36}{'median s':>9}{'min':>8}{'max':>8}")
for name in order:
    v = rows[name]
    print(f"{labels.get(name, name):<36}{statistics.median(v):>9.2f}{min(v):>8.2f}{max(v):>8.2f}")
if "stackflip_writable" in rows and "patroni_writable" in rows:
    r = statistics.median(rows["stackflip_writable"]) / statistics.median(rows["patroni_writable"])
    print(f"writable, stackflip / Patroni (medians): {r:.2f}")
PY

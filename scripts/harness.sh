#!/usr/bin/env bash
# Local test harness: two PostgreSQL 15 clusters (primary + streaming replica),
# a PowerDNS Authoritative server and a 3-member etcd cluster, all on
# loopback, all under one folder.
#
#   harness.sh start DIR        start everything under DIR (caller made DIR)
#   harness.sh stop DIR         stop everything; always succeeds, idempotent
#   harness.sh status DIR       short human status
#   harness.sh kill-pg N DIR    SIGKILL cluster N (1|2|3): postmaster and children
#   harness.sh start-pg N DIR   start cluster N again (as configured on disk)
#   harness.sh stop-pdns DIR / start-pdns DIR
#   harness.sh stop-pgb DIR / start-pgb DIR     (with HARNESS_PGBOUNCER)
#   harness.sh kill-etcd N DIR  SIGKILL etcd member N (1|2|3)
#   harness.sh start-etcd N DIR start member N again on its existing data dir
#   harness.sh freeze-etcd N DIR / thaw-etcd N DIR   SIGSTOP / SIGCONT member N
#
# HARNESS_STACKS=3 adds a third cluster (pg3 on 127.0.0.3, a second streaming
# replica of pg1, in maintenance like pg2; stack `third` in the config).
#
# HARNESS_PGBOUNCER: a PgBouncer on 127.0.0.1 (issue 15), transaction
# pooling, its [databases] section %include'd from pgb/databases.ini (entry
# PGB_DATABASE, named as PG_DB, pointing at pg1), clients trusted from
# loopback, the admin console (user pgbadmin) by md5 with a random password
# (PGB_ADMIN_PASSWORD). Unset: started when pgbouncer is installed; 1: needed
# (exit 77 without it); 0: not started. PGB_* (PGB_PORT also as
# PGBOUNCER_PORT) in env only when it runs; host.yaml then grants the
# databases file and the admin password.
#
# HARNESS ONLY: pg_hba trusts every connection from 127.0.0.0/8 and the
# PowerDNS API key is random per run. Never copy these settings anywhere else.
#
# Layout under DIR:
#   env                 sourceable by bash (see write_env)
#   stackflip.yaml      config for stackflip against this harness
#   host.yaml           its host policy (STACKFLIP_HOST_CONFIG in env)
#   pg1/data pg1/sock pg1/log/postgresql.log   (same for pg2)
#   pdns/pdns.conf pdns/pdns.sqlite3 pdns/pdns.log pdns/pdns.pid
#   etcd1/data etcd1/etcd.log etcd1/etcd.pid   (same for etcd2, etcd3;
#     client URLs in env: ETCD_ENDPOINTS, ETCD1_URL .. ETCD3_URL)
#   pgb/pgbouncer.ini pgb/databases.ini pgb/userlist.txt pgb/hba.conf
#     pgb/pgbouncer.log pgb/pgbouncer.pid   (HARNESS_PGBOUNCER)
#
# Exit 77 when PostgreSQL 15, PowerDNS or etcd are not installed (CTest: skipped),
# or PgBouncer with HARNESS_PGBOUNCER=1.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$SCRIPT_DIR/.." && pwd)
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
ETCD_BIN=${ETCD_BIN:-/usr/bin/etcd}
PG_USER=stackflip
PG_DB=app
ZONE=example.test.
RECORD=shop.example.test.
PG1_HOST=127.0.0.1
PG2_HOST=127.0.0.2
PG3_HOST=127.0.0.3
STACKS=${HARNESS_STACKS:-2}
[[ $STACKS == 2 || $STACKS == 3 ]] || { echo "harness: HARNESS_STACKS must be 2 or 3" >&2; exit 2; }
PGBOUNCER_BIN=${PGBOUNCER_BIN:-/usr/sbin/pgbouncer}
PGB_DATABASE=$PG_DB
PGB_ADMIN_USER=pgbadmin
# Whether this start runs a PgBouncer (see the header): decided in check_tools.
WANT_PGB=0

die() { echo "harness: $*" >&2; exit 1; }

# True while every PID given is a live (non-zombie) process. Orphans may sit
# as zombies when PID 1 does not reap, so kill -0 alone is not enough.
not_alive() { ! alive_any "$@"; }
alive_any() {
  local pid st
  for pid in "$@"; do
    st=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) || continue
    [[ $st != Z ]] && return 0
  done
  return 1
}
log() { [[ -n ${HARNESS_QUIET:-} ]] || echo "harness: $*" >&2; }

# ---------------------------------------------------------------- helpers

# Run a PostgreSQL server-side binary as an unprivileged user: PostgreSQL
# refuses to run as root, so as root we switch to the `postgres` OS user.
as_pg() {
  if [[ $EUID -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# A port is free when we can bind it (TCP, and UDP if asked) on every address.
port_free() { # PORT PROTO ADDR...
  local port=$1 proto=$2; shift 2
  python3 - "$port" "$proto" "$@" <<'EOF' 2>/dev/null
import socket, sys
port, proto, addrs = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
kinds = [socket.SOCK_STREAM] + ([socket.SOCK_DGRAM] if proto == "tcpudp" else [])
for a in addrs:
    for k in kinds:
        s = socket.socket(socket.AF_INET, k)
        try:
            s.bind((a, port))
        except OSError:
            sys.exit(1)
        finally:
            s.close()
EOF
}

# Pick a random port below the Linux ephemeral range (32768+) so outgoing
# connections do not grab it between our check and the server's bind.
pick_port() { # PROTO ADDR...
  local p
  for _ in $(seq 1 50); do
    p=$((15000 + RANDOM % 17000))
    if port_free "$p" "$@"; then echo "$p"; return 0; fi
  done
  return 1
}

# pick_port for COUNT distinct ports at once (TCP on 127.0.0.1): one Python
# start instead of COUNT, which matters on a loaded machine.
pick_ports() { # COUNT
  python3 - "$1" <<'EOF' 2>/dev/null
import random, socket, sys
want, picked = int(sys.argv[1]), []
for _ in range(50 * want):
    p = random.randrange(15000, 32000)
    if p in picked:
        continue
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", p))
    except OSError:
        continue
    finally:
        s.close()
    picked.append(p)
    if len(picked) == want:
        print(" ".join(map(str, picked)))
        sys.exit(0)
sys.exit(1)
EOF
}

# Poll CMD... with short growing sleeps until it succeeds or TIMEOUT seconds.
wait_for() { # TIMEOUT CMD...
  local timeout=$1; shift
  local deadline=$((SECONDS + timeout)) delay=0.02
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || return 1
    sleep "$delay"
    case $delay in 0.02) delay=0.05;; 0.05) delay=0.1;; 0.1) delay=0.2;; esac
  done
}

pg_data() { echo "$DIR/pg$1/data"; }
pg_host() { case $1 in 1) echo $PG1_HOST;; 2) echo $PG2_HOST;; *) echo $PG3_HOST;; esac; }
pg_logfile() { echo "$DIR/pg$1/log/postgresql.log"; }

psql_n() { # N SQL [USER DB]  (tuples only, unaligned, over TCP)
  PGCONNECT_TIMEOUT=3 "$PG_BIN/psql" -X -qAt -v ON_ERROR_STOP=1 \
    "host=$(pg_host "$1") port=$PG_PORT user=${3:-$PG_USER} dbname=${4:-$PG_DB}" -c "$2"
}

postmaster_pid() { # N -> pid of a live postmaster, or fail
  local f; f="$(pg_data "$1")/postmaster.pid"
  [[ -r $f ]] || return 1
  local pid; pid=$(head -n1 "$f" 2>/dev/null) || return 1
  [[ $pid =~ ^[0-9]+$ ]] && alive_any "$pid" && echo "$pid"
}

tail_log() { # FILE
  [[ -r $1 ]] || return 0
  echo "---- last lines of $1 ----" >&2
  tail -n 20 "$1" >&2
}

check_tools() {
  local t
  for t in "$PG_BIN/postgres" "$PG_BIN/initdb" "$PG_BIN/pg_ctl" "$PG_BIN/pg_basebackup"; do
    [[ -x $t ]] || { echo "harness: skipped: $t not found (install postgresql-15)" >&2; exit 77; }
  done
  for t in pdns_server pdnsutil sqlite3 dig python3 curl; do
    command -v "$t" >/dev/null || { echo "harness: skipped: $t not found (run scripts/install-deps.sh)" >&2; exit 77; }
  done
  [[ -r $PDNS_SCHEMA ]] || { echo "harness: skipped: $PDNS_SCHEMA not found (install pdns-backend-sqlite3)" >&2; exit 77; }
  [[ -x $ETCD_BIN ]] || { echo "harness: skipped: $ETCD_BIN not found (install etcd-server)" >&2; exit 77; }
  if [[ $EUID -eq 0 ]] && ! id -u postgres >/dev/null 2>&1; then
    echo "harness: skipped: running as root but there is no 'postgres' OS user" >&2; exit 77
  fi
  case ${HARNESS_PGBOUNCER:-} in
    0) WANT_PGB=0;;
    1) [[ -x $PGBOUNCER_BIN ]] || { echo "harness: skipped: $PGBOUNCER_BIN not found (install pgbouncer)" >&2; exit 77; }
       WANT_PGB=1;;
    '') [[ -x $PGBOUNCER_BIN ]] && WANT_PGB=1;;
    *) echo "harness: HARNESS_PGBOUNCER must be 0 or 1" >&2; exit 2;;
  esac
}

PDNS_SCHEMA=/usr/share/doc/pdns-backend-sqlite3/schema.sqlite3.sql
[[ -r $PDNS_SCHEMA ]] || PDNS_SCHEMA=/usr/share/pdns-backend-sqlite3/schema/schema.sqlite3.sql

load_env() {
  [[ -r $DIR/env ]] || return 1
  # shellcheck disable=SC1091
  source "$DIR/env"
}

# ---------------------------------------------------------------- postgres

# Settings owned by the harness; per cluster only the listen address differs.
# Kept in harness.conf (included from postgresql.conf) so a port retry can
# rewrite it and pg-control.sh can preserve it across pg_rewind.
write_pg_conf() { # N
  local data; data=$(pg_data "$1")
  as_pg tee "$data/harness.conf" >/dev/null <<EOF
# Written by scripts/harness.sh (test harness only).
listen_addresses = '$(pg_host "$1")'
port = $PG_PORT
unix_socket_directories = '$DIR/pg$1/sock'
wal_level = replica
wal_log_hints = on
# After an immediate stop (re-attaching a former primary), fsync the data
# directory with one syncfs instead of file by file: ~4 s -> ~0.6 s here.
recovery_init_sync_method = syncfs
hot_standby = on
max_wal_senders = 10
max_replication_slots = 10
wal_keep_size = 256MB
logging_collector = off
log_min_messages = warning
log_min_error_statement = error
cluster_name = 'pg$1'
EOF
}

trace() { [[ -z ${HARNESS_TRACE:-} ]] || echo "harness: +${SECONDS}s $*" >&2; }

pg_start() { # N  -> 0 when accepting connections
  local n=$1 data; data=$(pg_data "$n")
  as_pg "$PG_BIN/pg_ctl" -D "$data" -l "$(pg_logfile "$n")" -w -t 60 start >/dev/null 2>&1 || return 1
  wait_for 30 "$PG_BIN/pg_isready" -q -h "$(pg_host "$n")" -p "$PG_PORT" -U postgres -d postgres
}

pg_stop() { # N  -> always 0
  local n=$1 data pid; data=$(pg_data "$n")
  [[ -d $data ]] || return 0
  pid=$(postmaster_pid "$n") || return 0
  as_pg "$PG_BIN/pg_ctl" -D "$data" -m fast -w -t 20 stop >/dev/null 2>&1 ||
    as_pg "$PG_BIN/pg_ctl" -D "$data" -m immediate -w -t 10 stop >/dev/null 2>&1 || true
  if alive_any "$pid"; then kill -9 "$pid" 2>/dev/null || true; fi
  return 0
}

pg_kill() { # N: simulate a crash — SIGKILL the postmaster and its children
  local n=$1 pid kids
  pid=$(postmaster_pid "$n") || { log "pg$n is not running"; return 0; }
  kids=$(pgrep -P "$pid" || true)
  kill -9 "$pid" $kids 2>/dev/null || true
  # shellcheck disable=SC2086
  wait_for 10 not_alive $pid $kids || true
  clear_stale_pidfile "$n"
}

# PID 1 on some containers reaps orphans late: a SIGKILLed postmaster can sit
# as a zombie, which PostgreSQL takes for a live postmaster ("lock file
# postmaster.pid already exists"). Once the recorded pid is dead or a zombie
# (and kill-pg waited for its children), the lock file is stale: remove it.
clear_stale_pidfile() { # N
  local f pid; f="$(pg_data "$1")/postmaster.pid"
  [[ -e $f ]] || return 0
  pid=$(head -n1 "$f" 2>/dev/null)
  [[ $pid =~ ^[0-9]+$ ]] && alive_any "$pid" && return 0
  # The socket lock file names the same dead pid and blocks the same way.
  local port sockdir; port=$(sed -n 4p "$f" 2>/dev/null); sockdir=$(sed -n 5p "$f" 2>/dev/null)
  [[ -n $port && -n $sockdir ]] && as_pg rm -f "$sockdir/.s.PGSQL.$port.lock"
  as_pg rm -f "$f"
}

streaming() {
  [[ $(psql_n 1 "select count(*) from pg_stat_replication where application_name in ('standby', 'third') and state = 'streaming'") -ge $((STACKS - 1)) ]]
}

# Create pg1 (initdb) once; the port is chosen afterwards so it can be retried.
pg_init_primary() {
  local d1; d1=$(pg_data 1)
  local n
  for n in $(seq 1 "$STACKS"); do mkdir -p "$DIR/pg$n/sock" "$DIR/pg$n/log"; done
  if [[ $EUID -eq 0 ]]; then
    chmod o+x "$DIR"   # postgres must be able to traverse into DIR
    for n in $(seq 1 "$STACKS"); do chown -R postgres: "$DIR/pg$n"; done
  fi
  as_pg "$PG_BIN/initdb" -D "$d1" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 --no-sync \
    >"$DIR/pg1/log/initdb.log" 2>&1 || { tail_log "$DIR/pg1/log/initdb.log"; return 1; }
  trace "initdb done"
  echo "include 'harness.conf'" | as_pg tee -a "$d1/postgresql.conf" >/dev/null
  # Harness only: trust everything from loopback, including replication.
  as_pg tee "$d1/pg_hba.conf" >/dev/null <<'EOF'
# Written by scripts/harness.sh: TEST HARNESS ONLY, trusts all of loopback.
local   all          all                  trust
local   replication  all                  trust
host    all          all   127.0.0.0/8    trust
host    replication  all   127.0.0.0/8    trust
host    all          all   ::1/128        trust
host    replication  all   ::1/128        trust
EOF
}

# Start pg1 on PG_PORT, create the role and database, clone pg2, start it.
pg_bring_up() {
  local d2; d2=$(pg_data 2)
  write_pg_conf 1
  pg_start 1 || return 1
  trace "pg1 started"
  psql_n 1 "create role $PG_USER login superuser" postgres postgres >/dev/null || return 1
  psql_n 1 "create database $PG_DB owner $PG_USER" postgres postgres >/dev/null || return 1
  as_pg rm -rf "$d2"
  as_pg "$PG_BIN/pg_basebackup" -D "$d2" -R -X stream -c fast --no-sync \
    -d "host=$PG1_HOST port=$PG_PORT user=$PG_USER application_name=standby" \
    >"$DIR/pg2/log/basebackup.log" 2>&1 || { tail_log "$DIR/pg2/log/basebackup.log"; return 1; }
  trace "basebackup done"
  write_pg_conf 2
  pg_start 2 || return 1
  trace "pg2 started"
  ((STACKS == 3)) || return 0
  local d3; d3=$(pg_data 3)
  as_pg rm -rf "$d3"
  as_pg "$PG_BIN/pg_basebackup" -D "$d3" -R -X stream -c fast --no-sync \
    -d "host=$PG1_HOST port=$PG_PORT user=$PG_USER application_name=third" \
    >"$DIR/pg3/log/basebackup.log" 2>&1 || { tail_log "$DIR/pg3/log/basebackup.log"; return 1; }
  write_pg_conf 3
  pg_start 3 || return 1
  trace "pg3 started"
}

start_postgres() {
  pg_init_primary || return 1
  local attempt
  for attempt in 1 2 3 4 5; do
    # HARNESS_PG_PORT: try this port first, unchecked (tests the retry path).
    if ((attempt == 1)) && [[ -n ${HARNESS_PG_PORT:-} ]]; then PG_PORT=$HARNESS_PG_PORT
    else PG_PORT=$(pick_port tcp $PG1_HOST $PG2_HOST $PG3_HOST) || { echo "harness: no free port" >&2; return 1; }; fi
    if pg_bring_up; then return 0; fi
    # Most likely someone bound the port between our check and the start:
    # a bind error in the log means retry on another port.
    if grep -qs 'could not bind\|could not create any TCP/IP sockets' "$(pg_logfile 1)" "$(pg_logfile 2)" "$(pg_logfile 3)"; then
      log "port $PG_PORT collided, retrying (attempt $attempt)"
      pg_stop 3; pg_stop 2; pg_stop 1
      for f in "$(pg_logfile 1)" "$(pg_logfile 2)" "$(pg_logfile 3)"; do [[ -e $f ]] && as_pg truncate -s0 "$f"; done
      continue
    fi
    tail_log "$(pg_logfile 1)"; tail_log "$(pg_logfile 2)"
    return 1
  done
  echo "harness: could not find a free PostgreSQL port after 5 attempts" >&2
  return 1
}

# ---------------------------------------------------------------- powerdns

write_pdns_conf() {
  cat >"$DIR/pdns/pdns.conf" <<EOF
# Written by scripts/harness.sh (test harness only).
launch=gsqlite3
gsqlite3-database=$DIR/pdns/pdns.sqlite3
local-address=127.0.0.1
local-port=$PDNS_PORT
socket-dir=$DIR/pdns
daemon=no
guardian=no
disable-syslog=yes
log-timestamp=no
loglevel=4
api=yes
api-key=$PDNS_API_KEY
webserver=yes
webserver-address=127.0.0.1
webserver-port=$PDNS_API_PORT
webserver-allow-from=127.0.0.0/8
# Answer a record change at once.
cache-ttl=0
negquery-cache-ttl=0
query-cache-ttl=0
zone-cache-refresh-interval=0
consistent-backends=yes
# Never talk to the internet: no security poll, no notifies, no AXFR.
security-poll-suffix=
disable-axfr=yes
only-notify=
EOF
}

pdns_create_db() {
  mkdir -p "$DIR/pdns"
  rm -f "$DIR/pdns/pdns.sqlite3"
  sqlite3 "$DIR/pdns/pdns.sqlite3" <"$PDNS_SCHEMA"
  PDNS_PORT=0 PDNS_API_PORT=0 write_pdns_conf
  local u="pdnsutil --config-dir=$DIR/pdns"
  {
    $u create-zone "$ZONE" "ns1.$ZONE" &&
    $u add-record "$ZONE" ns1 A 60 127.0.0.1 &&
    $u add-record "$ZONE" shop A 60 127.0.0.1
  } >"$DIR/pdns/pdnsutil.log" 2>&1 || { tail_log "$DIR/pdns/pdnsutil.log"; return 1; }
}

pdns_pid() {
  local pid; pid=$(cat "$DIR/pdns/pdns.pid" 2>/dev/null) || return 1
  [[ $pid =~ ^[0-9]+$ ]] && alive_any "$pid" && echo "$pid"
}

dns_answer() { # -> A record(s) of RECORD
  dig @127.0.0.1 -p "$PDNS_PORT" "$RECORD" A +short +tries=1 +time=1 2>/dev/null
}

api_ok() {
  curl -fsS -o /dev/null -m 2 -H "X-API-Key: $PDNS_API_KEY" "$PDNS_API_URL/api/v1/servers/localhost/zones/$ZONE"
}

pdns_launch() { # -> 0 when DNS answers and the API works
  # Fully detached: no inherited stdout, so `$(harness.sh start ...)` returns.
  pdns_server --config-dir="$DIR/pdns" </dev/null >>"$DIR/pdns/pdns.log" 2>&1 &
  echo $! >"$DIR/pdns/pdns.pid"
  local deadline=$((SECONDS + 20))
  while ((SECONDS < deadline)); do
    pdns_pid >/dev/null || return 1
    [[ $(dns_answer) == 127.0.0.1 ]] && api_ok 2>/dev/null && return 0
    sleep 0.05
  done
  return 1
}

pdns_stop() {
  local pid
  pid=$(pdns_pid) || { rm -f "$DIR/pdns/pdns.pid"; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  wait_for 10 not_alive "$pid" || kill -9 "$pid" 2>/dev/null || true
  rm -f "$DIR/pdns/pdns.pid"
  return 0
}

start_pdns() {
  local attempt
  PDNS_API_URL=
  for attempt in 1 2 3 4 5; do
    PDNS_PORT=$(pick_port tcpudp 127.0.0.1) || return 1
    PDNS_API_PORT=$(pick_port tcp 127.0.0.1) || return 1
    [[ $PDNS_PORT != "$PDNS_API_PORT" ]] || continue
    PDNS_API_URL=http://127.0.0.1:$PDNS_API_PORT
    write_pdns_conf
    : >"$DIR/pdns/pdns.log"
    if pdns_launch; then return 0; fi
    pdns_stop
    if grep -qis 'unable to bind\|address already in use' "$DIR/pdns/pdns.log"; then
      log "PowerDNS port collided, retrying (attempt $attempt)"; continue
    fi
    tail_log "$DIR/pdns/pdns.log"
    return 1
  done
  echo "harness: could not find free PowerDNS ports after 5 attempts" >&2
  return 1
}

# ---------------------------------------------------------------- etcd

# Three members etcd1..3 on 127.0.0.1, each with its own client and peer port
# (ETCDn_PORT, ETCDn_PEER_PORT), bootstrapped statically.
ETCD_MEMBERS="1 2 3"
etcd_dir() { echo "$DIR/etcd$1"; }
etcd_port() { local v="ETCD$1_PORT"; echo "${!v}"; }
etcd_peer_port() { local v="ETCD$1_PEER_PORT"; echo "${!v}"; }
etcd_url() { echo "http://127.0.0.1:$(etcd_port "$1")"; }

etcd_pid() { # N -> pid of the live member N, or fail
  local n=$1 pid; pid=$(cat "$(etcd_dir "$n")/etcd.pid" 2>/dev/null) || return 1
  [[ $pid =~ ^[0-9]+$ ]] && alive_any "$pid" || return 1
  # Never signal a stranger that reused the pid of a dead member.
  [[ $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) == *"--data-dir $(etcd_dir "$n")/data "* ]] || return 1
  echo "$pid"
}

etcd_launch() { # N: start member N in the background, its pid in etcd.pid
  local n=$1 d m cluster= unset=() v
  d=$(etcd_dir "$n")
  for m in $ETCD_MEMBERS; do cluster+="${cluster:+,}etcd$m=http://127.0.0.1:$(etcd_peer_port "$m")"; done
  # etcd takes ETCD_* environment variables for flags (ETCD_ENDPOINTS from
  # our own env file among them): hide them all from the server.
  for v in $(compgen -e); do [[ $v != ETCD_* ]] || unset+=(-u "$v"); done
  mkdir -p "$d"
  # Test timing, fast but sane: heartbeat 100 ms, election timeout 1 s (the
  # defaults for a LAN), so a lost leader is replaced in about a second.
  # Pre-vote (the default from etcd 3.5 on): a member that was frozen or cut
  # off does not depose a healthy leader when it comes back.
  # The --initial-* flags only matter on the first start: with an existing
  # data dir etcd ignores them and rejoins as the member it was, so
  # start-etcd uses the very same command line.
  # Fully detached: no inherited stdout, so `$(harness.sh start ...)` returns.
  env "${unset[@]}" "$ETCD_BIN" --name "etcd$n" --data-dir "$d/data" \
    --listen-client-urls "$(etcd_url "$n")" --advertise-client-urls "$(etcd_url "$n")" \
    --listen-peer-urls "http://127.0.0.1:$(etcd_peer_port "$n")" \
    --initial-advertise-peer-urls "http://127.0.0.1:$(etcd_peer_port "$n")" \
    --initial-cluster "$cluster" --initial-cluster-state new \
    --initial-cluster-token "$HARNESS_ETCD_TOKEN" \
    --heartbeat-interval 100 --election-timeout 1000 --pre-vote=true \
    --logger zap --log-outputs stderr --log-level warn \
    </dev/null >>"$d/etcd.log" 2>&1 &
  echo $! >"$d/etcd.pid"
}

# Until the forked shell has exec'd etcd, its pid does not look like member N.
etcd_started() { wait_for 5 etcd_pid "$1"; } # N

# A linearizable read through member N: it answers only while the cluster
# has a leader and N is connected to a quorum.
etcd_serves() { # N
  curl -fsS -o /dev/null -m 2 -X POST "$(etcd_url "$1")/v3/kv/range" -d '{"key":"aGFybmVzcw=="}'
}

etcd_wait_healthy() { # TIMEOUT -> 0 when every member serves; 1 at once if one died
  local deadline=$((SECONDS + $1)) n ok
  while ((SECONDS < deadline)); do
    ok=1
    for n in $ETCD_MEMBERS; do
      etcd_pid "$n" >/dev/null || { log "etcd$n exited"; return 1; }
      etcd_serves "$n" 2>/dev/null || { ok=0; break; }
    done
    ((ok)) && return 0
    sleep 0.05
  done
  return 1
}

etcd_stop_all() { # -> always 0: thaw all, then one by one TERM, bounded wait, KILL
  local n pid pids=()
  for n in $ETCD_MEMBERS; do
    pid=$(etcd_pid "$n") && pids+=("$pid")
    rm -f "$(etcd_dir "$n")/etcd.pid"
  done
  ((${#pids[@]})) || return 0
  kill -CONT "${pids[@]}" 2>/dev/null || true
  # One at a time: a leader that gets TERM hands its leadership to a live
  # peer first, and waits up to 7 s for it if every peer is stopping too.
  # Stopped in turn, it finds a live peer at once, or none (then it exits).
  for pid in "${pids[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
    wait_for 10 not_alive "$pid" && continue
    kill -9 "$pid" 2>/dev/null || true
    wait_for 5 not_alive "$pid" || true
  done
  return 0
}

etcd_kill() { # N: simulate a crash
  local pid; pid=$(etcd_pid "$1") || { log "etcd$1 is not running"; return 0; }
  kill -9 "$pid" 2>/dev/null || true
  wait_for 10 not_alive "$pid" || true
}

etcd_signal() { # N SIGNAL (STOP|CONT)
  local pid; pid=$(etcd_pid "$1") || die "etcd$1 is not running"
  kill -"$2" "$pid"
}

# Start member N again on its data dir; 0 once its client port answers
# (/version needs no quorum, so members can come back in any order).
etcd_restart() { # N
  local n=$1 d; d=$(etcd_dir "$n")
  etcd_pid "$n" >/dev/null && { log "etcd$n already running"; return 0; }
  [[ -d $d/data/member ]] || die "etcd$n has no data dir to start from"
  etcd_launch "$n"
  etcd_started "$n" || true
  local deadline=$((SECONDS + 20))
  while ((SECONDS < deadline)); do
    etcd_pid "$n" >/dev/null || break
    curl -fsS -o /dev/null -m 1 "$(etcd_url "$n")/version" 2>/dev/null && return 0
    sleep 0.05
  done
  tail_log "$d/etcd.log"
  return 1
}

start_etcd() {
  local attempt n ports
  for attempt in 1 2 3 4 5; do
    read -ra ports <<<"$(pick_ports 6)"
    ((${#ports[@]} == 6)) || { echo "harness: no free ports for etcd" >&2; return 1; }
    ETCD1_PORT=${ports[0]} ETCD2_PORT=${ports[1]} ETCD3_PORT=${ports[2]}
    ETCD1_PEER_PORT=${ports[3]} ETCD2_PEER_PORT=${ports[4]} ETCD3_PEER_PORT=${ports[5]}
    # A fresh token per attempt: members of a failed attempt cannot join.
    HARNESS_ETCD_TOKEN=stackflip-harness-$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')
    for n in $ETCD_MEMBERS; do
      rm -rf "$(etcd_dir "$n")/data"; mkdir -p "$(etcd_dir "$n")"; : >"$(etcd_dir "$n")/etcd.log"
    done
    trace "etcd ports picked"
    for n in $ETCD_MEMBERS; do etcd_launch "$n"; done
    for n in $ETCD_MEMBERS; do etcd_started "$n" || true; done
    trace "etcd launched"
    if etcd_wait_healthy 30; then trace "etcd healthy"; return 0; fi
    etcd_stop_all
    if grep -qs 'address already in use' "$DIR"/etcd[123]/etcd.log; then
      log "etcd port collided, retrying (attempt $attempt)"; continue
    fi
    for n in $ETCD_MEMBERS; do tail_log "$(etcd_dir "$n")/etcd.log"; done
    return 1
  done
  echo "harness: could not find free etcd ports after 5 attempts" >&2
  return 1
}

etcd_status_line() { # N
  local n=$1 pid st out id leader
  if ! pid=$(etcd_pid "$n"); then echo "etcd$n $(etcd_url "$n")  down"; return; fi
  st=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)
  if [[ $st == T ]]; then echo "etcd$n $(etcd_url "$n")  frozen (pid $pid)"; return; fi
  out=$(curl -fsS -m 1 -X POST "$(etcd_url "$n")/v3/maintenance/status" -d '{}' 2>/dev/null) ||
    { echo "etcd$n $(etcd_url "$n")  running (pid $pid), not answering"; return; }
  read -r id leader < <(python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["header"]["member_id"], j.get("leader", "?"))' <<<"$out" 2>/dev/null)
  echo "etcd$n $(etcd_url "$n")  $([[ -n $id && $id == "$leader" ]] && echo leader || echo follower) (pid $pid, id $id)"
}

# ---------------------------------------------------------------- pgbouncer

pgb_dir() { echo "$DIR/pgb"; }

# The one entry stackflip's pgbouncer driver manages, as the driver writes it.
write_pgb_databases() { # HOST
  as_pg tee "$(pgb_dir)/databases.ini.tmp" >/dev/null <<EOF2
; Written by scripts/harness.sh; the pgbouncer driver rewrites it.
[databases]
$PGB_DATABASE = host=$1 port=$PG_PORT dbname=$PG_DB
EOF2
  as_pg mv "$(pgb_dir)/databases.ini.tmp" "$(pgb_dir)/databases.ini"
}

write_pgb_conf() {
  local d; d=$(pgb_dir)
  as_pg tee "$d/pgbouncer.ini" >/dev/null <<EOF2
; Written by scripts/harness.sh (test harness only).
%include $d/databases.ini
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PGB_PORT
unix_socket_dir =
pool_mode = transaction
auth_type = hba
auth_hba_file = $d/hba.conf
auth_file = $d/userlist.txt
admin_users = $PGB_ADMIN_USER
logfile = $d/pgbouncer.log
pidfile = $d/pgbouncer.pid
ignore_startup_parameters = extra_float_digits
; A promoted server is found at once, not after the default 15 s.
server_login_retry = 1
server_connect_timeout = 3
EOF2
}

pgb_pid() {
  local pid; pid=$(cat "$(pgb_dir)/pgbouncer.pid" 2>/dev/null) || return 1
  [[ $pid =~ ^[0-9]+$ ]] && alive_any "$pid" || return 1
  # Never signal a stranger that reused the pid of a dead PgBouncer.
  [[ $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) == *"$(pgb_dir)/pgbouncer.ini"* ]] || return 1
  echo "$pid"
}

pgb_answers() {
  PGCONNECT_TIMEOUT=2 PGPASSWORD=$PGB_ADMIN_PASSWORD "$PG_BIN/psql" -X -qAt \
    "host=127.0.0.1 port=$PGB_PORT user=$PGB_ADMIN_USER dbname=pgbouncer" -c "SHOW VERSION"
}

pgb_launch() { # -> 0 when the admin console answers
  # -d: PgBouncer forks into the background (its pid in pgbouncer.pid), so
  # `$(harness.sh start ...)` returns.
  as_pg "$PGBOUNCER_BIN" -d -q "$(pgb_dir)/pgbouncer.ini" </dev/null >/dev/null 2>&1 || return 1
  wait_for 10 pgb_answers
}

pgb_stop() {
  local pid
  pid=$(pgb_pid) || return 0
  # SIGTERM: immediate shutdown (SIGINT would wait for the clients).
  kill -TERM "$pid" 2>/dev/null || true
  wait_for 10 not_alive "$pid" || kill -9 "$pid" 2>/dev/null || true
  return 0
}

start_pgbouncer() {
  local d attempt
  d=$(pgb_dir)
  mkdir -p "$d"
  [[ $EUID -ne 0 ]] || chown postgres: "$d"
  chmod 700 "$d"
  PGB_ADMIN_PASSWORD=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
  # "trust" still needs the user listed (with any password).
  printf '"%s" "%s"\n"%s" ""\n' "$PGB_ADMIN_USER" "$PGB_ADMIN_PASSWORD" "$PG_USER" |
    as_pg tee "$d/userlist.txt" >/dev/null
  as_pg chmod 600 "$d/userlist.txt"
  # HARNESS ONLY: clients trusted from loopback; the admin console by password.
  as_pg tee "$d/hba.conf" >/dev/null <<EOF2
host  pgbouncer  $PGB_ADMIN_USER  127.0.0.0/8  md5
host  pgbouncer  all              127.0.0.0/8  reject
host  all        all              127.0.0.0/8  trust
EOF2
  write_pgb_databases "$PG1_HOST"
  for attempt in 1 2 3 4 5; do
    PGB_PORT=$(pick_port tcp 127.0.0.1) || return 1
    write_pgb_conf
    as_pg truncate -s0 "$d/pgbouncer.log" 2>/dev/null || true
    if pgb_launch; then return 0; fi
    pgb_stop
    if grep -qis 'address already in use' "$d/pgbouncer.log"; then
      log "PgBouncer port collided, retrying (attempt $attempt)"; continue
    fi
    tail_log "$d/pgbouncer.log"
    return 1
  done
  echo "harness: could not find a free PgBouncer port after 5 attempts" >&2
  return 1
}

# ---------------------------------------------------------------- outputs

write_env() {
  cat >"$DIR/env.tmp" <<EOF
# Written by scripts/harness.sh start; source it with bash.
export HARNESS_DIR='$DIR'
export PG_BIN='$PG_BIN'
export PG_PORT=$PG_PORT
export PG1_HOST=$PG1_HOST
export PG2_HOST=$PG2_HOST
export PG1_DATA='$(pg_data 1)'
export PG2_DATA='$(pg_data 2)'
export PG3_HOST=$PG3_HOST
export PG3_DATA='$(pg_data 3)'
export HARNESS_STACKS=$STACKS
export PG_USER=$PG_USER
export PG_DB=$PG_DB
export PDNS_PORT=$PDNS_PORT
export PDNS_API_PORT=$PDNS_API_PORT
export PDNS_API_URL=$PDNS_API_URL
export PDNS_API_KEY=$PDNS_API_KEY
export ZONE=$ZONE
export RECORD=$RECORD
export PG_CONTROL='$SCRIPT_DIR/pg-control.sh'
export ETCD_ENDPOINTS=$(etcd_url 1),$(etcd_url 2),$(etcd_url 3)
export ETCD1_URL=$(etcd_url 1)
export ETCD2_URL=$(etcd_url 2)
export ETCD3_URL=$(etcd_url 3)
export ETCD1_PORT=$ETCD1_PORT
export ETCD2_PORT=$ETCD2_PORT
export ETCD3_PORT=$ETCD3_PORT
export ETCD1_PEER_PORT=$ETCD1_PEER_PORT
export ETCD2_PEER_PORT=$ETCD2_PEER_PORT
export ETCD3_PEER_PORT=$ETCD3_PEER_PORT
export HARNESS_ETCD_TOKEN=$HARNESS_ETCD_TOKEN
export STACKFLIP_HOST_CONFIG='$DIR/host.yaml'
EOF
  ((WANT_PGB == 0)) || cat >>"$DIR/env.tmp" <<EOF
export PGB_DIR='$(pgb_dir)'
export PGB_PORT=$PGB_PORT
export PGBOUNCER_PORT=$PGB_PORT
export PGB_DATABASE=$PGB_DATABASE
export PGB_DATABASES_FILE='$(pgb_dir)/databases.ini'
export PGB_ADMIN_USER=$PGB_ADMIN_USER
export PGB_ADMIN_PASSWORD=$PGB_ADMIN_PASSWORD
export PGB_ADMIN_DSN='host=127.0.0.1 port=$PGB_PORT user=$PGB_ADMIN_USER dbname=pgbouncer'
EOF
  mv "$DIR/env.tmp" "$DIR/env"
}

# The operator's side of the trust boundary (reconciler/config/host_policy.h): the
# one program the config may run and where the API key may be sent.
write_host_policy() {
  cat >"$DIR/host.yaml" <<EOF
commands: ["$(realpath "$SCRIPT_DIR/pg-control.sh")"]
secrets:
  "\${env:PDNS_API_KEY}": ["$PDNS_API_URL"]
EOF
  ((WANT_PGB == 0)) || cat >>"$DIR/host.yaml" <<EOF
  "\${env:PGB_ADMIN_PASSWORD}": ["postgres://127.0.0.1:$PGB_PORT"]
pgbouncer_files: ["$(pgb_dir)/databases.ini"]
EOF
  chmod 600 "$DIR/host.yaml"
}

write_config() {
  write_host_policy
  cat >"$DIR/stackflip.yaml" <<EOF
# yaml-language-server: \$schema=$REPO_DIR/schema/stackflip.schema.json
apiVersion: stackflip/v1
providers:
  db: {type: postgres, connect_timeout_ms: 2000, statement_timeout_ms: 5000, pg_rewind: true}
  dns: {type: powerdns, url: "$PDNS_API_URL", api_key: "\${env:PDNS_API_KEY}"}
groups:
  shop:
    active: primary
    stacks:
      primary:
        provider: db
        dsn: "host=$PG1_HOST port=$PG_PORT user=$PG_USER dbname=$PG_DB"
        address: $PG1_HOST
        control_command: ["$SCRIPT_DIR/pg-control.sh"]
      standby:
        provider: db
        dsn: "host=$PG2_HOST port=$PG_PORT user=$PG_USER dbname=$PG_DB"
        address: $PG2_HOST
        control_command: ["$SCRIPT_DIR/pg-control.sh"]
EOF
  ((STACKS == 2)) || cat >>"$DIR/stackflip.yaml" <<EOF
      third:
        provider: db
        dsn: "host=$PG3_HOST port=$PG_PORT user=$PG_USER dbname=$PG_DB"
        address: $PG3_HOST
        control_command: ["$SCRIPT_DIR/pg-control.sh"]
EOF
  cat >>"$DIR/stackflip.yaml" <<EOF
    replication: {max_lag_bytes: 0}
    traffic: {provider: dns, zone: $ZONE, record: $RECORD, ttl: 60}
EOF
}

# ---------------------------------------------------------------- commands

cmd_start() {
  check_tools
  [[ -d $DIR ]] || die "start: $DIR does not exist (the caller creates it)"
  [[ ! -e $DIR/pg1/data/PG_VERSION ]] || die "start: $DIR already holds a harness; use a fresh folder"
  # Everything started from here on is stopped again if we fail half way.
  trap 'rc=$?; if ((rc != 0)); then echo "harness: start failed, stopping what was started" >&2; HARNESS_QUIET=1 cmd_stop; fi' EXIT
  PDNS_API_KEY=$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')
  # PostgreSQL, PowerDNS and etcd start independently; run the slowest one
  # (pg) in the foreground and the others in the background to save wall time.
  ( pdns_create_db && trace "pdns db created" && start_pdns && echo "PDNS_PORT=$PDNS_PORT PDNS_API_PORT=$PDNS_API_PORT PDNS_API_URL=$PDNS_API_URL" >"$DIR/pdns/ports" ) &
  local pdns_job=$!
  ( start_etcd && echo "ETCD1_PORT=$ETCD1_PORT ETCD2_PORT=$ETCD2_PORT ETCD3_PORT=$ETCD3_PORT ETCD1_PEER_PORT=$ETCD1_PEER_PORT ETCD2_PEER_PORT=$ETCD2_PEER_PORT ETCD3_PEER_PORT=$ETCD3_PEER_PORT HARNESS_ETCD_TOKEN=$HARNESS_ETCD_TOKEN" >"$DIR/etcd1/ports" ) &
  local etcd_job=$!
  local pg_ok=0 pdns_ok=0 etcd_ok=0
  start_postgres || pg_ok=1
  trace "postgres up"
  wait "$pdns_job" || pdns_ok=1
  trace "pdns up"
  wait "$etcd_job" || etcd_ok=1
  trace "etcd up"
  ((pg_ok == 0 && pdns_ok == 0 && etcd_ok == 0)) || return 1
  if ((WANT_PGB)); then start_pgbouncer || return 1; trace "pgbouncer up"; fi
  eval "$(cat "$DIR/pdns/ports")"
  eval "$(cat "$DIR/etcd1/ports")"
  # The PG port is needed by stop/status even if the rest fails: env first.
  write_env
  wait_for 30 streaming || { echo "harness: pg2 is not streaming from pg1" >&2; tail_log "$(pg_logfile 2)"; return 1; }
  trace "streaming"
  # The runbook's standby is kept in maintenance (refuses new writes once it
  # is promoted, until stackflip opens it), so the harness starts converged.
  local n
  for n in $(seq 2 "$STACKS"); do
    psql_n "$n" "ALTER SYSTEM SET default_transaction_read_only = on" >/dev/null &&
      psql_n "$n" "SELECT pg_reload_conf()" >/dev/null ||
      { echo "harness: cannot put pg$n in maintenance" >&2; return 1; }
  done
  write_config
  trap - EXIT
  log "up: PG_PORT=$PG_PORT PDNS_PORT=$PDNS_PORT PDNS_API_PORT=$PDNS_API_PORT ETCD_PORTS=$ETCD1_PORT,$ETCD2_PORT,$ETCD3_PORT (source $DIR/env)"
}

cmd_stop() {
  [[ -d $DIR ]] || return 0
  pgb_stop
  pdns_stop
  # By pid file: needs no port, so it also works before env is written.
  etcd_stop_all
  # pg_ctl stop needs no port; stop the replica first so it does not log
  # reconnect attempts while the primary goes away.
  pg_stop 3; pg_stop 2; pg_stop 1
  return 0
}

cmd_status() {
  load_env || die "status: no $DIR/env (not started?)"
  local n role
  for n in $(seq 1 "${HARNESS_STACKS:-2}"); do
    if ! postmaster_pid "$n" >/dev/null; then role="down"
    else
      case $(psql_n "$n" "select pg_is_in_recovery()" 2>/dev/null) in
        f) role="primary";;
        t) role="replica (upstream: $(psql_n "$n" "select coalesce(sender_host,'none')||':'||coalesce(status,'') from pg_stat_wal_receiver" 2>/dev/null || echo '?'))";;
        *) role="running, not answering";;
      esac
    fi
    echo "pg$n $(pg_host "$n"):$PG_PORT  $role"
  done
  if pdns_pid >/dev/null; then
    echo "pdns 127.0.0.1:$PDNS_PORT  $RECORD -> $(dns_answer | tr '\n' ' ')"
  else
    echo "pdns down"
  fi
  for n in $ETCD_MEMBERS; do etcd_status_line "$n"; done
  [[ -n ${PGB_PORT:-} ]] || return 0
  if pgb_pid >/dev/null; then
    echo "pgbouncer 127.0.0.1:$PGB_PORT  $(sed -n "s/^$PGB_DATABASE = //p" "$PGB_DATABASES_FILE" 2>/dev/null)"
  else
    echo "pgbouncer down"
  fi
}

usage() { sed -n '2,18p' "$0" >&2; exit 2; }

cmd=${1:-}; shift || true
case $cmd in
  start|stop|status|stop-pdns|start-pdns|stop-pgb|start-pgb) [[ $# -eq 1 ]] || usage; DIR=$(cd "$1" 2>/dev/null && pwd || echo "$1");;
  kill-pg|start-pg|kill-etcd|start-etcd|freeze-etcd|thaw-etcd)
    [[ $# -eq 2 && $1 =~ ^[123]$ ]] || usage; N=$1; DIR=$(cd "$2" 2>/dev/null && pwd || echo "$2");;
  *) usage;;
esac

case $cmd in
  start) cmd_start;;
  stop) [[ -e $DIR/env ]] && load_env || true; cmd_stop;;
  status) cmd_status;;
  kill-pg) load_env || die "no $DIR/env"; pg_kill "$N";;
  start-pg) load_env || die "no $DIR/env"
            postmaster_pid "$N" >/dev/null && { log "pg$N already running"; exit 0; }
            clear_stale_pidfile "$N"
            pg_start "$N" || { tail_log "$(pg_logfile "$N")"; exit 1; };;
  stop-pdns) load_env || die "no $DIR/env"; pdns_stop;;
  start-pdns) load_env || die "no $DIR/env"
              pdns_pid >/dev/null && { log "pdns already running"; exit 0; }
              pdns_launch || { tail_log "$DIR/pdns/pdns.log"; pdns_stop; exit 1; };;
  stop-pgb) load_env || die "no $DIR/env"; pgb_stop;;
  start-pgb) load_env || die "no $DIR/env"
             [[ -n ${PGB_PORT:-} ]] || die "start-pgb: this harness runs no PgBouncer"
             pgb_pid >/dev/null && { log "pgbouncer already running"; exit 0; }
             pgb_launch || { tail_log "$(pgb_dir)/pgbouncer.log"; pgb_stop; exit 1; };;
  kill-etcd) load_env || die "no $DIR/env"; etcd_kill "$N";;
  start-etcd) load_env || die "no $DIR/env"; etcd_restart "$N";;
  freeze-etcd) load_env || die "no $DIR/env"; etcd_signal "$N" STOP;;
  thaw-etcd) load_env || die "no $DIR/env"; etcd_signal "$N" CONT;;
esac

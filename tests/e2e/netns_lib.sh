# shellcheck shell=bash
# Sites as Linux network namespaces (issue 14), sourced by the netns_*_e2e.sh
# suites after lib.sh. No harness.sh here: every server runs inside the
# namespace of its site, on the addresses of that site.
#
#   hub  $NSL_PREFIX-hub  10.213.0.10  bridge br0; PowerDNS (53, API 8081)
#                                      and the Git server (smart HTTP, 8080)
#   fra  $NSL_PREFIX-fra  10.213.0.1   PostgreSQL (5432, the primary), etcd1
#   ams  $NSL_PREFIX-ams  10.213.0.2   PostgreSQL (its streaming replica), etcd2
#   wit  $NSL_PREFIX-wit  10.213.0.3   etcd3 (a witness site: no database)
#
# Each site is linked to the hub's bridge by one veth pair, created from the
# hub (`ip -n`): `eth0` in the site, `v-SITE` in the hub. The root namespace
# is never touched: no address, route or link is added there, and the fixed
# link and address names live only inside our own namespaces, so parallel
# runs (NSL_PREFIX holds the shell's pid) cannot clash. IPv6 is off inside
# the namespaces. A partition is the hub side of the site's link down: the
# site's packets are dropped silently both ways (no error comes back, as on
# a real cut), every other site keeps its links; healing is that link up.
#
# Processes are started with `ip netns exec NS cmd &` (which execs the
# command: $! is its real pid) and recorded; nsl_teardown (on EXIT) stops
# them, stops both PostgreSQL clusters, kills whatever is still inside one of
# our namespaces (`ip netns pids`: deleting a namespace kills nothing) and
# deletes the namespaces (their veths and bridge go with them).
#
# Callers: source lib.sh; source netns_lib.sh; nsl_require; nsl_suite_begin;
# nsl_sites_up (or nsl_setup; nsl_start_* ...); the EXIT trap tears down.

NSL_NET=10.213.0
NSL_PREFIX=sf$$
NSL_SITES="fra ams wit"
NSL_PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
NSL_PG_PORT=5432
NSL_ETCD_BIN=${ETCD_BIN:-/usr/bin/etcd}
NSL_PIDS=()
NSL_CREATED=()
NSL_PG_DATAS=()
declare -A NSL_ADDR=([fra]=$NSL_NET.1 [ams]=$NSL_NET.2 [wit]=$NSL_NET.3 [hub]=$NSL_NET.10)

nsl_ns() { echo "$NSL_PREFIX-$1"; } # SITE → its namespace
nsl_exec() { local ns; ns=$(nsl_ns "$1"); shift; ip netns exec "$ns" "$@"; } # SITE CMD...

# Exit 77 (skipped) unless we are root with `ip netns` and the servers;
# exit 1 instead when STACKFLIP_REQUIRE_NETNS=1 (scripts/test-all.sh sets
# it as root, so CI cannot pass this suite by skipping it).
nsl_skip() {
  if [[ ${STACKFLIP_REQUIRE_NETNS:-} == 1 ]]; then
    echo "FAIL: $1 (STACKFLIP_REQUIRE_NETNS=1)"
    exit 1
  fi
  echo "SKIP: $1"
  exit 77
}
nsl_require() {
  local t
  ((EUID == 0)) || nsl_skip "network namespaces need root"
  command -v ip >/dev/null || nsl_skip "no ip (iproute2)"
  ip netns list >/dev/null 2>&1 || nsl_skip "ip netns does not work here"
  for t in "$NSL_PG_BIN/postgres" "$NSL_PG_BIN/initdb" "$NSL_PG_BIN/pg_basebackup" "$NSL_ETCD_BIN"; do
    [[ -x $t ]] || nsl_skip "$t missing"
  done
  for t in pdns_server pdnsutil sqlite3 python3 curl git runuser etcdctl ssh-keygen jq; do
    command -v "$t" >/dev/null || nsl_skip "$t missing"
  done
  id -u postgres >/dev/null 2>&1 || nsl_skip "no 'postgres' OS user"
  NSL_PDNS_SCHEMA=/usr/share/doc/pdns-backend-sqlite3/schema.sqlite3.sql
  [[ -r $NSL_PDNS_SCHEMA ]] || NSL_PDNS_SCHEMA=/usr/share/pdns-backend-sqlite3/schema/schema.sqlite3.sql
  [[ -r $NSL_PDNS_SCHEMA ]] || nsl_skip "pdns-backend-sqlite3 schema missing"
  [[ -x $(git --exec-path)/git-http-backend ]] || nsl_skip "git-http-backend missing"
  # Trial: a namespace can be made and removed here (not in every container).
  local probe=$NSL_PREFIX-probe
  ip netns add "$probe" 2>/dev/null || nsl_skip "cannot create a network namespace"
  ip netns del "$probe"
}

# Nothing of ours may go through a proxy (libcurl, git, Python).
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY no_proxy NO_PROXY

# ---------------------------------------------------------------- links

nsl_setup() {
  local site ns hub
  hub=$(nsl_ns hub)
  for site in hub $NSL_SITES; do
    ns=$(nsl_ns "$site")
    ip netns add "$ns" || return 1
    NSL_CREATED+=("$ns")
    ip -n "$ns" link set lo up || return 1
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 || return 1
  done
  ip -n "$hub" link add br0 type bridge || return 1
  ip -n "$hub" addr add "${NSL_ADDR[hub]}/24" dev br0 || return 1
  ip -n "$hub" link set br0 up || return 1
  for site in $NSL_SITES; do
    ns=$(nsl_ns "$site")
    ip -n "$hub" link add "v-$site" type veth peer name eth0 netns "$ns" || return 1
    ip -n "$hub" link set "v-$site" master br0 up || return 1
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.eth0.disable_ipv6=1 || return 1
    ip -n "$ns" addr add "${NSL_ADDR[$site]}/24" dev eth0 || return 1
    ip -n "$ns" link set eth0 up || return 1
  done
}

nsl_partition() { ip -n "$(nsl_ns hub)" link set "v-$1" down; } # SITE
nsl_heal() { ip -n "$(nsl_ns hub)" link set "v-$1" up; }        # SITE

# SITE HOST PORT: a TCP connect from SITE's namespace (there is no ping).
nsl_tcp_ok() {
  nsl_exec "$1" timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$2" "$3" 2>/dev/null
}

# ---------------------------------------------------------------- processes

# SITE LOG CMD...: started inside SITE's namespace; its pid in NSL_LAST_PID.
nsl_bg() {
  local ns; ns=$(nsl_ns "$1")
  local log=$2
  shift 2
  ip netns exec "$ns" "$@" </dev/null >>"$log" 2>&1 &
  NSL_LAST_PID=$!
  NSL_PIDS+=("$NSL_LAST_PID")
}
# The same, each output line prefixed with the time it was read (epoch
# seconds, microseconds): the timeline of an instance's log. The prefixing
# shell ends at the command's exit (end of its output).
nsl_bg_stamped() {
  local ns; ns=$(nsl_ns "$1")
  local log=$2
  shift 2
  ip netns exec "$ns" "$@" </dev/null > >(while IFS= read -r l; do printf '%s %s\n' "$EPOCHREALTIME" "$l"; done >>"$log") 2>&1 &
  NSL_LAST_PID=$!
  NSL_PIDS+=("$NSL_LAST_PID")
}

nsl_alive() { local st; st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) && [[ $st != Z ]]; }

nsl_stop_pid() { # PID: TERM (CONT first), at most 5 s, then KILL
  local pid=$1
  kill -CONT "$pid" 2>/dev/null
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 100); do nsl_alive "$pid" || break; sleep 0.05; done
  kill -KILL "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  return 0
}

nsl_teardown() {
  local pid ns d left
  for pid in "${NSL_PIDS[@]}"; do kill -CONT "$pid" 2>/dev/null; kill -TERM "$pid" 2>/dev/null; done
  for pid in "${NSL_PIDS[@]}"; do
    for _ in $(seq 1 100); do nsl_alive "$pid" || break; sleep 0.05; done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
  NSL_PIDS=()
  for d in "${NSL_PG_DATAS[@]}"; do
    [[ -e $d/postmaster.pid ]] &&
      runuser -u postgres -- "$NSL_PG_BIN/pg_ctl" -D "$d" -m immediate -w -t 10 stop >/dev/null 2>&1
  done
  # Whatever still runs inside our namespaces (children of pg-control.sh,
  # a postmaster whose pg_ctl failed) is ours: kill it.
  for ns in "${NSL_CREATED[@]}"; do
    left=$(ip netns pids "$ns" 2>/dev/null)
    # shellcheck disable=SC2086
    [[ -n $left ]] && kill -KILL $left 2>/dev/null
  done
  for ns in "${NSL_CREATED[@]}"; do
    for _ in $(seq 1 40); do [[ -z $(ip netns pids "$ns" 2>/dev/null) ]] && break; sleep 0.05; done
    ip netns del "$ns" 2>/dev/null || echo "netns: could not delete $ns" >&2
  done
  NSL_CREATED=()
}

# ---------------------------------------------------------------- etcd

# etcd1..3: member N of site SITE; client URL http://ADDR:2379.
nsl_etcd_url() { echo "http://${NSL_ADDR[$1]}:2379"; } # SITE
nsl_etcd_endpoints() {
  local s out=
  for s in $NSL_SITES; do out+="${out:+,}$(nsl_etcd_url "$s")"; done
  echo "$out"
}
nsl_start_etcd() { # SITES... (one member each, static bootstrap)
  local s cluster="" token v unset=()
  token=stackflip-netns-$$-$RANDOM
  for s in "$@"; do cluster+="${cluster:+,}etcd-$s=http://${NSL_ADDR[$s]}:2380"; done
  for v in $(compgen -e); do [[ $v != ETCD_* ]] || unset+=(-u "$v"); done
  for s in "$@"; do
    mkdir -p "$NSL_DIR/$s/etcd"
    # --pre-vote: etcd 3.4 (Debian) has it off; a member that was cut off
    # must not depose the healthy leader when it comes back.
    nsl_bg "$s" "$NSL_DIR/$s/etcd.log" env "${unset[@]}" "$NSL_ETCD_BIN" --name "etcd-$s" \
      --data-dir "$NSL_DIR/$s/etcd/data" \
      --listen-client-urls "$(nsl_etcd_url "$s")" --advertise-client-urls "$(nsl_etcd_url "$s")" \
      --listen-peer-urls "http://${NSL_ADDR[$s]}:2380" \
      --initial-advertise-peer-urls "http://${NSL_ADDR[$s]}:2380" \
      --initial-cluster "$cluster" --initial-cluster-state new --initial-cluster-token "$token" \
      --heartbeat-interval 100 --election-timeout 1000 --pre-vote=true \
      --logger zap --log-outputs stderr --log-level warn
  done
}
# SITE: a linearizable read through SITE's member answers (quorum and leader).
nsl_etcd_serves() {
  nsl_exec "$1" curl -fsS -o /dev/null -m 2 -X POST "$(nsl_etcd_url "$1")/v3/kv/range" -d '{"key":"bmV0bnM="}'
}

# ---------------------------------------------------------------- PostgreSQL

nsl_pg() { echo "$NSL_DIR/$1/pg"; } # SITE → its folder (data, sock, log)
nsl_as_pg() { runuser -u postgres -- "$@"; }
nsl_pg_conf() { # SITE: the settings owned by the suite (harness.conf, kept across pg_rewind)
  nsl_as_pg tee "$(nsl_pg "$1")/data/harness.conf" >/dev/null <<EOF
# Written by tests/e2e/netns_lib.sh (test only).
listen_addresses = '${NSL_ADDR[$1]}'
port = $NSL_PG_PORT
unix_socket_directories = '$(nsl_pg "$1")/sock'
wal_level = replica
wal_log_hints = on
recovery_init_sync_method = syncfs
hot_standby = on
max_wal_senders = 10
max_replication_slots = 10
wal_keep_size = 256MB
# A partition is noticed within 10 s on both ends of the replication.
wal_receiver_timeout = 10s
wal_sender_timeout = 10s
logging_collector = off
log_min_messages = warning
log_min_error_statement = error
cluster_name = '$1'
EOF
}
nsl_pg_start() { # SITE [SERVER_OPTIONS (pg_ctl -o)]
  local p; p=$(nsl_pg "$1")
  nsl_exec "$1" runuser -u postgres -- "$NSL_PG_BIN/pg_ctl" -D "$p/data" -l "$p/log/postgresql.log" -w -t 60 \
    ${2:+-o "$2"} start \
    >/dev/null 2>&1 || { tail -n 20 "$p/log/postgresql.log" >&2; return 1; }
}
# SITE: a crash: SIGKILL the postmaster and every child (the port closes),
# then remove its lock file once the process is gone (a zombie postmaster
# would otherwise block the next start). nsl_pg_start starts it again as it
# is configured on disk.
nsl_pg_kill() {
  local d pid kids
  d=$(nsl_pg "$1")/data
  pid=$(head -n1 "$d/postmaster.pid" 2>/dev/null)
  [[ $pid =~ ^[0-9]+$ ]] || return 0
  kids=$(pgrep -P "$pid")
  # shellcheck disable=SC2086
  kill -KILL "$pid" $kids 2>/dev/null
  for _ in $(seq 1 100); do nsl_alive "$pid" || break; sleep 0.02; done
  for pid in $kids; do
    for _ in $(seq 1 100); do nsl_alive "$pid" || break; sleep 0.02; done
  done
  rm -f "$d/postmaster.pid" "$(nsl_pg "$1")/sock/.s.PGSQL.$NSL_PG_PORT.lock"
}
nsl_psql() { # FROM_SITE TO_SITE SQL (unaligned, tuples only; errors on stdout too)
  nsl_exec "$1" env PGCONNECT_TIMEOUT=3 "$NSL_PG_BIN/psql" -X -qAt -v ON_ERROR_STOP=1 \
    "host=${NSL_ADDR[$2]} port=$NSL_PG_PORT user=stackflip dbname=app" -c "$3" 2>&1
}
# PRIMARY_SITE REPLICA_SITE: initdb the primary, role and database, a base
# backup for the replica (taken from its own namespace), both running, the
# replica in maintenance (read-only once promoted, until stackflip opens it).
nsl_start_postgres() {
  local pri=$1 rep=$2 p d s
  for s in "$pri" "$rep"; do
    p=$(nsl_pg "$s")
    mkdir -p "$p/sock" "$p/log"
    chown -R postgres: "$p"
    chmod o+x "$NSL_DIR" "$NSL_DIR/$s"
    NSL_PG_DATAS+=("$p/data")
  done
  p=$(nsl_pg "$pri")
  nsl_as_pg "$NSL_PG_BIN/initdb" -D "$p/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 --no-sync \
    >"$p/log/initdb.log" 2>&1 || { tail -n 20 "$p/log/initdb.log" >&2; return 1; }
  echo "include 'harness.conf'" | nsl_as_pg tee -a "$p/data/postgresql.conf" >/dev/null
  nsl_as_pg tee "$p/data/pg_hba.conf" >/dev/null <<EOF
# Written by tests/e2e/netns_lib.sh: TEST ONLY, trusts the sites' network.
local   all          all                  trust
local   replication  all                  trust
host    all          all   $NSL_NET.0/24  trust
host    replication  all   $NSL_NET.0/24  trust
EOF
  nsl_pg_conf "$pri"
  nsl_pg_start "$pri" || return 1
  nsl_exec "$pri" "$NSL_PG_BIN/psql" -X -qAt -v ON_ERROR_STOP=1 -h "$p/sock" -U postgres -d postgres \
    -c "CREATE ROLE stackflip LOGIN SUPERUSER" -c "CREATE DATABASE app OWNER stackflip" >/dev/null || return 1
  d=$(nsl_pg "$rep")/data
  nsl_exec "$rep" runuser -u postgres -- "$NSL_PG_BIN/pg_basebackup" -D "$d" -R -X stream -c fast --no-sync \
    -d "host=${NSL_ADDR[$pri]} port=$NSL_PG_PORT user=stackflip application_name=$rep" \
    >"$(nsl_pg "$rep")/log/basebackup.log" 2>&1 || { tail -n 20 "$(nsl_pg "$rep")/log/basebackup.log" >&2; return 1; }
  nsl_pg_conf "$rep"
  nsl_pg_start "$rep" || return 1
  for _ in $(seq 1 200); do
    [[ $(nsl_psql "$pri" "$pri" "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'") == 1 ]] && break
    sleep 0.05
  done
  [[ $(nsl_psql "$pri" "$pri" "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'") == 1 ]] ||
    { echo "netns: $rep is not streaming from $pri" >&2; return 1; }
  nsl_psql "$rep" "$rep" "ALTER SYSTEM SET default_transaction_read_only = on" >/dev/null &&
    nsl_psql "$rep" "$rep" "SELECT pg_reload_conf()" >/dev/null
}

# The control command for SITE's database, as an operator would install it:
# it runs pg-control.sh on that site's host. Here the host is the site's
# namespace; `ip netns exec` would reach it through any partition, so the
# wrapper first checks that the caller (the instance running the action, in
# its own namespace) can reach the site at all (a TCP connect to the site's
# etcd member, as ssh would need), and fails like an unreachable ssh if not.
nsl_write_control() { # SITE → prints the wrapper's path
  local f=$NSL_DIR/pg-control-$1.sh
  cat >"$f" <<EOF
#!/bin/bash
# Written by tests/e2e/netns_lib.sh: pg-control.sh on site $1 ($(nsl_ns "$1")).
echo "\$(date +%s.%N) \$*" >>"$NSL_DIR/control-$1.log"
timeout 2 bash -c 'exec 3<>/dev/tcp/${NSL_ADDR[$1]}/2379' 2>/dev/null ||
  { echo "pg-control-$1: ${NSL_ADDR[$1]} unreachable from here" >&2; exit 1; }
exec /usr/sbin/ip netns exec $(nsl_ns "$1") "$E2E_REPO/scripts/pg-control.sh" "\$@"
EOF
  chmod 755 "$f"
  echo "$f"
}

# ---------------------------------------------------------------- hub

# PowerDNS (gsqlite3) in the hub: zone example.test., shop A → ADDRESS.
nsl_start_pdns() { # ADDRESS
  local d=$NSL_DIR/hub/pdns
  mkdir -p "$d"
  NSL_PDNS_KEY=$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')
  cat >"$d/pdns.conf" <<EOF
# Written by tests/e2e/netns_lib.sh (test only).
launch=gsqlite3
gsqlite3-database=$d/pdns.sqlite3
local-address=${NSL_ADDR[hub]}
local-port=53
socket-dir=$d
daemon=no
guardian=no
disable-syslog=yes
log-timestamp=no
loglevel=4
api=yes
api-key=$NSL_PDNS_KEY
webserver=yes
webserver-address=${NSL_ADDR[hub]}
webserver-port=8081
webserver-allow-from=$NSL_NET.0/24
cache-ttl=0
negquery-cache-ttl=0
query-cache-ttl=0
zone-cache-refresh-interval=0
consistent-backends=yes
security-poll-suffix=
disable-axfr=yes
only-notify=
EOF
  sqlite3 "$d/pdns.sqlite3" <"$NSL_PDNS_SCHEMA" || return 1
  {
    pdnsutil --config-dir="$d" create-zone example.test. ns1.example.test. &&
      pdnsutil --config-dir="$d" add-record example.test. ns1 A 60 "${NSL_ADDR[hub]}" &&
      pdnsutil --config-dir="$d" add-record example.test. shop A 60 "$1"
  } >"$d/pdnsutil.log" 2>&1 || { cat "$d/pdnsutil.log" >&2; return 1; }
  nsl_bg hub "$d/pdns.log" pdns_server --config-dir="$d"
  # shellcheck disable=SC2034 # for the suites
  NSL_PDNS_URL=http://${NSL_ADDR[hub]}:8081
}

# The Git server in the hub: `git http-backend` (smart HTTP, anonymous push
# allowed by http.receivepack) behind a small threaded Python server, like
# git_transport_e2e's without the token. Serves every bare repository under
# NSL_DIR/hub/git as http://10.213.0.10:8080/NAME.git.
nsl_start_git() {
  local d=$NSL_DIR/hub
  mkdir -p "$d/git"
  nsl_bg hub "$d/git_http.err" python3 "$E2E_REPO/tests/e2e/git_http.py" "${NSL_ADDR[hub]}" 8080 "$d/git" "$d/git_http.log"
  NSL_GIT_PID=$NSL_LAST_PID
  # shellcheck disable=SC2034 # for the suites
  NSL_GIT_BASE=http://${NSL_ADDR[hub]}:8080
}

# Git down (its server stopped: connections refused) and back.
nsl_stop_git() { nsl_stop_pid "$NSL_GIT_PID"; }
nsl_git_up() { nsl_tcp_ok wit "${NSL_ADDR[hub]}" 8080; }

# ---------------------------------------------------------------- a suite

# The start of a netns suite: its folder (DIR = NSL_DIR, kept with
# KEEP_E2E_DIR), STOP (the clients' stop file), T0, and the traps: on EXIT
# everything is torn down; CTest's timeout (TERM) still gets there.
nsl_suite_begin() {
  DIR=$(mktemp -d "${TMPDIR:-/tmp}/stackflip-netns.XXXXXX")
  chmod 755 "$DIR"
  NSL_DIR=$DIR
  STOP=$DIR/stop
  trap nsl_suite_end EXIT
  trap 'exit 143' TERM INT HUP
  T0=$(date +%s.%N)
  export NO_COLOR=1
}
nsl_suite_end() {
  touch "$STOP" 2>/dev/null
  nsl_teardown
  [[ -n ${KEEP_E2E_DIR:-} ]] || rm -rf "$DIR"
}
secs() { python3 -c "import sys; print('%.2f' % (float(sys.argv[1]) - float(sys.argv[2])))" "$1" "$2"; } # T FROM
bail() { fail "$1"; e2e_finish; exit 1; } # WHAT: a failed check that ends the suite

# The sites and their servers: links, the three etcd members, PostgreSQL
# (primary in fra, streaming replica in ams, table writes), PowerDNS (shop
# → fra) and the Git server in the hub, the application script; each
# checked to answer.
nsl_sites_up() {
  echo "--- sites: namespaces $(nsl_ns hub) $(nsl_ns fra) $(nsl_ns ams) $(nsl_ns wit)"
  nsl_setup || bail "network namespaces and links"
  nsl_start_etcd fra ams wit
  check "etcd: the three members serve (a quorum across the sites)" poll 30 nsl_etcd_serves_all
  check "links: every site reaches the others and the hub (TCP)" nsl_all_linked
  nsl_start_postgres fra ams || bail "PostgreSQL: primary in fra, replica in ams"
  nsl_start_pdns "${NSL_ADDR[fra]}" || bail "PowerDNS in the hub"
  nsl_start_git
  nsl_write_app
  check "PowerDNS answers in the hub" poll 20 nsl_pdns_up
  check "the Git server answers in the hub" poll 20 nsl_git_up
  check_eq "replication: ams is a standby" t "$(nsl_psql ams ams "SELECT pg_is_in_recovery()")"
  nsl_psql fra fra "CREATE TABLE writes(id bigint PRIMARY KEY, host text, at timestamptz DEFAULT now())" >/dev/null
  echo "  sites up in $(secs "$(date +%s.%N)" "$T0") s"
}
nsl_etcd_serves_all() { nsl_etcd_serves fra && nsl_etcd_serves ams && nsl_etcd_serves wit; }
nsl_reach() { nsl_tcp_ok "$1" "${NSL_ADDR[$2]}" 2379; } # FROM TO (an etcd member listens at each site)
nsl_all_linked() {
  nsl_reach fra ams && nsl_reach fra wit && nsl_reach ams wit && nsl_reach wit fra && nsl_reach hub fra && nsl_reach hub ams
}
nsl_pdns_up() {
  nsl_exec hub curl -fsS -o /dev/null -m 2 2>/dev/null -H "X-API-Key: $NSL_PDNS_KEY" "$NSL_PDNS_URL/api/v1/servers/localhost"
}

# ---------------------------------------------------------------- group shop

# The group every netns suite runs: stack primary (fra, active) and standby
# (ams), traffic shop.example.test. in the hub's PowerDNS. Writes host.yaml
# (the control commands and the API key's binding: STACKFLIP_HOST_CONFIG)
# and the config to FILE, with `auto_failover: {AUTO}`.
nsl_shop_config() { # FILE AUTO
  local fra ams
  fra=$(nsl_write_control fra)
  ams=$(nsl_write_control ams)
  cat >"$NSL_DIR/host.yaml" <<EOF
commands: ["$fra", "$ams"]
secrets:
  "\${env:PDNS_API_KEY}": ["$NSL_PDNS_URL"]
EOF
  chmod 600 "$NSL_DIR/host.yaml"
  cat >"$1" <<EOF
apiVersion: stackflip/v1
providers:
  db: {type: postgres, connect_timeout_ms: 2000, statement_timeout_ms: 5000, pg_rewind: true}
  dns: {type: powerdns, url: "$NSL_PDNS_URL", api_key: "\${env:PDNS_API_KEY}"}
groups:
  shop:
    active: primary
    auto_failover: {$2}
    stacks:
      primary:
        provider: db
        dsn: "host=${NSL_ADDR[fra]} port=5432 user=stackflip dbname=app"
        address: ${NSL_ADDR[fra]}
        site: fra
        control_command: ["$fra"]
      standby:
        provider: db
        dsn: "host=${NSL_ADDR[ams]} port=5432 user=stackflip dbname=app"
        address: ${NSL_ADDR[ams]}
        site: ams
        control_command: ["$ams"]
    replication: {max_lag_bytes: 0}
    traffic: {provider: dns, zone: example.test., record: shop.example.test., ttl: 60}
EOF
}

# fra-1, ams-1 and wit-1, each `stackflip run` in its own site against the
# Git server's REPO, the three etcd members, lease 2 s, passes every 500 ms,
# /status on the site's 127.0.0.1:9090; ARGS are added (fra-1 logs at debug
# level: its self-fence, timed). Logs NSL_DIR/NAME.log, stamped.
nsl_start_instances() { # SF REPO ARGS...
  local sf=$1 repo=$2 i name site verbose
  shift 2
  for i in fra-1:fra ams-1:ams wit-1:wit; do
    name=${i%:*} site=${i#*:}
    mkdir -p "$NSL_DIR/$name"
    verbose=()
    [[ $name == fra-1 ]] && verbose=(-vv)
    nsl_bg_stamped "$site" "$NSL_DIR/$name.log" env STACKFLIP_HOST_CONFIG="$NSL_DIR/host.yaml" \
      PDNS_API_KEY="$NSL_PDNS_KEY" NO_COLOR=1 \
      "$sf" "${verbose[@]}" run --repo "$repo" --interval 500ms --etcd "$(nsl_etcd_endpoints)" \
      --instance "$name" --site "$site" --state "$NSL_DIR/$name/state.db" --listen 127.0.0.1:9090 \
      --lease-ttl 2s "$@"
  done
}
# NAME PYEXPR: PYEXPR of NAME's /status (j; g: its coordination.groups.shop).
nsl_status() {
  nsl_exec "${1%-*}" curl -fsS -m 2 http://127.0.0.1:9090/status 2>/dev/null | python3 -c "import json,sys
j=json.load(sys.stdin)
g=((j.get('coordination') or {}).get('groups') or {}).get('shop') or {}
print($2)" 2>/dev/null
}
nsl_converged_on() { [[ $(nsl_status "$1" "j.get('last_commit'), j.get('converged')") == "$2 True" ]]; } # NAME COMMIT
nsl_all_converged() { nsl_converged_on fra-1 "$1" && nsl_converged_on ams-1 "$1" && nsl_converged_on wit-1 "$1"; }
nsl_leader() { nsl_status "$1" "g.get('leader') or ''"; } # NAME: the leader of shop it names
nsl_three_agree() { local l; l=$(nsl_leader fra-1); [[ -n $l && $(nsl_leader ams-1) == "$l" && $(nsl_leader wit-1) == "$l" ]]; }

# ---------------------------------------------------------------- clients

# The application side, in Python over libpq (ctypes): a writer, monitors and
# a watcher, each started inside a namespace; see the file's header.
nsl_write_app() {
  NSL_APP=$NSL_DIR/netns_app.py
  cp "$E2E_REPO/tests/e2e/libpq.py" "$NSL_DIR/"  # imported by the app, from its folder
  cat >"$NSL_APP" <<'PY'
# netns_app.py — written by tests/e2e/netns_lib.sh. Times are time.time()
# (one clock: every namespace is on this host).
#   writer DSN OUT STOP FIRST_ID
#     One row per transaction into writes(id), ids FIRST_ID, FIRST_ID+1, ...
#     over one kept connection (reconnected when lost). Before COMMIT it reads
#     pg_current_wal_insert_lsn() (pre), after the acknowledged COMMIT
#     pg_current_wal_flush_lsn() (post): the commit record ends in (pre, post].
#     Lines: "ack ID T PRE POST" once acknowledged; "refused ID T READONLY
#     MESSAGE" for a failed attempt (READONLY 1 when SQLSTATE 25006), retried
#     with the same id 20 ms later; "dup ID T" when that id is there already
#     (an attempt whose answer was lost committed after all): the next id.
#   monitor NAME OUT STOP HOST...
#     One thread per HOST: every 50 ms a new session (what a new client gets)
#     asks pg_is_in_recovery() and default_transaction_read_only. Lines
#     "T0 T1 HOST STATE": asked at T0, answered at T1 (an answer held up in a
#     partition arrives long after it was true); STATE W (primary taking
#     writes), R (primary refusing them: fenced), S (standby), X (no answer).
#     The sessions give up after 1 s without TCP acknowledgement.
#   watch OUT STOP DNS_SERVER RECORD ETCD_URL KEY...
#     Every 50 ms: the record's A answer from DNS_SERVER:53 ("T dns ADDR") and
#     whether each etcd KEY exists ("T etcd KEY 1|0"), written on change.
import json, os, random, socket, struct, sys, threading, time, base64, urllib.request

from libpq import Conn, PgError

def line(f, s):
    f.write(s + "\n")
    f.flush()

def writer(dsn, out, stop, first):
    i = int(first)
    conn = None
    with open(out, "a") as f:
        while not os.path.exists(stop):
            try:
                if conn is None:
                    conn = Conn(dsn + " connect_timeout=2 application_name=netns-writer")
                _, rows = conn.q("BEGIN; INSERT INTO writes(id, host) VALUES (%d, 'fra-client');"
                                 " SELECT pg_current_wal_insert_lsn()" % i)
                pre = rows[0][0]
                tag, _ = conn.q("COMMIT")
                if tag != "COMMIT":
                    raise PgError("COMMIT answered " + tag)
                t = time.time()
                try:
                    post = conn.q("SELECT pg_current_wal_flush_lsn()")[1][0][0]
                except PgError:
                    post = "?"
                line(f, "ack %d %.6f %s %s" % (i, t, pre, post))
                i += 1
                time.sleep(0.005)
            except PgError as e:
                msg = " ".join(str(e).split())[:200]
                if e.sqlstate == "23505":
                    # The id is there already: an earlier attempt's COMMIT
                    # went through though its answer was lost (the server
                    # was killed), and reached the new primary. Never
                    # acknowledged: the next id.
                    line(f, "dup %d %.6f" % (i, time.time()))
                    i += 1
                    conn.close()
                    conn = None
                    continue
                line(f, "refused %d %.6f %d %s" % (i, time.time(), e.sqlstate == "25006", msg))
                if conn is not None and not conn.ok():
                    conn.close()
                    conn = None
                elif conn is not None:
                    try:
                        conn.q("ROLLBACK")
                    except PgError:
                        conn.close()
                        conn = None
                time.sleep(0.02)
    if conn:
        conn.close()

def monitor(name, out, stop, hosts):
    lock = threading.Lock()
    f = open(out, "a")
    def poll(host):
        dsn = ("host=%s port=5432 user=stackflip dbname=app connect_timeout=2 tcp_user_timeout=1000"
               " application_name=netns-monitor-%s" % (host, name))
        while not os.path.exists(stop):
            state = "X"
            t0 = time.time()
            try:
                c = Conn(dsn)
                try:
                    _, rows = c.q("SELECT CASE WHEN pg_is_in_recovery() THEN 'S' WHEN"
                                  " current_setting('default_transaction_read_only') = 'on' THEN 'R' ELSE 'W' END")
                    state = rows[0][0]
                finally:
                    c.close()
            except PgError:
                pass
            with lock:
                line(f, "%.6f %.6f %s %s" % (t0, time.time(), host, state))
            time.sleep(0.05)
    ts = [threading.Thread(target=poll, args=(h,)) for h in hosts]
    for t in ts: t.start()
    for t in ts: t.join()
    f.close()

def dns_a(server, record):
    qid = random.randrange(65536)
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in record.rstrip(".").split("."):
        q += bytes([len(label)]) + label.encode()
    q += b"\0" + struct.pack(">HH", 1, 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(1)
    try:
        s.sendto(q, (server, 53))
        data = s.recv(512)
    except OSError:
        return "none"
    finally:
        s.close()
    an = struct.unpack(">H", data[6:8])[0]
    p = 12
    while data[p] != 0: p += data[p] + 1
    p += 5
    addrs = []
    for _ in range(an):
        if data[p] & 0xC0 == 0xC0: p += 2
        else:
            while data[p] != 0: p += data[p] + 1
            p += 1
        typ, _, _, ln = struct.unpack(">HHIH", data[p:p + 10])
        p += 10
        if typ == 1 and ln == 4: addrs.append(socket.inet_ntoa(data[p:p + 4]))
        p += ln
    return ",".join(sorted(addrs)) or "empty"

def etcd_has(url, key):
    body = json.dumps({"key": base64.b64encode(key.encode()).decode(), "count_only": True}).encode()
    try:
        with urllib.request.urlopen(urllib.request.Request(url + "/v3/kv/range", body), timeout=1) as r:
            return "1" if int(json.load(r).get("count", 0)) > 0 else "0"
    except Exception:
        return "?"

def watch(out, stop, server, record, url, keys):
    last = {}
    with open(out, "a") as f:
        while not os.path.exists(stop):
            now = {"dns": dns_a(server, record)}
            for k in keys: now["etcd " + k] = etcd_has(url, k)
            t = time.time()
            for k, v in now.items():
                if last.get(k) != v:
                    line(f, "%.6f %s %s" % (t, k, v))
                    last[k] = v
            time.sleep(0.05)

cmd = sys.argv[1]
if cmd == "writer": writer(*sys.argv[2:6])
elif cmd == "monitor": monitor(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:])
elif cmd == "watch": watch(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6], sys.argv[7:])
else: sys.exit("usage: netns_app.py writer|monitor|watch ...")
PY
}

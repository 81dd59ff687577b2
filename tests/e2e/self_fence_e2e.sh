#!/usr/bin/env bash
# Self-fencing (issue 14, item 7) on the harness's 3-member etcd and real
# PostgreSQL 15: `stackflip run` in site fra (where the primary runs), group
# shop with auto_failover, lease 2 s. Every etcd member is frozen (SIGSTOP:
# requests hang, as behind a partition): the instance fences its primary
# (maintenance on: a client's write is refused) within its lease, timed from
# the freeze. Thawed, it registers again and, no failover having happened,
# the loop turns maintenance off again.
# Usage (CTest): bash tests/e2e/self_fence_e2e.sh STACKFLIP E2E_TOOL
source "$(dirname "$0")/lib.sh"
e2e_start "$@"
source "$(dirname "$0")/etcd_lib.sh"
etcd_setup

sed "s/^    active: primary$/    active: primary\n    auto_failover: {after: 10s}/" \
  "$DIR/fra-active.yaml" >"$DIR/auto.yaml"
FIRST=$(commit "$DIR/auto.yaml" "shop: automatic failover")
INST_INTERVAL=500ms start_instance fra-1 fra "$ETCD_ENDPOINTS" --lease-ttl 2s
check "the instance converges" poll 30 converged_on fra-1 "$FIRST"
check "it leads shop" poll 20 leads fra-1
check_eq "the primary takes writes" off "$(maintenance_of 127.0.0.1)"
sleep 1

T_FREEZE=$(date +%s.%N)
for n in 1 2 3; do harness freeze-etcd "$n"; done
fenced() { [[ $(maintenance_of 127.0.0.1) == on ]]; }
check "the primary is fenced" poll 15 fenced
T_FENCED=$(date +%s.%N)
echo "  fenced $(python3 -c "print('%.2f' % ($T_FENCED - $T_FREEZE))") s after etcd went silent (lease 2 s, renewed every 0.5 s; the fence lands by the lease's end less 0.25 s)"
check "a client's write is refused" refuses_writes 127.0.0.1
check "the log says why" grep -q "self-fencing: group shop: maintenance on primary (cut off from etcd in site fra" "$DIR/fra-1.log"
check "fenced once" test "$(grep -c 'self-fencing: group shop' "$DIR/fra-1.log")" -eq 1

for n in 1 2 3; do harness thaw-etcd "$n"; done
check "etcd back: it leads shop again" poll 30 leads fra-1
check "no failover happened: the loop opens the primary again" poll 30 bash -c "[[ \$(PGCONNECT_TIMEOUT=3 $PG_BIN/psql -X -qAt 'host=127.0.0.1 port=$PG_PORT user=$PG_USER dbname=$PG_DB' -c 'SHOW default_transaction_read_only') == off ]]"
e2e_finish

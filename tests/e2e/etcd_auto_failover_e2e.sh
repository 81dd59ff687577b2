#!/usr/bin/env bash
# Automatic failover with witnesses through etcd (issue 14), on the harness's
# 3-member etcd, real PostgreSQL 15 + PowerDNS and a bare Git repository
# (file://): three `stackflip run` instances, fra-1 (site fra, where the
# primary runs), ams-1 (site ams, the standby's) and wit-1 (a witness site),
# group shop with `auto_failover: {after: 3s}` and no `witnesses:` (a
# majority of the live instances, one outside fra).
#   Git goes down, then the primary is SIGKILLed under a writer and a
#   two-writable-databases monitor: the group's leader decides the failover
#   with every instance's verdict, keeps it in etcd as an override and
#   applies it; timed from the kill: (b) the standby writable, (c) DNS
#   answering its address. /status says "override in force, not yet in
#   Git"; no pass flips traffic back. Git back: the commit lands (signed,
#   the evidence in its message), the next pass adopts it and the override
#   is over. Exactly one commit, by the leader; no two writable databases.
# Usage (CTest): bash tests/e2e/etcd_auto_failover_e2e.sh STACKFLIP E2E_TOOL
source "$(dirname "$0")/lib.sh"
e2e_start "$@"
source "$(dirname "$0")/etcd_lib.sh"
etcd_setup

AFTER=3
sed "s/^    active: primary$/    active: primary\n    auto_failover: {after: ${AFTER}s, max_data_loss_bytes: 1048576}/" \
  "$DIR/fra-active.yaml" >"$DIR/auto.yaml"
FIRST=$(commit "$DIR/auto.yaml" "shop: automatic failover after ${AFTER}s")
ORIGIN=$DIR/origin.git
git clone -q --bare "$REPO" "$ORIGIN"
URL=file://$ORIGIN
ssh-keygen -q -t ed25519 -N "" -C stackflip -f "$DIR/stackflip_key"
echo "stackflip@localhost $(cat "$DIR/stackflip_key.pub")" >"$DIR/allowed_signers"

export INST_INTERVAL=500ms
for i in fra-1:fra ams-1:ams wit-1:wit; do
  start_instance "${i%:*}" "${i#*:}" "$ETCD_ENDPOINTS" --commit-signing-key "$DIR/stackflip_key" --lease-ttl 2s
done
all_converged() { converged_on fra-1 "$FIRST" && converged_on ams-1 "$FIRST" && converged_on wit-1 "$FIRST"; }
check "three instances converge on the first commit" poll 40 all_converged
three_agree() { local l; l=$(leader_of_shop fra-1); [[ -n $l && $(leader_of_shop ams-1) == "$l" && $(leader_of_shop wit-1) == "$l" ]]; }
check "they agree on one leader of shop" poll 20 three_agree
check "the leader comes to be outside fra" poll 20 bash -c "[[ \$(curl -fsS -m 2 http://127.0.0.1:${INST_PORT[fra-1]}/status | jq -r '.coordination.groups.shop.leader') != fra-1 ]]"
LEADER=$(leader_of_shop fra-1)
echo "  leader of shop: $LEADER"
sleep 1

start_app
# Git is down during the failover: the decision is kept in etcd as an
# override, applied at once, and pushed when Git returns.
mv "$ORIGIN" "$ORIGIN.away"
T_KILL=$(date +%s.%N)
harness kill-pg 1
time_failover 40
since() { python3 -c "print('%.2f' % ($1 - $T_KILL))"; }
check "(b) the standby became writable, Git down" test -n "$T_WRITABLE"
check "(c) DNS answers the standby's address" test -n "$T_DNS"
echo "  from the kill, Git down (after: ${AFTER}s, 3 witnesses): (b) writable $(since "${T_WRITABLE:-$T_KILL}") s, (c) DNS $(since "${T_DNS:-$T_KILL}") s (aim: after + 2 s = $((AFTER + 2)) s)"
status_override() { curl -fsS -m 2 "http://127.0.0.1:${INST_PORT[$LEADER]}/status" | jq -r '.groups.shop.override // ""'; }
has_override() { [[ $(status_override) == "override in force, not yet in Git: \`active: standby\` with \`allow_data_loss: true\`"* ]]; }
check "/status: override in force, not yet in Git" poll 10 has_override
status_override | sed 's/^/    /'
check_eq "etcd holds the override" 1 "$(ETCDCTL_API=3 etcdctl --endpoints "$ETCD1_URL" get --prefix --keys-only /stackflip/override/ | grep -c .)"
sleep 3  # passes without Git: none flips traffic back
check_eq "no pass flipped traffic back" 127.0.0.2 "$(dns_answer)"
mv "$ORIGIN.away" "$ORIGIN"
T_BACK=$(date +%s.%N)
landed() { [[ $(git -C "$ORIGIN" rev-parse main) != "$FIRST" ]]; }
check "(a) Git back: the failover commit lands" poll 20 landed
echo "  the commit landed $(python3 -c "print('%.2f' % ($(date +%s.%N) - $T_BACK))") s after Git came back"
override_gone() { [[ -z $(ETCDCTL_API=3 etcdctl --endpoints "$ETCD1_URL" get --prefix --keys-only /stackflip/override/) ]]; }
check "adopted by the next pass: the override is over" poll 20 override_gone
check_eq "traffic stayed on the standby" 127.0.0.2 "$(dns_answer)"
COMMIT=$(git -C "$ORIGIN" rev-parse main)
check_eq "one commit, on top of the operators'" "$FIRST" "$(git -C "$ORIGIN" rev-parse main~1)"
check "its signature verifies" git -C "$ORIGIN" -c gpg.ssh.allowedSignersFile="$DIR/allowed_signers" verify-commit "$COMMIT"
git -C "$ORIGIN" log -1 --format=%B main >"$DIR/message.txt"
sed 's/^/    /' "$DIR/message.txt"
check "decided by the leader" grep -q "^Automatic failover decided by $LEADER at " "$DIR/message.txt"
check "the message says it was pushed late" grep -q "^(Pushed after Git could not be reached; in force as an override until now.)$" "$DIR/message.txt"
check "a majority of the 3 live instances agree" grep -qE "^Witnesses \([23] of 3 live instances agree\):$" "$DIR/message.txt"
check "one of them outside fra" grep -qE "^  (ams-1 \(site ams\)|wit-1 \(site wit\)): failing since " "$DIR/message.txt"
check "the policy: a majority, one outside the site" grep -q "a majority of witnesses with one outside site fra" "$DIR/message.txt"
# Not "converged": the old primary is down, so its fence and re-attach wait.
on_commit() { [[ $(status "$1" "j.get('last_commit')") == "$2" ]]; }
for n in fra-1 ams-1 wit-1; do check "$n plans against the failover commit" poll 30 on_commit "$n" "$COMMIT"; done
sleep 2
check_eq "still one automatic commit" "$COMMIT" "$(git -C "$ORIGIN" rev-parse main)"
stop_app
check_eq "the monitor never saw two writable databases" 0 "$MONITOR_RC"
"$TOOL" check 127.0.0.2 "$PG_PORT" "$DIR/acked" >"$DIR/check.txt"
echo "  $(cat "$DIR/check.txt")"
missing=$(awk '{print $4}' "$DIR/check.txt")
if ((missing > 0)); then check "only the last acknowledged writes are lost" grep -q "(the last acknowledged)" "$DIR/check.txt"; fi
e2e_finish

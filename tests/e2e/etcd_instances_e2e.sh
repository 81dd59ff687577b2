#!/usr/bin/env bash
# End to end, issue 13: two `stackflip run` instances (fra-1 in site fra,
# ams-1 in site ams) share group shop through the harness's 3-member etcd,
# reconciling from one local Git repository, against real PostgreSQL and
# PowerDNS:
#   (1) exactly one instance leads shop, and both say which;
#   (2) a commit flipping `active:` is applied by exactly one instance (the
#       other's passes report standby), with a writer running: it converges,
#       no acknowledged row is lost, never two writable databases; the shared
#       journal shows each of the 7 actions once, by one instance, one token;
#   (3) etcd faults: (a) one member killed: nothing changes, a switch back
#       works; (b) quorum lost: both say why and a flipping commit starts
#       nothing; (c) members back: they converge to the new commit, whose
#       actions the shared journal shows once.
# Usage (CTest): bash tests/e2e/etcd_instances_e2e.sh STACKFLIP E2E_TOOL
source "$(dirname "$0")/lib.sh"
e2e_start "$@"
source "$(dirname "$0")/etcd_lib.sh"
etcd_setup

# The shared journal's rows for one origin commit: "INSTANCE TOKEN KIND" per action.
shared_rows() { # ENDPOINT COMMIT
  "$SF" history --etcd "$1" -n 1000 >"$DIR/hist.txt" 2>&1
  grep "${2:0:12}" "$DIR/hist.txt"
}

both_converged() { converged_on fra-1 "$1" && converged_on ams-1 "$1"; }
one_leader() { both_agree fra-1 ams-1 fra-1 || both_agree fra-1 ams-1 ams-1; }

echo "--- (1) two instances, one leader"
C1=$(commit "$DIR/fra-active.yaml" "primary (fra) active")
start_instance fra-1 fra "$ETCD_ENDPOINTS"
start_instance ams-1 ams "$ETCD_ENDPOINTS"
check "both instances converge on the first commit" poll 30 both_converged "$C1"
check "both instances agree on one leader of shop" poll 15 one_leader
# The first instance up may take the group before the other registers; it
# hands it back at the start of its next pass (never during one).
check "the leader comes to be outside the active stack's site (ams-1)" poll 20 both_agree fra-1 ams-1 ams-1
L1=$(leader_of_shop fra-1)
echo "leader of shop: $L1 (active stack primary is in fra)"
page_leader() { # NAME: the leader of shop on NAME's status page (issue 16)
  curl -fsS -m 5 "http://127.0.0.1:${INST_PORT[$1]}/" >"$DIR/page-$1.html" &&
    python3 "$E2E_REPO/tests/e2e/dom_query.py" "$DIR/page-$1.html" 'tr[data-group=shop] td.leader'
}
for n in fra-1 ams-1; do check_eq "$n's status page names the leader" "$L1" "$(page_leader "$n")"; done
check_eq "fra-1: etcd up" 1 "$(metric fra-1 stackflip_etcd_up)"
check_eq "ams-1: etcd up" 1 "$(metric ams-1 stackflip_etcd_up)"
check_eq "fra-1 sees two instances" 2 "$(metric fra-1 stackflip_etcd_instances)"
check_eq "groups led: one in all" 1 "$(($(metric fra-1 stackflip_groups_led) + $(metric ams-1 stackflip_groups_led)))"

echo "--- (2) a commit flipping active: one instance applies"
other() { [[ $1 == fra-1 ]] && echo ams-1 || echo fra-1; }
S0_FRA=$(steps_in fra-1) S0_AMS=$(steps_in ams-1)
start_app
sleep 0.5
C2=$(commit "$DIR/ams-active.yaml" "fail over to standby (ams)")
check "switch: both instances converge on the new commit" poll 60 both_converged "$C2"
stop_app
check_eq "switch: monitor never saw two writable databases" 0 "$MONITOR_RC"
check "switch: no acknowledged row lost" "$TOOL" check 127.0.0.2 "$PG_PORT" "$DIR/acked"
check_eq "switch: DNS answers the standby" 127.0.0.2 "$(dns_answer)"
check "switch: the standby is writable" not_in_recovery 127.0.0.2
check "switch: the old primary streams from the new one" poll 10 streaming_from 127.0.0.1 127.0.0.2
D_FRA=$(($(steps_in fra-1) - S0_FRA)) D_AMS=$(($(steps_in ams-1) - S0_AMS))
echo "step lines: fra-1 $D_FRA, ams-1 $D_AMS"
check "switch: exactly one instance ran steps" test $(((D_FRA > 0) + (D_AMS > 0))) -eq 1
APPLIER=$( ((D_FRA > 0)) && echo fra-1 || echo ams-1)
IDLE=$(other "$APPLIER")
echo "applied by $APPLIER; $IDLE stood by"
check "switch: $IDLE's pass reported standby" grep -qE "shop.*standby|standby.*shop" "$DIR/$IDLE.log"
check_eq "switch: $APPLIER's local journal has the 7 actions" 7 "$(local_done "$APPLIER")"
check_eq "switch: $IDLE's local journal is empty" 0 "$(local_rows "$IDLE")"
check "switch: the leader now is $APPLIER (both agree)" poll 10 both_agree fra-1 ams-1 "$APPLIER"
for ep in "$ETCD1_URL" "$ETCD2_URL" "$ETCD3_URL"; do
  shared_rows "$ep" "$C2" >"$DIR/rows.txt"
  check_eq "switch: the shared journal via ${ep##*:} has 7 actions for the commit" 7 "$(wc -l <"$DIR/rows.txt")"
  check_eq "switch: ... 7 distinct actions (kind, stack)" 7 "$(awk '{print $5, $6}' "$DIR/rows.txt" | sort -u | wc -l)"
  check_eq "switch: ... all by one instance with one token" "$APPLIER" "$(awk '{print $1, $2}' "$DIR/rows.txt" | sort -u | tr '\n' ' ' | sed 's/ [0-9]* $//')"
done
cat "$DIR/hist.txt"

echo "--- (3a) one etcd member killed: nothing changes"
harness kill-etcd 3
sleep 3  # two passes at --interval 2s
check_eq "one member down: fra-1 etcd up" 1 "$(metric fra-1 stackflip_etcd_up)"
check_eq "one member down: ams-1 etcd up" 1 "$(metric ams-1 stackflip_etcd_up)"
check_eq "one member down: fra-1 healthy" True "$(status fra-1 "c['etcd']['healthy']")"
check_eq "one member down: ams-1 healthy" True "$(status ams-1 "c['etcd']['healthy']")"
check "one member down: same leader" both_agree fra-1 ams-1 "$APPLIER"
S0_FRA=$(steps_in fra-1) S0_AMS=$(steps_in ams-1)
C3=$(commit "$DIR/fra-active.yaml" "back to primary (fra)")
check "one member down: a switch back converges" poll 60 both_converged "$C3"
check_eq "one member down: DNS answers the primary" 127.0.0.1 "$(dns_answer)"
check "one member down: the primary is writable" not_in_recovery 127.0.0.1
D_FRA=$(($(steps_in fra-1) - S0_FRA)) D_AMS=$(($(steps_in ams-1) - S0_AMS))
check "one member down: exactly one instance ran steps ($D_FRA, $D_AMS)" test $(((D_FRA > 0) + (D_AMS > 0))) -eq 1
shared_rows "$ETCD1_URL" "$C3" >"$DIR/rows.txt"
check_eq "one member down: the shared journal has 7 actions for the switch back" 7 "$(wc -l <"$DIR/rows.txt")"
L3=$(leader_of_shop fra-1)
echo "leader after the switch back: $L3"

echo "--- (3b) a second member killed: quorum lost"
harness kill-etcd 2
T0=$SECONDS
check "no quorum: fra-1 says etcd is down" poll 30 etcd_up_is fra-1 0
check "no quorum: ams-1 says etcd is down" poll 30 etcd_up_is ams-1 0
echo "both said etcd down after $((SECONDS - T0)) s"
for n in fra-1 ams-1; do
  check_eq "no quorum: $n /status etcd healthy false" False "$(status "$n" "c['etcd']['healthy']")"
  err=$(status "$n" "c['etcd'].get('error') or ''")
  echo "  $n says: $err"
  check "no quorum: $n /status says why" test -n "$err"
done
R_FRA=$(local_rows fra-1) R_AMS=$(local_rows ams-1)
P_FRA=$(passes fra-1) P_AMS=$(passes ams-1)
C4=$(commit "$DIR/ams-active.yaml" "fail over to standby (ams) without quorum")
check "no quorum: fra-1 passes go on" poll 45 passes_at_least fra-1 $((P_FRA + 3))
check "no quorum: ams-1 passes go on" poll 45 passes_at_least ams-1 $((P_AMS + 3))
check "no quorum: fra-1 reports standby for shop" bash -c "tail -n 20 '$DIR/fra-1.log' | grep -q standby"
check "no quorum: ams-1 reports standby for shop" bash -c "tail -n 20 '$DIR/ams-1.log' | grep -q standby"
grep -h 'standby' "$DIR/fra-1.log" | tail -1
check_eq "no quorum: DNS still answers the primary" 127.0.0.1 "$(dns_answer)"
check "no quorum: the primary is still writable" not_in_recovery 127.0.0.1
check "no quorum: the standby is still in recovery" in_recovery 127.0.0.2
check_eq "no quorum: no new local journal rows on fra-1" "$R_FRA" "$(local_rows fra-1)"
check_eq "no quorum: no new local journal rows on ams-1" "$R_AMS" "$(local_rows ams-1)"
check_eq "no quorum: the new commit is not in force on fra-1" False "$(status fra-1 "j.get('converged') is True and j.get('last_commit') == '$C4'")"

echo "--- (3c) both members back: they resume"
harness start-etcd 2
harness start-etcd 3
T0=$SECONDS
check "quorum back: fra-1 etcd up" poll 30 etcd_up_is fra-1 1
check "quorum back: ams-1 etcd up" poll 30 etcd_up_is ams-1 1
echo "both said etcd up after $((SECONDS - T0)) s"
check "quorum back: both converge on the new commit" poll 60 both_converged "$C4"
echo "converged $((SECONDS - T0)) s after the members were started"
check_eq "quorum back: DNS answers the standby" 127.0.0.2 "$(dns_answer)"
check "quorum back: the standby is writable" not_in_recovery 127.0.0.2
check "quorum back: one leader" poll 20 one_leader
# Right after an election an etcd request can still time out and stop the
# switch between two steps (a pass never runs a step it could not record);
# the next pass resumes from what it observes, which may run a few steps
# more (re-attach the standby, wait, detach). So: every step run is in the
# shared journal once and in the leader's local journal once, by one
# instance with one token, and the switch's 7 steps are among them.
local_c4() { "$SF" history --state "$DIR/$1/state.db" -n 1000 2>/dev/null | grep "${C4:0:12}" | grep -vc ' started'; }
N_LOCAL=$(($(local_c4 fra-1) + $(local_c4 ams-1)))
shared_rows "$ETCD1_URL" "$C2" | awk '{print $5, $6}' | sort -u >"$DIR/switch-steps.txt"
for ep in "$ETCD1_URL" "$ETCD2_URL"; do
  shared_rows "$ep" "$C4" >"$DIR/rows.txt"
  check_eq "quorum back: the shared journal via ${ep##*:} has each step run once, as the local journals" \
    "$N_LOCAL" "$(wc -l <"$DIR/rows.txt")"
  check_eq "quorum back: ... the switch's 7 steps among them" 7 \
    "$(awk '{print $5, $6}' "$DIR/rows.txt" | sort -u | comm -12 - "$DIR/switch-steps.txt" | wc -l)"
  check_eq "quorum back: ... by one instance with one token" 1 "$(awk '{print $1, $2}' "$DIR/rows.txt" | sort -u | wc -l)"
done
if ((N_LOCAL != 7)); then
  echo "  the switch was stopped between steps and resumed: $N_LOCAL steps; why:"
  grep -hE "not starting it|cannot record|keep-alive failed|not the leader" "$DIR/fra-1.log" "$DIR/ams-1.log" | tail -n 3
fi
check_eq "quorum back: local journals hold the steps of the three switches" $((14 + N_LOCAL)) "$(($(local_done fra-1) + $(local_done ams-1)))"
"$SF" history --etcd "$ETCD_ENDPOINTS" -n 1000 >"$DIR/hist.txt"
check_eq "the shared journal holds every step of the three switches once" $((14 + N_LOCAL)) "$(($(wc -l <"$DIR/hist.txt") - 1))"
cat "$DIR/hist.txt"
# A follower's pass during a switch is "standby": its local store records it
# like any other (version 1 of the store refused it).
for i in fra-1 ams-1; do
  check_eq "$i: no state store error in any pass" 0 "$(metric $i stackflip_state_store_errors_total)"
done
e2e_finish

#!/usr/bin/env bash
# End to end, issue 13: a leader cut off from etcd while the cluster keeps
# quorum. ams-1 (site ams) talks to etcd member 1 only and leads shop;
# fra-1 (site fra) talks to members 2 and 3. Member 1 is frozen (SIGSTOP)
# and a commit flipping `active:` follows at once. A timeline (every 100 ms,
# from /status, /metrics, the logs and etcd's own view through member 2)
# shows when the old leader went quiet, when its lease expired, when fra-1
# took shop over and when fra-1 started its first action. Checks: the old
# leader starts nothing after the freeze; the new leader's first action
# starts only after the old one went quiet and after the old lease expired;
# after the thaw the old leader comes back as a follower, applying nothing.
# Usage (CTest): bash tests/e2e/etcd_cutoff_e2e.sh STACKFLIP E2E_TOOL
source "$(dirname "$0")/lib.sh"
e2e_start "$@"
source "$(dirname "$0")/etcd_lib.sh"
etcd_setup
TIMELINE=$(dirname "$0")/etcd_timeline.py

echo "--- the leader-to-be starts first, on member 1 only"
C1=$(commit "$DIR/fra-active.yaml" "primary (fra) active")
start_instance ams-1 ams "$ETCD1_URL"
check "ams-1 leads shop" poll 30 leads ams-1
check "ams-1 converges on the first commit" poll 30 converged_on ams-1 "$C1"
start_instance fra-1 fra "$ETCD2_URL,$ETCD3_URL"
check "fra-1 converges on the first commit" poll 30 converged_on fra-1 "$C1"
check "both agree ams-1 leads shop" poll 15 both_agree fra-1 ams-1 ams-1
sleep 2.5 # a pass of each with both registered: the leadership is settled
check "ams-1 still leads shop" both_agree fra-1 ams-1 ams-1
"$SF" status --etcd "$ETCD2_URL" --state "$DIR/fra-1/state.db" >"$DIR/etcd-status.txt" 2>&1
cat "$DIR/etcd-status.txt"
harness_status() { "$E2E_REPO/scripts/harness.sh" status "$DIR" 2>/dev/null | grep '^etcd'; }
harness_status
R_AMS=$(local_rows ams-1)

echo "--- freeze etcd member 1 (ams-1's only endpoint), then a commit flipping active"
: >"$DIR/timeline.jsonl"
python3 "$TIMELINE" poll "$DIR/timeline.jsonl" 40 "$DIR/poll.stop" "$ETCD2_URL" /stackflip/ \
  "ams-1=${INST_PORT[ams-1]}:$DIR/ams-1.log" "fra-1=${INST_PORT[fra-1]}:$DIR/fra-1.log" &
POLLER=$!
sleep 0.5 # samples before the freeze
ams_ready() { etcd_up_is ams-1 1 && leads ams-1; }
check "ams-1 is healthy and leads right before the freeze" poll 10 ams_ready
T_FREEZE=$(date +%s.%N)
harness freeze-etcd 1
C2=$(commit "$DIR/ams-active.yaml" "fail over to standby (ams) while ams-1 is cut off")
check "fra-1 converges on the flip" poll 40 converged_on fra-1 "$C2"
sleep 1 # samples after
touch "$DIR/poll.stop"
wait "$POLLER"
POLLER=
check_eq "DNS answers the standby" 127.0.0.2 "$(dns_answer)"
check "the standby is writable" not_in_recovery 127.0.0.2
check_eq "the old leader (ams-1) started no action: its local journal" "$R_AMS" "$(local_rows ams-1)"
check "fra-1 leads shop" poll 5 leads fra-1
"$SF" history --etcd "$ETCD2_URL" -n 100 >"$DIR/hist.txt" 2>&1
check "the shared journal has no action by ams-1" not grep -q '^ams-1 ' "$DIR/hist.txt"
check_eq "the shared journal has the flip's 7 actions by fra-1" 7 "$(grep -c "^fra-1 .*${C2:0:12}" "$DIR/hist.txt")"

# The timeline, in seconds from the freeze.
python3 - "$DIR/timeline.jsonl" "$T_FREEZE" >"$DIR/timeline.txt" <<'PY'
import json, re, sys
samples = [json.loads(l) for l in open(sys.argv[1])]
t0 = float(sys.argv[2])
ev = {}
STEP = re.compile(r"^\s*shop \d+/\d+ ")
STARTED = re.compile(r"^\s*shop \d+/\d+ .*\.\.\.$")
def first(name, t):
    if name not in ev and t is not None: ev[name] = t - t0
before = [s for s in samples if s["t"] < t0]
old = before[-1] if before else None
old_lease = old["etcd"].get("lease") if old else None
if old and old["inst"]["ams-1"].get("up") == 1: ev["ams-1 healthy in the last sample before the freeze"] = old["t"] - t0
if old:
    ll = old["inst"]["ams-1"].get("lease_left")
    if ll is not None: ev["ams-1's own count of its lease runs out"] = old["t"] + float(ll) - t0
    if old["etcd"].get("ttl") is not None:
        ev["etcd's TTL of the old lease (sampled before the freeze) ends"] = old["t"] + old["etcd"]["ttl"] - t0
for s in samples:
    if s["t"] < t0: continue
    a, f, e = s["inst"]["ams-1"], s["inst"]["fra-1"], s["etcd"]
    for line in a.get("lines", []):
        if "keep-alive failed" in line: first("ams-1 logs keep-alive failed", s["t"])
        if STARTED.match(line): first("ams-1 starts an action (must not happen)", s["t"])
        elif STEP.match(line): first("ams-1: a step refused (%s)" % line.split(": ", 1)[-1][:80], s["t"])
    if a.get("up") == 0: first("ams-1 stackflip_etcd_up 0", s["t"])
    if "error" not in e and (e.get("leader") is None or e.get("lease") != old_lease):
        first("old lease gone in etcd (leader key gone)", s["t"])
    if e.get("leader") == "fra-1": first("etcd: fra-1 holds the leader key", s["t"])
    if f.get("leader") == "fra-1": first("fra-1 /status: fra-1 leads", s["t"])
    for line in f.get("lines", []):
        if STARTED.match(line): first("fra-1 starts its first action", s["t"])
    if f.get("lines") and any(l.startswith("pass: ") and "applied" in l for l in f["lines"]):
        first("fra-1 pass applied", s["t"])
for k, v in sorted(ev.items(), key=lambda kv: kv[1]):
    print("%8.2f  %s" % (v, k))
json.dump(ev, open(sys.argv[1] + ".events.json", "w"))
PY
echo "timeline (seconds from the freeze; samples every 100 ms):"
cat "$DIR/timeline.txt"
ev() { python3 -c "import json,sys; e=json.load(open('$DIR/timeline.jsonl.events.json')); print(e.get(sys.argv[1], ''))" "$1"; }
check "timeline: ams-1 was healthy in the last sample before the freeze" test -n "$(ev "ams-1 healthy in the last sample before the freeze")"
QUIET=$(ev "ams-1 stackflip_etcd_up 0")
GONE=$(ev "old lease gone in etcd (leader key gone)")
FIRST=$(ev "fra-1 starts its first action")
check "timeline: ams-1 went quiet (etcd_up 0)" test -n "$QUIET"
check "timeline: ams-1 logged keep-alive failed" test -n "$(ev "ams-1 logs keep-alive failed")"
check "timeline: the old lease expired" test -n "$GONE"
check "timeline: fra-1 started an action" test -n "$FIRST"
check "timeline: ams-1 started no action" test -z "$(ev "ams-1 starts an action (must not happen)")"
# Not before: etcd creates fra-1's key only once the old one is gone, so both
# may land in the same 100 ms sample; an earlier first action is the failure.
after() { python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) >= float(sys.argv[2]) else 1)" "$1" "$2"; }
check "timeline: fra-1's first action after ams-1 went quiet ($FIRST >= $QUIET)" after "${FIRST:-0}" "${QUIET:-99}"
check "timeline: fra-1's first action after the old lease expired ($FIRST >= $GONE, same sample allowed)" after "${FIRST:-0}" "${GONE:-99}"

echo "--- thaw member 1: ams-1 comes back as a follower"
harness thaw-etcd 1
check "ams-1: etcd up again" poll 30 etcd_up_is ams-1 1
check "ams-1: healthy in /status" poll 10 test "$(status ams-1 "c['etcd']['healthy']")" = True
check "ams-1 converges on the flip" poll 30 converged_on ams-1 "$C2"
P=$(passes ams-1)
check "ams-1: two more passes" poll 15 passes_at_least ams-1 $((P + 2))
check "both agree fra-1 leads shop" both_agree fra-1 ams-1 fra-1
check_eq "ams-1 leads no group" 0 "$(metric ams-1 stackflip_groups_led)"
check_eq "ams-1 applied nothing: its local journal" "$R_AMS" "$(local_rows ams-1)"
"$SF" history --etcd "$ETCD_ENDPOINTS" -n 100 >"$DIR/hist.txt" 2>&1
check "ams-1 applied nothing: the shared journal" not grep -q '^ams-1 ' "$DIR/hist.txt"
check_eq "DNS still answers the standby" 127.0.0.2 "$(dns_answer)"
check "the standby is still writable" not_in_recovery 127.0.0.2
check "the old primary is read-only" in_recovery 127.0.0.1
grep -E 'etcd:|keep-alive' "$DIR/ams-1.log" | tail -5
e2e_finish

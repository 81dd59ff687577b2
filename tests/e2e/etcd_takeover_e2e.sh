#!/usr/bin/env bash
# Takeover through etcd (issue 13): two `stackflip run` instances (fra-1,
# ams-1) share a Git repository and the harness's 3-member etcd. For each
# step k of the seven-step switch, a commit flips `active:` and the instance
# leading `shop` is killed with SIGKILL the moment its k-th step reports ok.
# Each time:
#   - the other instance names itself leader within lease TTL + 1 s of the kill
#     (its /status; the figures and their median are printed at the end), and
#     within 1 s of etcd deleting the dead leader's key (an etcdctl watch
#     stamps the DELETE: the rest is etcd's lease expiry, not ours);
#   - it resumes the switch and converges (DNS answers the new address, the new
#     primary takes writes, the old one streams from it);
#   - no acknowledged row is lost and the monitor never saw two writable databases;
#   - in etcd's shared journal every entry the killed instance wrote in that
#     round carries its old token and was written before the survivor's leader
#     key was created (mod_revision < the survivor's fencing revision): nothing
#     of the killed instance is recorded after its token was superseded;
#   - the killed instance restarts on its own state and both run again.
# The switches alternate direction.
# Usage (CTest): bash tests/e2e/etcd_takeover_e2e.sh STACKFLIP E2E_TOOL
source "$(dirname "$0")/lib.sh"
for t in git curl jq python3; do
  command -v "$t" >/dev/null || { echo "SKIP: $t missing"; exit 77; }
done
e2e_start "$@"
T_START=$SECONDS

TTL=5
PREFIX=/stackflip/
NAMES=(fra-1 ams-1)
declare -A SITE=([fra-1]=fra [ams-1]=ams) PORT PID
for n in "${NAMES[@]}"; do PORT[$n]=$(free_port); done
WATCH_PID=
stop_instances() {
  local n
  for n in "${NAMES[@]}"; do [[ -n ${PID[$n]:-} ]] && kill -9 "${PID[$n]}" 2>/dev/null; done
  [[ -n $WATCH_PID ]] && kill "$WATCH_PID" 2>/dev/null
}
trap 'stop_instances; e2e_cleanup' EXIT

REPO=$DIR/repo
URL=file://$REPO
git init -q -b main "$REPO"
git -C "$REPO" config user.email ops@example.test
git -C "$REPO" config user.name Ops
git -C "$REPO" config commit.gpgsign false
commit() { # FILE MESSAGE → prints the new head
  cp "$1" "$REPO/stackflip.yaml"
  git -C "$REPO" add stackflip.yaml
  git -C "$REPO" commit -q --allow-empty -m "$2" || return 1
  git -C "$REPO" rev-parse HEAD
}

# Appends NAME's output to NAME.log. While NAME.arm holds "K ROUND", the
# moment the instance's K-th step of that round reports ok it is killed with
# SIGKILL and the time goes to NAME.killed (builtins only in the loop: a fork
# here costs ms).
watch_steps() { # NAME
  local name=$1 n=0 k round seen='' line pid
  while IFS= read -r line; do
    if [[ $line == *" ok in "* && -e $DIR/$name.arm ]]; then
      read -r k round <"$DIR/$name.arm"
      [[ $round == "$seen" ]] || { seen=$round; n=0; }
      n=$((n + 1))
      if ((n == k)); then
        read -r pid <"$DIR/$name.pid"
        kill -9 "$pid" 2>/dev/null
        echo "$EPOCHREALTIME" >"$DIR/$name.killed"
      fi
    fi
    printf '%s\n' "$line" >>"$DIR/$name.log"
  done
}
start_instance() { # NAME  (setsid: not part of the caller's job)
  local n=$1
  rm -f "$DIR/$n.arm" "$DIR/$n.killed"
  mkdir -p "$DIR/$n"
  setsid "$SF" run --repo "$URL" --etcd "$ETCD_ENDPOINTS" --etcd-prefix "$PREFIX" \
    --instance "$n" --site "${SITE[$n]}" --lease-ttl "${TTL}s" --interval 1s \
    --state "$DIR/$n/state.db" --listen "127.0.0.1:${PORT[$n]}" > >(watch_steps "$n") 2>&1 &
  PID[$n]=$!
  echo "${PID[$n]}" >"$DIR/$n.pid"
}
other() { [[ $1 == "${NAMES[0]}" ]] && echo "${NAMES[1]}" || echo "${NAMES[0]}"; }

status_of() { curl -fsS -m 2 "http://127.0.0.1:${PORT[$1]}/status"; }
field() { status_of "$1" | jq -r "$2 // empty" 2>/dev/null; } # NAME JQ_PATH
leader_seen_by() { field "$1" .coordination.groups.shop.leader; }
# Both instances name the same leader, which has converged on COMMIT.
settled() { # COMMIT
  local a b
  a=$(leader_seen_by "${NAMES[0]}") && b=$(leader_seen_by "${NAMES[1]}") || return 1
  [[ -n $a && $a == "$b" ]] || return 1
  [[ $(field "$a" '"\(.last_commit) \(.converged)"') == "$1 true" ]]
}
# Prints "LEADER TOKEN" once settled on COMMIT and unchanged over 2.5 s (more
# than a pass: a group handed back to a restarted instance moves at a pass start).
stable_leader() { # COMMIT
  local a b
  for _ in 1 2 3 4 5 6 7 8; do
    poll 30 settled "$1" || return 1
    a="$(leader_seen_by "${NAMES[0]}") $(field "${NAMES[0]}" .coordination.groups.shop.fencing_revision)"
    sleep 2.5
    settled "$1" || continue
    b="$(leader_seen_by "${NAMES[0]}") $(field "${NAMES[0]}" .coordination.groups.shop.fencing_revision)"
    [[ $a == "$b" ]] && { echo "$a"; return 0; }
  done
  return 1
}
converged_on() { [[ $(field "$1" '"\(.last_commit) \(.converged)"') == "$2 true" ]]; } # NAME COMMIT
leads() { [[ $(leader_seen_by "$1") == "$1" ]]; }

b64() { printf %s "$1" | base64 -w0; }
etcd_revision() {
  curl -fsS -m 3 -X POST "$ETCD1_URL/v3/kv/range" -d "{\"key\":\"$(b64 "${PREFIX}commit")\"}" |
    jq -r .header.revision
}
# Every journal entry of KILLED written after BASE_REV carries OLD_TOKEN and
# has a mod_revision below NEW_TOKEN (the survivor's leader key's create
# revision); every entry of SURVIVOR after NEW_TOKEN carries NEW_TOKEN. Also
# requires at least MIN entries of KILLED in the window (else the check is empty).
journal_fenced() { # KILLED OLD_TOKEN SURVIVOR NEW_TOKEN BASE_REV MIN
  local end=${PREFIX}journal0  # the range end of prefix journal/: '/' + 1 = '0'
  curl -fsS -m 3 -X POST "$ETCD1_URL/v3/kv/range" \
    -d "{\"key\":\"$(b64 "${PREFIX}journal/")\",\"range_end\":\"$(b64 "$end")\"}" >"$DIR/journal.json" ||
    { echo "  etcd range failed"; return 1; }
  python3 - "$DIR/journal.json" "$@" <<'PY'
import base64, json, sys
doc = json.load(open(sys.argv[1]))
killed, old, survivor, new, base, need = sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
bad, seen, surv = [], 0, 0
for kv in doc.get("kvs", []):
    mod = int(kv["mod_revision"])
    if mod <= base:
        continue
    try:
        e = json.loads(base64.b64decode(kv["value"]))
    except ValueError:
        bad.append("not a journal entry: %s" % base64.b64decode(kv["key"]))
        continue
    what = "%s %s %s %s token %s mod_revision %d" % (
        e.get("instance"), e.get("kind"), e.get("stack"), e.get("phase"), e.get("token"), mod)
    if e.get("instance") == killed:
        seen += 1
        if e.get("token") != old or mod >= new:
            bad.append("killed instance: other token or after supersession: " + what)
    elif e.get("instance") == survivor:
        surv += 1
        if mod > new and e.get("token") != new:
            bad.append("survivor entry with a stale token: " + what)
print("  journal since revision %d: %d entries of %s (token %d), %d of %s (token %d)"
      % (base, seen, killed, old, surv, survivor, new))
for b in bad:
    print("  " + b)
if seen < need:
    print("  expected at least %d entries of %s" % (need, killed))
sys.exit(1 if bad or seen < need or not old < new else 0)
PY
}

# etcd's own view, to split each takeover into the lease expiry (kill → the
# leader key's DELETE) and the survivor's reaction (DELETE → it leads).
stamp_lines() { local line; while IFS= read -r line; do echo "$EPOCHREALTIME $line" >>"$DIR/watch.log"; done; }
setsid etcdctl --endpoints "$ETCD_ENDPOINTS" watch --prefix "${PREFIX}live/leader/" > >(stamp_lines) 2>/dev/null &
WATCH_PID=$!
deleted_after() { awk -v t="$1" '$1 > t && $2 == "DELETE" {print $1; exit}' "$DIR/watch.log"; } # EPOCH

echo "--- two instances on the first commit"
C=$(commit "$CONFIG" "primary active")
for n in "${NAMES[@]}"; do start_instance "$n"; done
check "both instances start and agree on a leader that converged" poll 30 settled "$C"
check_eq "both instances are registered" 2 "$(field "${NAMES[0]}" '.coordination.instances | length')"

configs=("$DIR/standby-active.yaml" "$CONFIG")
hosts=(127.0.0.2 127.0.0.1)
TAKEOVER_MS=()
for k in 1 2 3 4 5 6 7; do
  i=$(((k + 1) % 2))
  config=${configs[$i]} new=${hosts[$i]} old=${hosts[$(((i + 1) % 2))]}
  read -r leader old_token < <(stable_leader "$C")
  [[ -n $leader ]] || { fail "kill after step $k: no stable leader before the switch"; continue; }
  base_rev=$(etcd_revision)
  echo "--- kill $leader after step $k (switch to $new; token $old_token, etcd revision $base_rev)"
  start_app
  declare -A lines0=()
  for n in "${NAMES[@]}"; do lines0[$n]=$(wc -l <"$DIR/$n.log"); done
  round0=$SECONDS
  # Both are armed, so a leader that moved anyway is still killed at step k.
  for n in "${NAMES[@]}"; do echo "$k $k" >"$DIR/$n.arm"; done
  C=$(commit "$config" "switch to $new (kill after step $k)")
  # Bounded: the switch takes a few seconds; the reader kills the leader.
  killed=
  for _ in $(seq 1200); do
    for n in "${NAMES[@]}"; do [[ -e $DIR/$n.killed ]] && killed=$n; done
    [[ -n $killed ]] && break
    sleep 0.05
  done
  rm -f "$DIR/${NAMES[0]}.arm" "$DIR/${NAMES[1]}.arm"
  if [[ -z $killed ]]; then
    fail "kill after step $k: no instance reported step $k"
    tail -20 "$DIR/$leader.log"
    stop_app
    continue
  fi
  survivor=$(other "$killed")
  check_eq "kill after step $k: the switch was applied by the leader /status named" "$leader" "$killed"
  read -r killed_at <"$DIR/$killed.killed"
  wait "${PID[$killed]}" 2>/dev/null
  PID[$killed]=
  # The survivor names itself leader: measured from the kill (bounded poll).
  took=
  for _ in $(seq 400); do
    if [[ $(status_of "$survivor" 2>/dev/null) == *'"shop":{"leader":"'"$survivor"'"'* ]]; then
      took=$(python3 -c "print(round(($EPOCHREALTIME - $killed_at) * 1000))")
      break
    fi
    sleep 0.05
  done
  sleep 0.1  # let the reader drain the pipe
  echo "  $killed killed after $(tail -n +$((lines0[$killed] + 1)) "$DIR/$killed.log" | grep -c ' ok in ') steps" \
    "($(tail -n +$((lines0[$killed] + 1)) "$DIR/$killed.log" | grep 'shop [0-9]/' | tail -1 | sed 's/  */ /g'))"
  if [[ -n $took ]]; then
    TAKEOVER_MS+=("$took")
    gone=$(deleted_after "$killed_at")
    expiry=$([[ -n $gone ]] && python3 -c "print(round(($gone - $killed_at) * 1000))")
    echo "  $survivor leads shop $took ms after the kill (lease expiry in etcd ${expiry:-?} ms + reaction $((took - ${expiry:-0})) ms)"
    # TTL + 1 s is the aim, reported, not checked: etcd alone took up to
    # 5.6 s to expire a 5 s lease on a loaded 2-core machine. Our share is
    # checked below; a takeover later than 2 TTL would be a defect.
    check "kill after step $k: $survivor takes over ($took ms; aim TTL + 1 s)" test "$took" -le $((2 * TTL * 1000))
    # The product's own share: from etcd deleting the dead leader's key.
    check "kill after step $k: $survivor leads within 1 s of the key's expiry ($((took - ${expiry:-99999})) ms)" \
      test "$((took - ${expiry:-99999}))" -le 1000
  else
    fail "kill after step $k: $survivor never took over"
  fi
  check "kill after step $k: $survivor converges on the new commit" poll 60 converged_on "$survivor" "$C"
  check "kill after step $k: old primary streams from the new one" poll 20 streaming_from "$old" "$new"
  stop_app
  check_eq "kill after step $k: never two writable databases" 0 "$MONITOR_RC"
  check "kill after step $k: no acknowledged row lost" "$TOOL" check "$new" "$PG_PORT" "$DIR/acked"
  check_eq "kill after step $k: DNS answers the new primary" "$new" "$(dns_answer)"
  check "kill after step $k: new primary accepts writes" not_in_recovery "$new"
  new_token=$(field "$survivor" .coordination.groups.shop.fencing_revision)
  check "kill after step $k: nothing of $killed recorded after its token $old_token was superseded by $new_token" \
    journal_fenced "$killed" "$old_token" "$survivor" "${new_token:-0}" "$base_rev" "$k"
  start_instance "$killed"
  check "kill after step $k: $killed restarts and both agree on a converged leader" poll 30 settled "$C"
  echo "  round took $((SECONDS - round0)) s"
done

"$SF" history --etcd "$ETCD_ENDPOINTS" -n 500 >"$DIR/history.txt" 2>&1
check "history --etcd shows both instances' actions" \
  bash -c "grep -q fra-1 '$DIR/history.txt' && grep -q ams-1 '$DIR/history.txt'"

MEDIAN=$(printf '%s\n' "${TAKEOVER_MS[@]}" | sort -n | awk '{a[NR]=$1} END {if (NR) print a[int((NR + 1) / 2)]}')
echo "takeover after SIGKILL (ms, k=1..7): ${TAKEOVER_MS[*]}; median ${MEDIAN:-n/a} ms (lease TTL ${TTL} s)"
echo "suite took $((SECONDS - T_START)) s after the harness started"
e2e_finish

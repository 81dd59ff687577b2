#!/usr/bin/env bash
# Issue 14, "Show, with network namespaces": the primary killed, flapping,
# Git down, and the signature under --require-signed. Three sites as
# network namespaces (netns_lib.sh): fra (PostgreSQL primary, instance
# fra-1, etcd member), ams (its streaming replica, ams-1, etcd member), wit
# (wit-1, the third etcd member), a hub with PowerDNS and the Git server
# (smart HTTP). Group shop: primary (site fra) active, standby (site ams),
# auto_failover after 3 s with a 45 s cooldown; every instance runs with
# --require-signed (the operators' key and stackflip's) and signs the
# failover commits it writes. A writer in wit writes through a multi-host
# connection string (target_session_attrs=read-write); a monitor in each
# site polls both databases every 50 ms; a watcher follows DNS; the Git
# server's branch is followed every 50 ms.
#   1. Flapping, short: fra's primary crashes and is started again at once
#      (an outage shorter than `after`): no failover, no commit.
#   2. Primary killed (SIGKILL of the postmaster and its children: the port
#      is closed): timed from the kill, (a) the failover commit on the Git
#      server, (b) ams writable, (c) DNS answering ams; the README's aim for
#      (c) is after + 2 s, printed, not checked. The commit is signed and
#      the three instances adopt it under --require-signed; only the last
#      acknowledged writes are lost, within what the policy accepted. fra's
#      database is started again (as an operator would): the loop fences
#      it and re-attaches it as ams's replica.
#   3. Flapping, within the cooldown: ams (now the primary) is killed: no
#      failover (the cooldown holds it back), and /status says that a
#      person decides and what to commit. ams is started again.
#   4. Git down (its server stopped), once the cooldown is over: ams is
#      killed; the failover to fra happens anyway, as an override kept in
#      etcd ("override in force, not yet in Git" in /status); no pass flips
#      traffic back while Git is down; Git back: the commit lands (signed,
#      "pushed after Git could not be reached"), the override is over.
#      ams's database is then started by hand read-only (pg_ctl -o "-c
#      default_transaction_read_only=on", the README's advice): never seen
#      writable, re-attached as fra's replica by the loop.
#   Throughout: no monitor ever saw two writable databases, except while a
#   crashed primary that an operator restarted is writable until the loop
#   fences it (measured and printed: the loop cannot fence a database before
#   it is up; the writer is stopped then).
# About 2-3 minutes. Root only (exit 77 otherwise, or without ip netns).
# Usage (CTest): bash tests/e2e/netns_failover_e2e.sh STACKFLIP E2E_TOOL
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/netns_lib.sh"
SF=$(realpath "${1:?stackflip binary}")
# (E2E_TOOL is not used: the writer's rows all say host fra-client, which
# e2e_tool check would take for rows written elsewhere; lost_writes below.)
nsl_require
nsl_suite_begin
nsl_sites_up

# ------------------------------------------------------------ config, Git
AFTER=3
COOLDOWN=45
MAX_LOSS=1048576
WORK=$DIR/work
git init -q -b main "$WORK"
nsl_shop_config "$WORK/stackflip.yaml" "after: ${AFTER}s, max_data_loss_bytes: $MAX_LOSS, cooldown: ${COOLDOWN}s"
ssh-keygen -q -t ed25519 -N "" -C ops -f "$DIR/ops_key"
ssh-keygen -q -t ed25519 -N "" -C stackflip -f "$DIR/stackflip_key"
{ echo "ops@example.test $(cat "$DIR/ops_key.pub")"
  echo "stackflip@localhost $(cat "$DIR/stackflip_key.pub")"; } >"$DIR/allowed_signers"
git -C "$WORK" add stackflip.yaml
git -C "$WORK" -c user.email=ops@example.test -c user.name=Ops -c gpg.format=ssh \
  -c user.signingkey="$DIR/ops_key" -c commit.gpgsign=true \
  commit -q -m "shop: primary in fra, automatic failover after ${AFTER}s"
FIRST=$(git -C "$WORK" rev-parse HEAD)
ORIGIN=$DIR/hub/git/shop.git
git clone -q --bare "$WORK" "$ORIGIN"
git -C "$ORIGIN" config http.receivepack true

nsl_start_instances "$SF" "$NSL_GIT_BASE/shop.git" --commit-signing-key "$DIR/stackflip_key" \
  --require-signed --allowed-signers "$DIR/allowed_signers"
check "three instances converge on the signed first commit (--require-signed)" poll 60 nsl_all_converged "$FIRST"
check "they agree on one leader of shop" poll 20 nsl_three_agree
echo "  leader of shop: $(nsl_leader ams-1)"

# ------------------------------------------------------------ clients
# The writer follows the primary (multi-host, read-write); (re)started
# around the restarts of a crashed primary (see the header).
start_writer() { # FIRST_ID
  nsl_bg wit "$DIR/writer.err" python3 "$NSL_APP" writer \
    "host=${NSL_ADDR[fra]},${NSL_ADDR[ams]} port=5432 user=stackflip dbname=app target_session_attrs=read-write" \
    "$DIR/writer.log" "$DIR/writer-stop" "$1"
  WRITER=$NSL_LAST_PID
  WRITER_FIRST=$1
}
stop_writer() {
  touch "$DIR/writer-stop"
  wait "$WRITER" 2>/dev/null
  rm -f "$DIR/writer-stop"
}
next_id() { awk '$1 == "ack" && $2 > m {m = $2} END {print m + 1}' "$DIR/writer.log" 2>/dev/null; }
start_writer 1
for s in fra ams wit; do
  nsl_bg "$s" "$DIR/monitor-$s.err" python3 "$NSL_APP" monitor "$s" "$DIR/monitor-$s.log" "$STOP" \
    "${NSL_ADDR[fra]}" "${NSL_ADDR[ams]}"
done
nsl_bg wit "$DIR/watch.err" python3 "$NSL_APP" watch "$DIR/watch.log" "$STOP" "${NSL_ADDR[hub]}" shop.example.test. \
  "$(nsl_etcd_url wit)"
# The branch on the Git server, every 50 ms (local files; at most 10 minutes).
(
  last=
  for _ in $(seq 1 12000); do
    [[ -e $STOP ]] && break
    r=$(git -C "$ORIGIN" rev-parse -q --verify main 2>/dev/null)
    [[ $r != "$last" ]] && { echo "$EPOCHREALTIME $r"; last=$r; }
    sleep 0.05
  done
) >"$DIR/branch.log" 2>&1 &
NSL_PIDS+=("$!")
acking() { local n; n=$(grep -c '^ack ' "$DIR/writer.log" 2>/dev/null); ((${n:-0} > 50)); }
check "the writer is acknowledged" poll 20 acking
dns_is() { [[ $(grep ' dns ' "$DIR/watch.log" 2>/dev/null | tail -n1 | awk '{print $3}') == "$1" ]]; }
check "DNS answers fra" poll 10 dns_is "${NSL_ADDR[fra]}"

# When HOST was first seen writable by the monitors from T on (a W
# observation, placed at the middle of its round trip), DNS first answered
# ADDR from T on, and the branch first moved away from COMMIT from T on.
first_writable() { # HOST T
  cat "$DIR"/monitor-*.log | awk -v h="$1" -v t="$2" '$3 == h && $4 == "W" && ($1 + $2) / 2 >= t {m = ($1 + $2) / 2; if (!f || m < b) b = m; f = 1} END {if (f) printf "%.6f\n", b}'
}
first_dns() { awk -v a="$1" -v t="$2" '$2 == "dns" && $3 == a && $1 >= t {print $1; exit}' "$DIR/watch.log"; } # ADDR T
branch_moved() { awk -v c="$1" -v t="$2" '$1 >= t && $2 != c {print $1; exit}' "$DIR/branch.log"; }        # COMMIT T
# Two writable databases seen from T0 to T1 (observations of the three
# namespaces merged, each at the middle of its round trip; one answered
# after over 0.5 s is not placed), leaving out SKIP0..SKIP1 (the window of a
# restarted primary, when set). No site is cut off here: a database no
# monitor can reach is down, so an X ends its last W.
SKIP0=0 SKIP1=0
double_writable() { # T0 T1
  cat "$DIR"/monitor-*.log | sort -n | awk -v a="$1" -v b="$2" -v s0="$SKIP0" -v s1="$SKIP1" \
    -v fra="${NSL_ADDR[fra]}" -v ams="${NSL_ADDR[ams]}" '
    $4 != "X" && $2 - $1 > 0.5 {next}
    {m = ($1 + $2) / 2; if (m < a || m > b) next; st[$3] = $4
     if (m >= s0 && m <= s1) next
     if (st[fra] == "W" && st[ams] == "W") n++}
    END {print n + 0}'
}
# Writable spells of HOST between T0 and T1, "FIRST..LAST" of its W
# observations (for a restarted primary's window).
writable_spell() { # HOST T0 T1
  cat "$DIR"/monitor-*.log | awk -v h="$1" -v a="$2" -v b="$3" '
    $3 == h && $4 == "W" {m = ($1 + $2) / 2; if (m < a || m > b) next; if (!f || m < lo) lo = m; if (m > hi) hi = m; f = 1}
    END {if (f) printf "%.2f\n", hi - lo; else print "none"}'
}
# The acknowledged writes from id FIRST on that SITE's database lacks: how
# many, and whether they are exactly the last ones acknowledged before
# T_KILL (asynchronous replication loses those, never older ones, and
# nothing acknowledged after the failover). Says so in NSL_DIR/lost.txt;
# exit 1 if not.
lost_writes() { # SITE FIRST T_KILL
  nsl_psql wit "$1" "SELECT id FROM writes" >"$DIR/present-$1.txt"
  python3 - "$DIR/writer.log" "$DIR/present-$1.txt" "$2" "$3" <<'PY'
import sys
log, present_file, first, t_kill = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
present = {int(x) for x in open(present_file).read().split() if x.isdigit()}
acks = [(int(f[1]), float(f[2])) for f in (l.split() for l in open(log)) if f and f[0] == "ack" and int(f[1]) >= first]
lost = [a for a in acks if a[0] not in present]
before = [a for a in acks if a[1] < t_kill]
kept_after_lost = [a for a in before if a[0] in present and lost and a[0] > min(l[0] for l in lost)]
late = [a for a in lost if a[1] >= t_kill]
ok = not kept_after_lost and not late
print("acked %d lost %d%s%s" % (len(acks), len(lost),
      " (ids %d..%d, acknowledged %.3f..%.3f s before the kill)" % (lost[0][0], lost[-1][0], t_kill - lost[0][1], t_kill - lost[-1][1]) if lost else "",
      "" if ok else ": NOT only the last before the kill (%d older kept, %d after it lost)" % (len(kept_after_lost), len(late))))
sys.exit(0 if ok else 1)
PY
} >"$DIR/lost.txt"
commits_since() { git -C "$ORIGIN" rev-list --count "$1..main"; } # COMMIT
status_group() { nsl_status "$1" "json.dumps(j['groups']['shop'])"; } # NAME

# ------------------------------------------------------------ 1. short outage
echo "--- 1. flapping: fra's primary crashes and is back at once (shorter than after: ${AFTER}s)"
T1=$(date +%s.%N)
nsl_pg_kill fra
nsl_pg_start fra || bail "fra's PostgreSQL starts again"
T1_UP=$(date +%s.%N)
echo "  fra's database down for $(secs "$T1_UP" "$T1") s (kill to started)"
fra_writable_again() { [[ -n $(first_writable "${NSL_ADDR[fra]}" "$T1_UP") ]]; }
check "fra is seen writable again by the monitors" poll 10 fra_writable_again
sleep $((AFTER + 2))
check_eq "no failover commit (the outage was shorter than after)" 0 "$(commits_since "$FIRST")"
check "DNS still answers fra" dns_is "${NSL_ADDR[fra]}"
check_eq "ams is still a standby" t "$(nsl_psql wit ams "SELECT pg_is_in_recovery()")"
check "ams streams from fra again" poll 20 bash -c \
  "[[ \$(ip netns exec $(nsl_ns ams) env PGCONNECT_TIMEOUT=3 $NSL_PG_BIN/psql -X -qAt 'host=${NSL_ADDR[ams]} port=5432 user=stackflip dbname=app' -c 'SELECT status FROM pg_stat_wal_receiver' 2>/dev/null) == streaming ]]"
check_eq "no monitor saw two writable databases (1)" 0 "$(double_writable "$T0" "$(date +%s.%N)")"

# ------------------------------------------------------------ 2. the kill
echo "--- 2. primary killed (SIGKILL, port closed), Git up"
sleep 1  # a few passes: the positions the instances know are recent
T2=$(date +%s.%N)
nsl_pg_kill fra
T2_KILLED=$(date +%s.%N)  # nothing of fra's is acknowledged after this
echo "  (the kill took $(secs "$(date +%s.%N)" "$T2") s)"
check "DNS answers ams" poll 30 dns_is "${NSL_ADDR[ams]}"
T2_DNS=$(first_dns "${NSL_ADDR[ams]}" "$T2")
T2_W=$(first_writable "${NSL_ADDR[ams]}" "$T2")
landed() { [[ -n $(branch_moved "$FIRST" "$T2") ]]; }
check "the failover commit is on the Git server" poll 10 landed
T2_C=$(branch_moved "$FIRST" "$T2")
since2() { [[ -n $1 ]] && secs "$1" "$T2" || echo n/a; }
echo "  from the kill (after: ${AFTER}s, 3 witnesses): (a) commit $(since2 "$T2_C") s, (b) ams writable $(since2 "$T2_W") s, (c) DNS $(since2 "$T2_DNS") s (aim: after + 2 s = $((AFTER + 2)) s)"
check "the commit came no sooner than after" python3 -c "import sys; sys.exit(0 if ${T2_C:-0} - $T2 >= $AFTER else 1)"
COMMIT2=$(git -C "$ORIGIN" rev-parse main)
check_eq "one commit on top of the operators'" "$FIRST" "$(git -C "$ORIGIN" rev-parse -q --verify main~1)"
check_eq "its author" "stackflip <stackflip@localhost>" "$(git -C "$ORIGIN" log -1 --format='%an <%ae>' main)"
check "its signature verifies (git verify-commit, the allowed signers)" \
  git -C "$ORIGIN" -c gpg.ssh.allowedSignersFile="$DIR/allowed_signers" verify-commit "$COMMIT2"
git -C "$ORIGIN" log -1 --format=%B main >"$DIR/message2.txt"
sed 's/^/    /' "$DIR/message2.txt"
check "the message: subject" grep -q "^stackflip: fail over group shop from primary to standby$" "$DIR/message2.txt"
check "the message: a majority of live instances, one outside fra" \
  grep -qE "^  (ams-1 \(site ams\)|wit-1 \(site wit\)): failing since " "$DIR/message2.txt"
LAG2=$(sed -n 's/^Positions (last known): .*; lag \([0-9]*\) bytes\.$/\1/p' "$DIR/message2.txt")
check "the message: the last known lag, within the policy" test "${LAG2:-999999999}" -le "$MAX_LOSS"
on_commit() { [[ $(nsl_status "$1" "j.get('last_commit')") == "$2" ]]; } # NAME COMMIT
adopted() { on_commit fra-1 "$1" && on_commit ams-1 "$1" && on_commit wit-1 "$1"; }
check "the three instances adopt it under --require-signed" poll 20 adopted "$COMMIT2"
check "no instance refused a commit's signature" bash -c "! grep -qE 'is not signed|is signed by a key that is not in' $DIR/fra-1.log $DIR/ams-1.log $DIR/wit-1.log"
stop_writer
ACKED2=$(grep -c '^ack ' "$DIR/writer.log")
check "lost writes (2): only the last acknowledged before the kill" lost_writes ams 1 "$T2_KILLED"
echo "  $(cat "$DIR/lost.txt"); the policy accepted a last known lag of ${LAG2:-?} bytes"
check_eq "no monitor saw two writable databases (2)" 0 "$(double_writable "$T0" "$(date +%s.%N)")"

echo "--- fra's database started again (by an operator)"
T2_BACK=$(date +%s.%N)
nsl_pg_start fra || bail "fra's PostgreSQL starts again"
fra_fenced() { local r; r=$(nsl_psql wit fra "SELECT pg_is_in_recovery() OR current_setting('default_transaction_read_only') = 'on'"); [[ $r == t ]]; }
check "the loop fences it" poll 30 fra_fenced
T2_FENCED=$(date +%s.%N)
SKIP0=$T2_BACK SKIP1=$T2_FENCED
echo "  fenced $(secs "$T2_FENCED" "$T2_BACK") s after it was started; writable meanwhile for $(writable_spell "${NSL_ADDR[fra]}" "$T2_BACK" "$T2_FENCED") s (its W observations)"
streams_from() { # SITE FROM_SITE
  [[ $(nsl_psql wit "$1" "SELECT pg_is_in_recovery()") == t ]] &&
    [[ $(nsl_psql wit "$1" "SELECT status || ' ' || sender_host FROM pg_stat_wal_receiver") == "streaming ${NSL_ADDR[$2]}" ]]
}
check "fra is re-attached: a standby streaming from ams" poll 60 streams_from fra ams
T2_RE=$(date +%s.%N)
echo "  re-attached $(secs "$T2_RE" "$T2_BACK") s after it was started"
check "the three instances converge on the failover commit" poll 30 nsl_all_converged "$COMMIT2"
check "DNS still answers ams (no fail back)" dns_is "${NSL_ADDR[ams]}"
start_writer "$(next_id)"
WRITER2=$WRITER_FIRST
acked_more() { (($(grep -c '^ack ' "$DIR/writer.log") > ACKED2 + 20)); }
check "the writer is acknowledged by ams" poll 20 acked_more
T_D=$(git -C "$ORIGIN" log -1 --format=%ct main)

# ------------------------------------------------------------ 3. cooldown
echo "--- 3. flapping: ams (now the primary) killed within the cooldown (${COOLDOWN}s)"
sleep 1
T3=$(date +%s.%N)  # the kill comes no sooner
nsl_pg_kill ams
sleep $((AFTER + 3))
T3_END=$(date +%s.%N)
echo "  watched for $(secs "$T3_END" "$T3") s from the kill, until $(python3 -c "print('%.1f' % ($T3_END - $T_D))") s after the failover commit (cooldown ${COOLDOWN}s)"
check "... all of it within the cooldown" python3 -c "import sys; sys.exit(0 if $T3_END - $T_D < $COOLDOWN else 1)"
check_eq "no second failover commit" "$COMMIT2" "$(git -C "$ORIGIN" rev-parse main)"
check "DNS still answers ams" dns_is "${NSL_ADDR[ams]}"
check_eq "fra is still a standby" t "$(nsl_psql wit fra "SELECT pg_is_in_recovery()")"
LEADER=$(nsl_leader wit-1)
status_group "$LEADER" >"$DIR/status3.json"
jq -r '.outage // "", .decision // ""' "$DIR/status3.json" | sed 's/^/    \/status: /'
check "/status: the cooldown held it back, a person decides" \
  grep -q "within its cooldown of ${COOLDOWN}s: a person decides" "$DIR/status3.json"
check "/status: leads with the fact (active stack standby down since ...)" \
  grep -q "active stack standby of group shop down since " "$DIR/status3.json"
check "/status: the exact change to commit (active: primary)" grep -q "active: primary" "$DIR/status3.json"
stop_writer
nsl_pg_start ams || bail "ams's PostgreSQL starts again"
ams_w() { [[ $(nsl_psql wit ams "SELECT pg_is_in_recovery()::text || current_setting('default_transaction_read_only')") == falseoff ]]; }
check "ams is the writable primary again" poll 20 ams_w
check "fra streams from ams again" poll 30 streams_from fra ams
check "the three instances converge again" poll 30 nsl_all_converged "$COMMIT2"
start_writer "$(next_id)"
check_eq "no monitor saw two writable databases (3)" 0 "$(double_writable "$T0" "$(date +%s.%N)")"

# ------------------------------------------------------------ 4. Git down
wait_s=$(python3 -c "import time; print(max(0, int($T_D + $COOLDOWN + 2 - time.time() + 0.999)))")
echo "--- 4. Git down, then ams killed (after the cooldown: waiting ${wait_s} s)"
sleep "$wait_s"
sleep 1
nsl_stop_git
check "the Git server is down" not nsl_git_up
T4=$(date +%s.%N)
nsl_pg_kill ams
T4_KILLED=$(date +%s.%N)
check "DNS answers fra, Git down" poll 30 dns_is "${NSL_ADDR[fra]}"
T4_DNS=$(first_dns "${NSL_ADDR[fra]}" "$T4")
T4_W=$(first_writable "${NSL_ADDR[fra]}" "$T4")
since4() { [[ -n $1 ]] && secs "$1" "$T4" || echo n/a; }
echo "  from the kill, Git down: (b) fra writable $(since4 "$T4_W") s, (c) DNS $(since4 "$T4_DNS") s (aim: after + 2 s = $((AFTER + 2)) s)"
LEADER=$(nsl_leader wit-1)
override() { nsl_status "$LEADER" "j['groups']['shop'].get('override') or ''"; }
has_override() { [[ $(override) == "override in force, not yet in Git: \`active: primary\`"* ]]; }
check "/status: override in force, not yet in Git" poll 10 has_override
override | sed 's/^/    /'
check_eq "etcd holds the override" 1 \
  "$(nsl_exec wit etcdctl --endpoints "$(nsl_etcd_url wit)" get --prefix --keys-only /stackflip/override/ | grep -c .)"
sleep 3  # passes without Git: none flips traffic back
check "no pass flipped traffic back (DNS answers fra)" dns_is "${NSL_ADDR[fra]}"
check "nor since the failover (the watcher's answers)" \
  test "$(awk -v t="$T4_DNS" '$2 == "dns" && $1 > t' "$DIR/watch.log" | grep -c .)" -eq 0
check_eq "the branch has not moved (Git down)" "$COMMIT2" "$(git -C "$ORIGIN" rev-parse main)"
nsl_start_git
T4_GIT=$(date +%s.%N)
check "the Git server is back" poll 10 nsl_git_up
landed4() { [[ -n $(branch_moved "$COMMIT2" "$T4_GIT") ]]; }
check "Git back: the failover commit lands" poll 20 landed4
echo "  it landed $(secs "$(branch_moved "$COMMIT2" "$T4_GIT")" "$T4_GIT") s after Git came back"
COMMIT4=$(git -C "$ORIGIN" rev-parse main)
check_eq "one commit on top of the first failover's" "$COMMIT2" "$(git -C "$ORIGIN" rev-parse -q --verify main~1)"
check "its signature verifies" git -C "$ORIGIN" -c gpg.ssh.allowedSignersFile="$DIR/allowed_signers" verify-commit "$COMMIT4"
git -C "$ORIGIN" log -1 --format=%B main >"$DIR/message4.txt"
sed 's/^/    /' "$DIR/message4.txt"
check "the message says it was pushed late" \
  grep -q "^(Pushed after Git could not be reached; in force as an override until now.)$" "$DIR/message4.txt"
flipped() { git -C "$ORIGIN" show main:stackflip.yaml | grep -q '^    active: primary$'; }
check "the commit flips active back to primary" flipped
override_gone() { [[ -z $(nsl_exec wit etcdctl --endpoints "$(nsl_etcd_url wit)" get --prefix --keys-only /stackflip/override/) ]]; }
check "adopted by the next pass: the override is over" poll 20 override_gone
check "the three instances adopt it under --require-signed" poll 20 adopted "$COMMIT4"
check "DNS still answers fra" dns_is "${NSL_ADDR[fra]}"
echo "--- ams's database started again by hand, read-only (the README's advice)"
T4_BACK=$(date +%s.%N)
nsl_pg_start ams "-c default_transaction_read_only=on" || bail "ams's PostgreSQL starts again"
check "ams is re-attached: a standby streaming from fra" poll 60 streams_from ams fra
echo "  re-attached $(secs "$(date +%s.%N)" "$T4_BACK") s after it was started"
check_eq "ams was never seen writable from its start" none "$(writable_spell "${NSL_ADDR[ams]}" "$T4_BACK" "$(date +%s.%N)")"
check "the three instances converge on the second failover commit" poll 30 nsl_all_converged "$COMMIT4"
stop_writer
touch "$STOP"
sleep 0.5
# The writes since the re-attach (those lost in 2. are on neither).
check "lost writes (4): only the last acknowledged before the kill" lost_writes fra "$WRITER2" "$T4_KILLED"
echo "  $(cat "$DIR/lost.txt")"
check_eq "no monitor saw two writable databases (4)" 0 "$(double_writable "$T0" "$(date +%s.%N)")"
echo "  total $(secs "$(date +%s.%N)" "$T0") s"
e2e_finish

#!/usr/bin/env bash
# Soak, end to end: `stackflip run` against the real harness (PostgreSQL 15 +
# PowerDNS) and a local Git repository, polling every 20 ms:
#   - warm-up: a switch to the standby (an apply), then idle passes up to
#     WARM passes;
#   - measured: at least IDLE more idle passes, with the switch back to the
#     primary (a second apply) in the middle;
#   - anonymous memory (RssAnon of /proc/PID/status) may grow by at most
#     LIMIT_KB from the end of the warm-up to the end; open file descriptors
#     and stackflip's PostgreSQL sessions (pg_stat_activity on both clusters)
#     must not grow at all.
# Issue 10 item 14: libgit2 1.5 leaked a 20 KB pcre2 block per config entry
# at each git_remote_lookup, ~140 KB per pass (283 MB over this test), and
# kept one more pack descriptor open per fetched commit.
# LIMIT_KB, 4 MB: a leak of 2 KB per pass (one small object per pass kept in
# a list) crosses it over 2,000 passes. What grows and is not a leak stays
# well below it: SQLite's page cache fills as the runs table grows (~250
# bytes per pass, capped at 2 MB by its default cache_size) and glibc keeps
# some freed pages of the threads' arenas; the fixed code grows by ~0.6 MB.
# Usage (CTest): bash tests/e2e/soak_e2e.sh STACKFLIP E2E_TOOL
source "$(dirname "$0")/lib.sh"
command -v git >/dev/null && command -v curl >/dev/null || { echo "SKIP: git or curl missing"; exit 77; }
skip_under_asan "${1:-}"
WARM=${SOAK_WARM_PASSES:-300}
IDLE=${SOAK_IDLE_PASSES:-2000}
LIMIT_KB=${SOAK_LIMIT_KB:-4096}
e2e_start "$@"
RUN_PID=
SAMPLER=
trap 'kill $SAMPLER $RUN_PID 2>/dev/null; e2e_cleanup' EXIT

REPO=$DIR/repo
URL=file://$REPO
git init -q -b main "$REPO"
git -C "$REPO" config user.email ops@example.test
git -C "$REPO" config user.name Ops
git -C "$REPO" config commit.gpgsign false
commit() { # FILE MESSAGE → prints the new head
  cp "$1" "$REPO/stackflip.yaml"
  git -C "$REPO" add stackflip.yaml
  git -C "$REPO" commit -q --allow-empty -m "$2" && git -C "$REPO" rev-parse HEAD
}

PORT=$(free_port)
LOG=$DIR/run.log
passes() { grep -c "^pass: " "$LOG"; }
passes_at_least() { (($(passes) >= $1)); }
status_field() { curl -fsS "http://127.0.0.1:$PORT/status" | python3 -c "import json,sys; print(json.load(sys.stdin).get('$1'))"; }
converged_on() { [[ "$(status_field last_commit 2>/dev/null) $(status_field converged 2>/dev/null)" == "$1 True" ]]; }
rss_kb() { awk '/^RssAnon:/ {print $2}' "/proc/$RUN_PID/status"; }
# Descriptors other than sockets (files, pipes: a leaked pack file showed
# here). Sockets are checked by what they are: PostgreSQL sessions through
# pg_stat_activity below; the rest are the endpoint's listener and at most one
# kept-alive HTTP connection to PowerDNS, which PowerDNS may close when idle,
# so its presence at a sample is chance (a fresh-clone run once saw 19 → 20).
#
# Pack files of the Git cache are counted apart: libgit2 opens a pack when
# it first reads an object from it and keeps it open, and each fetch adds a
# pack, so whether a pass has touched the previous commit's pack is chance
# (a fresh-clone run saw 15 → 14 → 15: one pack more at the start and end
# than after the warm-up). A leaked pack shows as the same pack open twice
# or a deleted pack still open; both are checked at the end.
fds() {
  find "/proc/$RUN_PID/fd" -mindepth 1 -printf '%l\n' 2>/dev/null | grep -v '^socket:' |
    grep -vc '\.pack$'
}
packs_open() { find "/proc/$RUN_PID/fd" -mindepth 1 -printf '%l\n' 2>/dev/null | grep '\.pack'; }
fd_list() { find "/proc/$RUN_PID/fd" -mindepth 1 -printf '%f %l\n' 2>/dev/null | grep -v ' socket:' | sort -n; }
# A pass in progress holds a transient allocation, descriptor or session: the
# figures are the least (fds, sessions) or the most (memory) of 10 samples
# taken 50 ms apart, that is across several passes.
settled() { # → "RSS_KB FDS SESSIONS"
  local r f s rmax=0 fmin=99999 smin=99999
  for _ in $(seq 10); do
    r=$(rss_kb); f=$(fds); s=$(pg_sessions)
    ((r > rmax)) && rmax=$r
    ((f < fmin)) && fmin=$f
    ((s < smin)) && smin=$s
    sleep 0.05
  done
  echo "$rmax $fmin $smin"
}
switch_to() { # FILE MESSAGE LABEL
  local c t0=$SECONDS
  c=$(commit "$1" "$2")
  check "$3: converges on the new commit" poll 60 converged_on "$c"
  echo "$3: $((SECONDS - t0)) s"
}

C1=$(commit "$CONFIG" "primary active")
T_START=$SECONDS
"$SF" run --repo "$URL" --interval 20ms --listen "127.0.0.1:$PORT" >"$LOG" 2>&1 &
RUN_PID=$!
check "run: first pass converged" poll 30 converged_on "$C1"
read -r RSS0 FD0 PG0 < <(settled)
fd_list >"$DIR/fds-start.txt"
echo "start: RssAnon $RSS0 kB, $FD0 fds, $PG0 PostgreSQL sessions after $(passes) passes"
# One sample a second, for the figures.
(while kill -0 "$RUN_PID" 2>/dev/null; do echo "$(passes) $(rss_kb)"; sleep 1; done) >"$DIR/rss.txt" 2>/dev/null &
SAMPLER=$!

echo "--- warm-up: a switch to the standby, then idle passes up to $WARM"
switch_to "$DIR/standby-active.yaml" "fail over to standby" "warm-up switch"
check_eq "warm-up: DNS answers the standby" 127.0.0.2 "$(dns_answer)"
check "warm-up: $WARM passes" poll 90 passes_at_least "$WARM"
N1=$(passes)
read -r RSS1 FD1 PG1 < <(settled)
fd_list >"$DIR/fds-warm.txt"
echo "after warm-up: RssAnon $RSS1 kB, $FD1 fds, $PG1 PostgreSQL sessions after $N1 passes"

echo "--- measured: $IDLE idle passes, a switch back to the primary in the middle"
check "measured: first half" poll 90 passes_at_least $((N1 + IDLE / 2))
switch_to "$CONFIG" "back to primary" "measured switch"
check_eq "measured: DNS answers the primary" 127.0.0.1 "$(dns_answer)"
check "measured: second half" poll 90 passes_at_least $((N1 + IDLE))
N2=$(passes)
read -r RSS2 FD2 PG2 < <(settled)
fd_list >"$DIR/fds-end.txt"
packs_open >"$DIR/packs-end.txt"
check "run: still alive" kill -0 "$RUN_PID"
echo "end: RssAnon $RSS2 kB, $FD2 fds, $PG2 PostgreSQL sessions after $N2 passes"
kill -TERM "$RUN_PID"
wait "$RUN_PID"
check_eq "run: SIGTERM exits 0" 0 $?
RUN_PID=

echo "RssAnon over passes (pass count, kB):"
awk 'NR % 15 == 1 {printf "%s:%s ", $1, $2} END {print ""}' "$DIR/rss.txt" | fold -s -w 100
GROWTH=$((RSS2 - RSS1))
PER_PASS=$((GROWTH * 1024 / (N2 - N1)))
echo "soak: start $RSS0 kB, after warm-up $RSS1 kB (pass $N1), end $RSS2 kB (pass $N2):" \
  "$GROWTH kB over $((N2 - N1)) passes, $PER_PASS bytes per pass; limit $LIMIT_KB kB;" \
  "idle passes $(grep -c '(idle)$' "$LOG"), applies $(grep -c '^pass: applied' "$LOG"), $((SECONDS - T_START)) s"
check "memory: RssAnon grows by at most $LIMIT_KB kB after warm-up ($GROWTH kB, $PER_PASS bytes/pass)" \
  test "$GROWTH" -le "$LIMIT_KB"
check "fds: none more at the end ($FD1 after warm-up, $FD2 at the end)" test "$FD2" -le "$FD1"
check_eq "Git packs: none open twice" "" "$(sort "$DIR/packs-end.txt" | uniq -d)"
check_eq "Git packs: none deleted but still open" "" "$(grep deleted "$DIR/packs-end.txt")"
for f in start warm end; do echo "descriptors ($f): $(cut -d' ' -f2- "$DIR/fds-$f.txt" | sed 's|.*/||' | tr '\n' ' ')"; done
check "PostgreSQL sessions: none more at the end ($PG1 after warm-up, $PG2 at the end)" test "$PG2" -le "$PG1"
check "fds: as many as at the start ($FD0)" test "$FD2" -le "$FD0"
check "PostgreSQL sessions: as many as at the start ($PG0)" test "$PG2" -le "$PG0"
check_eq "every pass ran without error" 0 "$(grep -c '^pass: \(failed\|invalid\|blocked\)' "$LOG")"
e2e_finish

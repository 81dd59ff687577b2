#!/usr/bin/env bash
# The status page of `stackflip run` (issue 16) in headless Chromium, against
# the real harness (PostgreSQL 15 + PowerDNS) and a local Git repository:
# before, during (the switch held at its traffic.wait step: the record has
# `ttl: 8, switch_ttl: 1`, so the planned switch waits 8 s with the old
# primary serving) and after a switch. The DOM Chromium built is checked:
# with JavaScript (the page refreshes itself) and without (it reads in full).
# Then the api token: the pages answer the sign-in form, and accept the
# bearer header or the cookie /login sets.
#
# Chromium reaches nothing but loopback: every host name resolves to nothing
# but 127.0.0.1 (--host-resolver-rules) and its background services are off.
# Screenshots are kept in <build>/screenshots/ (the README's come from there).
# Usage (CTest): bash tests/e2e/status_page_e2e.sh STACKFLIP E2E_TOOL
source "$(dirname "$0")/lib.sh"
[[ -n $CHROMIUM ]] || { echo "SKIP: chromium not installed"; exit 77; }
command -v git >/dev/null && command -v curl >/dev/null || { echo "SKIP: git or curl missing"; exit 77; }
SHOTS=$(cd "$(dirname "$1")" && pwd)/screenshots  # shot()
e2e_start "$@"
mkdir -p "$SHOTS"
RUN_PID=
trap 'kill $RUN_PID 2>/dev/null; e2e_cleanup' EXIT

TTL=8
sed -i "s/record: $RECORD, ttl: 60}/record: $RECORD, ttl: $TTL, switch_ttl: 1}/" "$CONFIG" "$DIR/standby-active.yaml"
grep -q "switch_ttl: 1" "$DIR/standby-active.yaml" || { echo "FAIL cannot set switch_ttl"; exit 1; }

REPO=$DIR/repo
git init -q -b main "$REPO"
git -C "$REPO" config user.email ops@example.test
git -C "$REPO" config user.name "Ops Team"
git -C "$REPO" config commit.gpgsign false
commit() { # FILE MESSAGE → prints the new head
  cp "$1" "$REPO/stackflip.yaml"
  git -C "$REPO" add stackflip.yaml
  git -C "$REPO" commit -q --allow-empty -m "$2" && git -C "$REPO" rev-parse HEAD
}

PORT=$(free_port)
BASE=http://127.0.0.1:$PORT
LOG=$DIR/run.log
start_run() { # extra flags...
  "$SF" run --repo "file://$REPO" --interval 120s --listen "127.0.0.1:$PORT" "$@" >>"$LOG" 2>&1 &
  RUN_PID=$!
}
stop_run() { kill -TERM "$RUN_PID" 2>/dev/null; wait "$RUN_PID" 2>/dev/null; RUN_PID=; }
status_field() { curl -fsS "$BASE/status" | python3 -c "import json,sys; print(json.load(sys.stdin).get('$1'))"; }
converged_on() { [[ "$(status_field last_commit 2>/dev/null) $(status_field converged 2>/dev/null)" == "$1 True" ]]; }

dom() { chrome "$1" "$2" --dump-dom; }
# The brightness (0-255) of a screenshot's top left pixel: the page's
# background. The first pixel of a PNG row is its raw value whatever the
# row's filter, so no image library is needed.
corner() {
  python3 - "$1" <<'PY'
import struct, sys, zlib
data, pos, idat = open(sys.argv[1], "rb").read(), 8, b""
while pos < len(data):
    n, = struct.unpack(">I", data[pos:pos + 4])
    if data[pos + 4:pos + 8] == b"IDAT":
        idat += data[pos + 8:pos + 8 + n]
    pos += 12 + n
r, g, b = zlib.decompressobj().decompress(idat, 8)[1:4]
print(round(0.2126 * r + 0.7152 * g + 0.0722 * b))
PY
}
# The DOM as Chromium built it, queried with Python's HTML parser: FILE
# SELECTOR-ish (tag#id, tag.class, [attr=value]) → the text of each match.
q() { python3 "$E2E_REPO/tests/e2e/dom_query.py" "$@"; }

C1=$(commit "$CONFIG" "primary active")
start_run
check "run: first pass converged" poll 60 converged_on "$C1"

# --- before
dom nojs "$BASE/" >"$DIR/before.html"
check_eq "before: the group row says converged" ok "$(q "$DIR/before.html" 'tr[data-group=shop]' data-state)"
check_eq "before: desired active" primary "$(q "$DIR/before.html" 'tr[data-group=shop] td.desired')"
check_eq "before: serving writes" primary "$(q "$DIR/before.html" 'tr[data-group=shop] td.serving')"
check "before: the standby could take over" grep -Eq '^✓ standby: streaming from primary, lag [0-9]+ bytes?$' <(q "$DIR/before.html" 'tr[data-group=shop] td.standbys')
check "before: traffic on primary with its TTL" grep -q "primary, TTL $TTL s" <(q "$DIR/before.html" 'tr[data-group=shop] td.traffic')
check_eq "before: the commit's message" "primary active" "$(q "$DIR/before.html" 'span.commit-message')"
check_eq "before: the commit's author" "Ops Team <ops@example.test>" "$(q "$DIR/before.html" 'span.commit-author')"
check_eq "before: without JavaScript the page says it is static" static "$(q "$DIR/before.html" '#live' data-state)"
check "before: the passes table has a row" grep -q . <(q "$DIR/before.html" '#runs tbody tr')
dom nojs "$BASE/group?name=shop" >"$DIR/group-before.html"
check_eq "before: primary is primary" primary "$(q "$DIR/group-before.html" 'tr[data-stack=primary] td.role')"
check_eq "before: standby is a replica" replica "$(q "$DIR/group-before.html" 'tr[data-stack=standby] td.role')"
check_eq "before: standby streams from primary" "from primary, streaming" "$(q "$DIR/group-before.html" 'tr[data-stack=standby] td.replication')"
check "before: standby's lag in bytes" grep -Eq '^[0-9]+ bytes?$' <(q "$DIR/group-before.html" 'tr[data-stack=standby] td.lag')
check_eq "before: standby in maintenance" "on (writes refused)" "$(q "$DIR/group-before.html" 'tr[data-stack=standby] td.maintenance')"
# The first pass corrected the record's TTL (a traffic.switch): the last
# switch so far, without a fence.
check_eq "before: the timeline shows the TTL correction" traffic.switch "$(q "$DIR/group-before.html" 'g.step' data-kind)"
check_eq "before: no fence in it" 0 "$(q "$DIR/group-before.html" 'g.marker.mark-stop' count)"
dom js "$BASE/" >"$DIR/before-js.html"
check "before, with JavaScript: the page refreshed itself" grep -q "^live: updated" <(q "$DIR/before-js.html" '#live')
check "before: screenshot" shot "$BASE/" status-before.png

# --- during: the planned switch holds at traffic.wait for $TTL s.
# The commit message is hostile: it must show as text, never as markup.
EVIL='fail over to standby <img src=x onerror="document.title=1"><script>document.title=2</script>'
C2=$(commit "$DIR/standby-active.yaml" "$EVIL")
kill -HUP "$RUN_PID"
in_wait() { curl -fsS "$BASE/group?name=shop" | grep -q 'in progress: traffic.wait'; }
check "during: the page shows the switch waiting" poll 20 in_wait
dom js "$BASE/group?name=shop" >"$DIR/group-during.html"
check "during: the state says in progress at traffic.wait" grep -q "in progress: traffic.wait" <(q "$DIR/group-during.html" '#state')
check_eq "during: state key" running "$(q "$DIR/group-during.html" '#state' data-state)"
check "during: a pass is running" grep -q "pass running" <(q "$DIR/group-during.html" '#pass-running')
check_eq "during: the old primary still serves writes" primary "$(q "$DIR/group-during.html" 'b.serving')"
check "during: the journal shows traffic.ttl done" grep -q "traffic.ttl" <(q "$DIR/group-during.html" '#journal-table tbody tr')
check_eq "during: the timeline is of the switch under way" "Switch under way" "$(q "$DIR/group-during.html" 'h2#timeline')"
check_eq "during: traffic.wait is drawn running" running "$(q "$DIR/group-during.html" 'g.step[data-kind=traffic.wait]' data-result)"
check_eq "during: traffic.ttl is drawn done" ok "$(q "$DIR/group-during.html" 'g.step[data-kind=traffic.ttl]' data-result)"
check "during: screenshot" shot "$BASE/group?name=shop" status-during.png

check "after: converged on the failover commit" poll 60 converged_on "$C2"
dom js "$BASE/" >"$DIR/after.html"
check_eq "after: desired active" standby "$(q "$DIR/after.html" 'tr[data-group=shop] td.desired')"
check_eq "after: serving writes" standby "$(q "$DIR/after.html" 'tr[data-group=shop] td.serving')"
check_eq "after: converged" ok "$(q "$DIR/after.html" 'tr[data-group=shop]' data-state)"
check "after: the hostile message shows as text" grep -qF '<img src=x onerror=' <(q "$DIR/after.html" 'span.commit-message')
check_eq "after: no element came from the message" 0 "$(q "$DIR/after.html" '#commit img, #commit script' count)"
check "after: the title is the page's own" grep -q '^stackflip' <(q "$DIR/after.html" title)
dom nojs "$BASE/group?name=shop" >"$DIR/group-after.html"
check_eq "after: standby is primary" primary "$(q "$DIR/group-after.html" 'tr[data-stack=standby] td.role')"
check_eq "after: primary is a replica of standby" "from standby, streaming" "$(q "$DIR/group-after.html" 'tr[data-stack=primary] td.replication')"
check_eq "after: the timeline is drawn" 1 "$(q "$DIR/group-after.html" '#switch-timeline svg' count)"
for step in traffic.ttl traffic.wait maintenance.on database.promote maintenance.off traffic.switch; do
  check_eq "after: timeline step $step ok" ok "$(q "$DIR/group-after.html" "g.step[data-kind=$step]" data-result)"
done
check_eq "after: writes stopped marked" 1 "$(q "$DIR/group-after.html" 'g.marker.mark-stop' count)"
check_eq "after: writes accepted again marked" 1 "$(q "$DIR/group-after.html" 'g.marker.mark-resume' count)"
gap=$(q "$DIR/group-after.html" '#write-gap')
check "after: the write gap is given in seconds" grep -Eq '^writes refused for [0-9]+\.[0-9]{3} s$' <<<"$gap"
echo "timeline: $gap"
wait_bar=$(q "$DIR/group-after.html" 'g.step[data-kind=traffic.wait] title')
check "after: traffic.wait took about the TTL" grep -Eq ": ✓ ok, ([7-9]|1[0-9])\.[0-9]{3} s" <<<"$wait_bar"
check "after: no data loss was accepted" not grep -q . <(q "$DIR/group-after.html" '#data-loss')
check "after: group screenshot" shot "$BASE/group?name=shop" status-group-after.png
check "after: overview screenshot" shot "$BASE/" status-after.png
check "after: dark screenshot (prefers-color-scheme)" shot "$BASE/group?name=shop" status-group-after-dark.png --force-dark-mode
light=$(corner "$SHOTS/status-group-after.png") dark=$(corner "$SHOTS/status-group-after-dark.png")
echo "page background brightness: light $light, dark $dark"
check "after: the light page is light" test "$light" -gt 200
check "after: the dark page is dark" test "$dark" -lt 60
check_eq "an unknown group is 404" 404 "$(curl -s -o /dev/null -w '%{http_code}' "$BASE/group?name=nope")"
check "the page forbids other origins' scripts" grep -qi "content-security-policy: default-src 'none'" <(curl -sSI "$BASE/")

# --- the api token
stop_run
export STATUS_TOKEN=s3cret-token-for-the-page
start_run --api-token '${env:STATUS_TOKEN}'
check "run with a token: healthz" poll 30 curl -fsS -o /dev/null "$BASE/healthz"
code() { curl -s -o /dev/null -w '%{http_code}' "$@"; }
check_eq "token: / without it is 401" 401 "$(code "$BASE/")"
check "token: the 401 is the sign-in form" grep -q 'action="/login"' <(curl -s "$BASE/")
check_eq "token: /group without it is 401" 401 "$(code "$BASE/group?name=shop")"
check_eq "token: / with the bearer header" 200 "$(code -H "Authorization: Bearer $STATUS_TOKEN" "$BASE/")"
check_eq "token: a wrong token at /login is 401" 401 "$(code --data-urlencode "token=wrong" "$BASE/login")"
check_eq "token: the right one is 303" 303 "$(code -c "$DIR/cookies" --data-urlencode "token=$STATUS_TOKEN" "$BASE/login")"
check "token: the cookie is HttpOnly and not the token" bash -c "grep -q '#HttpOnly_127.0.0.1' '$DIR/cookies' && ! grep -q '$STATUS_TOKEN' '$DIR/cookies'"
check_eq "token: / with the cookie" 200 "$(code -b "$DIR/cookies" "$BASE/")"
check_eq "token: /status with the cookie" 200 "$(code -b "$DIR/cookies" "$BASE/status")"
check_eq "token: /metrics stays open" 200 "$(code "$BASE/metrics")"
dom nojs "$BASE/" >"$DIR/login.html"
check_eq "token: Chromium sees the sign-in form" 1 "$(q "$DIR/login.html" 'form[action=/login]' count)"
stop_run
e2e_finish

#!/usr/bin/env bash
# The Debian package (issue 18), as an operator meets it: build it with
# `cpack -G DEB` from this build, check it with lintian, install it with
# `dpkg -i`, check what it put where (version, man page, completion, units,
# user, folders and modes), configure it as README "Install" says and run
# the reconcile unit's command line as the stackflip user against the
# harness (a pass that finds nothing to do, then one that puts a record
# changed by hand back), reinstall it, then remove and purge it and check
# what is left.
#
# It installs into this machine's /usr, /etc and /var/lib, so it runs only
# as root, never where a stackflip package, user or folder was there
# before it (those are the operator's: skipped, untouched), and never from
# the sanitizer build (the package is built from the first pass).
# Usage: package_e2e.sh STACKFLIP E2E_TOOL
source "$(dirname "$0")/lib.sh"
SF=$1
BUILD=$(cd "$(dirname "$SF")" && pwd)

skip() { echo "SKIP: $*"; exit 77; }
((EUID == 0)) || skip "dpkg -i needs root"
grep -q '^STACKFLIP_SANITIZE:BOOL=ON' "$BUILD/CMakeCache.txt" &&
  skip "a sanitizer build; the package is built from the first pass's build"
dpkg-query -W -f='${Status}' stackflip 2>/dev/null | grep -q 'installed\|config-files' &&
  skip "a stackflip package is installed here already: the operator's, left alone"
getent passwd stackflip >/dev/null && skip "a stackflip user exists here already: left alone"
for d in /var/lib/stackflip /etc/stackflip; do
  [[ ! -e $d ]] || skip "$d exists here already: left alone"
done
missing=()
for t in cpack dpkg-deb dpkg-shlibdeps lintian man systemd-analyze file; do
  command -v "$t" >/dev/null || missing+=("$t")
done
[[ -e /usr/share/bash-completion/bash_completion ]] || missing+=(bash-completion)
if ((${#missing[@]})); then
  echo "FAIL missing ${missing[*]} (scripts/install-deps.sh installs them)"
  echo "0 passed, 1 failed"
  exit 1
fi

# Whatever happens, the machine is left as it was: the package purged, the
# user the package made removed, the harness stopped.
installed=0 RUN_PID=
package_cleanup() {
  [[ -z $RUN_PID ]] || kill "$RUN_PID" 2>/dev/null
  rm -f /tmp/stackflip.deb  # what the CI examples download
  if ((installed)); then
    # The user is the package's, made by this test: whatever runs as it is ours.
    pkill -u stackflip 2>/dev/null && sleep 1
    dpkg --purge stackflip >/dev/null 2>&1
    getent passwd stackflip >/dev/null && deluser --system stackflip >/dev/null 2>&1
    getent group stackflip >/dev/null && delgroup --system stackflip >/dev/null 2>&1
  fi
  e2e_cleanup
}
e2e_start "$@"
trap package_cleanup EXIT

mode_of() { stat -c '%a %U %G' "$1" 2>&1; }
has_user() { getent passwd stackflip >/dev/null; }
known_to_dpkg() { dpkg-query -W stackflip >/dev/null 2>&1; }

# ---------------------------------------------------------------- build
VERSION=$("$SF" --version | awk '{print $2}')
ARCH=$(dpkg --print-architecture)
DEB=$DIR/packages/stackflip_${VERSION}_${ARCH}.deb
(cd "$BUILD" && cpack -G DEB -B "$DIR/packages") >"$DIR/cpack.out" 2>&1
check "cpack -G DEB makes stackflip_${VERSION}_${ARCH}.deb" test -s "$DEB" ||
  { tail -20 "$DIR/cpack.out"; e2e_finish; exit 1; }
depends=$(dpkg-deb -f "$DEB" Depends)
echo "  Depends: $depends"
for lib in libgit2 libpq5 libyaml-cpp libcurl4 libsqlite3 libssl3 adduser; do
  check "Depends names $lib" grep -q "$lib" <<<"$depends"
done
check "no sanitizer runtime among the dependencies" not grep -q 'libasan\|libubsan' <<<"$depends"
TMPDIR=$DIR lintian --fail-on error,warning --pedantic -I "$DEB" >"$DIR/lintian.out" 2>&1
rc=$?
sed 's/^/  lintian: /' "$DIR/lintian.out" | grep -v 'running with root'
check_eq "lintian: no error or warning (pedantic; info shown above)" 0 "$rc"

# ---------------------------------------------------------------- install
dpkg -i "$DEB" >"$DIR/dpkg-i.out" 2>&1 || apt-get -f install -y >>"$DIR/dpkg-i.out" 2>&1
installed=1
check_eq "dpkg -i: installed" "install ok installed" "$(dpkg-query -W -f='${Status}' stackflip 2>&1)" ||
  tail -20 "$DIR/dpkg-i.out"

commit=$(git -C "$E2E_REPO" rev-parse --short=12 HEAD)
v=$(/usr/bin/stackflip --version)
check_eq "stackflip --version: the version and the build's commit" "$("$SF" --version)" "$v"
check "stackflip --version names commit $commit" grep -q "^stackflip $VERSION (commit $commit\(-dirty\)\?)\$" <<<"$v"
check "stackflip on PATH is /usr/bin/stackflip" test "$(command -v stackflip)" = /usr/bin/stackflip

check_eq "man -w stackflip" /usr/share/man/man1/stackflip.1.gz "$(man -w stackflip 2>&1)"
MANWIDTH=80 man stackflip 2>/dev/null >"$DIR/man.txt"
for s in COMMANDS "EXIT STATUS" ENVIRONMENT FILES; do
  check "man stackflip: $s" grep -qx "$s" "$DIR/man.txt"
done

completion=/usr/share/bash-completion/completions/stackflip
check "completion installed, the one the build generated" cmp -s "$completion" "$BUILD/doc/stackflip.bash"
# bash-completion loads it on demand, by the command's name, as on a login shell.
offered=$(bash --norc --noprofile -c '
  source /usr/share/bash-completion/bash_completion
  _completion_loader stackflip
  COMP_WORDS=(stackflip pl); COMP_CWORD=1
  _stackflip stackflip pl stackflip
  echo "${COMPREPLY[*]}"' 2>&1)
check_eq "bash-completion loads it: stackflip pl<TAB>" plan "$offered"

units=(/lib/systemd/system/stackflip-run.service /lib/systemd/system/stackflip-reconcile.service
  /lib/systemd/system/stackflip-reconcile.timer)
verify=$(systemd-analyze verify "${units[@]}" 2>&1)
rc=$?
[[ -z $verify ]] || echo "$verify" | sed 's/^/  systemd-analyze: /'
check_eq "systemd-analyze verify of the installed units" 0 "$rc"
check "systemd-analyze: nothing to say" test -z "$verify"
for u in "${units[@]:0:2}"; do
  check "$(basename "$u") runs /usr/bin/stackflip" grep -q '^ExecStart=/usr/bin/stackflip ' "$u"
done

IFS=: read -r _ _ uid gid _ home shell < <(getent passwd stackflip)
check "user stackflip: a system user (uid $uid)" test "${uid:-1000}" -lt 1000
check_eq "user stackflip: its group" stackflip "$(getent group "$gid" | cut -d: -f1)"
check_eq "user stackflip: home" /var/lib/stackflip "$home"
check_eq "user stackflip: no login shell" /usr/sbin/nologin "$shell"
check_eq "/var/lib/stackflip: 0700 stackflip" "700 stackflip stackflip" "$(mode_of /var/lib/stackflip)"
check_eq "/etc/stackflip/env: 0600 root (systemd reads it)" "600 root root" "$(mode_of /etc/stackflip/env)"
check "/etc/stackflip/env is a conffile" grep -q '/etc/stackflip/env' <<<"$(dpkg-query -W -f='${Conffiles}' stackflip)"
check "no host policy installed: validate in a CI job checks none" test ! -e /etc/stackflip/host.yaml
for s in stackflip observed; do
  check "/usr/share/stackflip/$s.schema.json is the project's" \
    cmp -s "/usr/share/stackflip/$s.schema.json" "$E2E_REPO/schema/$s.schema.json"
done
for f in README.md copyright changelog.gz examples/selfhosted.yaml examples/ci/github-actions.yml \
  examples/ci/kubernetes/Dockerfile examples/ci/systemd/stackflip-run.service; do
  check "/usr/share/doc/stackflip/$f" test -s "/usr/share/doc/stackflip/$f"
done
# The example policy grants nothing: it loads, and the example's secrets
# are refused by it.
/usr/bin/stackflip --host-config /usr/share/stackflip/host.yaml validate \
  /usr/share/doc/stackflip/examples/selfhosted.yaml >"$DIR/policy.out" 2>&1
check "the example host policy loads, and grants nothing" \
  grep -q 'not granted on this host (host policy /usr/share/stackflip/host.yaml' "$DIR/policy.out"

# ---------------------------------------------------------------- use
# README "Install": the operator's steps. The repository belongs to the
# stackflip user here (libgit2 refuses a local repository of another
# owner); in production it is a remote.
OPS=$DIR/ops
git init -q -b main "$OPS"
cp "$CONFIG" "$OPS/stackflip.yaml"
git -C "$OPS" add stackflip.yaml
git -C "$OPS" -c user.name=op -c user.email=op@example.org commit -q -m "the pair"
chown -R stackflip:stackflip "$OPS"
install -m 0644 "$STACKFLIP_HOST_CONFIG" /etc/stackflip/host.yaml
sed -i "s|^STACKFLIP_REPO=.*|STACKFLIP_REPO=$OPS|; s|^#PDNS_API_KEY=.*|PDNS_API_KEY=$PDNS_API_KEY|" /etc/stackflip/env

# The reconcile unit's command, as systemd runs it: the unit's
# Environment= and EnvironmentFile= (plain KEY=VALUE lines, no expansion),
# then ExecStart with ${X} as one word and $X split at whitespace, as the
# stackflip user. (No systemd runs here to start the unit itself.)
run_unit() { # UNIT: runs its ExecStart; call it as (run_unit UNIT) or run_unit UNIT &
  local unit=/lib/systemd/system/$1 envs=() line
  while IFS= read -r line; do
    [[ $line =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] && envs+=("$line")
  done </etc/stackflip/env
  envs+=("$(sed -n 's/^Environment=//p' "$unit")")
  sed -n 's/^ExecStart=//p' "$unit" | sed -E 's/\$\{([A-Za-z_]+)\}/"${\1}"/g' >"$DIR/exec.line"
  chmod 644 "$DIR/exec.line"
  # Called in a subshell, which becomes stackflip itself (exec, and setpriv
  # execs where runuser would fork): `run_unit X &` gives its pid in $!.
  exec setpriv --reuid=stackflip --regid=stackflip --init-groups \
    env -i PATH=/usr/bin:/bin HOME=/var/lib/stackflip "${envs[@]}" \
    bash -c 'set -f; eval "exec $(cat "$1")"' _ "$DIR/exec.line"
}
(run_unit stackflip-reconcile.service) >"$DIR/r1.out" 2>&1
rc=$?
check_eq "reconcile unit as stackflip: converged pair, exit 0" 0 "$rc" || cat "$DIR/r1.out"
check "  it read the commit and found nothing to do" grep -qi 'no changes\|converged' "$DIR/r1.out"
check_eq "state.db: 0600 stackflip" "600 stackflip stackflip" "$(mode_of /var/lib/stackflip/state.db)"
check "the Git cache is in /var/lib/stackflip" test -d /var/lib/stackflip/git

# The record changed by hand: the next pass puts it back, with the API key
# from /etc/stackflip/env, bound by /etc/stackflip/host.yaml.
curl -sS -m 5 -o /dev/null -X PATCH -H "X-API-Key: $PDNS_API_KEY" -H 'Content-Type: application/json' \
  "$PDNS_API_URL/api/v1/servers/localhost/zones/$ZONE" --data \
  "{\"rrsets\":[{\"name\":\"$RECORD\",\"type\":\"A\",\"ttl\":60,\"changetype\":\"REPLACE\",\"records\":[{\"content\":\"$PG2_HOST\",\"disabled\":false}]}]}"
check_eq "the record now points at the standby (by hand)" "$PG2_HOST" "$(dns_answer)"
(run_unit stackflip-reconcile.service) >"$DIR/r2.out" 2>&1
rc=$?
check_eq "reconcile unit as stackflip: the drift corrected, exit 0" 0 "$rc" || cat "$DIR/r2.out"
check_eq "the record points at the active stack again" "$PG1_HOST" "$(dns_answer)"
hist=$(runuser -u stackflip -- env STACKFLIP_STATE_DIR=/var/lib/stackflip /usr/bin/stackflip history 2>&1)
check "history as stackflip: traffic.switch journaled" grep -q 'traffic.switch' <<<"$hist"

# Two mistakes an operator makes: looking at the state as root, which
# would leave root's files in the service's store, and a host policy the
# service cannot read.
STACKFLIP_STATE_DIR=/var/lib/stackflip /usr/bin/stackflip status >"$DIR/root-status.out" 2>&1
check_eq "status as root on the stackflip user's store: exit 1" 1 "$?"
check "  naming the user to run as" grep -q 'belongs to user stackflip, not root: run stackflip as that user (runuser -u stackflip' "$DIR/root-status.out"
check_eq "  nothing of root's left in the store" "" "$(find /var/lib/stackflip -user root)"
chmod 0600 /etc/stackflip/host.yaml
(run_unit stackflip-reconcile.service) >"$DIR/r4.out" 2>&1
check_eq "host.yaml unreadable to the service: exit 1" 1 "$?"
check "  naming the file" grep -q '/etc/stackflip/host.yaml' "$DIR/r4.out" || cat "$DIR/r4.out"
chmod 0644 /etc/stackflip/host.yaml

# Without the repository set, the unit says what is missing.
sed -i 's|^STACKFLIP_REPO=.*|STACKFLIP_REPO=|' /etc/stackflip/env
(run_unit stackflip-reconcile.service) >"$DIR/r3.out" 2>&1
check_eq "STACKFLIP_REPO unset: exit 1" 1 "$?"
check "  naming STACKFLIP_REPO in /etc/stackflip/env" grep -q 'STACKFLIP_REPO in /etc/stackflip/env' "$DIR/r3.out"
sed -i "s|^STACKFLIP_REPO=.*|STACKFLIP_REPO=$OPS|" /etc/stackflip/env

# ---------------------------------------------------------------- the CI examples
# The run unit, as systemd would start it (run_unit), serves /observed; the
# GitLab and GitHub jobs of examples/ci then run their own lines, as their
# runner would on Debian 12, with the package from a file:// URL in place
# of the release's. Left out: `apt-get update` and the install of the
# jobs' tools (curl, gh; no network in a test), and the comment step of
# the GitHub job (GitHub's API). The merge-request note goes to a local stand-in for
# GitLab's notes endpoint (POST .../merge_requests/IID/notes, a form field
# `body`), which keeps what it got.
OBS_PORT=$(free_port)
sed -i "s|^STACKFLIP_RUN_OPTIONS=.*|STACKFLIP_RUN_OPTIONS=--interval 1s --listen 127.0.0.1:$OBS_PORT|" /etc/stackflip/env
run_unit stackflip-run.service >"$DIR/run.out" 2>&1 &
RUN_PID=$!
observed() { curl -fsS -m 2 -o "$DIR/observed.json" "http://127.0.0.1:$OBS_PORT/observed" 2>/dev/null; }
check "run unit as stackflip: /observed served" poll 30 observed
cat >"$DIR/notes.py" <<'PY'
import http.server, sys, urllib.parse
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        ok = self.path.endswith("/merge_requests/7/notes") and self.headers.get("PRIVATE-TOKEN") == "note-token"
        if ok:
            with open(sys.argv[2], "w") as f:
                f.write(urllib.parse.parse_qs(body.decode())["body"][0])
        self.send_response(201 if ok else 401)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"id": 1}')
    def log_message(self, *a): pass
s = http.server.HTTPServer(("127.0.0.1", 0), H)
open(sys.argv[1], "w").write(str(s.server_address[1]))
s.serve_forever()
PY
python3 "$DIR/notes.py" "$DIR/notes.port" "$DIR/note.md" >"$DIR/notes.log" 2>&1 &
E2E_PIDS="${E2E_PIDS:-} $!"
poll 10 test -s "$DIR/notes.port"
job_lines() { # FILE PYTHON-EXPRESSION: a job's shell lines, apt-get left out but for the .deb
  /usr/bin/python3 -c '
import sys, yaml
doc = yaml.safe_load(open(sys.argv[1]))
for line in eval(sys.argv[2]):
    if not line.strip().startswith("apt-get") or "stackflip.deb" in line:
        print(line)' "$1" "$2"
}
JOB=$DIR/job
mkdir -p "$JOB"
# The merge request flips active:.
sed 's/^    active: primary$/    active: standby/' "$CONFIG" >"$JOB/stackflip.yaml"
job_lines "$E2E_REPO/examples/ci/gitlab-ci.yml" 'doc["stackflip-plan"]["before_script"] + doc["stackflip-plan"]["script"]' >"$JOB/gitlab.sh"
(cd "$JOB" && env -u STACKFLIP_HOST_CONFIG STACKFLIP_DEB_URL="file://$DEB" \
  STACKFLIP_OBSERVED_URL="http://127.0.0.1:$OBS_PORT/observed" STACKFLIP_NOTE_TOKEN=note-token \
  CI_API_V4_URL="http://127.0.0.1:$(cat "$DIR/notes.port")/api/v4" CI_PROJECT_ID=3 CI_MERGE_REQUEST_IID=7 \
  bash -e "$JOB/gitlab.sh") >"$DIR/gitlab.out" 2>&1
check_eq "GitLab job: its lines pass" 0 "$?" || tail -20 "$DIR/gitlab.out"
check "GitLab job: stackflip --version from the package" grep -q "^stackflip $VERSION (commit" "$DIR/gitlab.out"
check "GitLab job: the note is the plan" cmp -s "$JOB/plan.md" "$DIR/note.md"
check "GitLab job: the plan promotes the standby" grep -q 'database.promote' "$DIR/note.md"
rm -f /tmp/stackflip.deb "$JOB/plan.md" "$JOB/observed.json"
# GitHub: the same, up to the comment.
job_lines "$E2E_REPO/examples/ci/github-actions.yml" \
  '[l for st in doc["jobs"]["plan"]["steps"] if "run" in st and "gh pr comment" not in st["run"] for l in st["run"].splitlines()]' >"$JOB/github.sh"
(cd "$JOB" && env -u STACKFLIP_HOST_CONFIG STACKFLIP_DEB_URL="file://$DEB" GITHUB_OUTPUT="$JOB/output" \
  OBSERVED_URL="http://127.0.0.1:$OBS_PORT/observed" bash -e "$JOB/github.sh") >"$DIR/github.out" 2>&1
check_eq "GitHub job: its lines pass, up to the comment" 0 "$?" || tail -20 "$DIR/github.out"
check "GitHub job: the plan promotes the standby" grep -q 'database.promote' "$JOB/plan.md"
check_eq "GitHub job: exit=2 (changes) in its output" "exit=2" "$(cat "$JOB/output" 2>&1)"
rm -f /tmp/stackflip.deb
kill "$RUN_PID" 2>/dev/null
wait "$RUN_PID" 2>/dev/null
check "run unit: SIGTERM, it stopped" not kill -0 "$RUN_PID"
check "run unit: no process of the stackflip user left" poll 10 not pgrep -u stackflip
RUN_PID=

# ---------------------------------------------------------------- reinstall, remove, purge
dpkg -i "$DEB" >"$DIR/dpkg-i2.out" 2>&1
check_eq "reinstall (an upgrade's path): ok" 0 "$?"
check "  the edited conffile kept" grep -q "^STACKFLIP_REPO=$OPS\$" /etc/stackflip/env
check "  the state kept" test -s /var/lib/stackflip/state.db

dpkg -r stackflip >"$DIR/dpkg-r.out" 2>&1
check_eq "dpkg -r: ok" 0 "$?"
check_eq "removed: config files remain" "deinstall ok config-files" "$(dpkg-query -W -f='${Status}' stackflip 2>&1)"
check "removed: no binary" test ! -e /usr/bin/stackflip
check "removed: no units" test ! -e "${units[0]}"
check "removed: no man page" test ! -e /usr/share/man/man1/stackflip.1.gz
check "removed: the state kept" test -s /var/lib/stackflip/state.db
check "removed: /etc/stackflip/env kept" test -s /etc/stackflip/env
check "removed: the user kept" has_user

dpkg -P stackflip >"$DIR/dpkg-p.out" 2>&1
check_eq "dpkg -P: ok" 0 "$?"
check "purged: not known to dpkg" not known_to_dpkg
check "purged: /var/lib/stackflip gone" test ! -e /var/lib/stackflip
check "purged: /etc/stackflip gone (env, and the host.yaml the operator put there)" test ! -e /etc/stackflip
check "purged: nothing of the package left" test ! -e /usr/share/doc/stackflip -a ! -e /usr/share/stackflip
check "purged: the user kept, as Debian packages do" has_user
e2e_finish

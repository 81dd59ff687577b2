# shellcheck shell=bash
# Shared by the etcd_*_e2e.sh suites (sourced after lib.sh and e2e_start):
# a local Git repository holding the harness config with sites, and
# `stackflip run` instances coordinated through the harness's etcd.
#
# Callers: source lib.sh; e2e_start "$@"; source etcd_lib.sh; etcd_setup;
# start_instance NAME SITE ENDPOINTS; ...; e2e_finish. Instances are stopped
# (TERM, bounded wait, KILL) by the EXIT trap set here.

[[ -n ${ETCD1_URL:-} ]] || { echo "SKIP: the harness has no etcd"; exit 77; }
command -v git >/dev/null && command -v curl >/dev/null || { echo "SKIP: git or curl missing"; exit 77; }

declare -A INST_PID INST_PORT
stop_instances() {
  local n pid deadline
  for n in "${!INST_PID[@]}"; do kill -CONT "${INST_PID[$n]}" 2>/dev/null; kill -TERM "${INST_PID[$n]}" 2>/dev/null; done
  deadline=$((SECONDS + 10))
  for n in "${!INST_PID[@]}"; do
    pid=${INST_PID[$n]}
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.05; done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    unset "INST_PID[$n]"
  done
}
trap 'stop_instances; [[ -n ${POLLER:-} ]] && kill $POLLER 2>/dev/null; e2e_cleanup' EXIT

REPO=$DIR/repo
URL=file://$REPO
# The harness config with a site per stack: primary in fra, standby in ams.
site_config() { # SRC DST
  sed -e '/^      primary:$/a\        site: fra' -e '/^      standby:$/a\        site: ams' "$1" >"$2"
}
etcd_setup() {
  site_config "$CONFIG" "$DIR/fra-active.yaml"
  site_config "$DIR/standby-active.yaml" "$DIR/ams-active.yaml"
  grep -q 'site: ams' "$DIR/ams-active.yaml" || { echo "FAIL cannot add sites"; exit 1; }
  git init -q -b main "$REPO"
  git -C "$REPO" config user.email ops@example.test
  git -C "$REPO" config user.name Ops
  git -C "$REPO" config commit.gpgsign false
}
commit() { # FILE MESSAGE → prints the new head
  cp "$1" "$REPO/stackflip.yaml"
  git -C "$REPO" add stackflip.yaml
  git -C "$REPO" commit -q --allow-empty -m "$2" || return 1
  git -C "$REPO" rev-parse HEAD
}

start_instance() { # NAME SITE ENDPOINTS [more run flags]; INST_INTERVAL (default 2s)
  local name=$1 site=$2 eps=$3 port
  shift 3
  port=$(free_port)
  mkdir -p "$DIR/$name"
  setsid "$SF" run --repo "$URL" --interval "${INST_INTERVAL:-2s}" --etcd "$eps" --instance "$name" --site "$site" \
    --state "$DIR/$name/state.db" --listen "127.0.0.1:$port" "$@" >>"$DIR/$name.log" 2>&1 </dev/null &
  INST_PID[$name]=$!
  INST_PORT[$name]=$port
}
kill_instance() { # NAME
  local pid=${INST_PID[$1]}
  kill -TERM "$pid" 2>/dev/null
  poll 10 not kill -0 "$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  unset "INST_PID[$1]"
}

# status NAME PYEXPR: evaluates PYEXPR on /status as j (prints it; fails when unreachable)
status() {
  curl -fsS -m 2 "http://127.0.0.1:${INST_PORT[$1]}/status" 2>/dev/null |
    python3 -c "import json,sys
j=json.load(sys.stdin)
c=j.get('coordination') or {}
g=(c.get('groups') or {}).get('shop') or {}
print($2)" 2>/dev/null
}
metric() { # NAME METRIC → its value (first sample)
  curl -fsS -m 2 "http://127.0.0.1:${INST_PORT[$1]}/metrics" 2>/dev/null | awk -v m="$2" '$1 == m {print $2; exit}'
}
leader_of_shop() { status "$1" "g.get('leader') or ''"; }
leads() { [[ $(leader_of_shop "$1") == "$1" ]]; } # NAME
both_agree() { # A B LEADER
  [[ $(leader_of_shop "$1") == "$3" && $(leader_of_shop "$2") == "$3" ]]
}
converged_on() { # NAME COMMIT
  [[ $(status "$1" "j.get('last_commit'), j.get('converged')") == "$2 True" ]]
}
etcd_up_is() { [[ $(metric "$1" stackflip_etcd_up) == "$2" ]]; } # NAME 0|1
passes() { grep -c '^pass: ' "$DIR/$1.log"; }
passes_at_least() { (($(passes "$1") >= $2)); }
steps_in() { grep -cE '^ +shop [0-9]+/[0-9]+ .*\.\.\.$' "$DIR/$1.log"; } # steps started in NAME's log
# NAME's local journal: every row (a started and a finished one per action),
# and the finished actions only.
local_rows() { "$SF" history --state "$DIR/$1/state.db" -n 1000 2>/dev/null | grep -c ' shop '; }
local_done() { "$SF" history --state "$DIR/$1/state.db" -n 1000 2>/dev/null | grep ' shop ' | grep -vc ' started'; }

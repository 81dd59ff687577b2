#!/bin/sh
# Example `command` provider for stacks: keeps each stack's state in a JSON
# file under $STACKFLIP_EXAMPLE_STATE (one <stack>.json per stack), so a whole
# failover can be rehearsed without touching real infrastructure.
# Replace the bodies of the cases with calls to your own tooling.
#
#   providers:
#     cmd:
#       type: command
#       observe: [examples/command/stack.sh]
#       maintenance_on: [examples/command/stack.sh]
#       ... (the same script serves every operation; it reads "operation")
#
# Reads the request JSON on stdin; needs jq. Exit 0 = done; on failure print
# why on stderr and exit non-zero.
set -eu
state=${STACKFLIP_EXAMPLE_STATE:?set STACKFLIP_EXAMPLE_STATE to a state folder}
req=$(cat)
eval "$(printf '%s' "$req" | jq -r '@sh "op=\(.operation) stack=\(.stack) source=\(.source // "")"')"
file="$state/$stack.json"
[ -f "$file" ] || { echo "no state for stack $stack in $state" >&2; exit 1; }

update() {  # update JQ_FILTER [jq args...]: rewrite the state file atomically
  filter=$1; shift
  jq "$@" "$filter" "$file" > "$file.tmp" && mv "$file.tmp" "$file"
}

case "$op" in
  observe)
    jq -c '{reachable: true, maintenance: .maintenance,
            database: {role: .role, upstream: .upstream, lsn: .lsn, timeline: .timeline}}' "$file" ;;
  maintenance_on)    update '.maintenance = true' ;;
  maintenance_off)   update '.maintenance = false' ;;
  replication_stop)  update '.upstream = null' ;;
  promote)
    [ "$(jq -r .role "$file")" = primary ] && exit 0   # already primary: nothing to do
    update '.role = "primary" | .upstream = null | .timeline += 1' ;;
  replication_start)
    update '.role = "replica" | .upstream = $src' --arg src "$source" ;;
  *) echo "stack.sh: unknown operation $op" >&2; exit 2 ;;
esac

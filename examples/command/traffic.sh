#!/bin/sh
# Example `command` provider for traffic: keeps the group's traffic address in
# $STACKFLIP_EXAMPLE_STATE/traffic.json ({"content": "<address>"}) and maps it
# back to a stack through the request's "addresses". Replace the file writes
# with calls to your DNS / load balancer.
#
# Reads the request JSON on stdin; needs jq.
set -eu
state=${STACKFLIP_EXAMPLE_STATE:?set STACKFLIP_EXAMPLE_STATE to a state folder}
req=$(cat)
eval "$(printf '%s' "$req" | jq -r '@sh "op=\(.operation) address=\(.address // "")"')"
file="$state/traffic.json"

case "$op" in
  observe_traffic)
    [ -f "$file" ] || { echo "no traffic state in $state" >&2; exit 1; }
    content=$(jq -r .content "$file")
    printf '%s' "$req" | jq -c --arg c "$content" \
      '{target: ([.addresses | to_entries[] | select(.value == $c) | .key] | first // null),
        ttl: .ttl, content: $c}' ;;
  traffic_switch)
    jq -n -c --arg c "$address" '{content: $c}' > "$file.tmp" && mv "$file.tmp" "$file" ;;
  *) echo "traffic.sh: unknown operation $op" >&2; exit 2 ;;
esac

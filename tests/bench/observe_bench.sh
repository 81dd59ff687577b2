#!/usr/bin/env bash
# observe_bench.sh OBSERVE_BENCH [RECORDS GROUPS REPS] — starts the harness
# (scripts/harness.sh: the real PowerDNS) in a temporary folder, runs
# observe_bench against it and stops everything on exit. Prints the bench's
# figures; exit 77 when the harness cannot start here.
set -uo pipefail
BENCH=${1:?observe_bench binary}
shift
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DIR=$(mktemp -d "${TMPDIR:-/tmp}/stackflip-obsbench.XXXXXX")
chmod 755 "$DIR"
cleanup() { "$REPO/scripts/harness.sh" stop "$DIR" >/dev/null 2>&1; rm -rf "$DIR"; }
trap cleanup EXIT
"$REPO/scripts/harness.sh" start "$DIR" >"$DIR/harness.log" 2>&1
rc=$?
if ((rc == 77)); then echo "SKIP: harness prerequisites missing"; exit 77; fi
if ((rc != 0)); then cat "$DIR/harness.log"; echo "harness start failed (exit $rc)"; exit 1; fi
# shellcheck disable=SC1091
source "$DIR/env"
export PDNS_API_URL PDNS_API_KEY ZONE
echo "PowerDNS $(pdns_server --version 2>&1 | grep -o 'PowerDNS Authoritative Server [^ ]*' | head -1) at $PDNS_API_URL, zone $ZONE"
timeout 600 "$BENCH" "$@"

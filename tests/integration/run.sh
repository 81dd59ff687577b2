#!/usr/bin/env bash
# Runs the driver integration tests against a fresh harness (PostgreSQL 15
# primary + replica, PowerDNS; all on loopback):
#
#   run.sh PATH/TO/stackflip_itests [catch2 args...]
#
# Exit status: the test binary's, or 77 (skipped) when the harness reports
# that the servers are not installed. STACKFLIP_HARNESS overrides the path
# of scripts/harness.sh.
set -euo pipefail

itests=${1:?usage: run.sh PATH/TO/stackflip_itests [catch2 args...]}
shift
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
harness=${STACKFLIP_HARNESS:-$repo/scripts/harness.sh}
if [[ ! -f $harness ]]; then
  echo "run.sh: $harness not found; skipping" >&2
  exit 77
fi

dir=$(mktemp -d "${TMPDIR:-/tmp}/stackflip-itest.XXXXXX")
chmod 755 "$dir"  # the clusters run as the data directories' owner
cleanup() {
  bash "$harness" stop "$dir" >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap cleanup EXIT

set +e
bash "$harness" start "$dir"
rc=$?
set -e
if [[ $rc -eq 77 ]]; then
  echo "run.sh: harness skipped (servers not installed)" >&2
  exit 77
fi
[[ $rc -eq 0 ]] || { echo "run.sh: harness start failed ($rc)" >&2; exit "$rc"; }

# shellcheck disable=SC1091
source "$dir/env"
set +e
"$itests" "$@"
rc=$?
set -e
exit "$rc"

#!/usr/bin/env bash
# etcd_scale_bench.sh ETCD_SCALE_BENCH [GROUPS [REST_SECONDS [REPS [TTL_S]]]]
# Issue 13 "Scale": starts the harness (scripts/harness.sh: its 3-member
# etcd) in a temporary folder, runs `etcd_scale_bench driver` against it
# (three instances over GROUPS groups, default 10000; requests/s at rest,
# RSS, takeover after a SIGKILL) and stops everything on exit. Prints the
# figures; fails only on correctness (the driver's exit status), exit 77
# when the harness cannot start here. CTest runs it as bench.etcd_scale.
set -uo pipefail
BENCH=${1:?etcd_scale_bench binary}
GROUPS_N=${2:-10000}
REST=${3:-20}
REPS=${4:-1}
TTL=${5:-5}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DIR=$(mktemp -d "${TMPDIR:-/tmp}/stackflip-etcdbench.XXXXXX")
chmod 755 "$DIR"
cleanup() { "$REPO/scripts/harness.sh" stop "$DIR" >/dev/null 2>&1; rm -rf "$DIR"; }
trap cleanup EXIT
"$REPO/scripts/harness.sh" start "$DIR" >"$DIR/harness.log" 2>&1
rc=$?
if ((rc == 77)); then echo "SKIP: harness prerequisites missing"; exit 77; fi
if ((rc != 0)); then cat "$DIR/harness.log"; echo "harness start failed (exit $rc)"; exit 1; fi
# shellcheck disable=SC1091
source "$DIR/env"
echo "etcd $(etcd --version 2>/dev/null | head -1 | awk '{print $3}') at $ETCD_ENDPOINTS; $(nproc) cores"
timeout 900 "$BENCH" driver "$ETCD_ENDPOINTS" "$GROUPS_N" "$REST" "$REPS" "$TTL"

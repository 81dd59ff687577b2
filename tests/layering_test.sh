#!/usr/bin/env bash
# The include half of the layering (ARCHITECTURE.md); the link half is the
# layering_<lib> programs that tests/CMakeLists.txt builds. For each folder of
# reconciler/: which of stackflip's folders its files may include, and which
# third-party or system headers it must not.
set -uo pipefail
root=${1:?usage: layering_test.sh RECONCILER_DIR}
failures=0
# folder | project folders it may include | forbidden <headers> (ERE)
rules=(
  "util|util|curl/|libpq|git2|sqlite3|yaml-cpp/|fstream|unistd.h|sys/|fcntl.h|poll.h"
  "sys|util sys|libpq|git2|sqlite3|yaml-cpp/"
  "core|util core|curl/|libpq|git2|sqlite3|yaml-cpp/|openssl/|fstream|unistd.h|sys/|fcntl.h|poll.h"
  "config|util core config|curl/|git2|sqlite3"
  "drivers|util sys core config drivers|git2|sqlite3"
  "gitops|util sys core config gitops|libpq|curl/"
  "coord|util sys core config gitops coord|libpq|curl/|git2|sqlite3"
)
for rule in "${rules[@]}"; do
  IFS='|' read -r folder allowed forbidden <<<"$rule"
  for f in "$root/$folder"/*; do
    while IFS= read -r line; do
      inc=${line#*\"}; inc=${inc%%\"*}
      dir=${inc%%/*}
      if [[ " $allowed " != *" $dir "* ]]; then
        echo "FAIL: $folder/${f##*/} includes \"$inc\" ($folder/ may include only: $allowed)"
        failures=$((failures + 1))
      fi
    done < <(grep -E '^#include "' "$f")
    if grep -nE "^#include <($forbidden)" "$f" >/dev/null; then
      echo "FAIL: $folder/${f##*/} includes $(grep -E "^#include <($forbidden)" "$f" | head -1)"
      failures=$((failures + 1))
    fi
  done
done
# Third-party libraries each in the one file that wraps it.
only_in() {  # header-pattern allowed-file...
  local pat=$1; shift
  while IFS= read -r f; do
    local rel=${f#"$root"/} ok=0
    for a in "$@"; do [[ $rel == "$a" ]] && ok=1; done
    if ((ok == 0)); then echo "FAIL: $rel includes <$pat> (only $* may)"; failures=$((failures + 1)); fi
  done < <(grep -rlE "^#include <$pat" "$root")
}
only_in 'curl/' sys/http_client.cc
only_in 'git2' gitops/git_source.cc
only_in 'sqlite3' gitops/state_store.cc
only_in 'libpq' config/conninfo.cc drivers/postgres_session.cc drivers/pgbouncer_admin.cc
echo "layering: $failures violation(s)"
((failures == 0))

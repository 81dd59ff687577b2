#!/usr/bin/env bash
# Installs what stackflip needs on Debian 12, builds it, and runs the whole
# test suite: unit tests, driver integration tests and end-to-end tests
# against real PostgreSQL 15 and PowerDNS started on loopback.
# With STACKFLIP_ASAN=1 it then builds everything again with AddressSanitizer
# + UndefinedBehaviorSanitizer (build-asan) and runs the same suite under
# them: the second CI step (it roughly doubles the time; tests/fuzz/README.md).
# Run as root (PostgreSQL itself runs as the postgres user).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)"
(cd build && ctest --output-on-failure -j2)

if [[ ${STACKFLIP_ASAN:-0} == 1 ]]; then
  cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSTACKFLIP_SANITIZE=ON \
    -DSTACKFLIP_BENCH=OFF >/dev/null
  cmake --build build-asan -j"$(nproc)"
  # Any report stops the program; the only suppression is for RapidJSON's own
  # headers (tests/sanitizers/ubsan.supp says why).
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:suppressions=$PWD/tests/sanitizers/ubsan.supp
  export LSAN_OPTIONS=suppressions=$PWD/tests/sanitizers/lsan.supp
  (cd build-asan && ctest --output-on-failure -j2)
fi

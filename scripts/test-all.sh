#!/usr/bin/env bash
# Installs what stackflip needs on Debian 12, builds it, and runs the whole
# test suite: unit tests, driver integration tests and end-to-end tests
# against real PostgreSQL 15 and PowerDNS started on loopback.
# Run as root (PostgreSQL itself runs as the postgres user).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)"
cd build
ctest --output-on-failure -j2

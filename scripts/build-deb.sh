#!/usr/bin/env bash
# Builds stackflip's Debian package on Debian 12: installs what the build
# needs (scripts/install-deps.sh --build), builds the binary, the man page
# and the completion without the tests (in build-deb/), and runs
# `cpack -G DEB`. Prints the package's path; install it with
#   apt install ./build-deb/stackflip_<version>_amd64.deb
# (README "Install"). The CI examples in examples/ci run it when they build
# the package in the job. Run as root, or with sudo for the install step.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh --build
cmake -S . -B build-deb -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 -g1 -DNDEBUG" \
  -DSTACKFLIP_TESTS=OFF -DSTACKFLIP_BENCH=OFF >/dev/null
cmake --build build-deb -j"$(nproc)"
(cd build-deb && cpack -G DEB >/dev/null)
ls "$PWD"/build-deb/stackflip_*.deb

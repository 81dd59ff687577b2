#!/usr/bin/env bash
# Install everything stackflip needs to build and test on Debian 12 (with
# --build: only what building it and its Debian package needs).
# Idempotent; run as root (or through sudo). Quiet: the apt output goes to a
# log file, one summary line is printed, the log tail only on failure.
#
# The servers are only used by scripts/harness.sh, which starts its own
# instances on loopback. No system PowerDNS, PostgreSQL, etcd or PgBouncer
# instance is left running or set to start at boot, so nothing holds ports
# 53/5432/8081/2379/6432.
set -euo pipefail

LOG=${INSTALL_DEPS_LOG:-${TMPDIR:-/tmp}/stackflip-install-deps.log}
# What building the binary and its Debian package takes (--build: only
# these; scripts/build-deb.sh).
BUILD_PACKAGES=(
  # build tools
  g++ cmake ninja-build pkg-config git
  # libraries
  libyaml-cpp-dev libgit2-dev libcurl4-openssl-dev rapidjson-dev libspdlog-dev libfmt-dev
  libpq-dev libsqlite3-dev libcli11-dev libcpp-httplib-dev libssl-dev
  # the package (issue 18): cpack's DEB generator computes the dependencies
  # with dpkg-shlibdeps (dpkg-dev) and finds the binaries with file
  dpkg-dev file
)
PACKAGES=(
  "${BUILD_PACKAGES[@]}"
  # tests and benchmarks
  catch2 libbenchmark-dev
  # fuzzing (tests/fuzz/README.md): clang and its libFuzzer/sanitizer runtimes
  clang libclang-rt-14-dev
  # servers and tools for the harness and the e2e tests
  # (curl and python3: the harness uses them for API readiness and port checks)
  postgresql-15 postgresql-client-15 pdns-server pdns-backend-sqlite3 sqlite3 dnsutils
  procps util-linux openssh-client gpg curl python3 bc
  # jq: the example command-driver scripts parse their JSON request with it
  jq
  # openssh-server: git_transport_e2e.sh fetches over SSH from its own sshd
  openssh-server
  # etcd-server: the harness's 3-member etcd cluster (issue 13); etcd-client
  # for etcdctl, whose watch stamps lease expiries in etcd_takeover_e2e.sh
  etcd-server
  etcd-client
  # iproute2: the sites of netns_partition_e2e.sh are network namespaces
  iproute2 unbound
  # pgbouncer: the harness's PgBouncer (issue 15), for the pgbouncer driver's
  # integration tests and pgbouncer_e2e.sh
  pgbouncer
  # chromium: status_page_e2e.sh loads the `run` status page headless and
  # checks its DOM (issue 16); cmark-gfm renders the pull-request plan as
  # GitHub does, for render tests of its tables and sections
  chromium cmark-gfm
  # package_e2e.sh installs the package and checks it as an operator would
  # (issue 18): lintian, the man page (man-db), the completion as
  # bash-completion loads it, systemd-analyze verify of the units, adduser
  # for its postinst; python3-yaml reads the CI examples' jobs to run them
  lintian man-db bash-completion systemd adduser python3-yaml
)
if [[ ${1:-} == --build ]]; then
  PACKAGES=("${BUILD_PACKAGES[@]}")
elif [[ -n ${1:-} ]]; then
  echo "usage: install-deps.sh [--build]" >&2
  exit 1
fi

SUDO=()
if [[ $EUID -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "install-deps: run as root (no sudo found)" >&2; exit 1; }
  SUDO=(sudo)
fi

fail() {
  echo "install-deps: FAILED ($1); last lines of $LOG:" >&2
  tail -n 25 "$LOG" >&2
  exit 1
}

: >"$LOG"
start=$SECONDS

# Keep package scripts from starting services while we install (the usual
# policy-rc.d mechanism). Only remove the file if we created it.
own_policy=
if [[ ! -e /usr/sbin/policy-rc.d ]]; then
  printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee /usr/sbin/policy-rc.d >/dev/null
  "${SUDO[@]}" chmod +x /usr/sbin/policy-rc.d
  own_policy=1
fi
cleanup() { [[ -z $own_policy ]] || "${SUDO[@]}" rm -f /usr/sbin/policy-rc.d; }
trap cleanup EXIT

# The harness makes its own clusters; do not let postgresql-common create a
# "main" cluster on port 5432 when postgresql-15 is installed for the first time.
if [[ ! -e /etc/postgresql-common/createcluster.conf ]]; then
  "${SUDO[@]}" mkdir -p /etc/postgresql-common/createcluster.d
  echo "create_main_cluster = false" | "${SUDO[@]}" tee /etc/postgresql-common/createcluster.d/stackflip.conf >/dev/null
fi

export DEBIAN_FRONTEND=noninteractive
APT_OPTS=(-o DPkg::Lock::Timeout=300 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
"${SUDO[@]}" apt-get "${APT_OPTS[@]}" update >>"$LOG" 2>&1 || fail "apt-get update"
"${SUDO[@]}" apt-get "${APT_OPTS[@]}" install -y --no-install-recommends "${PACKAGES[@]}" >>"$LOG" 2>&1 ||
  fail "apt-get install"

# Make sure no system instance runs or starts at boot. Without systemd these
# commands may fail harmlessly; that is fine.
{
  for svc in pdns postgresql etcd pgbouncer unbound; do
    "${SUDO[@]}" invoke-rc.d "$svc" stop || true
    "${SUDO[@]}" update-rc.d "$svc" disable || true
    if command -v systemctl >/dev/null && [[ -d /run/systemd/system ]]; then
      "${SUDO[@]}" systemctl disable --now "$svc" || true
    fi
  done
  # A Debian cluster created before (e.g. 15/main) must not start on its own.
  for f in /etc/postgresql/*/*/start.conf; do
    [[ -e $f ]] || continue
    grep -qx 'manual\|disabled' "$f" || echo manual | "${SUDO[@]}" tee "$f" >/dev/null
  done
} >>"$LOG" 2>&1

missing=()
tools=(cmake ninja cpack dpkg-shlibdeps file)
[[ ${1:-} == --build ]] || tools+=(/usr/lib/postgresql/15/bin/postgres /usr/sbin/pgbouncer pdns_server
  pdnsutil dig sqlite3 /usr/bin/etcd /usr/bin/etcdctl curl python3 lintian man systemd-analyze)
for t in "${tools[@]}"; do
  command -v "$t" >/dev/null || missing+=("$t")
done
((${#missing[@]} == 0)) || fail "still missing after install: ${missing[*]}"

echo "install-deps: ok, ${#PACKAGES[@]} packages present in $((SECONDS - start)) s (log: $LOG)"

#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Builds poller and runs every test: the C suites (conformance on every
# backend, loop and transports) in a normal and a sanitizer build, an
# install into a temporary prefix used by pkg-config and CMake consumers
# (tests/install/run.sh), the Python binding's tests, and the benchmarks'
# quick smoke run (which checks results, never speed), and the Windows
# cross-build's conformance suite under Wine, and the aarch64 and i686
# cross-builds' conformance suite under qemu-user (scripts/cross-test.sh).
# Installs missing Debian packages first.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh test || exit 1

passed=0 failed=0 names=()
step() {
  local name=$1; shift
  echo "=== $name: $*"
  local t0=$SECONDS
  if "$@"; then
    passed=$((passed + 1)); echo "=== $name: ok ($((SECONDS - t0)) s)"
  else
    failed=$((failed + 1)); names+=("$name"); echo "=== $name: FAILED ($((SECONDS - t0)) s)"
  fi
}
step c-tests bash tests/run-all.sh
step install bash tests/install/run.sh
step python bash python/run-tests.sh
step bench-smoke bash bench/run.sh --quick
step windows-wine bash scripts/test-windows.sh
step cross-arch bash scripts/cross-test.sh
[ $failed -eq 0 ] || echo "failed suites: ${names[*]}"
echo "suites: $passed passed, $failed failed"
[ $failed -eq 0 ]

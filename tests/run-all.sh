#!/bin/sh
# SPDX-License-Identifier: MIT
# run-all.sh - builds poller twice (plain in build/, AddressSanitizer +
# UndefinedBehaviorSanitizer in build-asan/) and runs the whole CTest suite
# in both: every conformance test on every backend this machine has.
# Exits non-zero when a build or a test fails.  Installs nothing (the CI
# entry .ci/run installs the packages first).
#
# Usage: tests/run-all.sh [extra cmake arguments...]
#   JOBS=N     parallel build and test jobs (default 2)
#   BUILD_DIR, ASAN_BUILD_DIR   the two trees (default build, build-asan),
#              relative to the repository root
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
jobs=${JOBS:-2}
status=0

run_tree() {
  dir=$1
  shift
  echo "== configure $dir ($*)"
  cmake -S "$root" -B "$root/$dir" -DPOLLER_TESTS=ON "$@" >/dev/null
  echo "== build $dir"
  cmake --build "$root/$dir" -j "$jobs"
  echo "== test $dir"
  if ! (cd "$root/$dir" && ctest -j "$jobs" --output-on-failure); then
    echo "== FAILED: tests in $dir"
    status=1
  fi
}

# The plain tree is fortified: select_high_fd then also proves that no
# fd_set is touched past FD_SETSIZE (glibc aborts on FD_SET there;
# mbedtls#4169).
run_tree "${BUILD_DIR:-build}" -DCMAKE_C_FLAGS=-D_FORTIFY_SOURCE=2 "$@"
# halt_on_error keeps the first report; detect_leaks is the "no leaked
# memory" check of every test (forked children included).
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:halt_on_error=1:abort_on_error=0}
UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export ASAN_OPTIONS UBSAN_OPTIONS
run_tree "${ASAN_BUILD_DIR:-build-asan}" -DPOLLER_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug "$@"

if [ "$status" -eq 0 ]; then
  echo "== all tests passed (plain and sanitizer builds)"
else
  echo "== some tests FAILED"
fi
exit "$status"

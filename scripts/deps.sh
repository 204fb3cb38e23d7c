#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Installs the Debian packages poller's build, tests, examples and
# benchmarks need, when they are missing.  Idempotent; quiet when all are
# present.  Usage: scripts/deps.sh [core|test|bench|windows|cross|fuzz]
# (default: test).  cross: the cross compilers and qemu-user of
# scripts/cross-test.sh; fuzz: clang and libFuzzer for tests/fuzz's opt-in
# fuzz_ops target.
set -euo pipefail
want=${1:-test}
pkgs=(cmake make gcc pkg-config liburing-dev)
case "$want" in
  core) ;;
  test|bench)
    # python3-dev, python3-setuptools, python3-pip and python3-venv build
    # and install the Python package offline; libpython3.11-testsuite ships
    # test.test_selectors; libev, libevent and libuv are the peers the
    # benchmark compares against; wrk loads the HTTP example and time (GNU
    # time) measures its server's CPU.
    pkgs+=(python3 python3-dev libpython3-dev python3-setuptools python3-pip
           python3-venv libpython3.11-testsuite
           libev-dev libevent-dev libuv1-dev python3-uvloop wrk time valgrind) ;;
  windows)
    # The cross compiler and Wine of scripts/test-windows.sh.
    pkgs=(cmake make gcc-mingw-w64-x86-64 wine64) ;;
  cross) pkgs=(cmake make gcc-aarch64-linux-gnu gcc-i686-linux-gnu
               libc6-dev-arm64-cross libc6-dev-i386-cross qemu-user) ;;
  fuzz) pkgs+=(clang libfuzzer-14-dev) ;;
  *) echo "usage: $0 [core|test|bench|windows|cross|fuzz]" >&2; exit 2 ;;
esac
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
    missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing: ${missing[*]}"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
$SUDO apt-get update -q >/dev/null
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends \
  "${missing[@]}" >/dev/null

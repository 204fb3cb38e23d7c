#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Installs the peers the benchmarks compare against (Debian packages), and
# valgrind for the instruction counts, when they are missing.
set -euo pipefail
missing=()
for p in cmake gcc pkg-config liburing-dev libev-dev libevent-dev libuv1-dev valgrind; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
$SUDO apt-get update -q >/dev/null
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null

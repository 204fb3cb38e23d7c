#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Cross-builds poller for 64-bit Windows with mingw-w64 and runs the
# Windows conformance suite and the loop's and transports' tests
# (tests/loop) under Wine, on every Windows backend, then the demo
# (examples/demo.c, both backends, every byte checked; one test),
# printing each run's TAP lines and a closing line "N passed, N failed, N skipped"
# over all of them.  Installs gcc-mingw-w64-x86-64 and wine64 when missing
# (scripts/deps.sh windows).  A backend Wine cannot run is reported as
# skipped by the suite itself, never as passed.
#
# Environment: BUILD_DIR (default build-win), WINEPREFIX (default a
# prefix under the build directory, made at the first run, ~20 s).
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh windows || exit 1

build=${BUILD_DIR:-build-win}
wine=$(command -v wine64 || true)
[ -n "$wine" ] || wine=$(dpkg -L wine64 2>/dev/null | grep -E '/wine64$' | head -1)
if [ -z "$wine" ] || [ ! -x "$wine" ]; then
  echo "wine64 not found" >&2
  exit 1
fi
export WINEDEBUG=-all
export WINEPREFIX=${WINEPREFIX:-$PWD/$build/wineprefix}
export WINEDLLOVERRIDES="mscoree,mshtml="  # no Mono or Gecko prompts

mkdir -p "$build"
log=$build/cross-build.log
# -Werror: a warning of the cross build (the project's -Wall -Wextra)
# fails the run, even in an incremental build where the file that printed
# it is not compiled again.
cmake -S . -B "$build" -DCMAKE_TOOLCHAIN_FILE=cmake/mingw-w64-x86_64.cmake \
  -DCMAKE_C_FLAGS=-Werror -DPOLLER_TESTS=ON -DPOLLER_EXAMPLES=ON \
  >"$log" 2>&1 &&
  cmake --build "$build" -j2 >>"$log" 2>&1 || {
  cat "$log"; echo "cross-build failed" >&2; exit 1; }
if [ ! -d "$WINEPREFIX" ]; then
  "$wine" wineboot -i >/dev/null 2>&1 || true
fi

total_p=0 total_f=0 total_s=0
for exe in conformance loop/looptests; do
  for backend in afd select; do
    echo "--- ${exe#*/} on $backend (Wine)"
    out=$(timeout 600 "$wine" "$build/tests/$exe.exe" --backend "$backend" 2>&1 | tr -d '\r')
    echo "$out"
    last=$(echo "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed, [0-9]+ skipped$' | tail -1)
    if [ -z "$last" ]; then
      echo "no closing line from $exe.exe on $backend" >&2
      total_f=$((total_f + 1))
      continue
    fi
    read -r p _ f _ s _ <<<"$last"
    total_p=$((total_p + p)) total_f=$((total_f + f)) total_s=$((total_s + s))
  done
done
echo "--- demo (Wine)"
if timeout 300 "$wine" "$build/examples/demo.exe" 100 20 2>&1 | tr -d '\r'; then
  total_p=$((total_p + 1))
else
  echo "demo failed" >&2
  total_f=$((total_f + 1))
fi
# Ends this prefix's Wine server and its services (nothing else's).
"$(dirname "$wine")/wineserver" -k >/dev/null 2>&1 || true
echo "$total_p passed, $total_f failed, $total_s skipped"
[ "$total_f" -eq 0 ]

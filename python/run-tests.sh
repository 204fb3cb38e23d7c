#!/usr/bin/env bash
# Builds the extension (python/poller/_poller.so) with CMake's FindPython
# against the interpreter that runs the tests, then runs every Python test
# with unittest, on every backend usable here, and prints a table of
# passed/failed/skipped per test class.  Exit status non-zero on failure.
#
# The interpreter: $POLLER_PYTHON, else Debian's /usr/bin/python3 (which
# has python3-dev, libpython3.11-testsuite for test.test_selectors, and
# python3-uvloop), else python3 on PATH.  The build directory: $BUILD_DIR,
# else build-python.  -v lists every test.
set -euo pipefail
cd "$(dirname "$0")/.."
py=${POLLER_PYTHON:-/usr/bin/python3}
[ -x "$py" ] || py=$(command -v python3)
build=${BUILD_DIR:-build-python}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DPOLLER_PYTHON=ON \
  -DPOLLER_TESTS=OFF -DPOLLER_EXAMPLES=OFF -DPOLLER_BENCH=OFF \
  -DPOLLER_SANITIZE=OFF -DPOLLER_PYTHON_EXECUTABLE="$py" >/dev/null
cmake --build "$build" -j2 --target _poller >/dev/null
cd python
exec "$py" -m tests.run "$@"

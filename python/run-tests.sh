#!/usr/bin/env bash
# Builds the extension (python/poller/_poller*.so) with the Debian python3
# and runs every Python test with unittest, on every backend.
set -euo pipefail
cd "$(dirname "$0")/.."
py=${POLLER_PYTHON:-/usr/bin/python3}
[ -x "$py" ] || py=python3
cmake -S . -B build-python -DCMAKE_BUILD_TYPE=Release -DPOLLER_PYTHON=ON \
  -DPOLLER_TESTS=OFF -DPOLLER_EXAMPLES=OFF -DPOLLER_PYTHON_EXECUTABLE="$py" >/dev/null
cmake --build build-python -j2 --target _poller >/dev/null
cd python
"$py" -m unittest discover -s tests -t . -v 2>&1 | tail -n 25
exit "${PIPESTATUS[0]}"

#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Installs the poller package the way a user does (pip, offline, with the
# setuptools already installed) into a fresh virtual environment, then runs
# every Python test against that installed package, from outside the source
# tree: unittest, on every backend usable here, with a table of
# passed/failed/skipped per test class.  Exit status non-zero on failure.
#
# The interpreter: $POLLER_PYTHON, else Debian's /usr/bin/python3 (which
# has python3-dev, python3-setuptools, python3-venv,
# libpython3.11-testsuite for test.test_selectors, and python3-uvloop),
# else python3 on PATH.  The virtual environment is created with
# --system-site-packages, so the standard library's test package is found.
# The work directory: $BUILD_DIR, else build-python.  -v lists every test.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
py=${POLLER_PYTHON:-/usr/bin/python3}
[ -x "$py" ] || py=$(command -v python3)
build=${BUILD_DIR:-build-python}
mkdir -p "$build"
build=$(cd "$build" && pwd)
venv=$build/venv
unset PYTHONPATH
rm -rf "$venv"
"$py" -m venv --system-site-packages "$venv"
# Offline: no index, no build isolation (the system's setuptools builds).
"$venv/bin/python" -m pip install --quiet --no-index --no-build-isolation \
  --no-deps "$root/python"
cd "$build"
exec "$venv/bin/python" "$root/python/tests/run.py" --installed "$@"

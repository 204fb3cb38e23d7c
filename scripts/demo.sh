#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Builds poller and runs the demo: a server on 127.0.0.1 driven by real
# connections through every backend available here.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh core
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j2 --target demo >/dev/null
./build/examples/demo "$@"

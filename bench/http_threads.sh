#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# bench/http_threads.sh - one loop per thread: examples/http_server with 1
# and with 2 threads (SO_REUSEPORT, one listening socket and one loop per
# thread) under wrk on 127.0.0.1, runs interleaved, medians with min and
# max and the ratio of the medians.  Bounded: each server stops by itself
# after the run.  Speed is not asserted.
#
#   bash bench/http_threads.sh [runs] [seconds] [connections]
#   (defaults: 5 runs of 5 s, 100 connections, wrk -t2)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
secs=${2:-5}
conns=${3:-100}
command -v wrk >/dev/null || { echo "wrk is not installed"; exit 1; }
build=build-bench-http
cmake -S . -B $build -DCMAKE_BUILD_TYPE=Release -DPOLLER_TESTS=OFF >/dev/null
cmake --build $build -j2 --target http_server >/dev/null
srv=$build/examples/http_server
# Below the ephemeral range (32768 and up), where client sockets could
# hold the port.
port=$((21000 + $$ % 9000))
out=$(mktemp)
trap 'rm -f "$out" "$out.cpu"' EXIT
for r in $(seq "$runs"); do
  for t in 1 2; do
    # The server's CPU time (user + system) goes to $out.cpu: with wrk on
    # the same 2 cores, CPU per request says whether a second loop costs
    # anything, which requests/s alone cannot when the cores are full.
    /usr/bin/time -f "%U %S" -o "$out.cpu" \
      "$srv" 127.0.0.1:$port $((secs + 3)) $t >/dev/null &
    pid=$!
    # Wait until it answers (bounded).
    for _ in $(seq 50); do
      curl -s -o /dev/null http://127.0.0.1:$port/ && break
      sleep 0.1
    done
    rps=$(wrk -t2 -c"$conns" -d"${secs}s" http://127.0.0.1:$port/ |
      awk '/Requests\/sec/ {print $2}')
    wait $pid || true
    cpu=$(awk '{print $1 + $2}' "$out.cpu")
    echo "$t $rps $(awk -v c="$cpu" -v r="$rps" -v s="$secs" \
      'BEGIN { printf "%.2f", c * 1e6 / (r * s) }')" >>"$out"
    port=$((port + 1))
  done
done
echo "| server | runs | median requests/s | min | max | ratio to 1 thread | server CPU us/request (median) |"
echo "|---|---|---|---|---|---|---|"
awk -v runs="$runs" '
  { v[$1, ++n[$1]] = $2; u[$1, n[$1]] = $3 }
  END {
    for (t = 1; t <= 2; t++) {
      m = n[t]
      for (i = 1; i <= m; i++) a[i] = v[t, i]
      for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++)
        if (a[j] < a[i]) { x = a[i]; a[i] = a[j]; a[j] = x }
      med[t] = (m % 2) ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
      lo[t] = a[1]; hi[t] = a[m]
      for (i = 1; i <= m; i++) a[i] = u[t, i]
      for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++)
        if (a[j] < a[i]) { x = a[i]; a[i] = a[j]; a[j] = x }
      cpu[t] = (m % 2) ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
    }
    for (t = 1; t <= 2; t++) {
      s = (t > 1) ? "s" : ""
      printf "| %d loop%s, %d thread%s | %d | %.0f | %.0f | %.0f | %.2f | %.2f |\n", t, s, t, s, n[t], med[t], lo[t], hi[t], med[t] / med[1], cpu[t]
    }
  }' "$out"

#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# bench/wall.sh - wall time of the pipes benchmark (run only) for a few
# drivers, interleaved: each round runs every driver once (S samples of I
# iterations each, the pipes benchmark's own median), the driver order
# rotating from round to round, so that a slow phase of a shared machine
# hits every driver alike.  Prints, per driver, the median over the
# rounds of the per-round medians, their min and max, and the ratio of
# medians to the first driver.  Speed is not asserted.
#
#   bash bench/wall.sh [N] [rounds] [drivers...]
#   (defaults: N = 9000, 9 rounds, raw-epoll poller:epoll poller:uring libuv)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-9000}
rounds=${2:-9}
shift 2 || true
drivers=${*:-raw-epoll poller:epoll poller:uring libuv}
bash bench/setup.sh >/dev/null
build=build-bench
cmake -S . -B $build -DCMAKE_BUILD_TYPE=Release -DPOLLER_BENCH=ON \
  -DPOLLER_TESTS=OFF -DPOLLER_EXAMPLES=OFF >/dev/null
cmake --build $build -j2 >/dev/null
exe_of() {
  case $1 in
    raw-epoll|raw-uring|poller:*) echo $build/bench/pipes-poller ;;
    *) echo $build/bench/pipes-$1 ;;
  esac
}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
set -- $drivers
count=$#
for r in $(seq "$rounds"); do
  # Rotate the order by one driver per round.
  k=$(((r - 1) % count))
  order=("${@:k+1}" "${@:1:k}")
  for d in "${order[@]}"; do
    line=$($(exe_of "$d") --driver "$d" --n "$n" --samples 15 --iters 10)
    # "name n variant median min p90 reads syscalls"
    echo "$d $(echo "$line" | awk '{print $4}')" >>"$out"
  done
done
echo "Pipes, run only, N = $n, $rounds interleaved rounds (each a median of"
echo "15 samples of 10 iterations); load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| driver | median of round medians, us/iter | min | max | ratio to $1 |"
echo "|---|---|---|---|---|"
awk -v list="$drivers" '
  { v[$1, ++c[$1]] = $2 }
  END {
    nd = split(list, d, " ")
    for (i = 1; i <= nd; i++) {
      m = c[d[i]]
      for (j = 1; j <= m; j++) a[j] = v[d[i], j]
      for (j = 1; j <= m; j++) for (k = j + 1; k <= m; k++)
        if (a[k] < a[j]) { x = a[j]; a[j] = a[k]; a[k] = x }
      med[i] = (m % 2) ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
      lo[i] = a[1]; hi[i] = a[m]
    }
    for (i = 1; i <= nd; i++)
      printf "| %s | %.1f | %.1f | %.1f | %.2f |\n", d[i], med[i], lo[i], hi[i], med[i] / med[1]
  }' "$out"

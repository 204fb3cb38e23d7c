#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# bench/run.sh - builds the benchmarks and runs the pipes benchmark for
# every driver, printing markdown tables with ratios to the raw epoll loop
# of the same run, and user-space instruction counts from callgrind.
#
#   bench/run.sh --quick   CI smoke (< 60 s): every driver runs and its
#                          read counts are checked; speed is not asserted
#   bench/run.sh           full run (a few minutes), writes bench/RESULTS.md
set -euo pipefail
cd "$(dirname "$0")/.."
quick=0
[ "${1:-}" = "--quick" ] && quick=1
bash bench/setup.sh
build=build-bench
cmake -S . -B $build -DCMAKE_BUILD_TYPE=Release -DPOLLER_BENCH=ON \
  -DPOLLER_TESTS=OFF -DPOLLER_EXAMPLES=OFF >/dev/null
cmake --build $build -j2 >/dev/null
B=$build/bench

drivers="raw-epoll poller:epoll poller:uring poller:poll poller:select libev libevent libuv"
# The raw multishot io_uring loop is built where liburing is found: the
# floor for poller:uring (its ratio is taken against raw epoll here, and
# against it in RESULTS.md).
raw_uring=""
if $B/pipes-poller --driver raw-uring --n 1 --samples 1 --iters 1 \
  --active 1 --writes 1 >/dev/null 2>&1; then
  raw_uring=raw-uring
  drivers="$drivers raw-uring"
fi
exe_of() {
  case $1 in
    raw-epoll|raw-uring|poller:*) echo $B/pipes-poller ;;
    *) echo $B/pipes-$1 ;;
  esac
}
if [ $quick = 1 ]; then
  sizes="100 1000"; samples=5; iters=3
else
  sizes="100 1000 9000"; samples=25; iters=10
fi

out=$(mktemp)
trap 'rm -f "$out" "$out.echo"' EXIT
for variant in run setup+run; do
  flag=""; [ $variant = setup+run ] && flag=--setup
  for n in $sizes; do
    for d in $drivers; do
      # select's sets end at the highest fd: 9,000 pairs are fine, but
      # O(highest fd) per wait makes it slow; it still runs.
      $(exe_of $d) --driver $d --n $n --samples $samples --iters $iters $flag >>"$out"
    done
  done
done

table() {
  awk -v variant="$1" '
    $3 == variant && $4 != "skipped:" {
      key = $2; if ($1 == "raw-epoll") base[key] = $4
      row[NR] = $0
    }
    END {
      print "| driver | N | median us/iter | min | p90 | ratio to raw epoll | syscalls/iter |"
      print "|---|---|---|---|---|---|---|"
      for (i in row) {
        split(row[i], f, " ")
        ratio = base[f[2]] > 0 ? sprintf("%.2f", f[4] / base[f[2]]) : "-"
        sc = f[8] < 0 ? "-" : f[8]
        printf "| %s | %s | %s | %s | %s | %s | %s |\n", f[1], f[2], f[4], f[5], f[6], ratio, sc
      }
    }' "$out" | (read -r h; read -r s; echo "$h"; echo "$s"; sort -t'|' -k3,3n -k2,2)
}

echo "## Pipes, run only (A=100 active, W=100 writes per iteration)"
table run
echo
echo "## Pipes, setup+run (every watcher changed and restored before each iteration)"
table setup+run

echo_table() {
  local secs=$1; shift
  echo "| driver | connections | requests/s | ratio to raw epoll | server CPU us/request |"
  echo "|---|---|---|---|---|"
  for c in "$@"; do
    local base=""
    for d in raw-epoll poller:epoll poller:uring poller:poll libev libevent libuv; do
      case $d in raw-epoll|poller:*) exe=$B/echo-poller ;; *) exe=$B/echo-$d ;; esac
      line=$($exe --driver $d --conns $c --seconds $secs)
      case "$line" in *skipped*) continue ;; esac
      set -- $line
      [ -z "$base" ] && base=$3
      awk -v d="$1" -v c="$2" -v r="$3" -v b="$base" -v cpu="$4" 'BEGIN {
        printf "| %s | %s | %s | %.2f | %s |\n", d, c, r, r / b, cpu }'
    done
  done
}

cg_table() {
  echo "| driver | instructions per iteration | per dispatched event | ratio to raw epoll |"
  echo "|---|---|---|---|"
  local base=""
  for d in raw-epoll poller:epoll poller:uring $raw_uring libuv libev libevent; do
    valgrind --tool=callgrind --callgrind-out-file=/dev/null --collect-atstart=no \
      --toggle-collect=run_samples $(exe_of $d) --driver $d --n 1000 \
      --samples 1 --iters 10 >/dev/null 2>"$out.cg" || true
    ir=$(awk '/Collected/ {print $4}' "$out.cg")
    [ -z "$ir" ] && continue
    [ -z "$base" ] && base=$ir
    awk -v d="$d" -v ir="$ir" -v b="$base" 'BEGIN {
      printf "| %s | %.0f | %.1f | %.2f |\n", d, ir / 10, ir / 2000, ir / b }'
  done
  rm -f "$out.cg"
}
echo
echo "## Echo over 127.0.0.1 TCP (64-byte ping-pong, load client in its own process)"
if [ $quick = 1 ]; then echo_table 0.5 1 100 > "$out.echo"; else echo_table 2 1 100 1000 > "$out.echo"; fi
cat "$out.echo"

if command -v valgrind >/dev/null; then
  echo
  echo "## User-space instructions (callgrind), pipes run only, N=1000, 10 iterations"
  echo "Includes the benchmark's own read/write calls (the same for every driver)."
  cg_table
fi

if [ $quick = 0 ]; then
  {
    echo "# Benchmark results"
    echo
    echo "Machine: $(uname -sr), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores; $(date -u +%Y-%m-%d)."
    echo "Command: \`bash bench/run.sh\` (shared, noisy machine: compare ratios within one run)."
    echo
    echo "## Pipes, run only (A=100 active, W=100 writes per iteration)"
    table run
    echo
    echo "## Pipes, setup+run (every watcher changed and restored before each iteration)"
    table setup+run
    echo
    echo "## Echo over 127.0.0.1 TCP (64-byte ping-pong, load client in its own process)"
    cat "$out.echo"
    if command -v valgrind >/dev/null; then
      echo
      echo "## User-space instructions (callgrind), pipes run only, N=1000, 10 iterations"
      echo "Includes the benchmark's own read/write calls (the same for every driver)."
      cg_table
    fi
  } > bench/RESULTS.tables.md
  rm -f "$out.echo"
  echo "tables written to bench/RESULTS.tables.md"
fi

#!/bin/sh
# SPDX-License-Identifier: MIT
# check-headers.sh - every public header compiles on its own, as C++
# (c++11, -Wall -Wextra -Werror) and as strict C (c99 and c11, -pedantic
# -Werror), so a C++ program or a strict C build can include it.  A C++
# compiler that is missing makes the C++ part a skip (exit 77), never a
# silent pass.
#
# Usage: check-headers.sh INCLUDE_DIR [CC] [CXX]
set -u

inc=${1:?usage: check-headers.sh INCLUDE_DIR [CC] [CXX]}
cc=${2:-${CC:-cc}}
cxx=${3:-${CXX:-g++}}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
status=0
skipped=0

for h in "$inc"/*.h; do
  name=$(basename "$h")
  # Each header first, alone: it must pull in what it needs.
  printf '#include "%s"\nint main(void) { return 0; }\n' "$name" >"$tmp/t.c"
  printf '#include "%s"\nint main() { return 0; }\n' "$name" >"$tmp/t.cc"
  for std in c99 c11; do
    if "$cc" -std=$std -pedantic -Wall -Wextra -Werror -D_POSIX_C_SOURCE=200809L \
        -I"$inc" -c "$tmp/t.c" -o "$tmp/t.o" 2>"$tmp/err"; then
      echo "ok   $name as C ($std -pedantic)"
    else
      echo "FAIL $name as C ($std -pedantic)"
      cat "$tmp/err"
      status=1
    fi
  done
  if command -v "$cxx" >/dev/null 2>&1; then
    if "$cxx" -std=c++11 -Wall -Wextra -Werror -x c++ -I"$inc" -c "$tmp/t.cc" \
        -o "$tmp/t.o" 2>"$tmp/err"; then
      echo "ok   $name as C++ (c++11)"
    else
      echo "FAIL $name as C++ (c++11)"
      cat "$tmp/err"
      status=1
    fi
  else
    skipped=1
  fi
done

if [ "$status" -eq 0 ] && [ "$skipped" -eq 1 ]; then
  echo "SKIP: no C++ compiler ($cxx); the C++ checks did not run"
  exit 77
fi
exit "$status"

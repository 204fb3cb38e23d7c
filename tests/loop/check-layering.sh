#!/bin/sh
# SPDX-License-Identifier: MIT
# check-layering.sh - the loop knows nothing of transports, and the
# transports keep no process-wide lock (a lock held by another thread at
# fork deadlocks the child).  Checked on the built static library (the
# symbols each object uses) and on the sources (no include of the
# transport layer from the loop, so no include cycle).
#
# Usage: check-layering.sh LIBPOLLER_A SOURCE_DIR
set -u
lib=${1:?usage: check-layering.sh LIBPOLLER_A SOURCE_DIR}
src=${2:?usage: check-layering.sh LIBPOLLER_A SOURCE_DIR}
if ! command -v nm >/dev/null 2>&1; then
  echo "SKIP: nm not found"
  exit 77
fi
status=0
undef() { nm -A "$lib" 2>/dev/null | grep "$1.o:" | awk '$2 == "U" { print $3 }
  $3 == "U" { print $4 }'; }

bad=$(undef loop.c | grep -i transport)
if [ -n "$bad" ]; then
  echo "FAIL: loop.c calls into the transport layer: $bad"
  status=1
else
  echo "ok   loop.c uses no transport symbol"
fi
bad=$(undef transport.c | grep -E '^pthread_(mutex|rwlock|spin)')
if [ -n "$bad" ]; then
  echo "FAIL: transport.c takes a process-wide lock: $bad"
  status=1
else
  echo "ok   transport.c takes no lock"
fi
if grep -n '#include.*transport' "$src/src/loop.c"; then
  echo "FAIL: src/loop.c includes a transport header (include cycle)"
  status=1
else
  echo "ok   src/loop.c includes no transport header"
fi
exit "$status"

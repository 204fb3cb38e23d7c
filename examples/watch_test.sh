#!/bin/sh
# SPDX-License-Identifier: MIT
# watch_test.sh - examples/watch leaves other people's files alone:
#  1. `watch FILE 1` only observes FILE: its content, size, inode, mtime
#     and ctime are the same afterwards, and nothing appears next to it;
#  2. `watch` (the self-test) works in a directory of its own under
#     $TMPDIR and removes it at the end.
# Usage: watch_test.sh path/to/watch
set -eu
watch=$1
dir=$(mktemp -d "${TMPDIR:-/tmp}/poller-watch-test.XXXXXX")
trap 'rm -rf "$dir"' EXIT
mkdir "$dir/user" "$dir/tmp"
f=$dir/user/notes.txt
printf 'the user data\n' >"$f"
before=$(stat -c '%i %s %y %z' "$f")
"$watch" "$f" 1 >"$dir/out" 2>&1 || { cat "$dir/out"; exit 1; }
after=$(stat -c '%i %s %y %z' "$f")
cat "$dir/out"
if [ "$before" != "$after" ] || [ "$(cat "$f")" != "the user data" ]; then
  echo "FAILED: watch changed the file it was asked to observe"
  echo "  before: $before"
  echo "  after:  $after"
  exit 1
fi
if [ "$(ls -A "$dir/user")" != "notes.txt" ]; then
  echo "FAILED: watch left files next to the observed one: $(ls -A "$dir/user")"
  exit 1
fi
TMPDIR=$dir/tmp "$watch" >"$dir/out" 2>&1 || { cat "$dir/out"; exit 1; }
cat "$dir/out"
if [ -n "$(ls -A "$dir/tmp")" ]; then
  echo "FAILED: the self-test left $(ls -A "$dir/tmp") in its TMPDIR"
  exit 1
fi
echo "ok: the observed file is untouched, the self-test cleaned up"

#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# tests/install/run.sh - proves that poller installs into a prefix and can
# be used from there, as the README's "Build, install and link" says:
#   1. configure with the default prefix, then `cmake --install --prefix P`
#      (so poller.pc must follow the install-time prefix, not /usr/local);
#   2. the files: headers, libpoller.a, libpoller.so -> .so.MAJOR ->
#      .so.MAJOR.MINOR.PATCH with soname libpoller.so.MAJOR, poller.pc,
#      the CMake package; one version everywhere (poller.h, poller.pc,
#      pollerConfigVersion.cmake, the file name, the soname, run time);
#   3. the shared library exports exactly the functions the installed
#      headers declare (nm -D), none of the internal poller__ symbols, and
#      each of them has an entry in docs/api/;
#   4. consumers built with pkg-config (C shared and static, C++), the
#      README's example and the guide's programs (docs/guide.md: C with
#      pkg-config, Python with pip into a venv), built and run;
#   5. consumers built with find_package(poller) (poller::poller and
#      poller::poller_static) and with add_subdirectory, built and run;
#   6. the prefix moved elsewhere: pkg-config and find_package still work;
#   7. the tree refers to no document its users do not have; LICENSE.
# Everything happens in a temporary directory, removed at the end.
# Exits 0 when every check passed.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
here=$root/tests/install
jobs=${JOBS:-2}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/poller-install.XXXXXX")
server_pid=
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT

source_files() { # every file of the tree, from git when it is a clone
  if git -C "$root" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git -C "$root" ls-files
  else
    (cd "$root" && find . -type f ! -path './build*' ! -path './.git/*' |
      sed 's|^\./||')
  fi
}
failures=0
ok() { echo "ok - $*"; }
bad() { echo "not ok - $*"; failures=$((failures + 1)); }
check() { # check "name" command... : runs the command, records the result
  local name=$1; shift
  if "$@"; then ok "$name"; else bad "$name"; fi
}

# ---- 1. build and install ----
echo "# building in $tmp/build, installing into $tmp/prefix"
cmake -S "$root" -B "$tmp/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_INSTALL_PREFIX=/usr/local -DPOLLER_TESTS=OFF \
  -DPOLLER_EXAMPLES=OFF >"$tmp/configure.log" ||
  { cat "$tmp/configure.log"; exit 1; }
cmake --build "$tmp/build" -j "$jobs" >"$tmp/build.log" ||
  { cat "$tmp/build.log"; exit 1; }
P=$tmp/prefix
cmake --install "$tmp/build" --prefix "$P" >"$tmp/install.log" ||
  { cat "$tmp/install.log"; exit 1; }

libdir=$(find "$P" -name 'libpoller.so' -printf '%h\n' | head -n 1)
[ -n "$libdir" ] || { echo "not ok - no libpoller.so under $P"; exit 1; }

# ---- 2. files and versions ----
hdr=$P/include/poller.h
ver_of() { sed -n "s/^#define POLLER_VERSION_$1 \([0-9]*\)$/\1/p" "$hdr"; }
major=$(ver_of MAJOR) minor=$(ver_of MINOR) patch=$(ver_of PATCH)
version=$major.$minor.$patch
echo "# headers say $version"
for f in include/poller.h include/poller_loop.h include/poller_transport.h; do
  check "installed $f" test -f "$P/$f"
done
check "libpoller.a" test -f "$libdir/libpoller.a"
check "libpoller.so.$version is a file" test -f "$libdir/libpoller.so.$version"
check "libpoller.so.$major -> libpoller.so.$version" \
  test "$(readlink "$libdir/libpoller.so.$major")" = "libpoller.so.$version"
check "libpoller.so -> libpoller.so.$major" \
  test "$(readlink "$libdir/libpoller.so")" = "libpoller.so.$major"
soname=$(objdump -p "$libdir/libpoller.so.$version" | awk '$1 == "SONAME" {print $2}')
check "soname is libpoller.so.$major (is $soname)" \
  test "$soname" = "libpoller.so.$major"
check "poller.pc" test -f "$libdir/pkgconfig/poller.pc"
check "pollerConfig.cmake" test -f "$libdir/cmake/poller/pollerConfig.cmake"
check "pollerConfigVersion.cmake says $version" \
  grep -q "PACKAGE_VERSION \"$version\"" "$libdir/cmake/poller/pollerConfigVersion.cmake"
check "nothing installed outside include/ and the libdir" \
  test -z "$(cd "$P" && find . -type f | grep -v -e '^./include/' -e "^.${libdir#"$P"}/")"

export PKG_CONFIG_PATH=$libdir/pkgconfig
unset PKG_CONFIG_LIBDIR PKG_CONFIG_SYSROOT_DIR
check "pkg-config --modversion poller is $version" \
  test "$(pkg-config --modversion poller)" = "$version"
pc_inc=$(pkg-config --variable=includedir poller)
pc_lib=$(pkg-config --variable=libdir poller)
check "pkg-config's includedir is the installed one ($pc_inc)" \
  test "$(realpath "$pc_inc")" = "$(realpath "$P/include")"
check "pkg-config's libdir is the installed one ($pc_lib)" \
  test "$(realpath "$pc_lib")" = "$(realpath "$libdir")"
check "pkg-config --cflags poller names no configure-time prefix" \
  bash -c '! pkg-config --cflags --libs poller | grep -q /usr/local'

# ---- 3. exported symbols = the functions the installed headers declare ----
# Declarations: the identifier before "(" at the start of a prototype,
# after comments and preprocessor lines are removed (function pointer
# typedefs name their type "(*name)", which is not matched).
declared=$tmp/declared.txt exported=$tmp/exported.txt
cat "$P"/include/*.h | sed -e 's://.*$::' | perl -0777 -pe 's:/\*.*?\*/::gs' |
  grep -v '^#' | tr '\n' ' ' | tr ';' '\n' |
  grep -v -e '^ *typedef' -e '^ *struct [a-z_]* *{' |
  grep -oE '\bpoller_[a-z0-9_]+ *\(' | tr -d ' (' | sort -u >"$declared"
nm -D --defined-only "$libdir/libpoller.so.$version" | awk '{print $3}' |
  sed 's/@.*//' | sort -u >"$exported"
extra=$(comm -13 "$declared" "$exported")
missing=$(comm -23 "$declared" "$exported")
if [ -z "$extra" ]; then
  ok "every exported symbol ($(wc -l <"$exported")) is declared in the headers"
else
  bad "exported but not in the public headers: $(echo "$extra" | tr "\n" " ")"
fi
if [ -z "$missing" ]; then
  ok "every declared function ($(wc -l <"$declared")) is exported"
else
  bad "declared in the headers but not exported: $(echo "$missing" | tr "\n" " ")"
fi

# Every declared function has an entry in the API reference (docs/api/):
# a heading "### `type name(...)`" or an accessor line "- `type name(...)`".
undocumented=$(while read -r fn; do
  grep -qE "^(###|-) .*\b$fn\(" "$root"/docs/api/*.md || echo "$fn"
done <"$declared")
if [ -z "$undocumented" ]; then
  ok "every declared function is in docs/api/"
else
  bad "not in docs/api/*.md: $(echo "$undocumented" | tr "\n" " ")"
fi

# ---- 4. pkg-config consumers ----
cflags=(-std=c11 -Wall -Wextra -Werror)
consumer_runs() { # consumer_runs binary: runs it, checks the version it prints
  local out
  out=$("$1") && [ "$out" = "$version" ]
}
# (grep reads all of ldd's output: with pipefail, grep -q could end the
# pipeline early and fail it with ldd's SIGPIPE.)
uses_prefix_lib() { # the shared library the binary loads is the installed one
  ldd "$1" | grep "libpoller.so.$major => $(realpath "$libdir")/" >/dev/null
}
build_pc() { # build_pc dir: builds the pkg-config consumers into dir
  mkdir -p "$1"
  # shellcheck disable=SC2046
  cc "${cflags[@]}" $(pkg-config --cflags poller) "$here/consumer.c" \
    -o "$1/consumer_pc" $(pkg-config --libs poller) \
    -Wl,-rpath,"$(pkg-config --variable=libdir poller)" &&
    cc "${cflags[@]}" $(pkg-config --cflags poller) "$here/consumer.c" \
      -o "$1/consumer_pc_static" \
      $(pkg-config --static --libs poller | sed 's/-lpoller\b/-l:libpoller.a/')
}
check "pkg-config consumers build" build_pc "$tmp/pc"
check "pkg-config consumer (shared) runs and prints $version" \
  consumer_runs "$tmp/pc/consumer_pc"
check "pkg-config consumer (shared) loads the installed libpoller.so.$major" \
  uses_prefix_lib "$tmp/pc/consumer_pc"
check "pkg-config consumer (static) runs and prints $version" \
  consumer_runs "$tmp/pc/consumer_pc_static"
check "pkg-config consumer (static) does not load libpoller.so" \
  bash -c "[ -x '$tmp/pc/consumer_pc_static' ] && ! ldd '$tmp/pc/consumer_pc_static' | grep -q libpoller"

# A C++ program uses the installed headers and links the C library
# (extern "C" on every declaration); and the headers checker of the source
# tree runs on the installed copies.
cxx=$(command -v g++ || command -v c++ || command -v clang++ || true)
if [ -n "$cxx" ]; then
  build_cxx() {
    # shellcheck disable=SC2046
    "$cxx" -std=c++11 -Wall -Wextra -Werror -x c++ $(pkg-config --cflags poller) \
      "$here/consumer.c" -x none -o "$tmp/pc/consumer_cxx" \
      $(pkg-config --libs poller) -Wl,-rpath,"$libdir"
  }
  check "a C++11 consumer builds against the installed headers" build_cxx
  check "the C++ consumer runs and prints $version" \
    consumer_runs "$tmp/pc/consumer_cxx"
  if [ -f "$root/tests/headers/check-headers.sh" ]; then
    check "the installed headers pass tests/headers/check-headers.sh" \
      bash "$root/tests/headers/check-headers.sh" "$P/include" cc "$cxx"
  fi
else
  echo "# SKIP the C++ consumer: no C++ compiler (g++, c++, clang++)"
fi

# The README's short example, completed (examples/readme_example.c): it
# must accept clients and print exactly what they send, once.
readme_example() {
  local bin=$tmp/pc/readme_example out=$tmp/readme.out port
  # shellcheck disable=SC2046
  cc "${cflags[@]}" $(pkg-config --cflags poller) \
    "$root/examples/readme_example.c" -o "$bin" $(pkg-config --libs poller) \
    -Wl,-rpath,"$libdir" || return 1
  "$bin" >"$out" 2>&1 &
  server_pid=$!
  for _ in $(seq 300); do
    grep -q '^listening on' "$out" && break
    sleep 0.1
  done
  port=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$out")
  [ -n "$port" ] || { cat "$out"; return 1; }
  # Two clients at once (the first stays connected while the second
  # writes), then a third after both closed.
  exec 3<>"/dev/tcp/127.0.0.1/$port"
  exec 4<>"/dev/tcp/127.0.0.1/$port"
  printf 'first client\n' >&3
  printf 'second client\n' >&4
  exec 4>&-
  printf 'first client again\n' >&3
  exec 3>&-
  exec 3<>"/dev/tcp/127.0.0.1/$port"
  printf 'third client\n' >&3
  exec 3>&-
  for _ in $(seq 300); do
    [ "$(wc -l <"$out")" -ge 5 ] && break
    sleep 0.1
  done
  # Give a spinning server (the old example printed every readiness
  # report) a moment to show itself, then look at the whole output.
  sleep 0.5
  kill -0 "$server_pid" || { cat "$out"; return 1; }
  kill "$server_pid"; wait "$server_pid" 2>/dev/null || true
  server_pid=
  local want got
  want=$(printf '%s\n' "first client" "first client again" "listening on 127.0.0.1:$port" "second client" "third client" | sort)
  got=$(sort "$out")
  [ "$got" = "$want" ] || { echo "# got:"; sed 's/^/#   /' "$out"; return 1; }
  # The first client's lines in the order it sent them.
  [ "$(grep '^first' "$out" | tr '\n' '|')" = "first client|first client again|" ]
}
check "the README's example (examples/readme_example.c) accepts, reads, prints once" \
  readme_example
# The README's "A short example" code block is the part of
# examples/readme_example.c between its two marker comments.
readme_shows_example() {
  diff <(sed -n '/README.s example starts here/,/README.s example ends here/p' \
           "$root/examples/readme_example.c" | sed '1d;$d') \
       <(awk '/^## A short example/ {s = 1; next}
              s == 1 && /^```c$/ {s = 2; next}
              s == 2 && /^```$/ {exit}
              s == 2' "$root/README.md")
}
check "the README's short example is examples/readme_example.c's serve()" \
  readme_shows_example

# The guide's programs (docs/guide.md), each the code block after a
# "<!-- guide-test: NAME -->" line, built against the installed prefix.
guide_extract() { # guide_extract NAME > file
  awk -v name="$1" '$0 == "<!-- guide-test: " name " -->" {s = 1; next}
                    s == 1 && /^```/ {s = 2; next}
                    s == 2 && /^```$/ {exit}
                    s == 2' "$root/docs/guide.md"
}
wait_for_line() { # wait_for_line file regex: up to 30 s
  for _ in $(seq 300); do
    grep -qE "$2" "$1" && return 0
    sleep 0.1
  done
  cat "$1"
  return 1
}
echo_roundtrip() { # echo_roundtrip port: one line out, the same line back
  local line
  exec 3<>"/dev/tcp/127.0.0.1/$1" || return 1
  printf 'hello, echo\n' >&3
  IFS= read -r -t 30 line <&3 || true
  exec 3>&-
  [ "$line" = "hello, echo" ] || { echo "# echoed: '$line'"; return 1; }
}
guide_hello() {
  mkdir -p "$tmp/guide"
  guide_extract hello.c >"$tmp/guide/hello.c"
  # shellcheck disable=SC2046
  cc "${cflags[@]}" "$tmp/guide/hello.c" $(pkg-config --cflags --libs poller) \
    -Wl,-rpath,"$libdir" -o "$tmp/guide/hello" || return 1
  [ "$(echo hi | "$tmp/guide/hello" | tail -n 1)" = "stdin is readable" ]
}
guide_echo_c() {
  local out=$tmp/guide/echo_c.out port
  mkdir -p "$tmp/guide"
  guide_extract echo.c >"$tmp/guide/echo.c"
  # shellcheck disable=SC2046
  cc "${cflags[@]}" "$tmp/guide/echo.c" $(pkg-config --cflags --libs poller) \
    -Wl,-rpath,"$libdir" -o "$tmp/guide/echo" || return 1
  "$tmp/guide/echo" 127.0.0.1:0 >"$out" 2>&1 &
  server_pid=$!
  wait_for_line "$out" '^echo server on ' || return 1
  port=$(sed -n 's/^echo server on 127\.0\.0\.1:\([0-9]*\) .*/\1/p' "$out")
  echo_roundtrip "$port" && echo_roundtrip "$port"
  local rc=$?
  kill "$server_pid"; wait "$server_pid" 2>/dev/null || true
  server_pid=
  return $rc
}
# The Python echo server runs on the package installed as the guide says:
# a virtual environment (with the system's site packages, for setuptools)
# and pip, offline, from the root of the tree; the server runs from
# outside the tree.
guide_echo_py() {
  local out=$tmp/guide/echo_py.out port py venv=$tmp/venv
  mkdir -p "$tmp/guide"
  py=${POLLER_PYTHON:-/usr/bin/python3}
  [ -x "$py" ] || py=$(command -v python3)
  # A copy of the files a clone has, so no build left in python/ by an
  # earlier run is reused.
  mkdir -p "$tmp/clone"
  (cd "$root" && source_files | tar -cf - -T -) | tar -xf - -C "$tmp/clone" ||
    return 1
  "$py" -m venv --system-site-packages "$venv" &&
    (cd "$tmp/clone" && env -u PYTHONPATH "$venv/bin/python" -m pip install \
      --quiet --no-index --no-build-isolation --no-deps ./python) \
      >"$tmp/pip.log" 2>&1 || { cat "$tmp/pip.log"; return 1; }
  guide_extract echo.py >"$tmp/guide/echo.py"
  (cd "$tmp/guide" && exec env -u PYTHONPATH "$venv/bin/python" echo.py 0) \
    >"$out" 2>&1 &
  server_pid=$!
  wait_for_line "$out" '^echo server on ' || return 1
  port=$(sed -n 's/^echo server on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$out")
  echo_roundtrip "$port" && echo_roundtrip "$port"
  local rc=$?
  kill "$server_pid"; wait "$server_pid" 2>/dev/null || true
  server_pid=
  return $rc
}
check "the guide's hello.c builds and sees stdin readable" guide_hello
check "the guide's echo.c builds and echoes" guide_echo_c
check "the guide's echo.py echoes (package installed with pip into a venv)" guide_echo_py

# ---- 5. find_package consumers ----
build_cmake() { # build_cmake builddir: configures and builds tests/install/cmake
  cmake -S "$here/cmake" -B "$1" -DCMAKE_PREFIX_PATH="$2" \
    -DPOLLER_EXPECT_VERSION="$version" >"$1.log" 2>&1 &&
    cmake --build "$1" -j "$jobs" >>"$1.log" 2>&1 ||
    { cat "$1.log"; return 1; }
}
check "find_package(poller $version) consumers configure and build" \
  build_cmake "$tmp/cm" "$P"
check "poller::poller consumer runs and prints $version" \
  consumer_runs "$tmp/cm/consumer_shared"
check "poller::poller consumer loads the installed libpoller.so.$major" \
  uses_prefix_lib "$tmp/cm/consumer_shared"
check "poller::poller_static consumer runs and prints $version" \
  consumer_runs "$tmp/cm/consumer_static"

# add_subdirectory: the same target names from a source tree.
build_subdir() {
  cmake -S "$here/subdir" -B "$tmp/sub" -DPOLLER_SOURCE_DIR="$root" \
    >"$tmp/sub.log" 2>&1 &&
    cmake --build "$tmp/sub" -j "$jobs" >>"$tmp/sub.log" 2>&1 ||
    { cat "$tmp/sub.log"; return 1; }
}
check "add_subdirectory(poller) consumers build" build_subdir
check "the add_subdirectory poller::poller consumer runs" \
  consumer_runs "$tmp/sub/consumer_shared"
check "the add_subdirectory poller::poller_static consumer runs" \
  consumer_runs "$tmp/sub/consumer_static"

# ---- 6. the prefix moved ----
mv "$P" "$tmp/moved"
P=$tmp/moved
libdir=$P${libdir#"$tmp/prefix"}
export PKG_CONFIG_PATH=$libdir/pkgconfig
check "moved prefix: pkg-config's includedir follows ($(pkg-config --variable=includedir poller))" \
  test "$(realpath "$(pkg-config --variable=includedir poller)")" = "$(realpath "$P/include")"
check "moved prefix: pkg-config consumers build" build_pc "$tmp/pc2"
check "moved prefix: pkg-config consumer loads the moved library" \
  uses_prefix_lib "$tmp/pc2/consumer_pc"
check "moved prefix: find_package consumers build" build_cmake "$tmp/cm2" "$P"
check "moved prefix: poller::poller consumer runs" \
  consumer_runs "$tmp/cm2/consumer_shared"

# ---- 7. the source tree stands alone ----
# Nothing refers to documents a user of the repository does not have (the
# team's notes, machine paths); a public source is cited instead.
# The pattern is spelled in pieces so that this file does not match it.
private_pattern='\.\./sha''red|sha''red/docs|less''ons(\.md| [0-9F])|conformance''-cases|/wo''rk/'
private_refs() {
  (cd "$root" && source_files | xargs grep -nE "$private_pattern" 2>/dev/null)
}
refs=$(private_refs || true)
if [ -z "$refs" ]; then
  ok "no file refers to the team's notes or to machine paths"
else
  bad "files refer to documents users do not have:"
  echo "$refs" | sed 's/^/#   /'
fi
check "LICENSE is the MIT license" grep -q '^MIT License$' "$root/LICENSE"
# Every source file (C, Python, CMake, shell, templates) says its license
# in its first three lines.
unlicensed=$(cd "$root" && source_files |
  grep -E '\.(c|h|py|cmake|sh|in|toml|map|exp)$|(^|/)CMakeLists\.txt$|^\.ci/run$' |
  while read -r f; do
    head -n 3 "$f" | grep 'SPDX-License-Identifier: MIT' >/dev/null || echo "$f"
  done)
if [ -z "$unlicensed" ]; then
  ok "every source file has an SPDX-License-Identifier: MIT line"
else
  bad "no SPDX-License-Identifier line: $(echo "$unlicensed" | tr "\n" " ")"
fi

if [ "$failures" -eq 0 ]; then
  echo "# install: all checks passed"
else
  echo "# install: $failures check(s) FAILED"
fi
[ "$failures" -eq 0 ]

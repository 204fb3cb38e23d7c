# SPDX-License-Identifier: MIT
# mingw-w64-x86_64.cmake - cross-builds poller for 64-bit Windows with the
# mingw-w64 GCC (Debian: gcc-mingw-w64-x86-64).  scripts/test-windows.sh
# uses it and runs the result under Wine:
#   cmake -S . -B build-win -DCMAKE_TOOLCHAIN_FILE=cmake/mingw-w64-x86_64.cmake
set(CMAKE_SYSTEM_NAME Windows)
set(CMAKE_SYSTEM_PROCESSOR x86_64)
set(POLLER_MINGW_TRIPLE x86_64-w64-mingw32)
# The POSIX threading flavour of the compiler when it is installed (it
# provides winpthreads for the tests' threads), else the default one.
find_program(POLLER_MINGW_CC NAMES ${POLLER_MINGW_TRIPLE}-gcc-posix
                                   ${POLLER_MINGW_TRIPLE}-gcc)
set(CMAKE_C_COMPILER ${POLLER_MINGW_CC})
set(CMAKE_RC_COMPILER ${POLLER_MINGW_TRIPLE}-windres)
set(CMAKE_FIND_ROOT_PATH /usr/${POLLER_MINGW_TRIPLE})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
# Programs run under Wine from the build tree: link the compiler's
# runtime statically, so no DLL of the toolchain has to be found.
set(CMAKE_EXE_LINKER_FLAGS_INIT "-static")

# SPDX-License-Identifier: MIT
"""Builds the poller package: the extension poller._poller, compiled from
python/_poller.c and the C library's sources (src/, include/ one directory
up, linked in statically), and the pure-Python modules of python/poller/.

    pip install --no-build-isolation ./python      (from the repository root)

Needs a C compiler, the interpreter's headers (Debian: python3-dev) and
setuptools (Debian: python3-setuptools); nothing is downloaded.  pip builds
a local directory in place (pip >= 21.3), so the C library's sources one
directory up are found.  The io_uring backend is compiled in when
liburing's header is there (Debian: liburing-dev), kqueue where
<sys/event.h> is.  The version is the C library's (include/poller.h).
"""
import os
import re
import sys
import sysconfig

from setuptools import Extension, setup

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
os.chdir(HERE)  # setuptools wants paths relative to setup.py


def rel(*parts):
    return os.path.relpath(os.path.join(ROOT, *parts), HERE)


def version():
    """MAJOR.MINOR.PATCH from include/poller.h."""
    with open(os.path.join(ROOT, "include", "poller.h")) as f:
        text = f.read()
    nums = [re.search(rf"#define POLLER_VERSION_{k}\s+(\d+)", text).group(1)
            for k in ("MAJOR", "MINOR", "PATCH")]
    return ".".join(nums)


def header_exists(name):
    dirs = ["/usr/include", "/usr/local/include",
            sysconfig.get_config_var("INCLUDEDIR") or ""]
    multiarch = sysconfig.get_config_var("MULTIARCH")
    if multiarch:
        dirs.append(os.path.join("/usr/include", multiarch))
    return any(os.path.exists(os.path.join(d, name)) for d in dirs if d)


if not os.path.exists(os.path.join(ROOT, "src", "poller.c")):
    sys.exit("setup.py: the C library's sources (../src, ../include) are "
             "missing: install from a clone of the repository with "
             "`pip install --no-build-isolation ./python`")

def core_sources():
    """The C library's sources every build compiles: the first
    `set(POLLER_SOURCES ...)` of the top-level CMakeLists.txt, so this build
    cannot miss a file added there.  The optional backends are added below,
    as CMake adds them."""
    with open(os.path.join(ROOT, "CMakeLists.txt")) as f:
        m = re.search(r"set\(POLLER_SOURCES\s+([^)]*)\)", f.read())
    if not m:
        sys.exit("setup.py: no set(POLLER_SOURCES ...) in CMakeLists.txt")
    return [rel(*f.split("/")) for f in m.group(1).split()]


sources = ["_poller.c"] + core_sources()
macros, libraries = [], []
if sys.platform.startswith("linux") and header_exists("sys/epoll.h"):
    sources.append(rel("src", "backend_epoll.c"))
    macros.append(("POLLER_HAVE_EPOLL", "1"))
if header_exists("liburing.h") and os.path.exists(
        os.path.join(ROOT, "src", "backend_uring.c")):
    sources.append(rel("src", "backend_uring.c"))
    macros.append(("POLLER_HAVE_URING", "1"))
    libraries.append("uring")
if header_exists("sys/event.h") and os.path.exists(
        os.path.join(ROOT, "src", "backend_kqueue.c")):
    sources.append(rel("src", "backend_kqueue.c"))
    macros.append(("POLLER_HAVE_KQUEUE", "1"))

def headers():
    """Every header the extension's sources include: setuptools rebuilds
    only when a source or one of these `depends` is newer than the built
    extension, so without them an install over an older python/build/
    after a header changed would keep the stale extension."""
    out = []
    for d in ("include", "src"):
        for name in sorted(os.listdir(os.path.join(ROOT, d))):
            if name.endswith(".h"):
                out.append(rel(d, name))
    return out


setup(
    name="poller",
    version=version(),
    description="select/poll/epoll/io_uring/kqueue behind one API: the "
                "selectors, greenhouse and pike interfaces over libpoller",
    license="MIT",
    python_requires=">=3.8",
    packages=["poller"],
    ext_modules=[Extension(
        "poller._poller", sources,
        include_dirs=[rel("include"), rel("src")],
        depends=headers(),
        define_macros=macros,
        libraries=libraries + ["pthread"],
        extra_compile_args=["-std=gnu11"],
    )],
    zip_safe=False,
)

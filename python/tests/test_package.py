# SPDX-License-Identifier: MIT
"""The package as installed: its version is the C library's, the extension
is built for this interpreter only (its file name carries the ABI tag), and
an installed copy imports from any directory without PYTHONPATH."""
import os
import re
import subprocess
import sys
import sysconfig
import tempfile
import unittest

import poller

HERE = os.path.dirname(os.path.abspath(__file__))
HEADER = os.path.join(os.path.dirname(os.path.dirname(HERE)), "include",
                      "poller.h")
SOURCE_PACKAGE = os.path.join(os.path.dirname(HERE), "poller")


def installed():
    """Whether poller was imported from a site-packages directory (not
    from the source tree or PYTHONPATH)."""
    import site
    parent = os.path.dirname(os.path.dirname(os.path.abspath(poller.__file__)))
    dirs = site.getsitepackages() + [site.getusersitepackages()]
    return any(os.path.isdir(d) and os.path.samefile(parent, d) for d in dirs)


class Package(unittest.TestCase):
    def test_version_is_the_c_librarys(self):
        if not os.path.exists(HEADER):
            self.skipTest("include/poller.h is not next to the tests")
        with open(HEADER) as f:
            text = f.read()
        want = ".".join(
            re.search(rf"#define POLLER_VERSION_{k}\s+(\d+)", text).group(1)
            for k in ("MAJOR", "MINOR", "PATCH"))
        self.assertEqual(poller.__version__, want)
        self.assertEqual(poller._poller.__version__, want)

    def test_extension_name_carries_abi_tag(self):
        name = os.path.basename(poller._poller.__file__)
        self.assertEqual(name, "_poller" + sysconfig.get_config_var("EXT_SUFFIX"))

    def test_installed_package_imports_from_any_directory(self):
        if not installed():
            self.skipTest("poller was not imported from site-packages "
                          "(python/run-tests.sh installs it there)")
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        with tempfile.TemporaryDirectory() as d:
            r = subprocess.run(
                [sys.executable, "-c",
                 "import poller, sys; print(poller.__file__); "
                 "s = poller.DefaultSelector(); s.close()"],
                cwd=d, env=env, capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip(), poller.__file__)


if __name__ == "__main__":
    unittest.main()

# SPDX-License-Identifier: MIT
"""Runs every Python test of poller with unittest and prints, per test
class (one per backend), how many passed, failed and were skipped, with the
reasons for the skips.  Exit status 0 only when nothing failed.

Usage: python3 python/tests/run.py [-v] [--installed]
  (or python3 -m tests.run from python/, against the module CMake built
  into the source tree).  The tests import `poller` as installed (site-
  packages, PYTHONPATH): nothing here puts the source tree on sys.path.
  --installed fails unless that `poller` is an installed copy, outside the
  source tree (python/run-tests.sh installs it into a virtual environment).
"""
import collections
import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_PACKAGE = os.path.join(os.path.dirname(HERE), "poller")


class CountingResult(unittest.TextTestResult):
    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.per_class = collections.defaultdict(collections.Counter)
        self.skip_reasons = collections.defaultdict(set)

    def _cls(self, test):
        return f"{type(test).__module__.split('.')[-1]}.{type(test).__name__}"

    def addSuccess(self, test):
        super().addSuccess(test)
        self.per_class[self._cls(test)]["passed"] += 1

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self.per_class[self._cls(test)]["failed"] += 1

    def addError(self, test, err):
        super().addError(test, err)
        self.per_class[self._cls(test)]["failed"] += 1

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self.per_class[self._cls(test)]["skipped"] += 1
        self.skip_reasons[self._cls(test)].add(reason or "-")

    def addSubTest(self, test, subtest, err):
        super().addSubTest(test, subtest, err)
        if err is not None:
            self.per_class[self._cls(test)]["failed"] += 1


def main():
    verbosity = 2 if "-v" in sys.argv else 1
    import poller
    where = os.path.dirname(os.path.abspath(poller.__file__))
    print(f"poller {poller.__version__} from {where}")
    if "--installed" in sys.argv and os.path.samefile(where, SOURCE_PACKAGE):
        print("error: --installed, but poller was imported from the source "
              "tree", file=sys.stderr)
        return 2
    # The test modules are imported as top-level modules from this
    # directory, so discovery does not put python/ (the source package) on
    # sys.path ahead of the installed one.
    suite = unittest.defaultTestLoader.discover(HERE, top_level_dir=HERE)
    runner = unittest.TextTestRunner(verbosity=verbosity, resultclass=CountingResult)
    result = runner.run(suite)
    print()
    print("| test class | passed | failed | skipped (reason) |")
    print("|---|---|---|---|")
    for cls in sorted(result.per_class):
        c = result.per_class[cls]
        why = "; ".join(sorted(result.skip_reasons[cls]))
        skipped = f"{c['skipped']} ({why})" if c["skipped"] else "0"
        print(f"| {cls} | {c['passed']} | {c['failed']} | {skipped} |")
    total = collections.Counter()
    for c in result.per_class.values():
        total.update(c)
    print(f"\n{total['passed']} passed, {total['failed']} failed, "
          f"{total['skipped']} skipped ({sys.executable}, Python "
          f"{sys.version.split()[0]}, poller from {where})")
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())

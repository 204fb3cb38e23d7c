"""Runs every Python test of poller with unittest and prints, per test
class (one per backend), how many passed, failed and were skipped, with the
reasons for the skips.  Exit status 0 only when nothing failed.

Usage (from python/): python3 -m tests.run [-v]
"""
import collections
import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))


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
    suite = unittest.defaultTestLoader.discover(HERE, top_level_dir=os.path.dirname(HERE))
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
          f"{sys.version.split()[0]})")
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())

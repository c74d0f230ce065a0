"""Run the test_* functions of test modules and print TAP (for the make
check wrappers t/t60xx-python-*.sh).  The same files run under pytest.

    python3 tap_run.py MODULE [MODULE...]

A module may set REQUIRES = ["numpy", "torch"]: when one is missing the
whole plan is skipped ("1..0 # SKIP").  A test raising unittest.SkipTest
is reported "ok N - name # SKIP reason".
"""
import importlib
import os
import sys
import time
import traceback
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def main(names):
    mods = [importlib.import_module(n) for n in names]
    for m in mods:
        for r in getattr(m, "REQUIRES", []):
            try:
                importlib.import_module(r)
            except ImportError:
                print("1..0 # SKIP python module %s not found (%s)" % (r, sys.executable))
                return 0
    tests = [(m, n) for m in mods for n in dir(m)
             if n.startswith("test_") and callable(getattr(m, n))]
    tests.sort(key=lambda t: getattr(t[0], t[1]).__code__.co_firstlineno)
    print("1..%d" % len(tests))
    fails = 0
    for i, (m, n) in enumerate(tests, 1):
        t0 = time.time()
        try:
            getattr(m, n)()
        except unittest.SkipTest as e:
            print("ok %d - %s.%s # SKIP %s" % (i, m.__name__, n, e))
            continue
        except Exception:
            fails += 1
            print("not ok %d - %s.%s" % (i, m.__name__, n))
            for line in traceback.format_exc().splitlines():
                print("# " + line)
            continue
        print("ok %d - %s.%s (%.2fs)" % (i, m.__name__, n, time.time() - t0))
        sys.stdout.flush()
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

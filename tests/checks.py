"""The tiny runner the Python test scripts share: each check is a function, a failure
is reported and counted, and the last line is the 'N passed, N failed' CI reads."""
import sys

results = []


def check(name, fn):
    try:
        fn()
        results.append((name, None))
        print(f"ok    {name}")
    except Exception as e:  # noqa: BLE001 - every failure is reported the same way
        results.append((name, e))
        print(f"FAIL  {name}: {type(e).__name__}: {e}")


def finish():
    failed = sum(1 for _, e in results if e)
    print(f"{len(results) - failed} passed, {failed} failed")
    sys.exit(1 if failed or not results else 0)

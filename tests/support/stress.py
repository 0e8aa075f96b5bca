"""Run the test suite on a loaded machine: busy loops on every core, then pytest, N times.

    python -m tests.support.stress                  # 3 runs of `pytest -q`, 4 busy loops
    python -m tests.support.stress --runs 1 --busy 2 -- tests/test_failures.py

The busy loops are processes of this helper; it stops them by PID when the runs end, however
they end. Exits with the first failing run's code.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time


def _busy() -> None:
    while True:  # a core's worth of work, until killed
        pass


def main(argv: list[str] | None = None) -> int:
    """Run the suite under load; returns the exit code of the first failing run, else 0."""
    parser = argparse.ArgumentParser(prog="python -m tests.support.stress")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--busy", type=int, default=4, help="busy-loop processes")
    parser.add_argument("pytest_args", nargs="*", default=["-q"])
    args = parser.parse_args(argv)
    loops = []
    for _ in range(args.busy):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child never returns
            _busy()
        loops.append(pid)
    print(f"busy loops: {loops}", flush=True)
    try:
        for run in range(1, args.runs + 1):
            started = time.monotonic()
            code = subprocess.call([sys.executable, "-m", "pytest", *args.pytest_args])
            print(f"run {run}/{args.runs}: exit {code} in {time.monotonic() - started:.0f} s")
            if code != 0:
                return code
        return 0
    finally:
        for pid in loops:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        print("busy loops stopped", flush=True)


if __name__ == "__main__":
    sys.exit(main())

"""Wall time of the README's two commands' work beside issue 11's targets, on this machine.

    sudo .venv/bin/python benchmarks/ci_bench.py [--cold] [--skip-lab] [--skip-tests]

Times `aifactory lab` (what `make lab` runs after set-up) and the test suite as `make test` runs
it (two pytest workers). --cold first deletes the shared caches (rootfs, package proxy cache,
artifacts under /var/cache/aifactory), as on a fresh machine; the apt packages and the virtualenv
stay. The peer is the machine itself: CPU seconds over wall seconds says how much of the two cores
the run used. Not a test: one machine's figures, printed.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TARGETS = {"lab": (180, 180), "tests": (240, 600)}  # (warm, cold) seconds, issue 11


def timed(label: str, cmd: list[str]) -> tuple[float, float, int]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    proc = subprocess.run(
        cmd, cwd=ROOT, env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}, check=False
    )
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(f"{label}: {wall:.0f} s wall, {cpu:.0f} s CPU, exit {proc.returncode}", flush=True)
    return wall, cpu, proc.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cold", action="store_true", help="delete the shared caches first")
    parser.add_argument("--skip-lab", action="store_true", help="do not time aifactory lab")
    parser.add_argument("--skip-tests", action="store_true", help="do not time the test suite")
    args = parser.parse_args()
    if args.cold:
        for sub in ("rootfs", "apt-cacher-ng", "artifacts"):
            shutil.rmtree(Path("/var/cache/aifactory") / sub, ignore_errors=True)
    rows = []
    if not args.skip_lab:
        rows.append(("lab", *timed("aifactory lab", [str(BIN / "aifactory"), "lab"])))
    if not args.skip_tests:
        cmd = [str(BIN / "python"), "-m", "pytest", "-q", "-n", "2", "--dist", "loadfile"]
        rows.append(("tests", *timed("test suite (make test)", cmd)))
    kind = "cold" if args.cold else "warm"
    print(f"\n{'run':8} {'wall s':>7} {'target s':>9} {'CPU s':>7} {'cores used':>11}")
    for name, wall, cpu, _rc in rows:
        target = TARGETS[name][1 if args.cold else 0]
        print(f"{name:8} {wall:7.0f} {target:9d} {cpu:7.0f} {cpu / wall:11.2f}   ({kind} caches)")
    return max((rc for *_, rc in rows), default=0)


if __name__ == "__main__":
    sys.exit(main())

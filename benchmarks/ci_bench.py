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


def two_labs() -> list[tuple[str, float, float, int]]:
    """`aifactory lab` in this checkout and in a copy of it (its own run, namespace and store), at the same time."""
    import tempfile

    rows = []
    with tempfile.TemporaryDirectory(prefix="aifactory-second-checkout-") as tmp:
        files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
        for name in filter(None, files.split(b"\0")):
            src, dst = ROOT / os.fsdecode(name), Path(tmp) / os.fsdecode(name)
            if src.is_file():
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dst)
        env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
        start = time.monotonic()
        procs = {
            root: subprocess.Popen([str(BIN / "aifactory"), "--root", str(root), "lab"], cwd=root, env=env)
            for root in (ROOT, Path(tmp))
        }
        for i, (root, proc) in enumerate(procs.items()):
            rc = proc.wait()
            wall = time.monotonic() - start
            print(f"lab in checkout {i + 1} ({root}): {wall:.0f} s wall, exit {rc}", flush=True)
            rows.append((f"lab {i + 1}/2", wall, 0.0, rc))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cold", action="store_true", help="delete the shared caches first")
    parser.add_argument("--skip-lab", action="store_true", help="do not time aifactory lab")
    parser.add_argument("--skip-tests", action="store_true", help="do not time the test suite")
    parser.add_argument(
        "--two-labs", action="store_true", help="also time two `aifactory lab` at once, in this checkout and a copy"
    )
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
    labs = two_labs() if args.two_labs else []
    kind = "cold" if args.cold else "warm"
    print(f"\n{'run':8} {'wall s':>7} {'target s':>9} {'CPU s':>7} {'cores used':>11}")
    for name, wall, cpu, _rc in rows:
        target = TARGETS[name][1 if args.cold else 0]
        print(f"{name:8} {wall:7.0f} {target:9d} {cpu:7.0f} {cpu / wall:11.2f}   ({kind} caches)")
    for name, wall, _cpu, rc in labs:  # both must pass, each beside the other (README: two labs at once)
        print(f"{name:8} {wall:7.0f} {'both pass':>9} {'':>7} {'':>11}   exit {rc}")
    return max((rc for *_, rc in [*rows, *labs]), default=0)


if __name__ == "__main__":
    sys.exit(main())

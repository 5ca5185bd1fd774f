"""Times of the test-host cycle for 1 and for 4 hosts: rootfs (cold, cached), up, bootstrap x2, verify, down.

    sudo .venv/bin/python benchmarks/testhosts_bench.py [--hosts 1,4] [--cold-rootfs]

Each size gets a copy of the lab stack with that many nodes, in a scratch project folder that
links the real roles and playbooks. The package proxy's cache is left as it is (warm after the
first run, as an in-country mirror is); --cold-rootfs deletes the cached rootfs first, so the
first size measures an mmdebstrap build. Not a test: one machine's figures, printed.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from aifactory import inventory
from aifactory.bootstrap import run_playbook
from aifactory.stackfile import load_stack
from aifactory.testhosts import lifecycle, netns, scratch, services
from aifactory.testhosts.rootfs import ensure_rootfs, rootfs_dir
from aifactory.testhosts.run import Run
from aifactory.verify import runner

ROOT = Path(__file__).resolve().parents[1]


def timed(label: str, fn, figures: dict[str, float]):
    start = time.monotonic()
    result = fn()
    figures[label] = time.monotonic() - start
    print(f"  {label}: {figures[label]:.1f} s", flush=True)
    return result


def _quiet(_msg: str) -> None:
    pass


def measure(n: int, cold: bool) -> dict[str, float]:
    quiet = _quiet
    with tempfile.TemporaryDirectory(prefix="aifactory-hosts-") as tmp:
        root = scratch.project_with(ROOT, Path(tmp), n)
        stack = load_stack(root, "lab")
        inventory.write(stack, root)
        run = Run.of(root, "lab", purpose="bench")
        lifecycle.down(run, say=quiet)
        figures: dict[str, float] = {}
        print(f"{n} host(s) (run {run.id}):", flush=True)
        if cold:
            shutil.rmtree(rootfs_dir(stack.site.mirrors.debian.url), ignore_errors=True)
        try:
            if cold:
                # The rootfs alone: the namespace and the proxy relay first, as `up` has them.
                netns.create(run.netns)
                a = services.addresses(stack.site, "lab")
                lifecycle.make_bridge(run, a)
                state = lifecycle.State(run.id, "lab", str(root), a.gateway, a.prefix)
                services.ensure_proxy_relay(run, state, a, quiet)
                lifecycle.save_state(run, state)
                timed(
                    "rootfs build (cold)",
                    lambda: netns.inside(run.netns, lambda: ensure_rootfs(stack.site, quiet)),
                    figures,
                )
            timed("up", lambda: lifecycle.up(stack, root, run, say=quiet), figures)
            ssh = run.ssh_config
            first = timed(
                "first bootstrap", lambda: run_playbook(stack, root, ssh_config=ssh, say=quiet, quiet=True), figures
            )
            second = timed(
                "second bootstrap", lambda: run_playbook(stack, root, ssh_config=ssh, say=quiet, quiet=True), figures
            )
            results = timed("verify", lambda: runner.run(stack, root, say=quiet, ssh_config=ssh), figures)
            assert not first.failed_hosts and second.changed_total == 0, "bootstrap failed or not idempotent"
            assert not any(r.failed for r in results), runner.table(results)
        finally:
            timed("down", lambda: lifecycle.down(run, say=quiet), figures)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", default="1,4")
    parser.add_argument("--cold-rootfs", action="store_true")
    args = parser.parse_args()
    rows = [
        (n, measure(n, cold=args.cold_rootfs and i == 0)) for i, n in enumerate(int(x) for x in args.hosts.split(","))
    ]
    keys = ["rootfs build (cold)", "up", "first bootstrap", "second bootstrap", "verify", "down"]
    print("\n" + "hosts  " + "  ".join(f"{k:>19}" for k in keys))
    for n, figures in rows:
        print(f"{n:5d}  " + "  ".join(f"{figures[k]:19.1f}" if k in figures else f"{'-':>19}" for k in keys))
    return 0


if __name__ == "__main__":
    sys.exit(main())

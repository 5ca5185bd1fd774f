"""Converge at scale: 1, 4, 16 and 32 test hosts, a first and a no-op converge, and Ansible's options.

    sudo .venv/bin/python benchmarks/converge_bench.py [--hosts 1,4,16,32] [--options]

Each size gets a copy of the lab stack with that many nodes and a light playbook (the base role
and the driver user space: no CUDA toolkit, RDMA or NCCL), on test hosts of a run of its own.
It times the first converge and a second, no-op one, and reports seconds per host and per task
and the controller's CPU seconds and peak memory (ansible-playbook and its workers). With
--options, the largest size also times no-op converges under the options that matter at fleet
scale: forks, the `free` strategy, fact caching (gathering: smart, jsonfile cache) and Mitogen
(aifactory's default when installed; the other rows set AIFACTORY_MITOGEN=0). Pipelining and
SSH multiplexing are on in every run (ansible.cfg, the test hosts' ssh_config). Not a test: one
2-core machine's figures, printed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

from aifactory import inventory
from aifactory.bootstrap import run_playbook, strategy_env
from aifactory.stackfile import load_stack
from aifactory.testhosts import lifecycle, scratch
from aifactory.testhosts.run import Run

ROOT = Path(__file__).resolve().parents[1]
LIGHT = """---
# converge_bench: the base role and the driver user space only.
- name: Converge (light)
  hosts: gpu_nodes
  become: true
  gather_facts: true
  roles:
    - role: nvidia_base
    - role: nvidia_driver
"""


def project(n: int, where: Path) -> Path:
    """The scaled lab project (testhosts/scratch.py), with the light playbook in place of the real one."""
    scratch.project_with(ROOT, where, n)
    (where / "playbooks").unlink()  # a link to the checkout's playbooks: replaced, never written through
    (where / "playbooks").mkdir()
    (where / "playbooks" / "bootstrap.yml").write_text(LIGHT)
    return where


def converge(stack, root: Path, run: Run, env: dict[str, str]) -> dict[str, float]:
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    try:
        result = run_playbook(stack, root, ssh_config=run.ssh_config, say=lambda _m: None, quiet=True)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.failed_hosts:
        raise SystemExit(f"converge failed on {result.failed_hosts}: {result.artifacts}")
    tasks = sum(
        1
        for line in (result.artifacts / "job_events").glob("*.json")
        if json.loads(line.read_text()).get("event") == "playbook_on_task_start"
    )
    return {
        "wall": wall,
        "changed": result.changed_total,
        "tasks": tasks,
        "cpu": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
        "rss_mb": after.ru_maxrss / 1024,
    }


def row(label: str, n: int, f: dict[str, float]) -> None:
    print(
        f"{label:28} {n:5d} {f['wall']:8.1f} {f['wall'] / n:8.2f} {f['wall'] / max(f['tasks'], 1):8.2f}"
        f" {f['cpu']:8.1f} {f['rss_mb']:9.0f} {int(f['changed']):8d}",
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", default="1,4,16,32")
    parser.add_argument("--options", action="store_true", help="also time Ansible's options at the largest size")
    args = parser.parse_args()
    sizes = [int(x) for x in args.hosts.split(",")]
    cols = ("hosts", "wall s", "s/host", "s/task", "CPU s", "peak MiB", "changed")
    widths = (5, 8, 8, 8, 8, 9, 8)
    print(f"{'converge':28} " + " ".join(f"{c:>{w}}" for c, w in zip(cols, widths, strict=True)), flush=True)
    for n in sizes:
        with tempfile.TemporaryDirectory(prefix="aifactory-converge-") as tmp:
            root = project(n, Path(tmp))
            stack = load_stack(root, "lab")
            inventory.write(stack, root)
            run = Run.of(root, "lab", purpose="converge-bench")
            try:
                start = time.monotonic()
                lifecycle.up(stack, root, run, say=lambda _m: None)
                print(f"{'(test hosts up)':28} {n:5d} {time.monotonic() - start:8.1f}", flush=True)
                plain = {"AIFACTORY_MITOGEN": "0"}  # Ansible's own strategy: the peer of every option below
                row("first", n, converge(stack, root, run, plain))
                row("no-op", n, converge(stack, root, run, plain))
                if args.options and n == max(sizes):
                    row("no-op, forks 8", n, converge(stack, root, run, {**plain, "ANSIBLE_FORKS": "8"}))
                    row("no-op, strategy free", n, converge(stack, root, run, {**plain, "ANSIBLE_STRATEGY": "free"}))
                    cache = Path(tmp) / "facts"
                    facts = {
                        **plain,
                        "ANSIBLE_GATHERING": "smart",
                        "ANSIBLE_CACHE_PLUGIN": "jsonfile",
                        "ANSIBLE_CACHE_PLUGIN_CONNECTION": str(cache),
                    }
                    converge(stack, root, run, facts)  # fills the cache
                    row("no-op, fact cache", n, converge(stack, root, run, facts))
                    if not strategy_env():
                        print(f"{'no-op, mitogen':28} {n:5d}  skipped: the mitogen package is not installed")
                    else:
                        row("no-op, mitogen (the default)", n, converge(stack, root, run, {"AIFACTORY_MITOGEN": "1"}))
            finally:
                lifecycle.down(run, say=lambda _m: None)
    return 0


if __name__ == "__main__":
    sys.exit(main())

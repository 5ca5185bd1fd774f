"""`aifactory rollout` on four test hosts: an NCCL upgrade, a planted fault, resume, dry run.

NCCL 2.20.5 goes on four hosts, then the stack moves to 2.21.5 (both NVIDIA's redistributable, on
the lab's artifact mirror). The rollout runs as an SRE runs it, the CLI in the run's network (where
the site's evidence store is), with a canary of one and batches of two. The fault is real: the
third host's disk is full where the new version unpacks (a 1 MiB tmpfs over its install folder).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aifactory import inventory
from aifactory.bootstrap import run_playbook
from aifactory.stackfile import load_stack
from aifactory.testhosts import lab_env, lifecycle, netns, scratch
from aifactory.testhosts.run import Run, run_id_for
from aifactory.verify import runner
from aifactory.verify.expectations import expectations
from aifactory.verify.probe import read_versions

from .conftest import ROOT
from .test_testhosts import pytestmark as testhosts_marks
from .test_testhosts import terminal

pytestmark = testhosts_marks

SITE = "lab"
OLD, NEW = "2.20.5-1+cuda11.0", "2.21.5-1+cuda11.0"
HOSTS = ["lab-gpu-01", "lab-gpu-02", "lab-gpu-03", "lab-gpu-04"]
FAULTY = "lab-gpu-03"
NEW_DIR = "/opt/nvidia/nccl/2.21.5-cuda11"
RUN = Run(run_id_for(ROOT, SITE, "rollout"), SITE)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest):
    """Four hosts on NCCL 2.20.5; yields (new project, old project): the stack moved to 2.21.5 in the first."""
    write = terminal(request.config)
    old = scratch.project_with(ROOT, tmp_path_factory.mktemp("old"), 4, {"nccl": OLD})
    new = scratch.project_with(ROOT, tmp_path_factory.mktemp("new"), 4, {"nccl": OLD})
    old_stack = load_stack(old, SITE)
    inventory.write(old_stack, old)
    inventory.write(load_stack(new, SITE), new)
    lifecycle.down(RUN, say=lambda _m: None)
    try:
        lifecycle.up(old_stack, old, RUN, say=lambda line: write(f"    {line}"))
        t0 = time.monotonic()
        first = run_playbook(old_stack, old, ssh_config=RUN.ssh_config, say=lambda _m: None, quiet=True)
        assert not first.failed_hosts, first.reasons
        write(f"    4 hosts on NCCL {OLD} in {time.monotonic() - t0:.0f} s")
        # The store the records go to: its buckets, as `aifactory storage apply lab` makes them.
        from aifactory.cli.storage import apply_store
        from aifactory.storage import site as storage_site

        client = storage_site.connect(old_stack, storage_site.credentials(old_stack, lab_env.passphrase_env(old, SITE)))
        assert netns.inside(RUN.netns, lambda: apply_store(old_stack, client))
        # The change an SRE makes: the stack's NCCL moves on; the mirror operator publishes it.
        doc = scratch.read_stack(new)
        doc["config"]["aifactory:site"]["gpu_stack"]["nccl"] = NEW
        scratch.write_stack(new, doc)
        new_stack = load_stack(new, SITE)
        inventory.write(new_stack, new)
        lifecycle.up(new_stack, new, RUN, say=lambda _m: None)  # stocks the mirror with 2.21.5
        yield new, old
    finally:
        lifecycle.down(RUN, say=lambda _m: None)


def rollout(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI as an SRE runs it, inside the run's network (where the site's store answers)."""
    env = {**os.environ, **lab_env.passphrase_env(project, SITE)}
    cmd = ["ip", "netns", "exec", RUN.netns, str(Path(sys.executable).with_name("aifactory")), "--root", str(project)]
    cmd += ["rollout", SITE, "--ssh-config", str(RUN.ssh_config), *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, check=False, timeout=1800)


def timed(request: pytest.FixtureRequest, label: str, project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    t0 = time.monotonic()
    out = rollout(project, *args)
    terminal(request.config)(f"    {label}: {time.monotonic() - t0:.0f} s (exit {out.returncode})")
    return out


def on(host: str, command: str) -> None:
    out = lifecycle.ssh(RUN, host, command)
    assert out.returncode == 0, out.stderr


def nccl_on(project: Path, host: str) -> str:
    stack = load_stack(project, SITE)
    node = next(n for n in stack.site.nodes if n.hostname == host)
    return read_versions(str(node.management_ip), expectations(project, stack.site, node), RUN.ssh_config)["nccl"]


def state_of(host: str) -> str:
    """What the NCCL role owns on a host: install folders, linker setting, cached downloads."""
    out = lifecycle.ssh(
        RUN, host, "ls /opt/nvidia/nccl; cat /etc/ld.so.conf.d/aifactory-nccl.conf; ls /var/cache/aifactory"
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def record_of(project: Path) -> dict:
    (path,) = sorted((project / "runs" / SITE / "rollouts").glob("*/rollout.json"))
    return json.loads(path.read_text())


def test_dry_run_prints_the_order_and_changes_nothing(fleet, request):
    new, _ = fleet
    before = {h: state_of(h) for h in HOSTS}
    out = timed(request, "dry run", new, "--dry-run", "--canary", "1", "--batch", "2")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "4 of 4 node(s) differ" in out.stdout
    assert "nccl 2.20.5" in out.stdout
    assert "would change: nccl : Fetch the NCCL redistributable from the artifact mirror, version 2.21.5" in out.stdout
    order = re.findall(r"^  (canary|batch \d+) +(.+)$", out.stdout, re.MULTILINE)
    assert order == [("canary", "lab-gpu-01"), ("batch 1", "lab-gpu-02, lab-gpu-03"), ("batch 2", "lab-gpu-04")]
    assert "out of service before each batch: SKIPPED: " in out.stdout
    assert "nodes_joined: false" in out.stdout  # the lab's reason, printed
    assert {h: state_of(h) for h in HOSTS} == before
    assert not list((new / "runs" / SITE / "rollouts").glob("*/rollout.json"))


def test_a_fault_on_the_third_host_stops_the_rollout_after_its_batch(fleet, request):
    new, old = fleet
    on(FAULTY, f"mkdir -p {NEW_DIR} && mount -t tmpfs -o size=1m aifactory-fault {NEW_DIR}")
    out = timed(request, "rollout, stopped by the fault", new, "--canary", "1", "--batch", "2")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "STOPPED: batch 1: 1 failure(s), more than --max-failures 0 (lab-gpu-03)" in out.stdout, out.stdout
    assert "untouched: lab-gpu-04" in out.stdout
    assert [nccl_on(new, h) for h in HOSTS] == ["2.21.5", "2.21.5", "2.20.5", "2.20.5"]
    # The fourth host was never touched: still on the old version, and verify-clean against it.
    old_results = runner.run(load_stack(old, SITE), old, "lab-gpu-04", say=lambda _m: None, ssh_config=RUN.ssh_config)
    assert not any(r.failed for r in old_results), runner.table(old_results)
    rec = record_of(new)
    assert rec["status"] == "stopped" and rec["next_batch"] == 1
    canary, batch1 = rec["batches"]
    assert canary["kind"] == "canary" and canary["passed"] and canary["nodes"] == ["lab-gpu-01"]
    assert batch1["nodes"] == ["lab-gpu-02", FAULTY] and batch1["failures"] == [FAULTY] and not batch1["passed"]
    two, three = batch1["outcomes"]["lab-gpu-02"], batch1["outcomes"][FAULTY]
    assert two["versions_before"]["nccl"] == "2.20.5" and two["versions_after"]["nccl"] == "2.21.5"
    assert two["verify"] == "pass" and two["converge"].startswith("ok")
    assert three["converge"].startswith("FAILED") and "nccl" in three["verify"]
    assert three["out_of_service"].startswith("SKIPPED: the nodes of lab are not Nodes of a cluster")
    assert all(b["started"] and b["ended"] for b in rec["batches"])
    assert rec["evidence"], out.stdout  # the batches' records reached the store
    # A new rollout is refused while this one waits to be resumed.
    again = rollout(new, "--batch", "2")
    assert again.returncode == 2 and "--resume" in again.stderr, again.stdout + again.stderr


def test_resume_after_the_repair_completes_the_rollout(fleet, request):
    new, _ = fleet
    on(FAULTY, f"umount {NEW_DIR} && rmdir {NEW_DIR}")
    out = timed(request, "resume", new, "--resume")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "resuming rollout" in out.stdout and "2 batch(es) left, from batch 1" in out.stdout
    assert [nccl_on(new, h) for h in HOSTS] == ["2.21.5"] * 4
    results = runner.run(load_stack(new, SITE), new, say=lambda _m: None, ssh_config=RUN.ssh_config)
    assert not any(r.failed for r in results), runner.table(results)
    rec = record_of(new)
    assert rec["status"] == "completed"
    assert [(b["index"], b["passed"]) for b in rec["batches"]] == [(0, True), (1, False), (1, True), (2, True)]
    # The record reads back as the SRE sees it.
    shown = rollout(new, "--status")
    assert shown.returncode == 0 and "completed" in shown.stdout and "batch 2" in shown.stdout, shown.stdout
    # Nothing is left to do, however it is asked.
    assert "nothing to resume" in rollout(new, "--resume").stdout
    rerun = timed(request, "a completed rollout again", new)
    assert rerun.returncode == 0 and "match the declaration" in rerun.stdout, rerun.stdout + rerun.stderr
    assert len(list((new / "runs" / SITE / "rollouts").glob("*/rollout.json"))) == 1

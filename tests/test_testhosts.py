"""The roles on real test hosts over SSH: bootstrap, idempotency, check mode, verify, breakage, teardown.

Brings the lab site's hosts up as a run of their own (`aifactory.testhosts`: systemd-nspawn on a
bridge in the run's network namespace, the package proxy, the artifact mirror, the object store),
installs the real NVIDIA packages on them, and leaves nothing of the run behind. The run's id is
derived from this checkout with the purpose "test", so a developer's `make lab` in the same
checkout, or another checkout's run, is never touched. The tests run in file order and share the hosts.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aifactory import labels
from aifactory.bootstrap import run_playbook as _run_playbook
from aifactory.stackfile import load_stack
from aifactory.testhosts import kube, lifecycle, netns
from aifactory.testhosts.run import Run, run_id_for
from aifactory.verify import runner

from .conftest import ROOT

pytestmark = [
    pytest.mark.testhosts,
    pytest.mark.skipif(os.geteuid() != 0, reason="test hosts need root (namespaces, overlay mounts, systemd-nspawn)"),
    pytest.mark.skipif(
        not all(shutil.which(t) for t in ("mmdebstrap", "systemd-nspawn", "ip")),
        reason="mmdebstrap, systemd-container or iproute2 is not installed (`make setup` installs them)",
    ),
]

SITE = "lab"
RUN = Run(run_id_for(ROOT, SITE, "test"), SITE)  # never AIFACTORY_RUN: a developer's own run stays untouched


def run_playbook(stack, root, **kw):
    return _run_playbook(stack, root, ssh_config=RUN.ssh_config, **kw)


def verify(stack, root):
    return runner.run(stack, root, say=lambda _m: None, ssh_config=RUN.ssh_config)


@pytest.fixture(scope="module")
def stack():
    return load_stack(ROOT, SITE)


def terminal(config: pytest.Config):
    """A line writer that reaches the terminal past pytest's capture, under xdist too (a worker's stderr)."""
    capture = config.pluginmanager.getplugin("capturemanager")
    worker = hasattr(config, "workerinput")  # an xdist worker's reporter writes to no terminal
    reporter = None if worker else config.pluginmanager.getplugin("terminalreporter")

    def write(text: str) -> None:
        with capture.global_and_fixture_disabled():
            if reporter is not None:
                reporter.write_line(text)
            else:
                sys.stderr.write(f"[test hosts] {text.strip()}\n")
                sys.stderr.flush()

    return write


@pytest.fixture(scope="module")
def hosts(stack, request: pytest.FixtureRequest):
    write = terminal(request.config)
    lifecycle.down(RUN, say=lambda _m: None)  # what a killed earlier run of this suite left, and only that
    state = lifecycle.up(stack, ROOT, RUN, say=lambda line: write(f"    {line}"))  # a cold rootfs build is minutes
    yield state
    lifecycle.down(RUN, say=lambda _m: None)


@pytest.fixture
def progress(request: pytest.FixtureRequest):
    """Task lines of a bootstrap on the terminal as they arrive."""
    write = terminal(request.config)
    t0 = time.monotonic()

    def say(line: str) -> None:
        if line.startswith("TASK") or "FAILED" in line or "UNREACHABLE" in line:
            write(f"    [{time.monotonic() - t0:5.0f} s] {line}")

    return say


def ssh(host: str, command: str, run: Run = RUN) -> subprocess.CompletedProcess[str]:
    return lifecycle.ssh(run, host, command)


def test_up_twice_is_harmless(stack, hosts):
    before = {h.name: h.pid for h in hosts.hosts}
    again = lifecycle.up(stack, ROOT, RUN, say=lambda _m: None)
    assert {h.name: h.pid for h in again.hosts} == before
    assert sorted(before) == sorted(n.hostname for n in stack.site.nodes)
    for node in stack.site.nodes:
        out = ssh(node.hostname, "hostname; ip -4 -o addr show dev host0")
        assert out.returncode == 0, out.stderr
        assert out.stdout.splitlines()[0] == node.hostname
        assert f"{node.management_ip}/" in out.stdout


def test_hosts_reach_packages_only_through_the_mirror(stack, hosts):
    forwarding = netns.inside(RUN.netns, lambda: Path("/proc/sys/net/ipv4/ip_forward").read_text().strip())
    assert forwarding == "0"
    out = ssh(stack.site.nodes[0].hostname, "ip -4 route")
    assert "default" not in out.stdout, out.stdout
    # The run's network is its own: the lab's addresses are not on this machine's side of it.
    assert (
        str(stack.site.network.management.gateway)
        not in subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True, check=False).stdout
    )


def test_the_package_proxy_fetches_from_debians_mirror_only(stack, hosts):
    """A host asking the proxy for another location (the lab's ubuntu and cuda mirror paths) is refused
    by the proxy itself: the project's traffic leaves this machine for Debian's mirror only."""
    first = stack.site.nodes[0].hostname
    m = stack.site.mirrors

    def status(url: str) -> str:
        probe = ssh(first, f"python3 -c \"import urllib.request as u, urllib.error as e\ntry: print(u.urlopen('{url}', timeout=20).status)\nexcept e.HTTPError as x: print(x.code)\"")
        return probe.stdout.strip()

    assert status(f"{m.debian.url}/dists/bookworm/Release") == "200"
    assert status(f"{m.ubuntu.url}/dists/jammy/Release") == "403"
    assert status(f"{m.cuda.url}/ubuntu2204/x86_64/Release") == "403"


def test_a_second_run_beside_this_one_shares_nothing_but_caches(stack, hosts):
    """Another checkout's run of the same site: the same addresses, its own namespace; down removes only it."""
    other = Run("0badc0de", SITE)
    lifecycle.down(other, say=lambda _m: None)
    try:
        lifecycle.up(stack, ROOT, other, say=lambda _m: None)
        first = stack.site.nodes[0].hostname
        ours, theirs = ssh(first, "cat /etc/machine-id"), ssh(first, "cat /etc/machine-id", run=other)
        assert ours.returncode == 0 and theirs.returncode == 0, ours.stderr + theirs.stderr
        assert ours.stdout != theirs.stdout  # two machines on one address, one per run
    finally:
        lifecycle.down(other, say=lambda _m: None)
    assert not netns.exists(other.netns) and not other.dir.exists()
    assert netns.exists(RUN.netns)
    # This run's hosts, and the package proxy they share, are still there.
    node = stack.site.nodes[0].hostname
    probe = ssh(node, "apt-get -q update >/dev/null && echo fetched")
    assert probe.stdout.strip() == "fetched", probe.stderr


def test_first_bootstrap_installs_everything(stack, hosts, progress):
    result = run_playbook(stack, ROOT, say=progress)
    assert result.rc == 0, result.artifacts
    assert sorted(result.hosts) == sorted(n.hostname for n in stack.site.nodes)
    assert not result.failed_hosts
    assert all(s.changed > 0 for s in result.hosts.values())
    assert (result.artifacts / "stdout").is_file()


def test_second_bootstrap_changes_nothing(stack, hosts, progress):
    result = run_playbook(stack, ROOT, say=progress)
    assert not result.failed_hosts
    assert {h: s.changed for h, s in result.hosts.items()} == {n.hostname: 0 for n in stack.site.nodes}


def test_check_mode_would_change_nothing(stack, hosts, progress):
    result = run_playbook(stack, ROOT, check=True, say=progress)
    assert not result.failed_hosts
    assert result.changed_total == 0


def test_verify_passes_on_fresh_hosts(stack, hosts, cli, tmp_path):
    junit = tmp_path / "verify.xml"
    code, out, _ = cli(
        "verify",
        SITE,
        "--ssh-config",
        str(RUN.ssh_config),
        "--junit",
        str(junit),
        "--json",
        str(tmp_path / "verify.json"),
    )
    assert code == 0, out
    assert "all 2 node(s) verified" in out
    text = junit.read_text()
    assert text.count("<testsuite ") == 2 and "<failure" not in text
    results = verify(stack, ROOT)
    for r in results:
        assert r.checks["nccl_version"].status == runner.PASS
        assert r.checks["driver_packages_pinned_and_held"].status == runner.PASS
        # Without a GPU the GPU checks are skipped, with the reason.
        assert r.checks["gpu_count_and_model"].status == runner.SKIP
        assert "no NVIDIA GPU" in r.checks["gpu_count_and_model"].message


WRONG_VERSION_DEB = r"""set -e
d=$(mktemp -d); mkdir -p $d/DEBIAN $d/usr/bin
printf 'Package: nvidia-smi\nVersion: 535.999.99-1\nArchitecture: amd64\nMaintainer: tests <root@localhost>\nDescription: wrong version\n' > $d/DEBIAN/control
printf '#!/bin/sh\nexit 9\n' > $d/usr/bin/nvidia-smi; chmod 755 $d/usr/bin/nvidia-smi
dpkg-deb -b $d /tmp/wrong.deb >/dev/null; apt-mark unhold nvidia-smi >/dev/null; dpkg -i /tmp/wrong.deb >/dev/null 2>&1
"""


def test_verify_reports_exactly_what_broke_where(stack, hosts):
    first, second = (n.hostname for n in stack.site.nodes)
    lib = ssh(second, "ldconfig -p | awk '/libnccl.so.2 /{print $NF}'").stdout.strip()
    assert ssh(second, f"rm {lib} && ldconfig").returncode == 0
    assert ssh(first, WRONG_VERSION_DEB).returncode == 0

    results = {r.node.hostname: r for r in verify(stack, ROOT)}
    failed = {h: sorted(c for c, v in r.checks.items() if v.status == runner.FAIL) for h, r in results.items()}
    assert failed == {first: ["driver_packages_pinned_and_held"], second: ["nccl_version"]}
    assert (
        "nvidia-smi is 535.999.99-1, the site declares 535.261.03"
        in results[first].checks["driver_packages_pinned_and_held"].message
    )
    assert "not held" in results[first].checks["driver_packages_pinned_and_held"].message
    assert "libnccl.so.2" in results[second].checks["nccl_version"].message


def test_bootstrap_corrects_the_wrong_version_and_the_missing_library(stack, hosts):
    result = run_playbook(stack, ROOT, say=print, quiet=True)
    assert not result.failed_hosts
    assert all(s.changed > 0 for s in result.hosts.values())
    first = stack.site.nodes[0].hostname
    assert ssh(first, "dpkg-query -W -f='${Version} ${db:Status-Want}' nvidia-smi").stdout == "535.261.03-1 hold"
    results = verify(stack, ROOT)
    assert not any(r.failed for r in results), runner.table(results)
    again = run_playbook(stack, ROOT, say=print, quiet=True)
    assert again.changed_total == 0


def project_copy(tmp_path: Path, doc: dict) -> Path:
    """A copy of the checkout's stacks, roles and playbooks with this lab stack document."""
    import yaml

    root = tmp_path / "co"
    root.mkdir()
    for f in ("Pulumi.yaml", "ansible.cfg"):
        shutil.copy(ROOT / f, root / f)
    for d in ("stacks", "roles", "playbooks", "inventories"):
        shutil.copytree(ROOT / d, root / d, ignore=shutil.ignore_patterns("__pycache__"))
    (root / "stacks" / "Pulumi.lab.yaml").write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    return root


def test_the_whole_toolkit_resolves_on_the_mirror_in_check_mode(stack, hosts, tmp_path):
    """The lab installs the CUDA runtime only; the toolkit choice's packages resolve too (apt in check mode)."""
    import yaml

    from aifactory import inventory

    doc = yaml.safe_load((ROOT / "stacks" / "Pulumi.lab.yaml").read_text())
    assert doc["config"]["aifactory:site"]["gpu_stack"]["cuda_components"] == "runtime"
    doc["config"]["aifactory:site"]["gpu_stack"]["cuda_components"] = "toolkit"
    root = project_copy(tmp_path, doc)
    toolkit = load_stack(root, SITE)
    inventory.write(toolkit, root)
    result = run_playbook(toolkit, root, check=True, say=print, quiet=True)
    assert not result.failed_hosts, result.artifacts
    events = (result.artifacts / "stdout").read_text()
    assert "Install the CUDA packages of toolkit 11.8" in events
    assert all(s.changed > 0 for s in result.hosts.values())  # nvidia-cuda-toolkit would be installed
    first = stack.site.nodes[0].hostname
    assert ssh(first, "dpkg-query -W nvidia-cuda-toolkit").returncode != 0  # and check mode installed nothing


def test_mirror_check_asks_the_labs_own_mirrors_for_real(stack, hosts, cli):
    """The Debian packages the roles pin and the NCCL redistributable, asked of the lab's proxy and artifact mirror."""
    code, out, err = netns.inside(
        # A generous per-request timeout: on a clean machine the proxy fetches Debian's indexes cold.
        RUN.netns,
        lambda: cli("mirror", "check", SITE, "--timeout", "60", "--mirror", "debian", "--mirror", "artifacts"),
    )
    lines = out.splitlines()
    # The harness cannot fetch nccl-tests' source here (no route to GitHub), so the lab's mirror lacks it,
    # and says so; the lab's nodes have no GPU, so the role never asks for it.
    not_ok = [line for line in lines[:-1] if not line.startswith("ok ")]
    assert len(not_ok) == 1, out + err
    (missing,) = not_ok
    assert missing.startswith("MISSING     file artifacts nccl-tests 2.19.6"), missing
    assert code == 1, out + err
    nccl = next(line for line in lines if " artifacts nvidia-nccl-cu11 " in line)
    assert nccl.startswith("ok ") and "sha256:49d8350629c7888701d1fd200934942671cb5c728f49acc5a0b3a768820bed29" in nccl
    smi = next(line for line in lines if " debian nvidia-smi " in line)
    assert smi.startswith("ok ") and "535.261.03-1 sha256:" in smi and "non-free/binary-amd64" in smi
    # The lab serves no registry and no chart index, and the check says so. Its ubuntu and cuda mirrors are
    # paths on the package proxy that lead to archives outside Debian's: they are not asked here.
    mirrors = ("debian", "artifacts", "charts", "containers")
    code, out, _ = netns.inside(
        RUN.netns,
        lambda: cli("mirror", "check", SITE, "--timeout", "5", *(a for m in mirrors for a in ("--mirror", m))),
    )
    assert code == 1
    statuses = {line.split()[2]: line.split()[0] for line in out.splitlines()[:-1]}
    assert statuses["containers"] == "UNREACHABLE" and statuses["charts"] == "MISSING"
    assert out.splitlines()[-1].startswith("lab: ")


def test_a_planted_wrong_redistributable_is_caught_by_check_and_refused_by_the_role(stack, hosts, cli, tmp_path):
    """A mirror that serves other bytes under NCCL's name: `mirror check` names it, and the nccl role will not take it."""
    import yaml

    from aifactory import inventory
    from aifactory.testhosts.services import artifact_root

    doc = yaml.safe_load((ROOT / "stacks" / "Pulumi.lab.yaml").read_text())
    site_doc = doc["config"]["aifactory:site"]
    prefix = f"planted-{RUN.id}"
    site_doc["mirrors"]["artifacts"]["url"] = f"http://172.29.0.1:8081/{prefix}"
    root = project_copy(tmp_path, doc)
    planted = load_stack(root, SITE)
    inventory.write(planted, root)
    wheel = artifact_root() / prefix / "nccl" / "nvidia-nccl-cu11-2.21.5.whl"
    wheel.parent.mkdir(parents=True, exist_ok=True)
    try:
        shutil.copyfile(artifact_root() / "nvidia" / "nccl" / "nvidia-nccl-cu11-2.21.5.whl", wheel)
        with wheel.open("ab") as fh:
            fh.write(b"planted")  # still a wheel to unzip; no longer NVIDIA's bytes
        code, out, _ = netns.inside(RUN.netns, lambda: cli("mirror", "check", SITE, "--mirror", "artifacts", root=root))
        assert code == 1
        (line,) = [ln for ln in out.splitlines() if "nvidia-nccl-cu11" in ln]
        assert line.startswith("DIFFERENT ")
        assert "the catalog's is sha256:49d8350629c7888701d1fd200934942671cb5c728f49acc5a0b3a768820bed29" in line

        first = stack.site.nodes[0].hostname
        assert ssh(first, "rm -f /var/cache/aifactory/nvidia-nccl-cu11-2.21.5.whl").returncode == 0
        result = run_playbook(planted, root, limit=first, say=print, quiet=True)
        assert result.failed_hosts == [first], result.artifacts
        events = (result.artifacts / "stdout").read_text()
        assert "did not match" in events, events[-2000:]
        assert ssh(first, "test -e /var/cache/aifactory/nvidia-nccl-cu11-2.21.5.whl").returncode != 0
    finally:
        shutil.rmtree(artifact_root() / prefix, ignore_errors=True)
    # The real mirror's file is taken again, and the node is whole.
    again = run_playbook(stack, ROOT, limit=stack.site.nodes[0].hostname, say=print, quiet=True)
    assert not again.failed_hosts, again.artifacts


def test_payloads_in_the_stack_run_nothing_on_real_hosts(stack, hosts, tmp_path):
    """The injection test on a real test host: a hostile but admitted stack, the real roles over SSH."""
    from aifactory import inventory
    from aifactory.policies import gate
    from aifactory.stackfile import load_stack as load

    from .test_injection import MARKER, hostile_lab

    files = [
        "/etc/nccl.conf",
        "/etc/apt/sources.list.d/aifactory-debian.sources",
        "/etc/sysctl.d/90-aifactory-gpu.conf",
    ]
    count = "; ".join(f"wc -l < {f}" for f in files)
    before = {n.hostname: ssh(n.hostname, count).stdout for n in stack.site.nodes}
    doc, planted = hostile_lab()
    root = project_copy(tmp_path, doc)
    hostile = load(root, SITE)
    gate([hostile], root)
    inventory.write(hostile, root)
    MARKER.unlink(missing_ok=True)
    ssh_all = [n.hostname for n in stack.site.nodes]
    for h in ssh_all:
        ssh(h, f"rm -f {MARKER}")

    result = run_playbook(hostile, root, say=print, quiet=True)
    assert not result.failed_hosts, result.artifacts
    assert not MARKER.exists(), "a payload ran a command on the controller"
    for h in ssh_all:
        assert ssh(h, f"test -e {MARKER}").returncode != 0, f"a payload ran a command on {h}"
        assert ssh(h, count).stdout == before[h], f"a rendered file on {h} gained or lost a line"
        conf = ssh(h, "cat /etc/nccl.conf").stdout
        assert f"# Site: {doc['config']['aifactory:site']['name']}\n" in conf  # the literal text, not evaluated
    assert len(planted) >= 10
    # The real stack puts everything back.
    again = run_playbook(stack, ROOT, say=print, quiet=True)
    assert not again.failed_hosts


def test_the_lab_object_store_is_a_real_rgw_on_the_bridge(stack, hosts, cli, tmp_path, monkeypatch):
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE_FILE", str(ROOT / "stacks" / "lab.passphrase"))

    def cli(*args, _cli=cli):  # the store is in the run's network: the commands run there, as `ip netns exec` would
        return netns.inside(RUN.netns, lambda: _cli(*args))

    code, out, err = cli("storage", "apply", "lab")
    assert code == 0, out + err
    assert "site lab, bucket lab-evidence:" in out
    code, out, _ = cli("storage", "check", "lab")
    assert code == 0 and "site lab, bucket lab-evidence: ok (lab, versioning on, lock COMPLIANCE 30d)" in out
    record = ROOT / "runs" / "lab" / f"testhosts-{RUN.id}-record.txt"  # evidence is what the project wrote in runs/
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text("lab run\n")
    try:
        assert cli("evidence", "push", "lab", str(record))[0] == 0
    finally:
        record.unlink()
    code, out, _ = cli("evidence", "check", "lab")
    assert code == 0 and "record(s) proven" in out and "FAILED" not in out
    # The nodes reach the store on the bridge, as a real site's nodes reach theirs.
    first = stack.site.nodes[0].hostname
    probe = ssh(first, "exec 3<>/dev/tcp/172.29.0.1/9000 && echo open")
    assert probe.stdout.strip() == "open", probe.stderr


def test_the_lab_cluster_is_a_real_api_server_with_the_hosts_as_nodes(stack, hosts):
    from kubernetes import client

    cp = kube.load(RUN.kube_dir)
    assert cp is not None and cp.server == "https://172.29.0.1:6443"
    assert cp.contexts == (stack.site.kubernetes.context,)

    def read() -> tuple[dict[str, dict[str, str]], set[str]]:
        api = cp.client()
        nodes = {n.metadata.name: n.metadata.labels for n in client.CoreV1Api(api).list_node().items}
        crds = {c.metadata.name for c in client.ApiextensionsV1Api(api).list_custom_resource_definition().items}
        return nodes, crds

    nodes, crds = netns.inside(RUN.netns, read)  # the API server is in the run's network, as the store is
    assert nodes == {n.hostname: labels.node_labels(stack.site, n) for n in stack.site.nodes}
    assert {"baremetalhosts.metal3.io", "ippools.nv-ipam.nvidia.com", "nicclusterpolicies.mellanox.com"} <= crds
    assert lifecycle.status(RUN).cluster


def test_the_lab_pipeline_end_to_end_on_this_run(stack, hosts, cli):
    """`aifactory lab` (what `make lab` runs) on this run's hosts, already bootstrapped: every step, for real."""
    code, out, err = cli("lab", "--run", RUN.id, "--keep")
    assert code == 0, out[-3000:] + err
    for step in ("== test hosts up", "== pulumi up -s lab", "== bootstrap (second run", "== verify"):
        assert step in out
    for step in ("== object store of lab", "== evidence", "== pulumi destroy -s lab"):
        assert step in out
    assert "pulumi preview (no changes expected)" in out and "Kubernetes objects of the stack is left" in out
    assert "all 2 node(s) verified" in out and "store as declared" in out
    assert re.search(r"(\d+) of \1 record\(s\) proven", out), out[-2000:]
    assert "lab run complete" in out
    assert netns.exists(RUN.netns)  # --keep


def test_down_after_a_crash_leaves_nothing(stack, hosts):
    pids = [h.pid for h in hosts.hosts]
    RUN.state_file.unlink()  # as if `up` had died half-way
    lifecycle.down(RUN, say=lambda _m: None)
    st = lifecycle.status(RUN)
    assert not st.anything, st
    assert not any(RUN.dir.as_posix() in line for line in Path("/proc/mounts").read_text().splitlines())
    assert not netns.exists(RUN.netns)
    assert not any(Path(f"/proc/{p}").exists() for p in pids)
    assert not RUN.dir.exists()

"""An arm64 GB200 compute tray beside an x86_64 DGX node, both real test hosts, one run.

The tray is an arm64 Debian booted with systemd-nspawn under qemu-user-static (binfmt_misc), as
the harness plays every node. The real roles converge both: the arm64 driver user space from
Debian's non-free, NCCL's aarch64 wheel from the artifact mirror (x86_64 beside it), the rack's
IMEX node list, the IMEX service masked for NVIDIA's DRA driver. verify checks them for real,
and a planted break (a tray missing from the IMEX node list) fails it, naming the tray.

What the emulation costs is printed as the steps go (and is in README, "Test hosts"); the tray
is the only emulated host, so the cost stays that of one.
"""

from __future__ import annotations

import time

import pytest

from aifactory import inventory
from aifactory.bootstrap import run_playbook
from aifactory.stackfile import load_stack
from aifactory.testhosts import lifecycle, scratch
from aifactory.testhosts.run import Run, run_id_for
from aifactory.verify import runner

from .conftest import ROOT
from .test_testhosts import pytestmark as testhosts_marks
from .test_testhosts import terminal

pytestmark = testhosts_marks

SITE = "lab"
RUN = Run(run_id_for(ROOT, SITE, "arm64"), SITE)
TRAY, DGX = "lab-gb200-01", "lab-gpu-01"


@pytest.fixture(scope="module")
def rack(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest):
    write = terminal(request.config)
    project = scratch.rack_scale_lab(ROOT, tmp_path_factory.mktemp("rack"))
    stack = load_stack(project, SITE)
    inventory.write(stack, project)
    lifecycle.down(RUN, say=lambda _m: None)
    times: dict[str, float] = {}
    t0 = time.monotonic()
    try:
        lifecycle.up(stack, project, RUN, say=lambda line: write(f"    {line}"))
        times["up"] = time.monotonic() - t0
        write(f"    arm64 tray and x86_64 node up in {times['up']:.0f} s")
        yield project, stack, times, write
    finally:
        t1 = time.monotonic()
        lifecycle.down(RUN, say=lambda _m: None)
        write(f"    down in {time.monotonic() - t1:.0f} s; whole arm64 test {time.monotonic() - t0:.0f} s")


def ssh(host: str, command: str):
    return lifecycle.ssh(RUN, host, command)


def converge(project, stack, write, what: str, times: dict[str, float]):
    # The package proxy is the machine's, shared by every checkout's runs; `up` again (idempotent)
    # re-ensures it and this run's relay to it, as an SRE would before a long converge.
    lifecycle.up(stack, project, RUN, say=lambda _m: None)
    t0 = time.monotonic()
    result = run_playbook(stack, project, ssh_config=RUN.ssh_config, say=lambda _m: None, quiet=True)
    times[what] = time.monotonic() - t0
    write(f"    {what}: {times[what]:.0f} s, changed {dict((h, s.changed) for h, s in result.hosts.items())}")
    return result


def test_the_tray_is_an_arm64_userland_and_the_dgx_an_x86_64_one(rack):
    assert ssh(TRAY, "uname -m").stdout.strip() == "aarch64"
    assert ssh(TRAY, "dpkg --print-architecture").stdout.strip() == "arm64"
    assert ssh(DGX, "uname -m").stdout.strip() == "x86_64"
    # The emulated host got its address from the harness's unit (networkd cannot run under qemu-user).
    assert "172.29.0.31/24" in ssh(TRAY, "ip -4 -o addr show dev host0").stdout


def test_the_roles_converge_both_architectures_and_a_second_run_changes_nothing(rack):
    project, stack, times, write = rack
    first = converge(project, stack, write, "first bootstrap", times)
    assert not first.failed_hosts, first.reasons
    assert all(s.changed > 0 for s in first.hosts.values())
    # Debian's arm64 build of the pinned driver user space, and NCCL's aarch64 library.
    got = ssh(TRAY, "dpkg-query -W -f='${Version} ${Architecture} ${db:Status-Want}' nvidia-smi").stdout
    assert got == "535.261.03-1 arm64 hold"
    lib = ssh(TRAY, "readlink -f $(ldconfig -p | awk '/libnccl.so.2 /{print $NF}' | head -1)").stdout.strip()
    assert lib.startswith("/opt/nvidia/nccl/2.27.7-cuda12/")
    assert ssh(TRAY, f"od -An -tu2 -j18 -N2 {lib}").stdout.split() == ["183"]  # ELF e_machine: EM_AARCH64
    second = converge(project, stack, write, "second bootstrap", times)
    assert not second.failed_hosts, second.reasons
    assert {h: s.changed for h, s in second.hosts.items()} == {TRAY: 0, DGX: 0}


def test_the_tray_holds_its_racks_imex_domain_with_the_service_masked(rack):
    assert ssh(TRAY, "cat /etc/nvidia-imex/nodes_config.cfg").stdout == "172.29.0.31\n"
    assert ssh(TRAY, "systemctl is-enabled nvidia-imex.service").stdout.strip() == "masked"
    conf = ssh(TRAY, "cat /etc/nccl.conf").stdout
    assert "NCCL_MNNVL_ENABLE=2\n" in conf and "NCCL_NVLS_ENABLE=2\n" in conf
    assert "NCCL_MNNVL_ENABLE=0\n" in ssh(DGX, "cat /etc/nccl.conf").stdout
    # The DGX node is no rack-scale tray: nothing of IMEX is there.
    assert ssh(DGX, "test -e /etc/nvidia-imex").returncode != 0


def test_verify_passes_on_both_and_reads_the_aarch64_nccl(rack):
    project, stack, times, write = rack
    t0 = time.monotonic()
    results = {r.node.hostname: r for r in runner.run(stack, project, say=lambda _m: None, ssh_config=RUN.ssh_config)}
    times["verify"] = time.monotonic() - t0
    tray_s, dgx_s = results[TRAY].seconds, results[DGX].seconds
    write(f"    verify of both: {times['verify']:.0f} s (tray {tray_s:.0f} s, DGX {dgx_s:.0f} s)")
    assert not any(r.failed for r in results.values()), runner.table(list(results.values()))
    tray = results[TRAY].checks
    for check in (
        "nccl_version",
        "driver_packages_pinned_and_held",
        "imex_node_list_is_the_rack",
        "imex_service_state",
    ):
        assert tray[check].status == runner.PASS, (check, tray[check])
    assert tray["imex_packages_pinned_and_held"].status == runner.SKIP  # Debian ships none
    assert tray["nvlink_clique"].status == runner.SKIP and "no NVIDIA GPU" in tray["nvlink_clique"].message
    assert tray[runner.CLIQUE_CHECK].status == runner.SKIP
    assert results[DGX].checks["imex_node_list_is_the_rack"].status == runner.SKIP


def test_a_tray_missing_from_the_imex_node_list_fails_verify_and_bootstrap_restores_it(rack):
    project, stack, times, write = rack
    assert ssh(TRAY, "printf '# emptied by hand\\n' > /etc/nvidia-imex/nodes_config.cfg").returncode == 0
    results = {r.node.hostname: r for r in runner.run(stack, project, say=lambda _m: None, ssh_config=RUN.ssh_config)}
    check = results[TRAY].checks["imex_node_list_is_the_rack"]
    assert check.status == runner.FAIL
    assert "misses 1 tray(s) of the rack: 172.29.0.31 (lab-gb200-01)" in check.message
    assert not results[DGX].failed
    again = converge(project, stack, write, "repair bootstrap", times)
    assert again.hosts[TRAY].changed > 0 and again.hosts[DGX].changed == 0
    assert ssh(TRAY, "cat /etc/nvidia-imex/nodes_config.cfg").stdout == "172.29.0.31\n"

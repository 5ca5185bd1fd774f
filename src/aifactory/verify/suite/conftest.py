"""Fixtures of the node suite: the node's expectations (from its site) and facts probed once per node."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from aifactory.verify.expectations import NodeExpectations
from aifactory.verify.parsers import ParseError, SmiReport, parse_nvidia_smi_xml

CAP_SYS_RESOURCE = 24


@dataclass(frozen=True)
class Facts:
    distro: str  # "debian" or "ubuntu"
    release: str
    kernel: str
    machine: str  # uname -m: x86_64 or aarch64
    container: str  # systemd-detect-virt --container, "" on bare metal
    can_raise_limits: bool
    smi: SmiReport | None
    no_gpu_reason: str


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--expectations", required=True, metavar="FILE", help="the node's expectations, written by aifactory verify"
    )


@pytest.fixture(scope="module")
def expect(request: pytest.FixtureRequest) -> NodeExpectations:
    return NodeExpectations.from_json(Path(request.config.getoption("--expectations")).read_text())


def _cap_bounding(host) -> int:
    for line in host.file("/proc/self/status").content_string.splitlines():
        if line.startswith("CapBnd:"):
            return int(line.split()[1], 16)
    return 0


@pytest.fixture(scope="module")
def facts(host) -> Facts:
    info = host.system_info
    virt = host.run("systemd-detect-virt --container")
    container = virt.stdout.strip() if virt.rc == 0 else ""
    smi = host.run("nvidia-smi -q -x")
    report, reason = None, ""
    if smi.rc == 0:
        try:
            report = parse_nvidia_smi_xml(smi.stdout)
        except ParseError as exc:
            reason = f"nvidia-smi -q -x printed something unreadable: {exc}"
    else:
        pci = host.run("lspci -n -d 10de:")
        said = [line.split(". ")[0].rstrip(".") for line in (smi.stdout or smi.stderr).strip().splitlines()[:1]]
        reason = (
            f"no NVIDIA GPU on this node (lspci -d 10de: lists none; nvidia-smi exit {smi.rc}"
            + (f": {said[0]}" if said else "")
            + ")"
            if pci.rc == 0 and not pci.stdout.strip()
            else f"GPU present but the driver does not answer (nvidia-smi exit {smi.rc}: {said[0] if said else ''})"
        )
    return Facts(
        distro=(info.distribution or "").lower(),
        release=info.release or "",
        kernel=host.run("uname -r").stdout.strip(),
        machine=host.run("uname -m").stdout.strip(),
        container=container,
        can_raise_limits=bool(_cap_bounding(host) >> CAP_SYS_RESOURCE & 1),
        smi=report,
        no_gpu_reason=reason,
    )


def run_python(host, code: str) -> dict:
    """Run a snippet with the node's own python3; it prints one JSON object."""
    out = host.run("python3 -c %s", code)
    last = (out.stderr.strip().splitlines() or [""])[-1]
    assert out.rc == 0, f"python3 on the node failed: {last}"
    return json.loads(out.stdout)

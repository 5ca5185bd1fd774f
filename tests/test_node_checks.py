"""The node suite's GPU checks, run on the real captures under tests/fixtures/gpu through a stub host.

No GPU is reachable here, so on the test hosts these checks skip for that reason. Here each check
function gets what a GPU node printed (SOURCES.md says whose machine), through a host object that
answers only the commands and files the check reads: a good node passes, a bad one fails, and the
failure names what is wrong. The stub stands in for testinfra's host only; the parsing and the
judgement are the suite's own code.
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from aifactory.stackfile import load_stack
from aifactory.verify import runner
from aifactory.verify.expectations import SkuFacts, expectations
from aifactory.verify.parsers import parse_nvidia_smi_xml

from .conftest import ROOT

FIX = Path(__file__).parent / "fixtures" / "gpu"
sys.path.insert(0, str(runner.SUITE))
suite = importlib.import_module("test_node")
Facts = importlib.import_module("conftest").Facts
sys.path.remove(str(runner.SUITE))


@dataclass
class Out:
    rc: int
    stdout: str
    stderr: str = ""


@dataclass
class File:
    exists: bool


@dataclass
class Service:
    is_running: bool


class StubHost:
    """testinfra's host, reduced to what the GPU checks ask: run(), file(), service()."""

    def __init__(self, outputs: dict[str, str], files: set[str] = frozenset(), running: set[str] = frozenset()):
        self.outputs, self.files, self.running = outputs, set(files), set(running)
        self.ran: list[str] = []

    def run(self, command: str, *args: str) -> Out:
        self.ran.append(command)
        for prefix, text in self.outputs.items():
            if command.startswith(prefix) or prefix in command:
                return Out(0, text)
        return Out(127, "", f"{command}: not found")

    def file(self, path: str) -> File:
        return File(path in self.files)

    def service(self, name: str) -> Service:
        return Service(name in self.running)


def capture(name: str) -> str:
    return (FIX / name).read_text()


@pytest.fixture(scope="module")
def h100():
    """The expectations verify writes for a DGX H100 node of za (catalog and roles, not typed here)."""
    za = load_stack(ROOT, "za").site
    return expectations(ROOT, za, za.nodes[0])


def facts_from(xml: str) -> Facts:
    return Facts("ubuntu", "22.04", "5.15.0-1", "", True, parse_nvidia_smi_xml(xml), "")


# A real 8-GPU H100 all-reduce (NVIDIA/nccl-tests#290): its largest size reaches Azure's 460 GB/s.
def test_all_reduce_passes_on_a_real_8_gpu_h100_run(h100):
    facts = replace(facts_from(capture("nvidia-smi-q-x.rtx4070-laptop.575.51.02.xml")))
    host = StubHost({h100.all_reduce_perf: capture("all_reduce_perf.h100x8.single-node.txt")}, {h100.all_reduce_perf})
    suite.test_all_reduce_bandwidth(host, h100, facts)
    assert host.ran == [f"{h100.all_reduce_perf} -b 16G -e 16G -f 2 -g 1"]


def test_all_reduce_fails_below_the_threshold(h100):
    facts = facts_from(capture("nvidia-smi-q-x.rtx4070-laptop.575.51.02.xml"))
    host = StubHost(
        {h100.all_reduce_perf: capture("all_reduce_perf.h100x16.two-nodes.srun.txt")}, {h100.all_reduce_perf}
    )
    with pytest.raises(AssertionError, match=r"all-reduce bus bandwidth 155\.\d+ GB/s .* below 460"):
        suite.test_all_reduce_bandwidth(host, h100, facts)


def test_all_reduce_fails_when_nccl_tests_is_missing_on_a_gpu_node(h100):
    """No pass by absence: the role builds all_reduce_perf on GPU nodes, so a GPU node without it fails."""
    facts = facts_from(capture("nvidia-smi-q-x.rtx4070-laptop.575.51.02.xml"))
    host = StubHost({h100.all_reduce_perf: capture("all_reduce_perf.h100x8.single-node.txt")})
    with pytest.raises(AssertionError, match="is missing: roles/nccl builds nccl-tests"):
        suite.test_all_reduce_bandwidth(host, h100, facts)
    assert host.ran == []
    assert h100.all_reduce_perf == "/opt/nvidia/nccl-tests/2.19.6-nccl2.28.7/build/all_reduce_perf"


def test_all_reduce_fails_on_wrong_results(h100):
    facts = facts_from(capture("nvidia-smi-q-x.rtx4070-laptop.575.51.02.xml"))
    text = capture("all_reduce_perf.h100x8.single-node.txt")
    last = next(line for line in text.splitlines() if line.strip().startswith("4294967296"))
    broken = text.replace(last, last.replace("      0", "      3", 1), 1)
    assert broken != text
    host = StubHost({h100.all_reduce_perf: broken}, {h100.all_reduce_perf})
    with pytest.raises(AssertionError, match="wrong results"):
        suite.test_all_reduce_bandwidth(host, h100, facts)


def _sku(h100, **changes) -> object:
    return replace(h100, sku=replace(h100.sku, **changes))


def test_nvlink_passes_when_every_gpu_of_the_sku_has_all_its_links(h100):
    """The capture lists GPUs 0 and 1 with 18 links each: a two-GPU system of the same links passes."""
    two = _sku(h100, gpu_count=2)
    facts = facts_from(capture("nvidia-smi-q-x.rtx4070-laptop.575.51.02.xml"))
    suite.test_nvlink_all_up(
        StubHost({"nvidia-smi nvlink --status": capture("nvidia-smi-nvlink-status.h100.txt")}), two, facts
    )


def test_nvlink_fails_for_an_8_gpu_sku_that_lists_two(h100):
    assert h100.sku == SkuFacts("dgx-h100", 8, "NVIDIA H100", 18, True)
    facts = facts_from(capture("nvidia-smi-q-x.rtx4070-laptop.575.51.02.xml"))
    host = StubHost({"nvidia-smi nvlink --status": capture("nvidia-smi-nvlink-status.h100.txt")})
    with pytest.raises(AssertionError, match=r"no NVLink status for GPUs \[2, 3, 4, 5, 6, 7\]"):
        suite.test_nvlink_all_up(host, h100, facts)


def test_nvlink_fails_on_a_link_down(h100):
    two = _sku(h100, gpu_count=2)
    facts = facts_from(capture("nvidia-smi-q-x.rtx4070-laptop.575.51.02.xml"))
    text = capture("nvidia-smi-nvlink-status.h100.txt").replace("Link 7: 26.562 GB/s", "Link 7: <inactive>", 1)
    with pytest.raises(AssertionError, match=r"active NVLinks per GPU \{0: 17\}"):
        suite.test_nvlink_all_up(StubHost({"nvidia-smi nvlink --status": text}), two, facts)


FABRIC_NA = "<state>N/A</state>\n      <status>N/A</status>"


def test_fabric_manager_fails_on_a_fabric_state_of_n_a(h100):
    """The real capture's fabric is N/A (a GPU without NVSwitch): on an NVSwitch SKU that is a failure."""
    xml = capture("nvidia-smi-q-x.rtx4070-laptop.575.51.02.xml")
    assert FABRIC_NA in xml
    host = StubHost({}, running={"nvidia-fabricmanager"})
    with pytest.raises(AssertionError, match=r"not Completed/Success on GPUs \{0: 'state N/A, status N/A'\}"):
        suite.test_fabric_manager(host, h100, facts_from(xml))


@pytest.mark.parametrize(
    ("state", "status", "ok"),
    [
        ("Completed", "Success", True),
        ("Completed", "N/A", False),
        ("In Progress", "N/A", False),
        ("Completed", "Failure", False),
    ],
)
def test_fabric_manager_needs_both_state_and_status(h100, state, status, ok):
    """The capture's <fabric> with the state and status an NVSwitch node reports (edited in, the rest as captured)."""
    xml = capture("nvidia-smi-q-x.rtx4070-laptop.575.51.02.xml").replace(
        FABRIC_NA, f"<state>{state}</state>\n      <status>{status}</status>"
    )
    host = StubHost({}, running={"nvidia-fabricmanager"})
    if ok:
        suite.test_fabric_manager(host, h100, facts_from(xml))
    else:
        with pytest.raises(AssertionError, match="not Completed/Success"):
            suite.test_fabric_manager(host, h100, facts_from(xml))


def test_fabric_manager_fails_when_the_service_is_down(h100):
    xml = capture("nvidia-smi-q-x.rtx4070-laptop.575.51.02.xml").replace(
        FABRIC_NA, "<state>Completed</state>\n      <status>Success</status>"
    )
    with pytest.raises(AssertionError, match="nvidia-fabricmanager is not running"):
        suite.test_fabric_manager(StubHost({}), h100, facts_from(xml))


def test_the_gpu_checks_judge_the_real_capture(h100):
    """The RTX 4070 capture on a DGX H100's expectations: one GPU, not an H100, no ECC; persistence is on."""
    facts = facts_from(capture("nvidia-smi-q-x.rtx4070-laptop.575.51.02.xml"))
    with pytest.raises(AssertionError, match="1 GPUs, a dgx-h100 has 8"):
        suite.test_gpu_count_and_model(h100, facts)
    with pytest.raises(AssertionError, match=r"ECC is not enabled on GPUs \[0\]"):
        suite.test_gpu_ecc_and_memory(facts)
    with pytest.raises(AssertionError, match=r"nvidia-smi reports driver 575\.51\.02"):
        suite.test_gpu_driver_version(h100, facts)
    suite.test_gpu_persistence_mode(facts)  # Enabled in the capture
    laptop = replace(h100, driver="575.51.02", sku=replace(h100.sku, gpu_count=1, gpu_product_prefix="NVIDIA GeForce"))
    suite.test_gpu_count_and_model(laptop, facts)
    suite.test_gpu_driver_version(laptop, facts)

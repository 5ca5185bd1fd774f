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


def facts_from(xml: str, machine: str = "x86_64") -> Facts:
    return Facts("ubuntu", "22.04", "5.15.0-1", machine, "", True, parse_nvidia_smi_xml(xml), "")


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


# -- rack-scale trays (GB200): IMEX, the NVLink clique, the all-reduce figure ---------------------------


@pytest.fixture(scope="module")
def tray():
    """The expectations of a GB200 tray of ma's rack gb200-r01 (the DRA driver runs IMEX there)."""
    ma = load_stack(ROOT, "ma").site
    return expectations(ROOT, ma, next(n for n in ma.nodes if n.sku == "gb200-nvl72"))


CLIQUE = "<cliqueId>N/A</cliqueId>\n      <clusterUuid>N/A</clusterUuid>"


def _clique_xml(clique: str, cluster: str) -> str:
    xml = capture("nvidia-smi-q-x.rtx4070-laptop.575.51.02.xml")
    assert CLIQUE in xml
    return xml.replace(CLIQUE, f"<cliqueId>{clique}</cliqueId>\n      <clusterUuid>{cluster}</clusterUuid>")


def test_the_clique_is_read_and_recorded_for_the_rack_check(tray):
    recorded: dict[str, str] = {}
    facts = facts_from(_clique_xml("32766", "6f0e4d12-8b0a-4c8e-a1b2-3c4d5e6f7a8b"), "aarch64")
    suite.test_nvlink_clique(tray, facts, recorded.__setitem__)
    assert recorded == {"clique": "6f0e4d12-8b0a-4c8e-a1b2-3c4d5e6f7a8b.32766"}


def test_a_tray_off_the_fabric_has_no_clique_and_fails(tray):
    with pytest.raises(AssertionError, match=r"GPUs without an NVLink fabric clique: \[0\]"):
        suite.test_nvlink_clique(tray, facts_from(capture("nvidia-smi-q-x.rtx4070-laptop.575.51.02.xml")), print)


def test_the_runner_fails_a_tray_on_another_clique_than_its_rack():
    ma = load_stack(ROOT, "ma").site
    trays = [n for n in ma.nodes if n.nvlink_domain == "gb200-r01"][:3]
    results = [runner.NodeResult(n, properties={"clique": "u.1"}) for n in trays]
    results[2].properties["clique"] = "u.2"
    runner.across_racks(results)
    got = [r.checks[runner.CLIQUE_CHECK].status for r in results]
    assert got == [runner.PASS, runner.PASS, runner.FAIL]
    assert "rest of rack gb200-r01 on u.1" in results[2].checks[runner.CLIQUE_CHECK].message


def test_host_run_imex_must_answer_ready(tray):
    host_run = replace(tray, imex_daemon="host")
    facts = facts_from(capture("nvidia-smi-q-x.rtx4070-laptop.575.51.02.xml"), "aarch64")
    suite.test_imex_domain_ready(StubHost({"nvidia-imex-ctl -q": "READY\n"}), host_run, facts)
    with pytest.raises(AssertionError, match="nvidia-imex-ctl -q: UNAVAILABLE"):
        suite.test_imex_domain_ready(StubHost({"nvidia-imex-ctl -q": "UNAVAILABLE\n"}), host_run, facts)
    with pytest.raises(pytest.skip.Exception, match="the DRA driver runs IMEX per ComputeDomain"):
        suite.test_imex_domain_ready(StubHost({}), tray, facts)


class _FileText:
    def __init__(self, text: str) -> None:
        self.exists, self.content_string = True, text


def test_the_imex_channel_device_must_be_registered(tray):
    facts = facts_from(capture("nvidia-smi-q-x.rtx4070-laptop.575.51.02.xml"), "aarch64")
    host = StubHost({})
    host.file = lambda path: _FileText("195 nvidia\n234 nvidia-caps-imex-channels\n")  # type: ignore[method-assign]
    suite.test_imex_channels(host, tray, facts)
    host.file = lambda path: _FileText("195 nvidia\n")  # type: ignore[method-assign]
    with pytest.raises(AssertionError, match="registers no nvidia-caps-imex-channels"):
        suite.test_imex_channels(host, tray, facts)


def test_a_tray_is_never_held_to_the_racks_all_reduce_figure(tray):
    facts = facts_from(capture("nvidia-smi-q-x.rtx4070-laptop.575.51.02.xml"), "aarch64")
    with pytest.raises(pytest.skip.Exception, match=r"a whole rack's \(839 GB/s"):
        suite.test_all_reduce_bandwidth(StubHost({}), tray, facts)


def test_the_pci_topology_check_compares_the_nodes_tree_with_the_pool(h100):
    """On an H100 the pool's ports are NVIDIA's table; a node reporting other names fails, naming both."""
    import json

    gpus = [{"pci": f"0000:{0x10 * (g + 1):02x}:00.0", "path": ["pci0000:00", f"sw{g}", f"g{g}"]} for g in range(8)]
    nics = [
        {"pci": pci, "path": ["pci0000:00", f"sw{g}", f"n{g}"], "netdev": [netdev], "rdma": [rdma]}
        for g, (_, pci, rdma, netdev) in enumerate(h100.topology)
    ]
    good = StubHost({"python3 -c": json.dumps({"gpus": gpus, "nics": nics})})
    suite.test_pci_topology_matches_the_pool(good, h100)
    nics[3]["rdma"], nics[4]["rdma"] = ["mlx5_6"], ["mlx5_5"]
    bad = StubHost({"python3 -c": json.dumps({"gpus": gpus, "nics": nics})})
    with pytest.raises(AssertionError, match=r"rail 3: this node reports GPU 0000:40:00.0 beside mlx5_6/ibp94s0"):
        suite.test_pci_topology_matches_the_pool(bad, h100)

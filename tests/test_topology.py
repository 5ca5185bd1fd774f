"""A node's GPU/NIC topology read from sysfs, and the pool's recorded ports it is compared with.

The trees here are built the way the kernel lays out /sys: /sys/bus/pci/devices/<address> is a
link into /sys/devices/pci<domain>:<bus>/<bridge>/.../<address>, with the device's vendor and
class files, its netdevs under net/ and its RDMA devices under infiniband/. The reader is the
program verify runs on the node, run here with the tree's root as its argument.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from aifactory.verify.topology import TOPOLOGY_SNIPPET, differences, parse, rails


class Tree:
    """A fake /sys: devices placed under bridges, linked from bus/pci/devices."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "bus" / "pci" / "devices").mkdir(parents=True)

    def device(self, chain: list[str], vendor: str, cls: str, *, net: str = "", rdma: str = "") -> None:
        path = self.root / "devices" / Path(*chain)
        path.mkdir(parents=True)
        (path / "vendor").write_text(vendor + "\n")
        (path / "class").write_text(cls + "\n")
        if net:
            (path / "net" / net).mkdir(parents=True)
        if rdma:
            (path / "infiniband" / rdma).mkdir(parents=True)
        link = self.root / "bus" / "pci" / "devices" / chain[-1]
        link.symlink_to(os.path.relpath(path, link.parent))

    def report(self) -> dict:
        out = subprocess.run(
            [sys.executable, "-c", TOPOLOGY_SNIPPET, str(self.root)], capture_output=True, text=True, check=True
        )
        return parse(out.stdout)


GPU = ("0x10de", "0x030200")
CX7 = ("0x15b3", "0x020700")
BF3 = ("0x15b3", "0x020000")


def b200_like(root: Path, swap: tuple[int, int] | None = None) -> Tree:
    """Eight GPUs, each behind a PCIe switch with one single-port NIC; two dual-port DPUs elsewhere.

    The addresses are made up for the test (no NVIDIA source gives a DGX B200's): the point is the
    shape, a GPU and its NIC under one switch. ``swap`` puts two GPUs' NICs under each other's switch.
    """
    t = Tree(root)
    nic_of = list(range(8))
    if swap:
        a, b = swap
        nic_of[a], nic_of[b] = nic_of[b], nic_of[a]
    for g in range(8):
        rc = f"pci0000:{0x10 * (g + 1):02x}"
        up = [rc, f"0000:{0x10 * (g + 1):02x}:01.0", f"0000:{0x10 * (g + 1) + 1:02x}:00.0"]
        t.device([*up, f"0000:{0x10 * (g + 1) + 2:02x}:00.0", f"0000:{0x10 * (g + 1) + 3:02x}:00.0"], *GPU)
    for g in range(8):
        n = nic_of[g]
        up = [f"pci0000:{0x10 * (g + 1):02x}", f"0000:{0x10 * (g + 1):02x}:01.0", f"0000:{0x10 * (g + 1) + 1:02x}:00.0"]
        bus = 0x10 * (g + 1) + 4
        t.device(
            [*up, f"0000:{0x10 * (g + 1) + 2:02x}:01.0", f"0000:{bus:02x}:00.0"],
            *CX7,
            net=f"ibp{bus}s0",
            rdma=f"mlx5_{n}",
        )
    for k, bus in enumerate((0xA0, 0xB0)):
        for fn in (0, 1):
            t.device(
                ["pci0000:a0" if k == 0 else "pci0000:b0", f"0000:{bus:02x}:01.0", f"0000:{bus + 1:02x}:00.{fn}"],
                *BF3,
                net=f"enp{bus + 1}s0f{fn}np{fn}",
                rdma=f"mlx5_{8 + 2 * k + fn}",
            )
    return t


def test_each_gpu_gets_the_nic_under_its_switch_and_the_dpus_serve_none(tmp_path):
    found = rails(b200_like(tmp_path).report())
    assert [b.rdma for b in found] == [f"mlx5_{g}" for g in range(8)]
    assert [b.gpu for b in found] == [f"0000:{0x10 * (g + 1) + 3:02x}:00.0" for g in range(8)]
    assert all(b.shared == 3 for b in found)  # root complex, root port, switch upstream port
    assert not any(b.rdma in {"mlx5_8", "mlx5_9", "mlx5_10", "mlx5_11"} for b in found)


def test_gpus_without_a_switch_share_their_root_complex_nics_one_each(tmp_path):
    """A Grace socket's two GPUs and two NICs on one root complex: one NIC each, in PCI order."""
    t = Tree(tmp_path)
    for dom, base in (("0000", 0x00), ("0008", 0x00)):
        rc = f"pci{dom}:{base:02x}"
        for k in (1, 2):
            t.device([rc, f"{dom}:{base:02x}:0{k}.0", f"{dom}:0{k}:00.0"], *GPU)
            t.device(
                [rc, f"{dom}:{base:02x}:0{k + 2}.0", f"{dom}:0{k + 2}:00.0"],
                *CX7,
                net=f"ib{dom}{k}",
                rdma=f"mlx5_{dom}{k}",
            )
    found = rails(t.report())
    assert len({b.pci for b in found}) == 4
    assert [b.pci.split(":")[0] for b in found] == [b.gpu.split(":")[0] for b in found]


def test_a_node_whose_topology_differs_from_its_pools_fails_naming_both(tmp_path):
    """A B200 node with two NICs in each other's slots, against the pool's ports recorded from a good node."""
    good = rails(b200_like(tmp_path / "good").report())
    recorded = [(b.gpu, b.pci, b.rdma, b.netdev) for b in good]
    assert differences(recorded, good) == []
    bad = rails(b200_like(tmp_path / "bad", swap=(2, 3)).report())
    problems = differences(recorded, bad)
    assert len(problems) == 2
    assert "rail 2: this node reports GPU 0000:33:00.0 beside mlx5_3/ibp52s0 (0000:34:00.0)" in problems[0]
    assert "the pool has GPU 0000:33:00.0 beside mlx5_2/ibp52s0 (0000:34:00.0)" in problems[0]


def test_a_missing_nic_is_named(tmp_path):
    recorded = [(b.gpu, b.pci, b.rdma, b.netdev) for b in rails(b200_like(tmp_path).report())]
    report = b200_like(tmp_path / "short").report()
    report["nics"] = [n for n in report["nics"] if n["rdma"] != ["mlx5_7"]]
    problems = differences(recorded, rails(report))
    assert problems and "rail 7" in problems[-1] and "mlx5_7" in problems[-1]


def test_a_node_without_gpus_reports_none(tmp_path):
    t = Tree(tmp_path)
    t.device(["pci0000:00", "0000:00:01.0", "0000:01:00.0"], *BF3, net="eth0", rdma="mlx5_0")
    report = t.report()
    assert report["gpus"] == [] and rails(report) == []


def test_the_report_is_refused_when_it_is_not_one():
    with pytest.raises(ValueError):
        parse(json.dumps(["not", "a", "report"]))


def _ma_b200():
    from aifactory.stackfile import load_stack

    from .conftest import ROOT

    stack = load_stack(ROOT, "ma")
    node = next(n.hostname for n in stack.site.nodes if n.sku == "dgx-b200")
    return stack, node


def test_the_recorded_block_is_what_the_stack_takes_and_the_rails_follow_it(tmp_path, workdir):
    """`aifactory topology` prints a block; pasted under the pool, the B200 rails come from it."""
    import yaml

    from aifactory import inventory
    from aifactory.cli.operations import topology_block
    from aifactory.stackfile import load_stack

    stack, node = _ma_b200()
    block, notes = topology_block(stack, node, b200_like(tmp_path).report())
    assert notes == []  # nothing recorded yet to compare with
    recorded = yaml.safe_load("\n".join(line for line in block.splitlines() if not line.startswith("#")))["topology"]
    assert recorded["reported_by"] == node and len(recorded["compute"]) == 8
    path = workdir / "stacks" / "Pulumi.ma.yaml"
    text = path.read_text()
    anchor = '        hostname: "{site}-bgr1-b200-{index:02d}"\n'
    assert anchor in text
    body = "\n".join(block.splitlines()[1:])
    path.write_text(text.replace(anchor, anchor + body + "\n", 1))
    site = load_stack(workdir, "ma").site
    assert "dgx-b200" in site.rail_skus
    sku_vars = inventory.group_vars_sku(site, "dgx-b200")
    assert sku_vars["nccl_ib_hca"] == [f"mlx5_{g}" for g in range(8)]
    assert [r["netdev"] for r in sku_vars["rdma_rails"]][:2] == ["ibp20s0", "ibp36s0"]


def test_a_hostile_name_from_the_node_is_refused(tmp_path):
    from aifactory.cli.operations import topology_block
    from aifactory.errors import ConfigError

    stack, node = _ma_b200()
    report = b200_like(tmp_path).report()
    report["nics"][0]["netdev"] = ["ib0\nNCCL_IB_HCA=mlx5_9"]
    with pytest.raises(ConfigError, match="outside its grammar"):
        topology_block(stack, node, report)

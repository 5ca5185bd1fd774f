"""A node's GPU and NIC topology, read from the node's own sysfs: which NIC sits beside which GPU.

NVIDIA publishes the DGX H100 port table (PCI address, netdev and RDMA device of every port) but
no such table for DGX B200 or GB200 trays. Where no source gives the names, they are read from
the node: every NVIDIA GPU (vendor 0x10de, display class 0x03) and every NVIDIA/Mellanox network
function (vendor 0x15b3, class 0x0200 Ethernet or 0x0207 InfiniBand) under /sys/bus/pci/devices,
each NIC's netdev (``<device>/net/*``) and RDMA device (``<device>/infiniband/*``), and the PCI
path of each (the device link resolves through every bridge above it). The compute NIC of a GPU
is the one that shares the longest PCI path with it (the same PCIe switch; what ``nvidia-smi topo
-m`` shows as PIX/PXB). Rail N is the NIC beside GPU N, GPUs in PCI order (nvidia-smi's order).

The same program runs on the node (``python3 -c``, one round trip) and in the tests against a
built sysfs tree: it takes the sysfs root as its argument.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

TOPOLOGY_SNIPPET = r"""
import json, os, sys
root = sys.argv[1] if len(sys.argv) > 1 else "/sys"
base = os.path.join(root, "bus", "pci", "devices")
def read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""
def names(path):
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []
gpus, nics = [], []
for addr in names(base):
    dev = os.path.join(base, addr)
    vendor, cls = read(os.path.join(dev, "vendor")), read(os.path.join(dev, "class"))
    chain = [p for p in os.path.realpath(dev).split(os.sep) if p.count(":") == 2 or p.startswith("pci")]
    if vendor == "0x10de" and cls.startswith("0x03"):
        gpus.append({"pci": addr, "path": chain})
    elif vendor == "0x15b3" and cls[:6] in ("0x0200", "0x0207"):
        nics.append({"pci": addr, "path": chain, "netdev": names(os.path.join(dev, "net")),
                     "rdma": names(os.path.join(dev, "infiniband"))})
print(json.dumps({"gpus": gpus, "nics": nics}))
"""


@dataclass(frozen=True)
class Beside:
    """A GPU and the NIC nearest to it on the PCI tree."""

    gpu: str  # PCI address of the GPU
    pci: str  # PCI address of the NIC function
    rdma: str  # its RDMA device ("" when it has none)
    netdev: str  # its netdev ("" when it has none)
    shared: int  # PCI path elements the two share (root complex, bridges)

    def names(self) -> str:
        return f"{self.rdma or '-'}/{self.netdev or '-'} ({self.pci})"


def _shared(a: list[str], b: list[str]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def rails(report: dict[str, Any]) -> list[Beside]:
    """Rail order from a node's report: for each GPU in PCI order, the NIC function nearest to it.

    Each NIC function serves one rail: GPUs that share a root complex with two NICs and no switch
    (a Grace socket's two GPUs and two NICs) take them in PCI order. Ties go to the lower PCI
    address. Only functions with an RDMA device serve a rail (NCCL's NET/IB needs one).
    """
    nics = [n for n in report.get("nics", []) if n.get("rdma")]
    out = []
    for gpu in sorted(report.get("gpus", []), key=lambda g: g["pci"]):
        if not nics:
            break
        best = max(nics, key=lambda n: (_shared(gpu["path"], n["path"]), [-ord(c) for c in n["pci"]]))
        nics = [n for n in nics if n is not best]
        out.append(
            Beside(
                gpu=gpu["pci"],
                pci=best["pci"],
                rdma=best["rdma"][0],
                netdev=(best.get("netdev") or [""])[0],
                shared=_shared(gpu["path"], best["path"]),
            )
        )
    return out


def parse(text: str) -> dict[str, Any]:
    report = json.loads(text)
    if not isinstance(report, dict) or not isinstance(report.get("gpus"), list):
        raise ValueError("not a topology report")
    return report


def differences(expected: list[tuple[str, str, str, str]], found: list[Beside]) -> list[str]:
    """Each rail where the node's own topology differs from its pool's, naming both sides.

    ``expected`` rows are (GPU PCI address or "" where the source numbers GPUs, NIC PCI address,
    RDMA device, netdev), in rail order.
    """
    problems = []
    for i, (gpu, pci, rdma, netdev) in enumerate(expected):
        if i >= len(found):
            problems.append(f"rail {i}: the pool has {rdma}/{netdev} ({pci}); this node reports no GPU {i} with a NIC")
            continue
        got = found[i]
        if (gpu and got.gpu != gpu) or (got.pci, got.rdma, got.netdev) != (pci, rdma, netdev):
            problems.append(
                f"rail {i}: this node reports GPU {got.gpu} beside {got.names()}; the pool has "
                f"GPU {gpu or i} beside {rdma}/{netdev} ({pci})"
            )
    for extra in found[len(expected) :]:
        problems.append(f"this node reports GPU {extra.gpu} beside {extra.names()}, a rail the pool does not have")
    return problems

"""A scratch project: the lab stack with N nodes (and any other change), beside the real roles.

For benchmarks and tests that need more test hosts than the lab declares, or another version of
its GPU stack: the roles, playbooks and templates are links to this checkout's, the stack a copy.
"""

from __future__ import annotations

import copy
import shutil
import sys
from pathlib import Path
from typing import Any

import yaml


def project_with(root: Path, where: Path, nodes: int, gpu_stack: dict[str, Any] | None = None) -> Path:
    """Write the scratch project into ``where``; ``gpu_stack`` entries replace the lab's."""
    for name in ("Pulumi.yaml", "ansible.cfg"):
        shutil.copy(root / name, where / name)
    for name in ("roles", "playbooks", "templates"):
        (where / name).symlink_to(root / name)
    (where / "stacks").mkdir()
    shutil.copy(root / "stacks" / "lab.passphrase", where / "stacks" / "lab.passphrase")  # the lab store's keys
    doc = yaml.safe_load((root / "stacks" / "Pulumi.lab.yaml").read_text())
    site = doc["config"]["aifactory:site"]
    pool = site["pools"][0]
    template = pool["nodes"][0]
    pool["nodes"] = []
    for i in range(nodes):
        node = copy.deepcopy(template)
        node["bmc"] = f"172.29.1.{11 + i}"
        node["mac"] = f"02:a1:f0:00:00:{11 + i:02x}"
        pool["nodes"].append(node)
    pool["scalable_units"] = [{"name": "su1", "nodes": nodes}]
    site["tenants"] = [{**t, "gpu_quota": min(t["gpu_quota"], 8 * nodes // 2)} for t in site["tenants"]]
    site["gpu_stack"].update(gpu_stack or {})
    write_stack(where, doc)
    return where


def write_stack(where: Path, doc: dict[str, Any]) -> None:
    (where / "stacks" / "Pulumi.lab.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))


def read_stack(where: Path) -> dict[str, Any]:
    return yaml.safe_load((where / "stacks" / "Pulumi.lab.yaml").read_text())


def with_venv(where: Path) -> None:
    """The scratch project's `.venv` is this interpreter's, as the checkout's is."""
    link = where / ".venv"
    if not link.exists():
        link.symlink_to(Path(sys.prefix))


def pulumi_project(root: Path, where: Path, *, lab_passphrase: bool = True) -> Path:
    """A folder the real CLI can run the program in: Pulumi.yaml, the program entry, the lab passphrase.

    Without the lab passphrase (``lab_passphrase=False``) the policy cannot tell a stack keyed with
    it, as in a project whose stacks are not the lab's.
    """
    (where / "stacks").mkdir(parents=True, exist_ok=True)
    shutil.copy(root / "Pulumi.yaml", where / "Pulumi.yaml")
    shutil.copy(root / "stacks" / "__main__.py", where / "stacks" / "__main__.py")
    if lab_passphrase:
        shutil.copy(root / "stacks" / "lab.passphrase", where / "stacks" / "lab.passphrase")
    with_venv(where)
    return where


def reencrypted(doc: dict[str, Any], passphrase: str) -> dict[str, Any]:
    """The stack document with a fresh salt for ``passphrase`` and every secret replaced by a stand-in.

    A country's real passphrase stays with its team, so a copy that the real CLI can decrypt gets
    its own: each ``secure:`` value becomes the ciphertext of ``stand-in-<its path>``.
    """
    from ..secrets import Crypter

    crypter, state = Crypter.new(passphrase)
    out = copy.deepcopy(doc)
    out["encryptionsalt"] = state

    def walk(node: Any, path: str) -> Any:
        if isinstance(node, dict):
            if set(node) == {"secure"}:
                return {"secure": crypter.encrypt(f"stand-in-{path}")}
            return {k: walk(v, f"{path}.{k}" if path else str(k)) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v, f"{path}[{i}]") for i, v in enumerate(node)]
        return node

    out["config"] = walk(out["config"], "")
    return out


def country_copy(root: Path, where: Path, site: str, passphrase: str) -> Path:
    """A Pulumi project in ``where`` holding a copy of ``site``'s stack whose secrets open with ``passphrase``."""
    pulumi_project(root, where)
    doc = yaml.safe_load((root / "stacks" / f"Pulumi.{site}.yaml").read_text())
    (where / "stacks" / f"Pulumi.{site}.yaml").write_text(yaml.safe_dump(reencrypted(doc, passphrase), sort_keys=False))
    return where


# Where the lab cannot be what a GB200 site is, the rack-scale lab says so, check by check: the
# policy gate prints each skip with its reason, as an audit would.
RACK_SCALE_SKIPS = [
    {
        "id": "compat.sku-driver",
        "reason": "the lab's Debian mirror has driver 535.261.03 only, below Blackwell's floor; its hosts have no GPU",
    },
    {
        "id": "compat.computedomain-driver",
        "reason": "the lab's Debian mirror has driver 535.261.03 only; no ComputeDomain runs on hosts without a GPU",
    },
    {
        "id": "compat.nccl-cuda",
        "reason": "Debian's CUDA is 11.8, and NVIDIA publishes aarch64 NCCL for CUDA 12 only (PyPI nvidia-nccl-cu11)",
    },
    {
        "id": "topology.rack-size",
        "reason": "the lab plays one compute tray of a rack: one arm64 host under qemu-user is what CI affords",
    },
]
RACK_SCALE_NCCL = "2.27.7-1+cuda12.8"


def rack_scale_lab(root: Path, where: Path) -> Path:
    """The lab with one DGX node (x86_64) beside one GB200 NVL72 compute tray (aarch64) in a rack of its own.

    Both play their nodes for real: the tray boots an arm64 Debian under qemu-user-static, takes the
    aarch64 NCCL wheel, and masks its IMEX service for the DRA driver, as a GB200 tray does.
    """
    project_with(root, where, 1, {"nccl": RACK_SCALE_NCCL, "dra_driver": "25.12.0"})
    doc = read_stack(where)
    site = doc["config"]["aifactory:site"]
    site["kubernetes"]["version"] = "1.34.2"
    site["pools"].append(
        {
            "name": "gb200",
            "sku": "gb200-nvl72",
            "hostname": "{site}-gb200-{index:02d}",
            "ip_offset": 31,
            "nodes": [{"bmc": "172.29.1.31", "mac": "02:a1:f0:00:00:31"}],
            "scalable_units": [{"name": "su2", "nodes": 1}],
            "racks": [{"name": "lab-r1", "trays": [1]}],
        }
    )
    site["policies"] = {"skip": RACK_SCALE_SKIPS}
    doc["config"]["aifactory:bmcCredentials"]["gb200"] = copy.deepcopy(doc["config"]["aifactory:bmcCredentials"]["gpu"])
    write_stack(where, doc)
    return where

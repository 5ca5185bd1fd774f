"""A scratch project: the lab stack with N nodes (and any other change), beside the real roles.

For benchmarks and tests that need more test hosts than the lab declares, or another version of
its GPU stack: the roles, playbooks and templates are links to this checkout's, the stack a copy.
"""

from __future__ import annotations

import copy
import shutil
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

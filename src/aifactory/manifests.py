"""The Kubernetes objects of a plan, as the API server would receive them.

`aifactory plan SITE --manifests DIR` writes them so that any validator (kubeconform, kubectl
--dry-run=server, the schema test in tests/test_schemas.py) can read what the Pulumi program
would apply. Secret values are the plan's masks, never the real ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError, Problem
from .fsutil import refuse_irregular, write_atomic
from .plan import Plan

HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
# Pulumi-side resources that never reach the API server.
# Kubernetes objects are the resources of the kubernetes provider; components, providers and the
# dynamic bucket resources (S3, not Kubernetes) are not.
_KUBERNETES = "kubernetes:"


@dataclass(frozen=True)
class HelmRelease:
    name: str
    chart: str
    version: str
    namespace: str
    values: dict[str, Any]


def objects(plan: Plan) -> list[dict[str, Any]]:
    """Every Kubernetes object the plan registers, in plan order (Helm releases excluded)."""
    out = []
    for reg in plan.resources:
        if not reg.type.startswith(_KUBERNETES) or reg.type == HELM_RELEASE:
            continue
        out.append(reg.inputs)
    return out


def helm_releases(plan: Plan) -> list[HelmRelease]:
    return [
        HelmRelease(
            name=r.inputs["name"],
            chart=r.inputs["chart"],
            version=r.inputs["version"],
            namespace=r.inputs["namespace"],
            values=r.inputs.get("values", {}),
        )
        for r in plan.of_type(HELM_RELEASE)
    ]


def precheck(out: Path, sites: list[str]) -> None:
    """Before any site is planned: DIR can hold the files, and none of them is a symlink or a folder.

    `plan --all --manifests DIR` plans the sites in parallel processes, each writing its own files:
    a refusal found by one of them would leave the others' files written.
    """
    if out.exists() and not out.is_dir():
        raise ConfigError([Problem("--manifests", "", f"{out} exists and is not a directory (nothing written)")])
    if out.is_dir():
        refuse_irregular(
            [p for site in sites for p in [out / f"{site}.yaml", *out.glob(f"{site}.*.values.yaml")]], "--manifests"
        )


def write(plan: Plan, out: Path) -> list[Path]:
    """DIR/<site>.yaml (all objects, one document each) and DIR/<site>.<release>.values.yaml."""
    precheck(out, [plan.site])
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError([Problem("--manifests", "", f"cannot create {out}: {exc.strerror}")]) from None
    files = {out / f"{plan.site}.yaml": yaml.safe_dump_all(objects(plan), sort_keys=False)}
    for rel in helm_releases(plan):
        head = f"# helm install {rel.name} {rel.chart} --version {rel.version} -n {rel.namespace} -f <this file>\n"
        files[out / f"{plan.site}.{rel.name}.values.yaml"] = head + yaml.safe_dump(rel.values, sort_keys=False)
    refuse_irregular(list(files), "--manifests")
    for path, text in files.items():
        write_atomic(path, text)
    return list(files)


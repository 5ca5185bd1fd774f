"""NVIDIA GPU operator: its namespace and the pinned Helm release from the site's chart mirror."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi_kubernetes.helm.v3 import Release

from .. import catalog
from ..catalog import supply
from ..model import Site
from .namespaces import operator_namespace

# MIG configuration of a node without the nvidia.com/mig.config label; the ClusterPolicy CRD
# admits only this or "" (gpu-operator crds/nvidia.com_clusterpolicies.yaml, migManager.config.default).
MIG_DEFAULT = "all-disabled"


def image(site: Site, component: str) -> dict[str, str]:
    """A chart component's image from the in-country registry: its upstream path below the registry host, and
    its release tag pinned to the digest NVIDIA publishes for it (``tag@sha256:...``; the tag alone where no
    upstream file gives one, which policy supply.digests reports).

    node-feature-discovery's subchart takes ``image.tag`` and reads no digest: it keeps its chart's tag.
    """
    upstream = catalog.GPU_OPERATOR_IMAGES[site.gpu_stack.gpu_operator][component]
    repository, _ = upstream.mirrored(site.mirrors.containers.host)
    if component == "node-feature-discovery.image":  # the subchart's repository names the image too
        return {"repository": f"{repository}/{upstream.name}"}
    return {"repository": repository, "version": supply.pinned_version(upstream)}


def gpu_operator_values(site: Site) -> dict[str, Any]:
    """Chart values derived from the site; tests/test_schemas.py checks them against the pinned chart.

    The host driver is Ansible's (roles/nvidia_driver), so the operator must not install one.
    Every image comes from the site's in-country registry mirror, under its upstream path.
    MIG profiles are per pool, through the node label nvidia.com/mig.config (inventory node_labels).
    """
    mig = site.gpu_stack.mig

    return {
        "cdi": {"enabled": True},
        "nfd": {"enabled": True},
        "node-feature-discovery": {"image": image(site, "node-feature-discovery.image")},
        "operator": {**image(site, "operator"), "initContainer": image(site, "operator.initContainer")},
        "validator": image(site, "validator"),
        "driver": {"enabled": False},
        "toolkit": {"enabled": True, **image(site, "toolkit")},
        "devicePlugin": {"enabled": True, **image(site, "devicePlugin")},
        # No ServiceMonitor: it needs the Prometheus Operator's CRDs, which a site may not run.
        "dcgmExporter": {"enabled": True, **image(site, "dcgmExporter"), "serviceMonitor": {"enabled": False}},
        "gfd": {"enabled": True, **image(site, "gfd")},
        "mig": {"strategy": mig.strategy},
        "migManager": {
            "enabled": mig.strategy != "none",
            **image(site, "migManager"),
            "config": {"default": MIG_DEFAULT},
        },
        "daemonsets": {"tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]},
    }


def enabled_components(site: Site) -> list[str]:
    """The catalogued components whose images the release pulls with the site's values (a disabled one pulls none)."""
    values = gpu_operator_values(site)
    out = []
    for component in catalog.GPU_OPERATOR_IMAGES[site.gpu_stack.gpu_operator]:
        top = component.split(".")[0]
        switch = values["nfd"] if top == "node-feature-discovery" else values.get(top, {})
        if switch.get("enabled", True):
            out.append(component)
    return out


def release_skipped(site: Site) -> str | None:
    """Why the site's cluster cannot take the release, or None.

    The chart's operator and operands are pods, and the release is installed atomically: it waits
    for them to run and rolls back when they do not. Where no kubelet runs (the lab's test hosts),
    they never would, so the release is skipped, and the program says so, rather than failing after
    its timeout.
    """
    if site.kubernetes.nodes_joined:
        return None
    return (
        f"no kubelet runs on the nodes of {site.code} (kubernetes.nodes_joined: false), "
        "so the chart's pods could never run and the atomic install would roll back"
    )


@dataclass(frozen=True)
class GpuOperatorArgs:
    site: Site
    namespace: str = "gpu-operator"
    chart: str = "gpu-operator"


class GpuOperator(pulumi.ComponentResource):
    def __init__(self, name: str, args: GpuOperatorArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("aifactory:site:GpuOperator", name, None, opts)
        site = args.site
        ns = operator_namespace(f"{name}-namespace", args.namespace, self)  # operands: driver libraries, devices
        skipped = release_skipped(site)
        if skipped:
            pulumi.log.warn(f"skipped: the gpu-operator Helm release {site.gpu_stack.gpu_operator}: {skipped}", self)
            self.register_outputs({"version": site.gpu_stack.gpu_operator, "skipped": skipped})
            return
        # helm.v3.Release, not helm.v4.Chart: the chart upgrades its CRDs in a pre-upgrade hook Job.
        self.release = Release(
            f"{name}-release",
            name="gpu-operator",
            chart=args.chart,
            version=site.gpu_stack.gpu_operator,
            namespace=args.namespace,
            repository_opts={"repo": site.mirrors.charts.url},
            values=gpu_operator_values(site),
            atomic=True,
            timeout=900,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[ns]),
        )
        self.register_outputs({"version": site.gpu_stack.gpu_operator})

"""NVIDIA GPU operator: its namespace and the pinned Helm release from the site's chart mirror."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi_kubernetes.core.v1 import Namespace
from pulumi_kubernetes.helm.v3 import Release

from .. import labels
from ..model import Site


def gpu_operator_values(site: Site) -> dict[str, Any]:
    """Chart values derived from the site; every key is in catalog.GPU_OPERATOR_VALUE_KEYS.

    The host driver is Ansible's (roles/nvidia_driver), so the operator must not install one.
    Every image comes from the site's in-country registry mirror.
    """
    reg = site.mirrors.containers.host
    mig = site.gpu_stack.mig
    return {
        "cdi": {"enabled": True},
        "nfd": {"enabled": True},
        "node-feature-discovery": {"image": {"repository": f"{reg}/nfd/node-feature-discovery"}},
        "operator": {"repository": f"{reg}/nvidia", "initContainer": {"repository": f"{reg}/nvidia"}},
        "validator": {"repository": f"{reg}/nvidia"},
        "driver": {"enabled": False},
        "toolkit": {"enabled": True, "repository": f"{reg}/nvidia/k8s"},
        "devicePlugin": {"enabled": True, "repository": f"{reg}/nvidia"},
        "dcgmExporter": {"enabled": True, "repository": f"{reg}/nvidia/k8s", "serviceMonitor": {"enabled": True}},
        "gfd": {"enabled": True, "repository": f"{reg}/nvidia"},
        "mig": {"strategy": mig.strategy},
        "migManager": {
            "enabled": mig.strategy != "none",
            "repository": f"{reg}/nvidia/cloud-native",
            "config": {"default": mig.default_profile},
        },
        "daemonsets": {"tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]},
    }


@dataclass(frozen=True)
class GpuOperatorArgs:
    site: Site
    namespace: str = "gpu-operator"
    chart: str = "gpu-operator"


class GpuOperator(pulumi.ComponentResource):
    def __init__(self, name: str, args: GpuOperatorArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("aifactory:site:GpuOperator", name, None, opts)
        site = args.site
        ns = Namespace(
            f"{name}-namespace",
            metadata={
                "name": args.namespace,
                # Operands run privileged (driver libraries, device nodes).
                "labels": {"pod-security.kubernetes.io/enforce": "privileged", labels.MANAGED_BY: "aifactory"},
            },
            opts=pulumi.ResourceOptions(parent=self),
        )
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

"""NVIDIA's DRA driver for GPUs, for ComputeDomains on rack-scale pools: its namespace and the pinned release.

ComputeDomains are how a Kubernetes workload on a GB200 NVL72 rack gets an IMEX domain of its own:
the driver's controller runs one IMEX daemon per ComputeDomain on the nodes its pods land on, and
hands each pod an IMEX channel through a ResourceClaim. The host's own nvidia-imex service is
masked on those nodes (roles/nvidia_imex), as NVIDIA's GPU operator documentation requires.

Only the ComputeDomain half is enabled: GPUs stay with the GPU operator's device plugin, and the
chart refuses to run both on one node (templates/validation.yaml: resources.gpus.enabled needs
gpuResourcesEnabledOverride). The kubelet plugin runs only on the site's rack-scale SKUs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi_kubernetes.helm.v3 import Release

from .. import catalog, labels
from ..catalog import supply
from ..model import Site
from .namespaces import operator_namespace


def rack_scale_skus(site: Site) -> list[str]:
    return list(dict.fromkeys(p.sku for p in site.pools if p.spec.mnnvl))


def dra_driver_values(site: Site) -> dict[str, Any]:
    """Chart values derived from the site; tests/test_schemas.py checks them against the pinned chart."""
    release = catalog.DRA_DRIVER_RELEASES[str(site.gpu_stack.dra_driver)]
    repository, _ = release.image.mirrored(site.mirrors.containers.host)
    return {
        # The host driver is Ansible's (roles/nvidia_driver), installed at /.
        "nvidiaDriverRoot": "/",
        # The chart writes repository:tag (_helpers.tpl fullimage): tag@sha256 where a digest is catalogued.
        "image": {"repository": f"{repository}/{release.image.name}", "tag": supply.pinned_version(release.image)},
        "resources": {"gpus": {"enabled": False}, "computeDomains": {"enabled": True}},
        "kubeletPlugin": {
            # Replaces the chart's NFD-label affinity: exactly this site's rack-scale trays.
            "affinity": {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            {
                                "matchExpressions": [
                                    {"key": labels.SITE, "operator": "In", "values": [site.code]},
                                    {"key": labels.SKU, "operator": "In", "values": rack_scale_skus(site)},
                                ]
                            }
                        ]
                    }
                }
            },
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        },
    }


@dataclass(frozen=True)
class DraDriverArgs:
    site: Site
    namespace: str = "nvidia-dra-driver-gpu"


class DraDriver(pulumi.ComponentResource):
    def __init__(self, name: str, args: DraDriverArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("aifactory:site:DraDriver", name, None, opts)
        site = args.site
        release = catalog.DRA_DRIVER_RELEASES[str(site.gpu_stack.dra_driver)]
        # The kubelet plugin and the IMEX daemons run privileged (device nodes, the driver root).
        ns = operator_namespace(f"{name}-namespace", args.namespace, self)
        # helm.v3.Release: the chart's CRDs (ComputeDomain, ComputeDomainClique) come with it.
        self.release = Release(
            f"{name}-release",
            name="nvidia-dra-driver-gpu",
            chart=release.chart,
            version=release.version,
            namespace=args.namespace,
            repository_opts={"repo": site.mirrors.charts.url},
            values=dra_driver_values(site),
            atomic=True,
            timeout=600,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[ns]),
        )
        self.register_outputs({"version": release.version})

"""GPU-as-a-service tenants: a namespace each, a GPU quota and default limits."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
from pulumi_kubernetes.core.v1 import LimitRange, Namespace, ResourceQuota

from .. import labels
from ..model import Site

GPU_RESOURCE = "nvidia.com/gpu"


@dataclass(frozen=True)
class TenantsArgs:
    site: Site


class SiteTenants(pulumi.ComponentResource):
    def __init__(self, name: str, args: TenantsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("aifactory:site:Tenants", name, None, opts)
        site = args.site
        self.namespaces: dict[str, Namespace] = {}
        for tenant in site.tenants:
            ns = Namespace(
                f"tenant-{tenant.name}",
                metadata={
                    "name": tenant.name,
                    "labels": {
                        labels.SITE: site.code,
                        labels.TENANT: tenant.name,
                        labels.CLASSIFICATION: tenant.data_classification,
                        labels.JURISDICTION: site.jurisdiction.data_residency,
                        "pod-security.kubernetes.io/enforce": "baseline",
                        labels.MANAGED_BY: "aifactory",
                    },
                    "annotations": {"aifactory.io/display-name": tenant.display_name},
                },
                opts=pulumi.ResourceOptions(parent=self),
            )
            self.namespaces[tenant.name] = ns
            in_ns = pulumi.ResourceOptions(parent=self, depends_on=[ns])
            ResourceQuota(
                f"{tenant.name}-gpu-quota",
                metadata={"name": "gpu-quota", "namespace": tenant.name},
                spec={"hard": {f"requests.{GPU_RESOURCE}": str(tenant.gpu_quota)}},
                opts=in_ns,
            )
            LimitRange(
                f"{tenant.name}-limits",
                metadata={"name": "gpu-limits", "namespace": tenant.name},
                spec={
                    "limits": [
                        {
                            "type": "Container",
                            "max": {GPU_RESOURCE: str(tenant.max_gpus_per_pod)},
                            "defaultRequest": {"cpu": "1", "memory": "4Gi"},
                        }
                    ]
                },
                opts=in_ns,
            )
        self.register_outputs({"tenants": [t.name for t in site.tenants]})

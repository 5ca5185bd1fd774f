"""The Pulumi program: one site, declared by its stack config, as ComponentResources.

``stacks/__main__.py`` calls :func:`main` under the real CLI (``pulumi up -s za``);
``aifactory plan`` calls :func:`build` under Pulumi's mock runtime. Both run this code.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s
from pydantic import ValidationError

from .components.gpu_operator import GpuOperator, GpuOperatorArgs
from .components.network import NetworkArgs, SiteNetwork
from .components.nodes import DgxNodes, NodesArgs
from .components.storage import SiteStorage, StorageArgs
from .components.tenants import SiteTenants, TenantsArgs
from .model import Site
from .stackfile import CREDENTIALS_KEY, PROJECT, SITE_KEY, validation_problems


def outputs(site: Site) -> dict[str, Any]:
    """Stack outputs: plain data derived from the site, the same under the CLI and under mocks."""
    stack = site.gpu_stack
    return {
        "site": site.code,
        "country": site.country,
        "nodes": [
            {"hostname": n.hostname, "managementIp": str(n.management_ip), "sku": n.sku, "pool": n.pool}
            for n in site.nodes
        ],
        "gpus": {"total": site.gpu_total, "byPool": {p.name: p.count * p.spec.gpu_count for p in site.pools}},
        "versions": {
            "driver": stack.driver,
            "cuda": stack.cuda,
            "nccl": stack.nccl,
            "gpuOperator": stack.gpu_operator,
            "networkOperator": stack.network_operator,
        },
    }


def build(site: Site, credentials: pulumi.Output[dict[str, Any]]) -> dict[str, Any]:
    # An explicit provider bound to the site's own context: `pulumi up -s za` can never
    # reach another country's cluster through whatever kubeconfig context is current.
    provider = k8s.Provider("site-cluster", context=site.kubernetes.context, enable_server_side_apply=True)
    opts = pulumi.ResourceOptions(provider=provider)
    tenants = SiteTenants("tenants", TenantsArgs(site), opts=opts)
    DgxNodes("nodes", NodesArgs(site, credentials), opts=opts)
    SiteNetwork("network", NetworkArgs(site, tenants.namespaces), opts=opts)
    SiteStorage("storage", StorageArgs(site), opts=opts)
    GpuOperator("gpu-operator", GpuOperatorArgs(site), opts=opts)
    return outputs(site)


def main() -> None:
    config = pulumi.Config(PROJECT)
    raw = config.require_object("site")
    try:
        site = Site.model_validate(raw)
    except ValidationError as exc:
        shown = f"stacks/Pulumi.{pulumi.get_stack()}.yaml"
        lines = "\n".join(str(p) for p in validation_problems(exc, shown, SITE_KEY))
        raise pulumi.RunError(f"invalid site declaration:\n{lines}") from None
    if site.code != pulumi.get_stack():
        raise pulumi.RunError(f"{SITE_KEY}.code is '{site.code}' but the stack is '{pulumi.get_stack()}'")
    credentials = config.require_secret_object(CREDENTIALS_KEY.split(":", 1)[1])
    for key, value in build(site, credentials).items():
        pulumi.export(key, value)

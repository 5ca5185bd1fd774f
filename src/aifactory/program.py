"""The Pulumi program: one site, declared by its stack config, as ComponentResources.

``stacks/__main__.py`` calls :func:`main` under the real CLI (``pulumi up -s za``);
``aifactory plan`` calls :func:`build` under Pulumi's mock runtime. Both run this code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
from pydantic import ValidationError

from . import findings
from .components.dra_driver import DraDriver, DraDriverArgs
from .components.gpu_operator import GpuOperator, GpuOperatorArgs
from .components.network import NetworkArgs, SiteNetwork
from .components.nodes import DgxNodes, NodesArgs
from .components.storage import SiteStorage, StorageArgs
from .components.tenants import SiteTenants, TenantsArgs
from .errors import ConfigError
from .model import Site
from .policies import gate
from .stackfile import CREDENTIALS_KEY, PROJECT, SITE_KEY, load_stack, project_root, validation_problems


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
            **({"draDriver": stack.dra_driver} if stack.dra_driver else {}),
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
    if site.gpu_stack.dra_driver:
        DraDriver("dra-driver", DraDriverArgs(site), opts=opts)
    return outputs(site)


def checked_site(root: Path, stack_name: str, raw: Any) -> Site:
    """The site `pulumi up` may act on: the stack file loads, passes the policy gate, and is what Pulumi read.

    The same loader and the same gate as every `aifactory` command, so `pulumi up -s za` cannot go
    ahead with a stack that `aifactory validate za` refuses. Any refusal is a RunError listing the
    findings, one per line, before a single resource is registered.
    """
    try:
        stack = load_stack(root, stack_name)
        gate([stack], root, warn=pulumi.log.warn)
    except ConfigError as exc:
        lines = "\n".join(findings.fold(exc.problems))
        raise pulumi.RunError(f"the stack does not pass aifactory's checks:\n{lines}") from None
    try:
        site = Site.model_validate(raw)
    except ValidationError as exc:
        lines = "\n".join(str(p) for p in validation_problems(exc, stack.shown, SITE_KEY))
        raise pulumi.RunError(f"invalid site declaration:\n{lines}") from None
    if site.model_dump() != stack.site.model_dump():
        raise pulumi.RunError(
            f"the {SITE_KEY} config Pulumi passed differs from {stack.shown}: run from the checkout that holds it"
        )
    return site


def main() -> None:
    config = pulumi.Config(PROJECT)
    site = checked_site(project_root(), pulumi.get_stack(), config.require_object("site"))
    credentials = config.require_secret_object(CREDENTIALS_KEY.split(":", 1)[1])
    for key, value in build(site, credentials).items():
        pulumi.export(key, value)

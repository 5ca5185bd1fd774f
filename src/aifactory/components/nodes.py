"""DGX nodes as Metal3 BareMetalHosts, and one Secret per pool holding the pool's BMC credentials.

The stack holds BMC credentials per pool, so one Secret per pool says it once: every host of the
pool names it as its credentialsName. baremetal-operator supports a Secret shared by hosts: it
adds one non-controller owner reference per host that uses it ("We used to add controller
references to BMC secrets. This was wrong", pkg/secretutils/secret_manager.go, claimSecret), so
the Secret lives while any of its hosts does. It also halves what the program registers per node.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi_kubernetes.apiextensions import CustomResource
from pulumi_kubernetes.core.v1 import Namespace, Secret

from .. import labels, tenancy
from ..model import NodeView, Site


@dataclass(frozen=True)
class NodesArgs:
    site: Site
    # pool name -> {"username", "password"}, a Pulumi secret as the stack config delivers it.
    credentials: pulumi.Output[dict[str, Any]]
    namespace: str = "metal3-hosts"
    # Redfish systems path of the DGX BMC; DGX H100/H200/B200 expose the host as System "DGX".
    redfish_system: str = "/redfish/v1/Systems/DGX"
    verify_bmc_tls: bool = True


def node_labels(site: Site, node: NodeView, tenant: str | None = None) -> dict[str, str]:
    return {**labels.node_labels(site, node, tenant), labels.MANAGED_BY: "aifactory"}


def bmc_secret_name(site: Site, pool: str) -> str:
    return f"{site.code}-{pool}-bmc"


class DgxNodes(pulumi.ComponentResource):
    """One BareMetalHost per declared node; Metal3's baremetal-operator provisions them."""

    def __init__(self, name: str, args: NodesArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("aifactory:site:Nodes", name, None, opts)
        site = args.site
        child = pulumi.ResourceOptions(parent=self)
        self.namespace = Namespace(
            f"{name}-namespace",
            metadata={"name": args.namespace, "labels": {labels.SITE: site.code, labels.MANAGED_BY: "aifactory"}},
            opts=child,
        )
        after_ns = pulumi.ResourceOptions(parent=self, depends_on=[self.namespace])
        # One apply per pool, not per node: the credentials stay secret and the plan stays fast.
        # The keys are the program's (Metal3 reads username and password); only the values are secret.
        pool_creds = {
            pool.name: {
                key: args.credentials.apply(lambda c, p=pool.name, k=key: str(c[p][k]))
                for key in ("username", "password")
            }
            for pool in site.pools
        }
        self.secrets: dict[str, Secret] = {}
        for pool in site.pools:
            name = bmc_secret_name(site, pool.name)
            self.secrets[pool.name] = Secret(
                name,
                metadata={
                    "name": name,
                    "namespace": args.namespace,
                    "labels": {labels.SITE: site.code, labels.POOL: pool.name, labels.MANAGED_BY: "aifactory"},
                },
                type="Opaque",
                string_data=pool_creds[pool.name],
                opts=after_ns,
            )
        self.hosts: list[CustomResource] = []
        held = tenancy.holders(site)
        for node in site.nodes:
            tenant = held.get(node.hostname, [None])[0]
            self.hosts.append(
                CustomResource(
                    node.hostname,
                    api_version="metal3.io/v1alpha1",
                    kind="BareMetalHost",
                    metadata={
                        "name": node.hostname,
                        "namespace": args.namespace,
                        "labels": node_labels(site, node, tenant),
                    },
                    spec={
                        "online": True,
                        "bootMode": "UEFI",
                        "bootMACAddress": node.mac,
                        "bmc": {
                            "address": f"redfish://{node.bmc_ip}{args.redfish_system}",
                            "credentialsName": bmc_secret_name(site, node.pool),
                            "disableCertificateVerification": not args.verify_bmc_tls,
                        },
                    },
                    opts=pulumi.ResourceOptions(parent=self, depends_on=[self.secrets[node.pool]]),
                )
            )
        self.register_outputs({"count": len(self.hosts)})

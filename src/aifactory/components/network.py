"""Compute fabric for pods (NVIDIA Network Operator) and per-tenant isolation."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi_kubernetes.apiextensions import CustomResource
from pulumi_kubernetes.networking.v1 import NetworkPolicy

from .. import labels
from ..model import Rail, Site


@dataclass(frozen=True)
class NetworkArgs:
    site: Site
    # Tenant namespaces by tenant name; policies wait for them.
    tenant_namespaces: dict[str, pulumi.Resource]
    namespace: str = "nvidia-network-operator"


def rail_resource_name(rail: Rail) -> str:
    return f"rdma_{rail.name.replace('-', '_')}"


def nic_cluster_policy_spec(site: Site) -> dict[str, Any]:
    """NicClusterPolicy for a host-owned NIC driver (DGX OS / Ansible ship DOCA-OFED)."""
    fabric = site.network.fabric
    repo = f"{site.mirrors.containers.host}/mellanox"
    tag = f"network-operator-v{site.gpu_stack.network_operator}"

    def image(name: str) -> dict[str, str]:
        return {"image": name, "repository": repo, "version": tag}

    rdma_config = {
        "configList": [
            {
                "resourceName": rail_resource_name(rail),
                "rdmaHcaMax": 63,
                "selectors": {"ifNames": [rail.interface]},
            }
            for rail in fabric.rails
        ]
    }
    secondary: dict[str, Any] = {"cniPlugins": image("plugins"), "multus": image("multus-cni")}
    if fabric.type == "infiniband":
        secondary["ipoib"] = image("ipoib-cni")
    return {
        "rdmaSharedDevicePlugin": {**image("k8s-rdma-shared-dev-plugin"), "config": json.dumps(rdma_config)},
        "secondaryNetwork": secondary,
        "nvIpam": {**image("nvidia-k8s-ipam"), "enableWebhook": False},
    }


def attachment_config(site: Site, rail: Rail) -> dict[str, Any]:
    """CNI config of one rail: IPoIB on InfiniBand, macvlan on RoCE, addresses from nv-ipam."""
    fabric = site.network.fabric
    ipam = {"type": "nv-ipam", "poolName": rail.name}
    if fabric.type == "infiniband":
        plugin: dict[str, Any] = {"type": "ipoib", "master": rail.interface}
    else:
        plugin = {"type": "macvlan", "master": rail.interface, "mode": "bridge", "mtu": fabric.mtu}
    return {"cniVersion": "0.4.0", "name": rail.name, **plugin, "ipam": ipam}


class SiteNetwork(pulumi.ComponentResource):
    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("aifactory:site:Network", name, None, opts)
        site = args.site
        child = pulumi.ResourceOptions(parent=self)
        policy = CustomResource(
            "nic-cluster-policy",
            api_version="mellanox.com/v1alpha1",
            kind="NicClusterPolicy",
            metadata={"name": "nic-cluster-policy"},
            spec=nic_cluster_policy_spec(site),
            opts=child,
        )
        after_policy = pulumi.ResourceOptions(parent=self, depends_on=[policy])
        for rail in site.network.fabric.rails:
            CustomResource(
                f"ippool-{rail.name}",
                api_version="nv-ipam.nvidia.com/v1alpha1",
                kind="IPPool",
                metadata={"name": rail.name, "namespace": args.namespace},
                spec={
                    "subnet": str(rail.cidr),
                    "perNodeBlockSize": site.network.fabric.per_node_block,
                    "nodeSelector": {
                        "nodeSelectorTerms": [
                            {"matchExpressions": [{"key": labels.SITE, "operator": "In", "values": [site.code]}]}
                        ]
                    },
                },
                opts=after_policy,
            )
            CustomResource(
                f"nad-{rail.name}",
                api_version="k8s.cni.cncf.io/v1",
                kind="NetworkAttachmentDefinition",
                metadata={
                    "name": rail.name,
                    "namespace": args.namespace,
                    "annotations": {"k8s.v1.cni.cncf.io/resourceName": f"rdma/{rail_resource_name(rail)}"},
                    "labels": {labels.SITE: site.code, labels.FABRIC: site.network.fabric.type},
                },
                spec={"config": json.dumps(attachment_config(site, rail), sort_keys=True)},
                opts=after_policy,
            )

        for tenant in site.tenants:
            ns = tenant.name
            in_ns = pulumi.ResourceOptions(parent=self, depends_on=[args.tenant_namespaces[tenant.name]])
            NetworkPolicy(
                f"{ns}-default-deny",
                metadata={"name": "default-deny", "namespace": ns},
                spec={"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
                opts=in_ns,
            )
            NetworkPolicy(
                f"{ns}-allow-tenant",
                metadata={"name": "allow-same-tenant-and-dns", "namespace": ns},
                spec={
                    "podSelector": {},
                    "policyTypes": ["Ingress", "Egress"],
                    "ingress": [{"from": [{"podSelector": {}}]}],
                    "egress": [
                        {"to": [{"podSelector": {}}]},
                        {
                            "to": [
                                {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}
                            ],
                            "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
                        },
                    ],
                },
                opts=in_ns,
            )
        self.register_outputs({"rails": len(site.network.fabric.rails)})

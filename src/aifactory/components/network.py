"""Compute fabric for pods (NVIDIA Network Operator) and per-tenant isolation."""

from __future__ import annotations

import json
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Any
from urllib.parse import urlsplit

import pulumi
from pulumi_kubernetes.apiextensions import CustomResource
from pulumi_kubernetes.networking.v1 import NetworkPolicy

from .. import catalog, labels, tenancy
from ..catalog import supply
from ..model import Rail, Site, Tenant
from .namespaces import operator_namespace


@dataclass(frozen=True)
class NetworkArgs:
    site: Site
    # Tenant namespaces by tenant name; policies wait for them.
    tenant_namespaces: dict[str, pulumi.Resource]
    namespace: str = "nvidia-network-operator"


def rail_resource_name(rail: Rail) -> str:
    return f"rdma_{rail.name.replace('-', '_')}"


def rail_netdevs(site: Site, index: int) -> list[str]:
    """The netdev of rail `index` on every SKU of the site whose port map the catalog has."""
    fabric = site.network.fabric.type
    names = []
    for sku in site.rail_skus:
        ports = site.rail_ports(sku)
        if ports is not None and index < len(ports):
            names.append(ports[index].netdev(fabric))
    return list(dict.fromkeys(names))


def image(site: Site, component: str) -> dict[str, str]:
    """A NicClusterPolicy image block: the release's own image, pulled from the in-country mirror by digest."""
    upstream = catalog.NETWORK_OPERATOR_IMAGES[site.gpu_stack.network_operator][component]
    repository, _ = upstream.mirrored(site.mirrors.containers.host)
    # tag@sha256:... where the release's bundle gives a digest (catalog.supply.pinned_version).
    return {"image": upstream.name, "repository": repository, "version": supply.pinned_version(upstream)}


def nic_cluster_policy_spec(site: Site) -> dict[str, Any]:
    """NicClusterPolicy for a host-owned NIC driver: roles/rdma installs DOCA-OFED (or rdma-core) on the node."""
    fabric = site.network.fabric
    netdevs = [(rail, rail_netdevs(site, i)) for i, rail in enumerate(fabric.rails)]
    rdma_config = {
        "configList": [
            {"resourceName": rail_resource_name(rail), "rdmaHcaMax": 63, "selectors": {"ifNames": names}}
            for rail, names in netdevs
            if names
        ]
    }
    secondary: dict[str, Any] = {"cniPlugins": image(site, "cniPlugins"), "multus": image(site, "multus")}
    if fabric.type == "infiniband":
        secondary["ipoib"] = image(site, "ipoib")
    spec: dict[str, Any] = {
        "rdmaSharedDevicePlugin": {**image(site, "rdmaSharedDevicePlugin"), "config": json.dumps(rdma_config)},
        "secondaryNetwork": secondary,
        "nvIpam": {**image(site, "nvIpam"), "enableWebhook": False},
    }
    if partitioned(site):
        # A tenant's pod takes a VF of each rail (one resource per rail, sriov-network-device-plugin
        # config format: resourceList with pfNames selectors) so its traffic carries its own
        # partition key or VLAN; the shared device plugin above stays for shared-fabric tenants.
        vfs = {
            "resourceList": [
                {
                    "resourcePrefix": VF_PREFIX,
                    "resourceName": vf_resource_name(rail),
                    "selectors": {"vendors": [MELLANOX_VENDOR], "pfNames": names, "isRdma": True},
                }
                for rail, names in netdevs
                if names
            ]
        }
        spec["sriovDevicePlugin"] = {**image(site, "sriovDevicePlugin"), "config": json.dumps(vfs)}
        if fabric.type == "infiniband":
            # ib-kubernetes adds each VF's GUID to its pod's partition key through the subnet manager
            # (UFM); the Secret with UFM's address and credentials is the site's (policy tenants.partition).
            # The GUID pool ib-kubernetes hands VFs from: its README's defaults (GUID_POOL_RANGE_START/END,
            # Mellanox/ib-kubernetes at v1.1.1), which the CRD requires to be spelled out.
            ufm = {
                "periodicUpdateSeconds": 5,
                "ufmSecret": UFM_SECRET_NAME,
                "pKeyGUIDPoolRangeStart": "02:00:00:00:00:00:00:00",
                "pKeyGUIDPoolRangeEnd": "02:FF:FF:FF:FF:FF:FF:FF",
            }
            spec["ibKubernetes"] = {**image(site, "ibKubernetes"), **ufm}
    return spec


# PCI vendor id of NVIDIA (Mellanox) network adapters, as sriov-network-device-plugin selects them.
MELLANOX_VENDOR = "15b3"
VF_PREFIX = "nvidia.com"
UFM_SECRET_NAME = "aifactory-ufm"  # noqa: S105 - a Secret's name: its content is the site's, never here


def vf_resource_name(rail: Rail) -> str:
    return f"{rail.name.replace('-', '_')}_vf"


def partitioned(site: Site) -> bool:
    """Whether any tenant reaches the rails through a partition of its own (tenancy.partition)."""
    return any(tenancy.partition(site, t) is not None for t in site.tenants)


def tenant_attachment(site: Site, tenant: Tenant, rail: Rail, master: str) -> tuple[str, dict[str, Any]]:
    """A tenant's attachment to one rail: the resource its pods request, and the CNI config.

    Its own partition: a VF with the tenant's InfiniBand partition key (ib-sriov-cni: pkey,
    ibKubernetesEnabled, rdmaIsolation) or RoCE VLAN (sriov-cni: vlan). Shared: the rail's shared
    attachment, in the tenant's namespace (IPoIB or macvlan over the PF, the site's default partition).
    Key names are checked against each CNI's NetConf at its pinned tag (tests/fixtures/cni).
    """
    part = tenancy.partition(site, tenant)
    ipam = {"type": "nv-ipam", "poolName": rail.name}
    name = f"{tenant.name}-{rail.name}"
    if part is None:
        shared = attachment_config(site, rail, master)
        return f"rdma/{rail_resource_name(rail)}", {**shared, "name": name}
    if site.network.fabric.type == "infiniband":
        plugin: dict[str, Any] = {
            "type": "ib-sriov",
            "pkey": tenancy.pkey_text(part),
            "link_state": "enable",
            "rdmaIsolation": True,
            "ibKubernetesEnabled": True,
        }
    else:
        plugin = {"type": "sriov", "vlan": part, "link_state": "enable", "spoofchk": "on", "trust": "off"}
    return f"{VF_PREFIX}/{vf_resource_name(rail)}", {"cniVersion": "0.3.1", "name": name, **plugin, "ipam": ipam}


def nic_components(site: Site) -> list[str]:
    """The NicClusterPolicy components the site's policy deploys, each pulling its release's image."""
    spec = nic_cluster_policy_spec(site)
    return [k for k, v in (*spec.items(), *spec["secondaryNetwork"].items()) if isinstance(v, dict) and "image" in v]


def attachment_config(site: Site, rail: Rail, master: str) -> dict[str, Any]:
    """CNI config of one rail: IPoIB on InfiniBand, macvlan on RoCE, addresses from nv-ipam."""
    fabric = site.network.fabric
    ipam = {"type": "nv-ipam", "poolName": rail.name}
    if fabric.type == "infiniband":
        plugin: dict[str, Any] = {"type": "ipoib", "master": master}
    else:
        plugin = {"type": "macvlan", "master": master, "mode": "bridge", "mtu": fabric.mtu}
    return {"cniVersion": "0.4.0", "name": rail.name, **plugin, "ipam": ipam}


def rail_node_selector(site: Site) -> dict[str, Any]:
    """Nodes of this site whose SKU has the rails (labels set by Kubespray's node_labels, see inventory)."""
    return {
        "nodeSelectorTerms": [
            {
                "matchExpressions": [
                    {"key": labels.SITE, "operator": "In", "values": [site.code]},
                    {"key": labels.SKU, "operator": "In", "values": site.rail_skus},
                ]
            }
        ]
    }


def tenant_egress(site: Site) -> list[dict[str, Any]]:
    """What a tenant pod may reach beyond its namespace: cluster DNS, and the in-country object store."""
    store = urlsplit(site.storage.object_store.url)
    port = store.port or (443 if store.scheme == "https" else 80)
    dns = {
        "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}],
        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
    }
    # The store's gateways answer on the site's storage network (or, in the lab, on its address).
    host = store.hostname or ""
    try:
        block = f"{IPv4Address(host)}/32"
    except ValueError:
        block = str(site.network.storage.cidr)
    s3 = {"to": [{"ipBlock": {"cidr": block}}], "ports": [{"protocol": "TCP", "port": port}]}
    return [{"to": [{"podSelector": {}}]}, dns, s3]


class SiteNetwork(pulumi.ComponentResource):
    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("aifactory:site:Network", name, None, opts)
        site = args.site
        child = pulumi.ResourceOptions(parent=self)
        # The IPPools and the rails' attachments live in the operator's namespace, which nothing else
        # here creates: the real API server refused them (404, namespace not found) where the mock
        # runtime had taken them. Its pods load drivers and device plugins: privileged.
        namespace = operator_namespace(f"{name}-namespace", args.namespace, self, {labels.SITE: site.code})
        policy = CustomResource(
            "nic-cluster-policy",
            api_version="mellanox.com/v1alpha1",
            kind="NicClusterPolicy",
            metadata={"name": "nic-cluster-policy"},
            spec=nic_cluster_policy_spec(site),
            opts=child,
        )
        after_policy = pulumi.ResourceOptions(parent=self, depends_on=[policy, namespace])
        for i, rail in enumerate(site.network.fabric.rails):
            masters = rail_netdevs(site, i)
            if len(masters) != 1:
                # No port map (net.port-map warns) or SKUs that disagree (net.port-map refuses).
                continue
            CustomResource(
                f"ippool-{rail.name}",
                api_version="nv-ipam.nvidia.com/v1alpha1",
                kind="IPPool",
                metadata={"name": rail.name, "namespace": args.namespace},
                spec={
                    "subnet": str(rail.cidr),
                    "perNodeBlockSize": site.network.fabric.per_node_block,
                    "nodeSelector": rail_node_selector(site),
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
                spec={"config": json.dumps(attachment_config(site, rail, masters[0]), sort_keys=True)},
                opts=after_policy,
            )

        for tenant in site.tenants:
            ns = tenant.name
            in_ns = pulumi.ResourceOptions(parent=self, depends_on=[args.tenant_namespaces[tenant.name]])
            for i, rail in enumerate(site.network.fabric.rails):
                masters = rail_netdevs(site, i)
                if len(masters) != 1:
                    continue
                resource, config = tenant_attachment(site, tenant, rail, masters[0])
                CustomResource(
                    f"{ns}-nad-{rail.name}",
                    api_version="k8s.cni.cncf.io/v1",
                    kind="NetworkAttachmentDefinition",
                    metadata={
                        "name": rail.name,
                        "namespace": ns,
                        "annotations": {"k8s.v1.cni.cncf.io/resourceName": resource},
                        "labels": {labels.SITE: site.code, labels.FABRIC: site.network.fabric.type, labels.TENANT: ns},
                    },
                    spec={"config": json.dumps(config, sort_keys=True)},
                    opts=in_ns,
                )
            NetworkPolicy(
                f"{ns}-default-deny",
                metadata={"name": "default-deny", "namespace": ns},
                spec={"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
                opts=in_ns,
            )
            NetworkPolicy(
                f"{ns}-allow-tenant",
                metadata={"name": "allow-same-tenant-dns-and-object-store", "namespace": ns},
                spec={
                    "podSelector": {},
                    "policyTypes": ["Ingress", "Egress"],
                    "ingress": [{"from": [{"podSelector": {}}]}],
                    "egress": tenant_egress(site),
                },
                opts=in_ns,
            )
        self.register_outputs({"rails": len(site.network.fabric.rails)})

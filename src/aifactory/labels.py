"""Kubernetes label keys this project puts on what it creates (one place, read by all)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .model import NodeView, Site

PREFIX = "aifactory.io"
SITE = f"{PREFIX}/site"
POOL = f"{PREFIX}/pool"
SKU = f"{PREFIX}/sku"
JURISDICTION = f"{PREFIX}/jurisdiction"
FABRIC = f"{PREFIX}/fabric"
RAIL_COUNT = f"{PREFIX}/rail-count"
SCALABLE_UNIT = f"{PREFIX}/scalable-unit"
# The rack holding the node (pools[].racks); on a rack-scale SKU also its NVLink domain, so a
# workload's pods can be kept inside one domain (podAffinity topologyKey).
RACK = f"{PREFIX}/rack"
TENANT = f"{PREFIX}/tenant"
CLASSIFICATION = f"{PREFIX}/data-classification"
MANAGED_BY = "app.kubernetes.io/managed-by"

# The GPU operator's MIG manager applies the MIG configuration named by this node label
# (gpu-operator ClusterPolicy, migManager.config.default: "when there is no config specified with
# the node label nvidia.com/mig.config").
MIG_CONFIG = "nvidia.com/mig.config"


def node_labels(site: Site, node: NodeView, tenant: str | None = None) -> dict[str, str]:
    """Labels of a node, on its BareMetalHost and on its Kubernetes Node.

    The Node gets them from the kubelet: the inventory gives each host Kubespray's `node_labels`,
    which Kubespray passes to the kubelet as --node-labels when it joins the node. The IPPools and
    the rail resources select nodes by SITE and SKU; MIG_CONFIG is set where the pool asks for MIG;
    TENANT where a tenant holds the node (its taint comes with it: inventory's node_taints).
    """
    fabric = site.network.fabric
    out = {
        SITE: site.code,
        POOL: node.pool,
        SKU: node.sku,
        JURISDICTION: site.jurisdiction.data_residency,
        FABRIC: fabric.type,
        RAIL_COUNT: str(len(fabric.rails)),
        SCALABLE_UNIT: node.scalable_unit,  # declared per pool (NodePool.scalable_units), unique in the site
    }
    if node.rack:
        out[RACK] = node.rack
    mig = site.pool(node.pool).mig_config
    if mig:
        out[MIG_CONFIG] = mig
    if tenant:  # the node is the tenant's alone (tenancy.holders): its pods select it by this label
        out[TENANT] = tenant
    return out

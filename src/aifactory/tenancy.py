"""What isolates each tenant, derived from the site file: its nodes, its fabric partition, its buckets.

A stack states intent (a tenant's data classification, the nodes it holds, maybe a partition);
this module derives the mechanism every other part uses, so no fact is stated twice:

- **Nodes.** A tenant's node sets (``Tenant.nodes``) resolve to Nodes labelled and tainted for it
  (:data:`TAINT_KEY`); the tenant admission policy makes its pods select and tolerate exactly
  those, and forbids every other pod to tolerate them. Restricted and confidential tenants must
  hold nodes of their own (:data:`DEDICATED`); the others share the nodes no tenant holds.
- **Fabric.** Each tenant reaches the rails through its own partition: an InfiniBand partition
  key (ib-sriov-cni's ``pkey``, programmed into the subnet manager by ib-kubernetes) or a RoCE
  VLAN (sriov-cni's ``vlan``), declared or allocated here from the tenant's name; a tenant with
  ``shared_fabric`` uses the site's default partition, which only public and internal data may.
- **Storage.** Each tenant has its own buckets (declared, or ``SITE-TENANT``) and its own store
  user (its principal); the bucket policy grants that principal alone (storage/spec.py), and the
  bucket's settings follow the data class (:data:`CLASS_BUCKETS`). A retired tenant's buckets
  stay declared, granted to no one, until the site's retention date.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from . import labels
from .model import Bucket, Lifecycle, NodeView, ObjectLock, Site, Tenant

TAINT_KEY = labels.TENANT
TAINT_EFFECT = "NoSchedule"
# Classes whose data may not share a node, a fabric partition or a store principal with another tenant's.
DEDICATED = frozenset({"confidential", "restricted"})
# Classes whose data the store must encrypt at rest (or the site is told it does not: tenants.encryption).
ENCRYPTED = frozenset({"confidential", "restricted"})

# InfiniBand: P_Keys are 15 bits plus the membership bit; 0x7fff is the default partition every
# port is a full member of (InfiniBand Architecture Specification, 10.9.1), 0 is invalid. Tenants'
# keys are allocated from 0x1000-0x6fff, leaving the low keys and the top for the site's own uses.
IB_DEFAULT_PKEY = 0x7FFF
IB_ALLOCATED = (0x1000, 0x7000)
# RoCE: 802.1Q VLAN ids 1-4094 (0 and 4095 reserved); tenants' from 2000-3999.
ROCE_MAX_VLAN = 4094
ROCE_ALLOCATED = (2000, 4000)


@dataclass(frozen=True)
class ClassBuckets:
    """The settings a data class gives its tenants' buckets (the project's defaults; each says why)."""

    versioning: bool
    noncurrent_days: int | None
    object_lock: ObjectLock | None


CLASS_BUCKETS = {
    # Published data: nothing to keep but the current version.
    "public": ClassBuckets(versioning=False, noncurrent_days=None, object_lock=None),
    # An overwrite or delete can be undone for a month.
    "internal": ClassBuckets(versioning=True, noncurrent_days=30, object_lock=None),
    "confidential": ClassBuckets(versioning=True, noncurrent_days=90, object_lock=None),
    # Every version kept for 30 days whatever any user does (GOVERNANCE: the site's owner can lift it
    # with s3:BypassGovernanceRetention, as a data-protection order may require; COMPLIANCE could not).
    "restricted": ClassBuckets(
        versioning=True, noncurrent_days=365, object_lock=ObjectLock(mode="GOVERNANCE", days=30)
    ),
}


def principal(tenant: Tenant) -> str:
    return tenant.principal or tenant.name


def dedicated(tenant: Tenant) -> bool:
    """Whether the tenant's class requires nodes of its own."""
    return tenant.data_classification in DEDICATED


def taint(tenant: Tenant) -> str:
    """The taint on the tenant's nodes, in Kubespray's node_taints form (key=value:effect)."""
    return f"{TAINT_KEY}={tenant.name}:{TAINT_EFFECT}"


def node_set_problems(site: Site, tenant: Tenant) -> list[tuple[int, str]]:
    """(index of the node set, why) for each node set that names no nodes of the site."""
    out = []
    pools = {p.name: p for p in site.pools}
    for i, ns in enumerate(tenant.nodes):
        pool = pools.get(ns.pool)
        if pool is None:
            out.append((i, f"no pool {ns.pool!r} in the site ({', '.join(pools)})"))
            continue
        units = {u.name for u in pool.scalable_units}
        for u in ns.scalable_units:
            if u not in units:
                out.append((i, f"pool {pool.name} has no scalable unit {u!r} ({', '.join(sorted(units))})"))
        if ns.nodes:
            last = int(ns.nodes.split("-")[-1])
            if last > pool.count:
                out.append((i, f"pool {pool.name} has {pool.count} nodes; {ns.nodes} goes past them"))
    return out


def nodes_of(site: Site, tenant: Tenant) -> list[NodeView]:
    """The nodes the tenant holds, in site order (node sets that name none are left to node_set_problems)."""
    chosen: set[str] = set()
    for ns in tenant.nodes:
        members = [n for n in site.nodes if n.pool == ns.pool]
        if ns.scalable_units:
            members = [n for n in members if n.scalable_unit in ns.scalable_units]
        elif ns.nodes:
            first, _, last = ns.nodes.partition("-")
            low, high = int(first), int(last or first)
            members = [n for n in members if low <= n.index <= high]
        chosen.update(n.hostname for n in members)
    return [n for n in site.nodes if n.hostname in chosen]


def holders(site: Site) -> dict[str, list[str]]:
    """Each held node's tenants (more than one is a policy error: tenants.shared-nodes)."""
    out: dict[str, list[str]] = {}
    for t in site.tenants:
        for n in nodes_of(site, t):
            out.setdefault(n.hostname, []).append(t.name)
    return out


def shared_nodes(site: Site) -> list[NodeView]:
    held = holders(site)
    return [n for n in site.nodes if n.hostname not in held]


def gpus(nodes: list[NodeView], site: Site) -> int:
    return sum(site.pool(n.pool).spec.gpu_count for n in nodes)


def partition(site: Site, tenant: Tenant) -> int | None:
    """The tenant's partition key (InfiniBand) or VLAN (RoCE); None where it shares the site's default.

    Allocated from a CRC-32 of the site and tenant names where the stack declares none: stable when
    other tenants come and go (a position would shift), and a clash is a policy error naming both
    tenants (tenants.partition), resolved by declaring one.
    """
    if tenant.shared_fabric:
        return None
    if tenant.partition is not None:
        return tenant.partition
    low, high = IB_ALLOCATED if site.network.fabric.type == "infiniband" else ROCE_ALLOCATED
    return low + zlib.crc32(f"{site.code}/{tenant.name}".encode()) % (high - low)


def pkey_text(value: int) -> str:
    """A partition key as ib-sriov-cni's pkey field reads it (a hex string, e.g. 0x1a2b)."""
    return f"0x{value:04x}"


def buckets(site: Site, tenant: Tenant) -> list[Bucket]:
    """The tenant's buckets with the settings of its class, as declared or the one default."""
    wanted = tenant.buckets or [None]
    settings = CLASS_BUCKETS[tenant.data_classification]
    out = []
    for b in wanted:
        name = b.name if b is not None else f"{site.code}-{tenant.name}"
        purpose = b.purpose if b is not None else f"data of tenant {tenant.name}"
        out.append(
            Bucket(
                name=name,
                purpose=purpose,
                role="data",
                classification=tenant.data_classification,
                versioning=settings.versioning,
                object_lock=settings.object_lock,
                lifecycle=Lifecycle(noncurrent_days=settings.noncurrent_days if settings.versioning else None),
            )
        )
    return out


def retired_buckets(site: Site) -> list[tuple[str, Bucket]]:
    """(retired tenant, bucket) for each bucket kept after its tenant left: owner only, versioned, nothing expires."""
    return [
        (r.name, Bucket(name=b, purpose=f"kept after tenant {r.name} left, until {r.retain_until}", role="data"))
        for r in site.retired_tenants
        for b in r.buckets
    ]


def tenant_of_bucket(site: Site, name: str) -> Tenant | None:
    return next((t for t in site.tenants for b in buckets(site, t) if b.name == name), None)

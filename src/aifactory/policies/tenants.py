"""Tenants: quotas that fit, and each tenant kept from every other (family ``tenants``).

What a tenant holds (its nodes, fabric partition, buckets and store user) is worked out in
tenancy.py; these checks judge it against the site and against the other tenants. The data class
decides what is required; 802.1Q's VLAN range bounds a RoCE partition (tenancy.ROCE_MAX_VLAN).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

from .. import grammar, tenancy
from ..model import Site, field_path
from .base import Policy, Result, Severity, report


def check_tenants(site: Site) -> Iterator[Result]:
    total = sum(t.gpu_quota for t in site.tenants)
    if total > site.gpu_total:
        yield report(
            "tenants.quota",
            Severity.ERROR,
            site,
            field_path("tenants"),
            f"quotas add up to {total} GPUs; the site has {site.gpu_total}",
        )
    else:
        yield report(
            "tenants.quota", Severity.INFO, site, field_path("tenants"), f"{total} of {site.gpu_total} GPUs allotted"
        )
    largest = max(p.spec.gpu_count for p in site.pools)
    for i, t in enumerate(site.tenants):
        if t.max_gpus_per_pod > largest:
            yield report(
                "tenants.pod-size",
                Severity.WARNING,
                site,
                field_path("tenants", i, "max_gpus_per_pod"),
                f"{t.max_gpus_per_pod} GPUs per pod, but no node has more than {largest}",
            )


def check_isolation(site: Site, as_of: date) -> Iterator[Result]:
    """What keeps each tenant from every other (tenancy.py): nodes, fabric partition, buckets, principal.

    The data class drives what is required: restricted and confidential tenants hold nodes of their
    own, a partition of their own and encrypted buckets; every tenant has buckets granted to its
    principal alone. Each finding names the tenant (and the other tenant, where two collide).
    """
    fabric = site.network.fabric
    held = tenancy.holders(site)
    shared = tenancy.shared_nodes(site)
    site_buckets = {b.name for b in site.storage.object_store.buckets}
    site_principals = set(site.storage.object_store.principals)
    bucket_owner: dict[str, str] = {}
    principal_owner: dict[str, str] = {}
    partition_owner: dict[int, str] = {}
    for i, t in enumerate(site.tenants):
        where = field_path("tenants", i)
        for k, why in tenancy.node_set_problems(site, t):
            yield report(
                "tenants.nodes", Severity.ERROR, site, field_path("tenants", i, "nodes", k), f"{t.name}: {why}"
            )
        mine = tenancy.nodes_of(site, t)
        if tenancy.dedicated(t) and not t.nodes:
            yield report(
                "tenants.nodes",
                Severity.ERROR,
                site,
                field_path("tenants", i, "nodes"),
                f"{t.name} holds {t.data_classification} data and shares every node: give it nodes of its own "
                "(nodes: [{pool: POOL, scalable_units: [...]}] or {pool: POOL, nodes: FIRST-LAST})",
            )
        gpus = tenancy.gpus(mine, site) if t.nodes else tenancy.gpus(shared, site)
        if t.gpu_quota > gpus:
            on = f"its {len(mine)} node(s)" if t.nodes else f"the {len(shared)} node(s) no tenant holds"
            yield report(
                "tenants.node-quota",
                Severity.ERROR,
                site,
                field_path("tenants", i, "gpu_quota"),
                f"{t.name}'s quota of {t.gpu_quota} GPUs does not fit {on}: {gpus} GPUs",
            )
        part = tenancy.partition(site, t)
        if t.shared_fabric and tenancy.dedicated(t):
            yield report(
                "tenants.partition",
                Severity.ERROR,
                site,
                field_path("tenants", i, "shared_fabric"),
                f"{t.name} holds {t.data_classification} data: it needs a fabric partition of its own",
            )
        elif t.shared_fabric:
            yield report(
                "tenants.partition",
                Severity.INFO,
                site,
                field_path("tenants", i, "shared_fabric"),
                f"{t.name} shares the site's default partition with every shared tenant (the site says so)",
            )
        if part is not None:
            if fabric.type == "roce" and part > tenancy.ROCE_MAX_VLAN:
                yield report(
                    "tenants.partition",
                    Severity.ERROR,
                    site,
                    field_path("tenants", i, "partition"),
                    f"{t.name}: VLAN {part} is past 802.1Q's {tenancy.ROCE_MAX_VLAN}",
                )
            other = partition_owner.setdefault(part, t.name)
            if other != t.name:
                yield report(
                    "tenants.partition",
                    Severity.ERROR,
                    site,
                    field_path("tenants", i, "partition"),
                    f"{t.name} and {other} would share partition {tenancy.pkey_text(part)}: declare another for one",
                )
        for name in [b.name for b in tenancy.buckets(site, t)]:
            try:
                grammar.bucket_name(name)
            except ValueError as exc:
                yield report(
                    "tenants.buckets", Severity.ERROR, site, field_path("tenants", i, "buckets"), f"{t.name}: {exc}"
                )
                continue
            other = "the site" if name in site_buckets else bucket_owner.setdefault(name, t.name)
            if other != t.name:
                yield report(
                    "tenants.buckets",
                    Severity.ERROR,
                    site,
                    field_path("tenants", i, "buckets"),
                    f"bucket {name} of {t.name} is also {other}'s",
                )
        who = tenancy.principal(t)
        other = "the site's" if who in site_principals else principal_owner.setdefault(who, t.name)
        if other != t.name:
            yield report(
                "tenants.buckets",
                Severity.ERROR,
                site,
                field_path("tenants", i, "principal"),
                f"store user {who} of {t.name} is also {other}: each tenant reads its buckets as its own user",
            )
        if t.data_classification in tenancy.ENCRYPTED and site.storage.object_store.encryption == "none":
            yield report(
                "tenants.encryption",
                Severity.WARNING,
                site,
                where,
                f"{t.name} holds {t.data_classification} data and the store declares no server-side encryption "
                "(storage.object_store.encryption: none): its objects rest unencrypted",
            )
    for host, names in held.items():
        if len(names) > 1:
            first = next(i for i, t in enumerate(site.tenants) if t.name == names[1])
            yield report(
                "tenants.shared-nodes",
                Severity.ERROR,
                site,
                field_path("tenants", first, "nodes"),
                f"{host} is held by {' and '.join(names)}: a node is one tenant's or shared by all",
            )
    for i, r in enumerate(site.retired_tenants):
        for name in r.buckets:
            other = "the site" if name in site_buckets else bucket_owner.get(name)
            if other:
                yield report(
                    "tenants.buckets",
                    Severity.ERROR,
                    site,
                    field_path("retired_tenants", i, "buckets"),
                    f"bucket {name} kept for retired tenant {r.name} is also {other}'s",
                )
        over = as_of > r.retain_until
        yield report(
            "tenants.retired",
            Severity.WARNING if over else Severity.INFO,
            site,
            field_path("retired_tenants", i),
            f"{r.name}'s {len(r.buckets)} bucket(s) kept until {r.retain_until}"
            + ("; that day has passed: they may be deleted by hand" if over else ""),
        )


POLICIES = (
    Policy(
        "tenants",
        "Tenant quotas fit the site's GPUs",
        "site",
        ("tenants.quota", "tenants.pod-size"),
        lambda s: check_tenants(s.stack.site),
    ),
    Policy(
        "tenant-isolation",
        "Each tenant's nodes, fabric partition, buckets and store user are its own, as its data class requires",
        "site",
        (
            "tenants.nodes",
            "tenants.shared-nodes",
            "tenants.node-quota",
            "tenants.partition",
            "tenants.buckets",
            "tenants.encryption",
            "tenants.retired",
        ),
        lambda s: check_isolation(s.stack.site, s.as_of),
    ),
)

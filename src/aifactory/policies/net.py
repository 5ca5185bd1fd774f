"""Network plan: addresses, rails, ports and scalable units (family ``net``).

From the site's own network block: no two networks overlap (within a site or between
interconnected sites), every subnet holds the pools' host numbers, each rail holds a block per
node as nv-ipam allocates them (Mellanox/nvidia-k8s-ipam allocator), one rail per compute NIC,
unique BMC addresses and MACs, one pool per scalable unit. The rail ports are NVIDIA's port table
for the SKU in the catalog (its source cited) or the topology a node of the pool reported; the
RoCE GID autodetection floor is NCCL's (catalog.NCCL_GID_AUTODETECT).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from ipaddress import IPv4Network

from .. import catalog
from ..catalog import Version
from ..model import Site, field_path, ipam_blocks
from ..stackfile import SITE_KEY, Stack
from .base import Policy, Result, Severity, report


def site_networks(site: Site) -> list[tuple[str, IPv4Network]]:
    n = site.network
    nets = [
        (field_path("network", "management", "cidr"), n.management.cidr),
        (field_path("network", "bmc", "cidr"), n.bmc.cidr),
        (field_path("network", "storage", "cidr"), n.storage.cidr),
        (field_path("network", "pods"), n.pods),
        (field_path("network", "services"), n.services),
    ]
    nets += [(field_path("network", "fabric", "rails", i, "cidr"), r.cidr) for i, r in enumerate(n.fabric.rails)]
    return nets


def smallest_fit(net: IPv4Network, fits: Callable[[IPv4Network], bool]) -> str:
    """What a capacity error adds: the smallest network around ``net`` that would fit, e.g. 'a /21 (10.48.0.0/21)'."""
    for prefix in range(net.prefixlen - 1, -1, -1):
        wider = net.supernet(new_prefix=prefix)
        if fits(wider):
            return f"; the smallest that fits is a /{prefix} ({wider})"
    return "; no IPv4 network is large enough"


def check_network(site: Site, written: Callable[[str], object] | None = None) -> Iterator[Result]:
    """The network plan; ``written`` gives a field's value as the file wrote it (echoed in messages)."""
    nets = site_networks(site)
    clean = True
    for i, (pa, a) in enumerate(nets):
        for pb, b in nets[i + 1 :]:
            if a.overlaps(b):
                clean = False
                yield report("net.overlap", Severity.ERROR, site, pb, f"{b} overlaps {pa} ({a})")
    if clean:
        yield report("net.overlap", Severity.INFO, site, field_path("network"), f"{len(nets)} networks, no overlap")

    n = site.network
    top = max((p.ip_offset + p.count - 1) for p in site.pools)
    for path, net in (
        (field_path("network", "management", "cidr"), n.management.cidr),
        (field_path("network", "storage", "cidr"), n.storage.cidr),
    ):
        if top >= net.num_addresses - 1:
            yield report(
                "net.capacity",
                Severity.ERROR,
                site,
                path,
                f"{net} has {net.num_addresses - 2} host addresses; the pools need host number {top}"
                + smallest_fit(net, lambda w: top < w.num_addresses - 1),
            )
        else:
            yield report("net.capacity", Severity.INFO, site, path, f"host numbers up to {top} fit in {net}")
    for subnet_path, subnet in (
        (field_path("network", "management"), n.management),
        (field_path("network", "bmc"), n.bmc),
        (field_path("network", "storage"), n.storage),
    ):
        if subnet.gateway and subnet.gateway not in subnet.cidr:
            yield report(
                "net.gateway",
                Severity.ERROR,
                site,
                f"{subnet_path}.gateway",
                f"{subnet.gateway} is outside {subnet.cidr}",
            )
    nodes = site.node_total
    for i, rail in enumerate(n.fabric.rails):
        blocks = ipam_blocks(rail.cidr, n.fabric.per_node_block)
        if blocks < nodes:
            yield report(
                "net.capacity",
                Severity.ERROR,
                site,
                field_path("network", "fabric", "rails", i, "cidr"),
                f"{rail.cidr} holds {blocks} blocks of {n.fabric.per_node_block} for {nodes} nodes: nv-ipam "
                "starts at network+1 and no block may end on the broadcast address "
                "(Mellanox/nvidia-k8s-ipam allocator)"
                + smallest_fit(rail.cidr, lambda w: ipam_blocks(w, n.fabric.per_node_block) >= nodes),
            )
    pod_blocks = 2 ** max(0, 24 - n.pods.prefixlen)
    if pod_blocks < nodes:
        yield report(
            "net.capacity",
            Severity.ERROR,
            site,
            field_path("network", "pods"),
            f"{n.pods} holds {pod_blocks} node /24 blocks for {nodes} nodes"
            + smallest_fit(n.pods, lambda w: 2 ** max(0, 24 - w.prefixlen) >= nodes),
        )
    rails = len(n.fabric.rails)
    for i, pool in enumerate(site.pools):
        nics = pool.spec.compute_nics
        if nics > rails:
            yield report(
                "net.rails",
                Severity.ERROR,
                site,
                field_path("network", "fabric", "rails"),
                f"{rails} rails, but {pool.spec.name} (pools[{i}]) has {nics} compute NICs: one rail per NIC",
            )
        elif nics < rails:
            # A GB200 tray (4 NICs) beside 8-NIC DGX systems: its NICs take the first rails.
            yield report(
                "net.rails",
                Severity.INFO,
                site,
                field_path("pools", i),
                f"{nics} NICs on rails 0-{nics - 1} of {rails}",
            )
        else:
            yield report("net.rails", Severity.INFO, site, field_path("pools", i), f"{nics} NICs, one rail each")
    widest = max(p.spec.compute_nics for p in site.pools)
    if widest < rails:
        yield report(
            "net.rails",
            Severity.ERROR,
            site,
            field_path("network", "fabric", "rails"),
            f"{rails} rails, but no pool has more than {widest} compute NICs: rails {widest}-{rails - 1} serve no NIC",
        )
    yield from _check_ports(site)
    if n.fabric.roce_gid_index is not None:
        if n.fabric.type != "roce":
            yield report(
                "net.gid-index",
                Severity.ERROR,
                site,
                field_path("network", "fabric", "roce_gid_index"),
                "a RoCE GID index on an InfiniBand fabric: NCCL would use it against the IB ports",
            )
        elif Version.parse(catalog.NCCL_GID_AUTODETECT) <= Version.parse(site.gpu_stack.nccl_version):
            yield report(
                "net.gid-index",
                Severity.WARNING,
                site,
                field_path("network", "fabric", "roce_gid_index"),
                f"NCCL {site.gpu_stack.nccl_version} finds the RoCE v2 GID itself (from "
                f"{catalog.NCCL_GID_AUTODETECT}) and warns about a forced index: leave it unset unless the "
                "fabric needs a specific one",
            )
    for i, pool in enumerate(site.pools):
        lo, hi = pool.ip_offset, pool.ip_offset + pool.count - 1
        for j, other in enumerate(site.pools[:i]):
            olo, ohi = other.ip_offset, other.ip_offset + other.count - 1
            if lo <= ohi and olo <= hi:
                yield report(
                    "net.pool-ranges",
                    Severity.ERROR,
                    site,
                    field_path("pools", i, "ip_offset"),
                    f"host numbers {lo}-{hi} overlap pools[{j}] ({olo}-{ohi})",
                )
    seen_bmc: dict[str, str] = {}
    seen_mac: dict[str, str] = {}
    for i, pool in enumerate(site.pools):
        for k, node in enumerate(pool.nodes):
            path = field_path("pools", i, "nodes", k)
            if node.bmc not in n.bmc.cidr:
                yield report(
                    "net.bmc",
                    Severity.ERROR,
                    site,
                    f"{path}.bmc",
                    f"{node.bmc} is outside the BMC network {n.bmc.cidr}",
                )
            for key, seen, value in (("bmc", seen_bmc, str(node.bmc)), ("mac", seen_mac, node.mac)):
                if value in seen:
                    # Compared normalised (a MAC in any case), echoed as the file wrote it.
                    said = written(f"{SITE_KEY}.{path}.{key}") if written else None
                    echoed = said if isinstance(said, str) else value
                    yield report("net.unique", Severity.ERROR, site, f"{path}.{key}", f"{echoed} is also {seen[value]}")
                seen[value] = path


def _check_ports(site: Site) -> Iterator[Result]:
    """Rails run over the compute ports the catalog knows for each SKU, with NVIDIA's names."""
    fabric = site.network.fabric.type
    maps: dict[tuple[str, ...], str] = {}
    for i, pool in enumerate(site.pools):
        ports = site.rail_ports(pool.sku)
        if ports is None:
            yield report(
                "net.port-map",
                Severity.WARNING,
                site,
                field_path("pools", i, "sku"),
                f"nothing names the compute ports of {pool.sku}: NVIDIA publishes no port table for it and no "
                "node's report is recorded, so its nodes get no rail resources and NCCL picks its HCAs itself; "
                f"read them from a node with `aifactory topology {site.code} --node HOST` and record the block "
                f"under pools[{i}].topology",
            )
            continue
        port_map = site.port_map(pool.sku)
        assert port_map is not None  # rail_ports returned ports
        if pool.topology is not None and pool.spec.ports is not None:
            yield report(
                "net.port-map",
                Severity.WARNING,
                site,
                field_path("pools", i, "topology"),
                f"{pool.sku} has NVIDIA's port table in the catalog; the recorded topology is not used for its "
                "rails (verify compares every node with NVIDIA's table)",
            )
        first = next(p for p in site.pools if p.sku == pool.sku and (p.topology is not None or p.spec.ports))
        if pool.topology is not None and first is not pool and first.topology is not None:
            mine = [(c.rdma, c.netdev) for c in pool.topology.compute]
            theirs = [(c.rdma, c.netdev) for c in first.topology.compute]
            if mine != theirs:
                yield report(
                    "net.port-map",
                    Severity.ERROR,
                    site,
                    field_path("pools", i, "topology"),
                    f"pool {pool.name} recorded other port names for {pool.sku} than pool {first.name} "
                    f"({', '.join(r for r, _ in mine)} against {', '.join(r for r, _ in theirs)}): one SKU's "
                    "rails run over one set of names; re-read both pools' nodes",
                )
        if pool.topology is not None:
            hosts = {n.hostname for n in site.nodes if n.pool == pool.name}
            if pool.topology.reported_by not in hosts:
                yield report(
                    "net.port-map",
                    Severity.ERROR,
                    site,
                    field_path("pools", i, "topology", "reported_by"),
                    f"{pool.topology.reported_by} is no node of pool {pool.name}: a pool's ports are read from "
                    "one of its own nodes",
                )
        names = tuple(p.netdev(fabric) for p in ports)
        maps.setdefault(names, pool.sku)
        yield report(
            "net.port-map",
            Severity.INFO,
            site,
            field_path("pools", i, "sku"),
            f"rails on {', '.join(f'{p.rdma}/{p.netdev(fabric)}' for p in ports)} ({port_map.source})",
        )
    if len(maps) > 1:
        yield report(
            "net.port-map",
            Severity.ERROR,
            site,
            field_path("pools"),
            f"SKUs {', '.join(maps.values())} name their rail ports differently; one NetworkAttachmentDefinition "
            "per rail cannot serve both: split them into sites or extend the network component",
        )


def check_cross_site(stacks: Iterable[Stack], only: set[str]) -> Iterator[Result]:
    """Sites are interconnected: no CIDR may be used by two sites."""
    sites = [s.site for s in stacks]
    for i, a in enumerate(sites):
        for b in sites[i + 1 :]:
            if a.code not in only and b.code not in only:
                continue
            for pa, na in site_networks(a):
                for pb, nb in site_networks(b):
                    if na.overlaps(nb):
                        subject, other, path, pother = (a, b, pa, pb) if a.code in only else (b, a, pb, pa)
                        yield report(
                            "net.overlap-sites",
                            Severity.ERROR,
                            subject,
                            path,
                            f"overlaps site {other.code} {pother} ({na if subject is a else nb} / "
                            f"{nb if subject is a else na})",
                        )


def check_scalable_units(site: Site) -> Iterator[Result]:
    """No scalable unit in two pools: a unit is one rail leaf set, and its label is how workloads and drains find it."""
    owner: dict[str, int] = {}
    for i, pool in enumerate(site.pools):
        for k, unit in enumerate(pool.scalable_units):
            first = owner.setdefault(unit.name, i)
            if first != i:
                yield report(
                    "net.scalable-units",
                    Severity.ERROR,
                    site,
                    field_path("pools", i, "scalable_units", k, "name"),
                    f"{unit.name} is also a unit of pool {site.pools[first].name}: two pools' nodes would carry one "
                    "aifactory.io/scalable-unit label; name the units uniquely in the site",
                )
    units = ", ".join(f"{p.name}: {'+'.join(u.name for u in p.scalable_units)}" for p in site.pools)
    yield report("net.scalable-units", Severity.INFO, site, field_path("pools"), f"units {units}")


POLICIES = (
    Policy(
        "net",
        "Network plan: no overlaps, enough addresses, one rail per NIC, unique BMCs and MACs",
        "site",
        (
            "net.overlap",
            "net.capacity",
            "net.gateway",
            "net.rails",
            "net.port-map",
            "net.gid-index",
            "net.pool-ranges",
            "net.bmc",
            "net.unique",
        ),
        lambda s: check_network(s.stack.site, s.stack.written),
    ),
    Policy(
        "scalable-units",
        "Each scalable unit belongs to one pool",
        "site",
        ("net.scalable-units",),
        lambda s: check_scalable_units(s.stack.site),
    ),
    Policy(
        "net-sites",
        "No CIDR used by two interconnected sites",
        "cross-site",
        ("net.overlap-sites",),
        lambda s: check_cross_site([s.stack, *s.others], {s.stack.name}),
    ),
)

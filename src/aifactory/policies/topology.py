"""Topology: rack-scale pools as NVLink and IMEX domains (family ``topology``).

A rack-scale SKU (GB200 NVL72) is one NVLink domain per rack: every tray of the pool sits in a
rack, and every rack holds the SKU's number of compute trays. The rack's size comes from the
catalog's rack spec of the SKU, with its source cited in the message (``spec.source``).
"""

from __future__ import annotations

from collections.abc import Iterator

from ..model import Site, field_path
from .base import Policy, Result, Severity, report


def check_racks(site: Site) -> Iterator[Result]:
    """Rack-scale pools: every tray in a rack, every rack the SKU's size; the rack is the IMEX domain."""
    for i, pool in enumerate(site.pools):
        spec = pool.spec.rack
        if spec is None:
            if pool.racks:
                yield report(
                    "topology.racks",
                    Severity.INFO,
                    site,
                    field_path("pools", i, "racks"),
                    f"{len(pool.racks)} rack(s) of {pool.sku}: labels only (its NVLink domain is the node)",
                )
            continue
        loose = [k for k in range(1, pool.count + 1) if k not in pool.rack_of]
        if loose:
            yield report(
                "topology.racks",
                Severity.ERROR,
                site,
                field_path("pools", i, "racks"),
                f"{len(loose)} of pool {pool.name}'s {pool.sku} trays are in no rack (node(s) "
                f"{', '.join(map(str, loose[:8]))}{' ...' if len(loose) > 8 else ''}): a tray's NVLink and IMEX "
                "domain is its rack",
            )
        else:
            yield report(
                "topology.racks",
                Severity.INFO,
                site,
                field_path("pools", i, "racks"),
                f"{pool.count} trays in {len(pool.racks)} rack(s)",
            )
        for k, rack in enumerate(pool.racks):
            if len(rack.trays) != spec.compute_trays:
                yield report(
                    "topology.rack-size",
                    Severity.ERROR,
                    site,
                    field_path("pools", i, "racks", k, "trays"),
                    f"rack {rack.name} holds {len(rack.trays)} compute tray(s); a {pool.sku} rack holds "
                    f"{spec.compute_trays} (and {spec.switch_trays} NVLink switch trays) as one NVLink domain "
                    f"({spec.source})",
                )
            else:
                yield report(
                    "topology.rack-size",
                    Severity.INFO,
                    site,
                    field_path("pools", i, "racks", k),
                    f"rack {rack.name}: {spec.compute_trays} trays, one NVLink domain",
                )


POLICIES = (
    Policy(
        "topology",
        "Rack-scale pools: every tray in one rack of the SKU's size (the NVLink and IMEX domain)",
        "site",
        ("topology.racks", "topology.rack-size"),
        lambda s: check_racks(s.stack.site),
    ),
)

"""Format 4 -> 5: each pool declares its scalable units.

Reads the shape of dab6d38 (and the optional keys 978a6df and a4d5b35 added to it), where a node's
scalable unit was not declared: labels.py derived ``aifactory.io/scalable-unit`` from the node's
index within its pool, so the first 32 nodes of every pool were su1 and two pools shared it. The
step writes that rule down as each pool's ``scalable_units``, so a revision reads with the labels it
produced; the ``net.scalable-units`` policy reports the sharing, as it would today.
"""

from __future__ import annotations

from typing import Any

from .common import mappings

SOURCE = 4
INTRODUCED = "dab6d386bdcb9869f6ca2652750d6d322f7f54fb"  # dab6d38: the commit whose shape this step reads
WHAT = "scalable units declared"
HOW = (
    "give each pool scalable_units: [{name: su1, nodes: 32}, ...], the nodes of each unit in pool order, "
    "no name in two pools; and declare aifactory:stackFormat: 5"
)

# The rule labels.py applied before format 5: 32 nodes per unit, counted from each pool's first node.
_OLD_RULE_NODES = 32


def carries(site: dict[str, Any]) -> bool:
    return any("scalable_units" not in p for p in mappings(site.get("pools")))


def upgrade(site: dict[str, Any]) -> list[str]:
    read = []
    for pool in mappings(site.get("pools")):
        nodes = pool.get("nodes")
        if "scalable_units" in pool or not isinstance(nodes, list) or not nodes:
            continue  # declared already, or a pool today's model refuses for its nodes
        count = len(nodes)
        units = [
            {"name": f"su{k + 1}", "nodes": min(_OLD_RULE_NODES, count - k * _OLD_RULE_NODES)}
            for k in range(-(-count // _OLD_RULE_NODES))
        ]
        pool["scalable_units"] = units
        read.append(f"{pool.get('name')} {'+'.join(u['name'] for u in units)}")
    if not read:
        return []
    return [
        f"scalable units were not declared: read from each node's index in its pool, 32 to a unit, as "
        f"labels.py derived them before format 5 ({'; '.join(read)})"
    ]

"""Scalable units are declared by each pool, not derived from a node's index, and no two pools share one."""

from __future__ import annotations

from pathlib import Path

from aifactory import labels
from aifactory.stackfile import load_stack

from .conftest import ROOT
from .helpers import crafted


def _units(site: str) -> dict[str, set[str]]:
    stack = load_stack(ROOT, site)
    out: dict[str, set[str]] = {}
    for node in stack.site.nodes:
        out.setdefault(node.pool, set()).add(labels.node_labels(stack.site, node)[labels.SCALABLE_UNIT])
    return out


def test_labels_follow_the_declared_units_not_the_index_in_the_pool():
    # ma's first two pools: the first nodes of each were both su1 while the unit came from the index.
    assert _units("ma") == {"h100a": {"su1"}, "b200a": {"su2"}, "gb200a": {"su3"}}


def test_a_pool_of_two_units_labels_each_node_with_its_own():
    def grow(site):
        pool = site["pools"][0]
        pool["nodes"] += [{"bmc": f"10.16.4.{53 + i}", "mac": f"b8:3f:d2:10:00:{33 + i:02x}"} for i in range(8)]
        pool["scalable_units"] = [{"name": "su1", "nodes": 32}, {"name": "su2", "nodes": 8}]

    site = crafted("za", grow).site
    got = [labels.node_labels(site, n)[labels.SCALABLE_UNIT] for n in site.nodes]
    assert got == ["su1"] * 32 + ["su2"] * 8


def _edit(workdir: Path, site: str, old: str, new: str) -> None:
    path = workdir / "stacks" / f"Pulumi.{site}.yaml"
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def test_two_pools_sharing_a_unit_fail_the_policy(workdir, cli):
    _edit(workdir, "ma", "scalable_units: [{name: su2, nodes: 8}]", "scalable_units: [{name: su1, nodes: 8}]")
    code, out, _ = cli("validate", "ma", root=workdir)
    assert code == 2
    assert (
        "error: stacks/Pulumi.ma.yaml: aifactory:site.pools[1].scalable_units[0].name: [net.scalable-units] su1 is "
        "also a unit of pool h100a" in out
    )
    assert cli("plan", "ma", root=workdir)[0] == 2


def test_the_units_hold_every_node_of_their_pool_once(workdir, cli):
    _edit(workdir, "lab", "scalable_units: [{name: su1, nodes: 2}]", "scalable_units: [{name: su1, nodes: 3}]")
    code, _, err = cli("validate", "lab", root=workdir)
    assert code == 2
    assert (
        "aifactory:site.pools[0].scalable_units: the units hold 3 nodes, the pool has 2: remove 1 from the units, "
        "or add nodes (line " in err
    )
    _edit(
        workdir,
        "lab",
        "scalable_units: [{name: su1, nodes: 3}]",
        "scalable_units: [{name: su1, nodes: 1}, {name: su1, nodes: 1}]",
    )
    code, _, err = cli("validate", "lab", root=workdir)
    assert code == 2 and "unit(s) su1 named twice in the pool" in err


def test_no_stack_on_main_shares_a_unit_between_pools():
    for site in ("eg", "ke", "lab", "ma", "ng", "za"):
        units = _units(site)
        every = [u for pool in units.values() for u in pool]
        assert len(every) == len(set(every)), (site, units)

"""Commands an SRE runs against a site's nodes: inventory, bootstrap, verify.

The lab pipeline (`cli/lab.py`) calls the same functions these commands call.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .common import add_limit, add_ssh_config, gated, positive, root_of

if TYPE_CHECKING:
    from ..bootstrap import RunResult
    from ..stackfile import Stack  # imported when a command runs: the CLI starts without Ansible or pytest
    from ..verify.runner import NodeResult


def write_inventories(root: Path, stacks: Sequence[Stack]) -> None:
    from .. import inventory

    for s in stacks:
        changed = inventory.write(s, root)
        print(
            f"{s.name}: "
            + (f"{len(changed)} file(s) written" if changed else "in sync with the stack")
            + "".join(f"\n  {p.relative_to(root)}" for p in changed)
        )


def cmd_inventory(args: argparse.Namespace) -> int:
    from .. import inventory
    from ..stackfile import list_stacks

    root = root_of(args)
    stacks = gated(root, args.sites or list_stacks(root))
    if args.check:
        stale = [(s.name, p, why) for s in stacks for p, why in inventory.drift(s, root)]
        for name, path, why in stale:
            print(f"{path.relative_to(root)}: {why} (run `aifactory inventory {name}`)")
        if stale:
            return 1
        print(f"inventories in sync with their stacks: {', '.join(s.name for s in stacks)}")
        return 0
    write_inventories(root, stacks)
    return 0


def bootstrap(
    stack: Stack,
    root: Path,
    *,
    limit: str | None = None,
    check: bool = False,
    ssh_config: Path | None = None,
    quiet: bool = False,
) -> RunResult:
    """Run the playbook and print its per-host summary."""
    from ..bootstrap import prune_runs, run_playbook, summary

    result = run_playbook(stack, root, limit=limit, check=check, ssh_config=ssh_config, quiet=quiet)
    print(summary(result))
    prune_runs(root, stack.name)
    return result


def cmd_bootstrap(args: argparse.Namespace) -> int:
    root = root_of(args)
    (stack,) = gated(root, [args.site])
    result = bootstrap(stack, root, limit=args.limit, check=args.check, ssh_config=args.ssh_config)
    return 1 if result.failed_hosts or result.rc != 0 else 0


def verify(
    stack: Stack,
    root: Path,
    *,
    limit: str | None = None,
    parallel: int = 16,
    ssh_config: Path | None = None,
    junit: Path | None = None,
    json_out: Path | None = None,
) -> list[NodeResult]:
    """Run the node suite and print the nodes x checks table; write JUnit and JSON when asked."""
    from ..verify import runner

    results = runner.run(stack, root, limit=limit, parallel=parallel, ssh_config=ssh_config)
    print(runner.table(results))
    if junit:
        runner.write_junit(results, stack.name, junit)
    if json_out:
        runner.write_json(results, stack.name, json_out)
    return results


def check_report_path(path: Path | None, option: str) -> None:
    """A report's path, checked before the run it reports on: a folder there, or a file where its folder
    should be, is refused now, not after an hour of checks."""
    from ..errors import ConfigError, Problem

    if path is None:
        return
    if path.is_dir():
        raise ConfigError([Problem(option, "", f"{path} is a directory; name the file to write")])
    parent = next((p for p in path.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise ConfigError([Problem(option, "", f"{parent} is not a directory")])


def cmd_verify(args: argparse.Namespace) -> int:
    root = root_of(args)
    check_report_path(args.junit, "--junit")
    check_report_path(args.json, "--json")
    (stack,) = gated(root, [args.site])
    results = verify(
        stack,
        root,
        limit=args.limit,
        parallel=args.parallel,
        ssh_config=args.ssh_config,
        junit=args.junit,
        json_out=args.json,
    )
    return 1 if any(r.failed for r in results) else 0


def topology_block(stack: Stack, node: str, report: dict) -> tuple[str, list[str]]:
    """The YAML block recording a node's compute ports for its pool, and how it compares with the stack.

    What the node printed is untrusted: every name goes through the model's grammars (a PCI address,
    an RDMA device, an interface name) before it is shown as something to paste into a stack.
    """
    from pydantic import ValidationError

    from ..errors import ConfigError, Problem
    from ..model import Topology
    from ..verify.topology import differences, rails

    found = rails(report)
    if not found:
        why = "no NVIDIA GPU" if not report.get("gpus") else "no NIC with an RDMA device"
        raise ConfigError([Problem("--node", "", f"{node} reports {why} on its PCI bus: nothing to record")])
    try:
        topo = Topology.model_validate(
            {
                "reported_by": node,
                "compute": [{"gpu": b.gpu, "pci": b.pci, "rdma": b.rdma, "netdev": b.netdev} for b in found],
            }
        )
    except ValidationError as exc:
        said = exc.errors()[0]["msg"]
        raise ConfigError([Problem("--node", "", f"{node} reported a name outside its grammar: {said}")]) from None
    view = next(n for n in stack.site.nodes if n.hostname == node)
    pool = stack.site.pool(view.pool)
    lines = [
        f"# pools[{stack.site.pools.index(pool)}] ({pool.name}) of {stack.shown}: the compute ports {node} reports",
        # Indented as a pool's keys are in the project's stacks (aifactory:site.pools[].topology).
        "        topology:",
        f"          reported_by: {topo.reported_by}",
        "          compute:",
        *(
            f'            - {{gpu: "{p.gpu}", pci: "{p.pci}", rdma: {p.rdma}, netdev: {p.netdev}}}'
            for p in topo.compute
        ),
    ]
    notes = []
    if pool.topology is not None:
        recorded = [(p.gpu, p.pci, p.rdma, p.netdev) for p in pool.topology.compute]
        diff = differences(recorded, found)
        notes = diff or [f"matches what the stack records (reported by {pool.topology.reported_by})"]
    return "\n".join(lines), notes


def cmd_topology(args: argparse.Namespace) -> int:
    import testinfra

    from ..errors import ConfigError, OperationError, Problem
    from ..grammar import shown
    from ..verify.topology import TOPOLOGY_SNIPPET, parse

    root = root_of(args)
    (stack,) = gated(root, [args.site])
    view = next((n for n in stack.site.nodes if n.hostname == args.node), None)
    if view is None:
        raise ConfigError([Problem("--node", "", f"{shown(args.node)} is no node of {stack.name}")])
    host = testinfra.get_host(
        f"ssh://{view.management_ip}", **({"ssh_config": str(args.ssh_config)} if args.ssh_config else {})
    )
    out = host.run("python3 -c %s", TOPOLOGY_SNIPPET)
    if out.rc != 0:
        last = (out.stderr.strip().splitlines() or [f"exit {out.rc}"])[-1]
        raise OperationError(f"{args.node}: could not read its PCI topology: {shown(last, 200)}")
    try:
        report = parse(out.stdout)
    except ValueError as exc:
        raise OperationError(f"{args.node}: its topology report is unreadable: {shown(str(exc), 200)}") from None
    block, notes = topology_block(stack, args.node, report)
    print(block)
    for note in notes:
        print(f"# {note}")
    return 1 if notes and not notes[0].startswith("matches") else 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inventory", help="render inventories/SITE from the stack (all sites when none named)")
    p.add_argument("sites", nargs="*", metavar="SITE", help="sites to render (default: every stack in stacks/)")
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 if any inventory is out of sync")
    p.set_defaults(func=cmd_inventory)

    p = sub.add_parser("bootstrap", help="install the site's driver, CUDA and NCCL on its nodes (Ansible)")
    p.add_argument("site", metavar="SITE", help="the site whose nodes to converge")
    add_limit(p)
    add_ssh_config(p)
    p.add_argument("--check", action="store_true", help="check mode: report what would change, change nothing")
    p.set_defaults(func=cmd_bootstrap)

    p = sub.add_parser("verify", help="check every node has what its site declares (testinfra)")
    p.add_argument("site", metavar="SITE", help="the site whose nodes to check")
    add_limit(p)
    add_ssh_config(p)
    p.add_argument("--junit", type=Path, metavar="FILE", help="write JUnit XML (one testsuite per node)")
    p.add_argument("--json", type=Path, metavar="FILE", help="write the results as JSON")
    p.add_argument(
        "--parallel", type=positive, default=16, metavar="N", help="nodes checked at once, 1 to 256 (default 16)"
    )
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser(
        "topology",
        help="read a node's GPU/NIC topology (sysfs) and print its pool's topology block for the stack",
    )
    p.add_argument("site", metavar="SITE", help="the site the node belongs to")
    p.add_argument("--node", required=True, metavar="HOST", help="the node to read (its hostname)")
    add_ssh_config(p)
    p.set_defaults(func=cmd_topology)

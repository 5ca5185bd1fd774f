"""What verify checks of a rack-scale tray's IMEX domain and NVLink clique: pure functions of what the node says.

- The node list: ``/etc/nvidia-imex/nodes_config.cfg`` must hold every tray of the node's rack (the
  IMEX service forms its domain from it and refuses one whose nodes' maps differ).
- The service: masked where NVIDIA's DRA driver runs IMEX per ComputeDomain; enabled and ready
  where the host runs the rack's domain (``nvidia-imex-ctl -q`` answers ``READY``: what the DRA
  driver's own daemon checks, cmd/compute-domain-daemon/main.go).
- The clique: every GPU of a tray on one ``<ClusterUUID>.<CliqueID>``; the trays of one rack on one
  clique, and no two racks on the same (checked across nodes by the runner).
"""

from __future__ import annotations

from collections import Counter

IMEX_READY = "READY"


def node_list_problems(expected: list[tuple[str, str]], text: str) -> list[str]:
    """How nodes_config.cfg differs from the rack's trays (address, hostname), in the rack's order."""
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    want = [ip for ip, _ in expected]
    name = dict(expected)
    problems = []
    missing = [f"{ip} ({name[ip]})" for ip in want if ip not in lines]
    if missing:
        problems.append(f"misses {len(missing)} tray(s) of the rack: {', '.join(missing[:6])}")
    extra = [ip for ip in lines if ip not in name]
    if extra:
        problems.append(f"names address(es) outside the rack: {', '.join(extra[:6])}")
    twice = sorted(ip for ip, k in Counter(lines).items() if k > 1)
    if twice:
        problems.append(f"names {', '.join(twice)} more than once")
    if not problems and lines != want:
        problems.append("lists the rack's trays in another order than the rack does (every tray must hold the same)")
    return problems


def clique_problems(by_rack: dict[str, dict[str, str]]) -> dict[str, str]:
    """Per node, why its clique is wrong: rack -> {node: clique}; a node absent had no clique to compare."""
    problems: dict[str, str] = {}
    majority: dict[str, str] = {}
    for rack, cliques in by_rack.items():
        if not cliques:
            continue
        common, _ = Counter(cliques.values()).most_common(1)[0]
        majority[rack] = common
        for node, clique in cliques.items():
            if clique != common:
                problems[node] = f"on clique {clique}, the rest of rack {rack} on {common}: not one NVLink domain"
    owners: dict[str, list[str]] = {}
    for rack, clique in majority.items():
        owners.setdefault(clique, []).append(rack)
    for clique, racks in owners.items():
        if len(racks) > 1:
            for rack in racks:
                for node, got in by_rack[rack].items():
                    if got == clique:
                        shared = ", ".join(sorted(racks))
                        problems.setdefault(node, f"racks {shared} share clique {clique}: their NVLink domains are one")
    return problems

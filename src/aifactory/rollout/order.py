"""The order of a rollout: a canary batch (N nodes of each pool), then batches of N nodes or P%."""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

if TYPE_CHECKING:
    from ..model import NodeView

_HOST = r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$"
_BATCH = re.compile(r"(?P<n>[1-9][0-9]{0,5})(?P<pct>%?)", re.ASCII)


@dataclass(frozen=True)
class BatchSize:
    """``--batch``: a node count, or a percentage of the nodes the rollout converges."""

    value: int
    percent: bool

    def __str__(self) -> str:
        return f"{self.value}{'%' if self.percent else ''}"

    def nodes(self, total: int) -> int:
        if not self.percent:
            return self.value
        return max(1, math.ceil(total * self.value / 100))


def batch_size(text: str) -> BatchSize:
    m = _BATCH.fullmatch(text)
    if not m:
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is neither a node count (e.g. 2) nor a percentage (e.g. 10%)")
    size = BatchSize(int(m["n"]), bool(m["pct"]))
    if size.percent and size.value > 100:
        raise argparse.ArgumentTypeError(f"{size} is more than 100%")
    return size


def batch_name(kind: str, index: int) -> str:
    return "canary" if kind == "canary" else f"batch {index}"


class Batch(BaseModel):
    """One planned batch; also a field of the rollout record, so it is a strict schema of its own."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    index: Annotated[int, Field(ge=0, le=1_000_000)]  # 0 is the canary, when there is one
    kind: Literal["canary", "batch"]
    nodes: Annotated[tuple[Annotated[str, StringConstraints(pattern=_HOST)], ...], Field(min_length=1)]

    @property
    def name(self) -> str:
        return batch_name(self.kind, self.index)


def _units(nodes: list[NodeView], domain_of: Callable[[NodeView], str | None]) -> list[list[NodeView]]:
    """The nodes in site order, each NVLink domain's nodes gathered where its first one stands."""
    units: list[list[NodeView]] = []
    by_domain: dict[str, list[NodeView]] = {}
    for n in nodes:
        domain = domain_of(n)
        if domain is None:
            units.append([n])
        elif domain in by_domain:
            by_domain[domain].append(n)
        else:
            by_domain[domain] = [n]
            units.append(by_domain[domain])
    return units


def order(
    nodes: list[NodeView],
    canary_per_pool: int,
    size: BatchSize,
    domain_of: Callable[[NodeView], str | None] = lambda _n: None,
) -> list[Batch]:
    """Batches over ``nodes`` (those to converge, in the site's order).

    The canary takes the first ``canary_per_pool`` of each pool, so every SKU and pool setting is
    proven on one node before any batch; the rest follow in the site's order, ``size`` at a time
    (a percentage is of all the nodes to converge, rounded up).

    ``domain_of`` names a node's multi-node NVLink domain (a GB200 NVL72 rack), or None. A domain's
    nodes are never split between batches: the IMEX domain spans the rack, so half of it out of
    service is the whole of it degraded. Such a domain is one unit: the canary takes whole domains
    until it has ``canary_per_pool`` nodes of the pool, and a domain larger than ``size`` is a
    batch of its own.
    """
    units = _units(nodes, domain_of)
    canary: list[str] = []
    taken: dict[str, int] = {}
    rest: list[list[NodeView]] = []
    for unit in units:
        pool = unit[0].pool
        if taken.get(pool, 0) < canary_per_pool:
            canary.extend(n.hostname for n in unit)
            taken[pool] = taken.get(pool, 0) + len(unit)
        else:
            rest.append(unit)
    step = size.nodes(len(nodes))
    batches = [Batch(index=0, kind="canary", nodes=tuple(canary))] if canary else []
    current: list[str] = []

    def close() -> None:
        if current:
            batches.append(Batch(index=len(batches) + (0 if canary else 1), kind="batch", nodes=tuple(current)))
            current.clear()

    for unit in rest:
        if current and len(current) + len(unit) > step:
            close()
        current.extend(n.hostname for n in unit)
        if len(current) >= step:
            close()
    close()
    return batches

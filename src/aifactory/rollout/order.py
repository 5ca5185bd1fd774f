"""The order of a rollout: a canary batch (N nodes of each pool), then batches of N nodes or P%."""

from __future__ import annotations

import argparse
import math
import re
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


def order(nodes: list[NodeView], canary_per_pool: int, size: BatchSize) -> list[Batch]:
    """Batches over ``nodes`` (those to converge, in the site's order).

    The canary takes the first ``canary_per_pool`` of each pool, so every SKU and pool setting is
    proven on one node before any batch; the rest follow in the site's order, ``size`` at a time
    (a percentage is of all the nodes to converge, rounded up).
    """
    canary: list[str] = []
    taken: dict[str, int] = {}
    for n in nodes:
        if taken.get(n.pool, 0) < canary_per_pool:
            canary.append(n.hostname)
            taken[n.pool] = taken.get(n.pool, 0) + 1
    chosen = set(canary)
    rest = [n.hostname for n in nodes if n.hostname not in chosen]
    step = size.nodes(len(nodes))
    batches = [Batch(index=0, kind="canary", nodes=tuple(canary))] if canary else []
    for i in range(0, len(rest), step):
        batches.append(Batch(index=len(batches) + (0 if canary else 1), kind="batch", nodes=tuple(rest[i : i + step])))
    return batches

"""A rollout's state and record, one JSON document: runs/<site>/rollouts/<id>/rollout.json.

The document is the state `--resume` continues from and the record an auditor reads: the plan,
what differed on each node before it started, and per batch the nodes, their versions before and
after, what taking them out of service did, the converge and verify results, start and end times.
Each finished batch is also written as its own file (batch-<n>.json), which never changes after,
so it can go to the evidence store under object lock as soon as the batch ends.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import OperationError
from ..fsutil import write_atomic
from .order import Batch, batch_name

RUNNING, STOPPED, COMPLETED, ABANDONED = "running", "stopped", "completed", "abandoned"
FORMAT = 1


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


@dataclass
class NodeOutcome:
    versions_before: dict[str, str] = field(default_factory=dict)
    versions_after: dict[str, str] = field(default_factory=dict)
    out_of_service: str = ""  # what cordon and drain did, or SKIPPED with the reason
    converge: str = ""  # "ok (N changed)", or why it failed
    verify: str = ""  # "pass", or the failed checks
    back_in_service: str = ""  # uncordoned, left cordoned (and why), or SKIPPED
    failed: bool = False


@dataclass
class BatchRecord:
    index: int
    kind: str
    nodes: list[str]
    started: str = ""
    ended: str = ""
    outcomes: dict[str, NodeOutcome] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    passed: bool = False
    bootstrap_artifacts: str = ""

    @property
    def name(self) -> str:
        return batch_name(self.kind, self.index)


@dataclass
class Rollout:
    id: str
    site: str
    stack_file: str
    declared: dict[str, str]
    options: dict[str, Any]
    plan: list[Batch]
    differences: dict[str, dict[str, Any]]
    started: str = field(default_factory=now)
    ended: str = ""
    status: str = RUNNING
    reason: str = ""
    next_batch: int = 0  # position in plan of the first batch not yet passed
    batches: list[BatchRecord] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)
    # Nodes found cordoned at the start (an operator's: never uncordoned) and nodes this rollout
    # cordoned and has not yet uncordoned (a failed node stays so until a resume passes it).
    cordoned_by_operator: list[str] = field(default_factory=list)
    cordoned_by_rollout: list[str] = field(default_factory=list)
    format: int = FORMAT

    def last_tries(self) -> dict[int, BatchRecord]:
        """Each batch's latest try, by its index (a resumed batch has more than one)."""
        return {b.index: b for b in self.batches}

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Rollout:
        raw = json.loads(text)
        if raw.get("format") != FORMAT:
            raise ValueError(f"record format {raw.get('format')!r}, this aifactory reads {FORMAT}")
        batches = [
            BatchRecord(**{**b, "outcomes": {h: NodeOutcome(**o) for h, o in b["outcomes"].items()}})
            for b in raw.pop("batches")
        ]
        plan = [Batch(int(p["index"]), str(p["kind"]), tuple(p["nodes"])) for p in raw.pop("plan")]
        return cls(**raw, plan=plan, batches=batches)


def rollouts_dir(root: Path, site: str) -> Path:
    return root / "runs" / site / "rollouts"


def path_of(root: Path, rollout: Rollout) -> Path:
    return rollouts_dir(root, rollout.site) / rollout.id / "rollout.json"


def save(root: Path, rollout: Rollout) -> Path:
    path = path_of(root, rollout)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, rollout.to_json())
    return path


def save_batch(root: Path, rollout: Rollout, batch: BatchRecord) -> Path:
    """The finished batch as a file of its own, named for the evidence store (one key per batch and try)."""
    tries = sum(1 for b in rollout.batches if b.index == batch.index)
    path = path_of(root, rollout).with_name(f"rollout-{rollout.id}-batch-{batch.index}-try-{tries}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps({"rollout": rollout.id, "site": rollout.site, **asdict(batch)}, indent=2) + "\n")
    return path


def latest(root: Path, site: str) -> Rollout | None:
    base = rollouts_dir(root, site)
    paths = sorted(base.glob("*/rollout.json")) if base.is_dir() else []
    if not paths:
        return None
    try:
        return Rollout.from_json(paths[-1].read_text())
    except (ValueError, KeyError, TypeError) as exc:
        raise OperationError(f"{paths[-1]}: not a rollout record this aifactory can read ({exc})") from None


def new_id(root: Path, site: str) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%S")
    base = rollouts_dir(root, site)
    taken = {p.name for p in base.iterdir()} if base.is_dir() else set()
    n = 0
    while (rid := stamp + (f"-{n}" if n else "")) in taken:
        n += 1
    return rid


@contextlib.contextmanager
def locked(root: Path, site: str) -> Iterator[None]:
    """One rollout of a site at a time from this checkout: a second is refused, never queued."""
    base = rollouts_dir(root, site)
    base.mkdir(parents=True, exist_ok=True)
    fd = os.open(base / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OperationError(f"another rollout of {site} is running from this checkout") from None
        yield
    finally:
        os.close(fd)

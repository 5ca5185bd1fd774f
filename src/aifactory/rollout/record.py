"""A rollout's state and record, one JSON document: runs/<site>/rollouts/<id>/rollout.json.

The document is the state `--resume` continues from and the record an auditor reads: the plan,
what differed on each node before it started, and per batch the nodes, their versions before and
after, what taking them out of service did, the converge and verify results, start and end times.
Each finished batch is also written as its own file (rollout-<id>-batch-<n>-try-<k>.json), which
never changes after, so it can go to the evidence store under object lock as soon as the batch ends.

A record on disk is untrusted input when it is read back (anyone who can write to the checkout
could have edited it): it is parsed against the schema below in strict mode, then checked whole
against the stack (:func:`check_against`) before any batch runs, and every path comes from the
validated id and the stack's own site code, never from the record's text. Every save is atomic
(fsutil.write_atomic): a rollout killed at any point leaves the last whole record.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from ..errors import ConfigError, OperationError, Problem
from ..fsutil import RECORD_MAX, entries, is_dir, open_lock, read_model, write_atomic
from .order import Batch, batch_name

RUNNING, STOPPED, COMPLETED, ABANDONED = "running", "stopped", "completed", "abandoned"
FORMAT = 1
RECORD = "rollout.json"
# A rollout id is the time it started (and a counter when two start in the same second): it names a folder.
ID = re.compile(r"[0-9]{8}T[0-9]{6}(?:-[0-9]{1,4})?", re.ASCII)

_Id = Annotated[str, StringConstraints(pattern=r"^[0-9]{8}T[0-9]{6}(-[0-9]{1,4})?$")]
_Site = Annotated[str, StringConstraints(pattern=r"^[a-z](?:[a-z0-9-]{0,10}[a-z0-9])?$")]
_Host = Annotated[str, StringConstraints(pattern=r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")]
# What `now()` writes (time.strftime's %z is +HHMM), or empty: not yet started or ended.
_Time = Annotated[
    str, StringConstraints(pattern=r"^([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}[+-][0-9]{4})?$")
]
_Text = Annotated[str, StringConstraints(max_length=4000)]
_Key = Annotated[
    str,
    StringConstraints(pattern=r"^[a-z0-9-]+/[0-9]{4}-[0-9]{2}-[0-9]{2}/[0-9a-f]{64}/[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"),
]
_Count = Annotated[int, Field(ge=0, le=1_000_000)]


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=False)


class NodeOutcome(_Model):
    versions_before: dict[Annotated[str, StringConstraints(max_length=64)], _Text] = Field(default_factory=dict)
    versions_after: dict[Annotated[str, StringConstraints(max_length=64)], _Text] = Field(default_factory=dict)
    out_of_service: _Text = ""  # what cordon and drain did, or SKIPPED with the reason
    converge: _Text = ""  # "ok (N changed)", or why it failed
    verify: _Text = ""  # "pass", or the failed checks
    back_in_service: _Text = ""  # uncordoned, left cordoned (and why), or SKIPPED
    failed: bool = False


class BatchRecord(_Model):
    index: _Count
    kind: Literal["canary", "batch"]
    nodes: list[_Host] = Field(min_length=1)
    started: _Time = ""
    ended: _Time = ""
    outcomes: dict[_Host, NodeOutcome] = Field(default_factory=dict)
    failures: list[_Host] = Field(default_factory=list)
    passed: bool = False
    bootstrap_artifacts: _Text = ""

    @property
    def name(self) -> str:
        return batch_name(self.kind, self.index)


class Declared(_Model):
    driver: _Text
    cuda: _Text
    nccl: _Text
    inventory_sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class Options(_Model):
    canary: _Count
    batch: Annotated[str, StringConstraints(pattern=r"^[1-9][0-9]{0,5}%?$")]
    max_failures: _Count
    limit: Annotated[str, StringConstraints(min_length=1, max_length=4000)] | None = None


class Difference(_Model):
    would_change: list[_Text]
    versions: dict[Annotated[str, StringConstraints(max_length=64)], _Text]


class Rollout(_Model):
    id: _Id
    site: _Site
    stack_file: _Text
    declared: Declared
    options: Options
    plan: list[Batch]
    differences: dict[_Host, Difference]
    started: _Time = Field(default_factory=now)
    ended: _Time = ""
    status: Literal["running", "stopped", "completed", "abandoned"] = RUNNING
    reason: _Text = ""
    next_batch: _Count = 0  # position in plan of the first batch not yet passed
    batches: list[BatchRecord] = Field(default_factory=list)
    evidence: list[_Key] = Field(default_factory=list)
    # Nodes found cordoned at the start (an operator's: never uncordoned) and nodes this rollout
    # cordoned and has not yet uncordoned (a failed node stays so until a resume passes it).
    cordoned_by_operator: list[_Host] = Field(default_factory=list)
    cordoned_by_rollout: list[_Host] = Field(default_factory=list)
    format: Literal[1] = FORMAT

    def last_tries(self) -> dict[int, BatchRecord]:
        """Each batch's latest try, by its index (a resumed batch has more than one)."""
        return {b.index: b for b in self.batches}

    def to_json(self) -> str:
        return self.model_dump_json(indent=2) + "\n"


def check_against(rollout: Rollout, site: Any, shown: str) -> None:
    """The whole record against the stack, before anything runs: one line per problem, naming the field.

    Refuses what the schema alone cannot see: a record of another site, nodes the site does not have,
    a plan that repeats a node or skips a batch number, a next_batch past a batch that never passed.
    """
    hosts = {n.hostname for n in site.nodes}
    problems: list[Problem] = []

    def bad(where: str, message: str) -> None:
        problems.append(Problem(shown, where, message))

    if rollout.site != site.code:
        bad("site", f"{rollout.site!r} is not this stack's site {site.code!r}")
    if not rollout.plan:
        bad("plan", "empty: a rollout with nothing to do is never recorded")
        raise ConfigError(problems)
    seen: set[str] = set()
    for i, b in enumerate(rollout.plan):
        want_kind = "canary" if b.index == 0 and rollout.plan[0].kind == "canary" else "batch"
        first = 0 if rollout.plan[0].kind == "canary" else 1
        if b.index != first + i or b.kind != want_kind:
            bad(f"plan.{i}", f"{b.name} out of order (expected {batch_name(want_kind, first + i)})")
        for h in b.nodes:
            if h not in hosts:
                bad(f"plan.{i}.nodes", f"{h!r} is not a node of {site.code}")
            elif h in seen:
                bad(f"plan.{i}.nodes", f"{h!r} is planned twice")
            seen.add(h)
    for h in rollout.differences:
        if h not in seen:
            bad("differences", f"{h!r} is not in the plan")
    for name in ("cordoned_by_operator", "cordoned_by_rollout"):
        for h in getattr(rollout, name):
            if h not in hosts:
                bad(name, f"{h!r} is not a node of {site.code}")
    planned = {b.index: b for b in rollout.plan}
    for i, b in enumerate(rollout.batches):
        p = planned.get(b.index)
        if p is None or p.kind != b.kind or tuple(b.nodes) != p.nodes:
            bad(f"batches.{i}", f"{b.name} does not match the plan's batch of that number")
            continue
        for h in [*b.outcomes, *b.failures]:
            if h not in b.nodes:
                bad(f"batches.{i}", f"{h!r} is not a node of {b.name}")
    if rollout.next_batch > len(rollout.plan):
        bad("next_batch", f"{rollout.next_batch} is past the plan's {len(rollout.plan)} batch(es)")
    else:
        tried = rollout.last_tries()
        for p in rollout.plan[: rollout.next_batch]:
            t = tried.get(p.index)
            if t is None or not t.passed:
                bad("next_batch", f"{rollout.next_batch} skips {p.name}, which has not passed")
                break
    if problems:
        raise ConfigError(problems)


def rollouts_dir(root: Path, site: str) -> Path:
    return root / "runs" / site / "rollouts"


def path_of(root: Path, rollout: Rollout) -> Path:
    return rollouts_dir(root, rollout.site) / rollout.id / RECORD


def save(root: Path, rollout: Rollout) -> Path:
    path = path_of(root, rollout)
    write_atomic(path, rollout.to_json(), root=root)
    return path


def save_batch(root: Path, rollout: Rollout, batch: BatchRecord) -> Path:
    """The finished batch as a file of its own, named for the evidence store (one key per batch and try)."""
    tries = sum(1 for b in rollout.batches if b.index == batch.index)
    path = path_of(root, rollout).with_name(f"rollout-{rollout.id}-batch-{batch.index}-try-{tries}.json")
    doc = {"rollout": rollout.id, "site": rollout.site, **batch.model_dump(mode="json")}
    import json

    write_atomic(path, json.dumps(doc, indent=2) + "\n", root=root)
    return path


def _ids(root: Path, site: str) -> list[str]:
    """The rollout folders of a site, oldest first; anything else planted there is refused by name."""
    base = rollouts_dir(root, site)
    out = []
    for name, st in entries(root, ("runs", site, "rollouts")):
        if name == ".lock" or name.startswith("."):
            continue
        if not ID.fullmatch(name) or not is_dir(st):
            raise ConfigError(
                [
                    Problem(
                        str(base / name), "", "not a rollout folder this aifactory made (an id such as 20261201T120000)"
                    )
                ]
            )
        out.append(name)
    return sorted(out, key=lambda i: (i[:15], int(i[16:] or 0)))


def latest(root: Path, site: str, stack_site: Any = None) -> Rollout | None:
    """The site's newest record, parsed: ConfigError if it is not whole.

    Given the stack's site, a record that can still be resumed (running or stopped) is also checked
    whole against it (check_against); a completed or abandoned one is history and is only parsed, so
    a node removed from the stack since never blocks the next rollout.
    """
    ids = _ids(root, site)
    if not ids:
        return None
    path = rollouts_dir(root, site) / ids[-1] / RECORD
    shown = str(path.relative_to(root))
    try:
        rollout = read_model(root, path, Rollout, RECORD_MAX, shown=shown)
    except FileNotFoundError:
        raise ConfigError([Problem(shown, "", "missing: the rollout folder has no record")]) from None
    if rollout.id != ids[-1]:
        raise ConfigError([Problem(shown, "id", f"{rollout.id!r} is not the folder's id {ids[-1]!r}")])
    if rollout.site != site:
        raise ConfigError(
            [Problem(shown, "site", f"{rollout.site!r} is not the site whose folder holds it ({site!r})")]
        )
    if stack_site is not None and rollout.status in (RUNNING, STOPPED):
        check_against(rollout, stack_site, shown)
    return rollout


def new_id(root: Path, site: str) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%S")
    taken = set(_ids(root, site))
    n = 0
    while (rid := stamp + (f"-{n}" if n else "")) in taken:
        n += 1
    return rid


@contextlib.contextmanager
def locked(root: Path, site: str) -> Iterator[None]:
    """One rollout of a site at a time from this checkout: a second is refused, never queued."""
    fd = open_lock(root, rollouts_dir(root, site) / ".lock")
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OperationError(f"another rollout of {site} is running from this checkout") from None
        yield
    finally:
        os.close(fd)


def held(root: Path, site: str) -> bool:
    """Whether a rollout of the site runs now from this checkout (it holds the lock)."""
    try:
        with locked(root, site):
            return False
    except OperationError:
        return True
